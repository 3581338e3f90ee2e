"""The MPU against `numerics.mpu_matvec` + `mpu_finish` in amaranth.sim (tiny config): odd shapes (K, N not
multiples of d, l), bias / scale / GELU / mask, special values, backpressure. The cocotb testbench in
test_cocotb.py runs many more matrices."""
import numpy as np
import pytest
from hw_helpers import run_streams

from dfx import numerics as nx
from dfx.config import PRESETS
from dfx.hw.mpu import MPU, beat_order, mpu_beats, unpack16

CFG = PRESETS["tiny"]


def mpu_case(rng, k, n, bias=True, scale=None, gelu=False, mask_limit=None, special=False):
    x = (rng.standard_normal(k) * 2).astype(np.float16)
    w = (rng.standard_normal((k, n)) * 0.4).astype(np.float16)
    b = rng.standard_normal(n).astype(np.float16) if bias else None
    if special:                                   # subnormals, signed zeros, inf, NaN, huge products
        x[0], x[1 % k] = np.float16(6e-8), np.float16(-0.0)
        w[:, 0] = np.float16(60000.0)             # column 0 overflows to inf
        if n > 1:
            w[0, 1] = np.float16(np.inf)          # column 1: inf * 6e-8(DAZ -> 0) = NaN
        if n > 2:
            w[:, 2] = np.float16(-0.0)            # column 2: all -0 products, accumulated from +0
    return dict(x=x, w=w, bias=b, scale=scale, gelu=gelu, mask_limit=mask_limit)


def run_mpu(dut, cases, stall=0.2, seed=0, interleave=1):
    xs, ws, want = [], [], []
    for c in cases:
        ts = c.get("tile_scale")
        xx, ww = mpu_beats(CFG, c["x"], c["w"], c["bias"], c["scale"], c["gelu"], c["mask_limit"],
                           interleave=interleave, first=dut.acc_stages > 0, tile_scale=ts, scaled=dut.tile_scale)
        xs += xx
        ws += ww
        kw = {} if ts is None else {"tile_scale": ts}
        with np.errstate(all="ignore"):
            want.append(nx.mpu(c["x"][None], c["w"], c["bias"], d=CFG.d, scale=c["scale"],
                               act="gelu" if c["gelu"] else None, mask_limit=c["mask_limit"], **kw)[0])
    nts = [-(-c["w"].shape[1] // CFG.l) for c in cases]
    out = run_streams(dut, {"x": xs, "w": ws}, {"o": sum(nts)}, stall=stall, seed=seed)["o"]
    k = 0
    for c, nt, ref in zip(cases, nts, want):
        got = np.concatenate([unpack16(v, CFG.l) for v in out[k:k + nt]])[:c["w"].shape[1]]
        k += nt
        np.testing.assert_array_equal(got.view(np.uint16), ref.view(np.uint16),
                                      err_msg=f"K={c['w'].shape[0]} N={c['w'].shape[1]}")


def test_mpu_matches_numerics():
    rng = np.random.default_rng(7)
    cases = [mpu_case(rng, 19, 6),                                                  # kt=3, nt=2
             mpu_case(rng, 8, 4, bias=False, scale=np.float32(0.125)),              # one tile
             mpu_case(rng, 12, 5, gelu=True, scale=np.float32(1.7), mask_limit=2),  # SFU_M, all of it
             mpu_case(rng, 9, 3, special=True)]
    run_mpu(MPU(CFG), cases)


def test_mpu_latency_and_stages():
    dut = MPU(CFG, mul_stages=1, add_stages=1, fin_mul_stages=1, gelu=False)
    assert dut.tree_latency == 1 + 3 * 1
    assert dut.latency == dut.tree_latency + 1 + (1 + 1 + 1)      # + bias add, scale mul, round
    rng = np.random.default_rng(8)
    run_mpu(dut, [mpu_case(rng, 16, 8, scale=np.float32(-3.0))], stall=0.0)


@pytest.mark.parametrize("interleave", [1, 3, 4])
def test_pipelined_accumulator_is_bit_exact(interleave):
    """A 2-stage accumulator with interleaved column blocks (3 at a time; 4: as many as its FIFO holds; 1: the
    column-major order, which stalls for every group) gives the numerics' in-order sums: kt=3 with nt=5 (a short last
    block group), specials, a single-tile block (first and last at once)."""
    rng = np.random.default_rng(11)
    dut = MPU(CFG, acc_stages=2, acc_fifo=4, gelu=False)
    assert dut.latency == dut.tree_latency + 3 + (2 + 2 + 1)       # + bias add, scale mul, round
    cases = [mpu_case(rng, 19, 18, scale=np.float32(0.5)), mpu_case(rng, 9, 3, special=True),
             mpu_case(rng, 8, 4, bias=False)]
    run_mpu(dut, cases, stall=0.2, seed=interleave, interleave=interleave)


@pytest.mark.parametrize("acc_stages", [0, 2])
def test_lut_adders_are_bit_exact(acc_stages):
    """dsp_add=None: the tree and accumulator adders in LUTs, same results and latency as the default DSP48E2
    adders (behavioural model, the other tests), with the single-cycle and the pipelined accumulator."""
    rng = np.random.default_rng(21)
    dut = MPU(CFG, acc_stages=acc_stages, acc_fifo=4, gelu=False, dsp_add=None)
    assert MPU(CFG, gelu=False).dsp_add == "model"
    assert dut.latency == MPU(CFG, acc_stages=acc_stages, acc_fifo=4, gelu=False).latency
    run_mpu(dut, [mpu_case(rng, 19, 6, scale=np.float32(0.5)), mpu_case(rng, 9, 3, special=True)],
            interleave=3 if acc_stages else 1)


def test_beat_order():
    assert beat_order(2, 3, 2) == [(0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (2, 1)]
    assert beat_order(2, 2, 1) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_mpu_refuses_bad_parameters():
    with pytest.raises(TypeError, match="cfg must be an AccelConfig"):
        MPU("tiny")
    with pytest.raises(ValueError, match="add_stages must be an integer 0..8, not 9"):
        MPU(CFG, add_stages=9)
    with pytest.raises(ValueError, match="acc_fifo must be one of"):
        MPU(CFG, acc_stages=2, acc_fifo=3)
    with pytest.raises(ValueError, match="needs a registered tree"):
        MPU(CFG, acc_stages=2, mul_stages=0, add_stages=0)


def codes_case(rng, k, n, bits=4, **kw):
    """A matrix of `bits`-bit symmetric integer codes (exact in binary16) with a binary16 scale per row tile and
    column (some negative, tiny and huge), as a tile-scaled core's fetcher hands them to the MPU."""
    c = mpu_case(rng, k, n, **kw)
    c["w"] = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (k, n)).astype(np.float16)
    ts = (rng.standard_normal((-(-k // CFG.d), n)) * 0.02).astype(np.float16)
    ts.flat[0], ts.flat[-1] = np.float16(6.1e-5), np.float16(-300.0)
    c["tile_scale"] = ts
    return c


@pytest.mark.parametrize("acc_stages", [0, 2])
def test_tile_scaled_mpu_is_bit_exact(acc_stages):
    """`MPU(tile_scale=True)`: tiles of integer codes, each lane's tree sum times its tile's scale before the
    accumulator (`numerics.mpu`'s tile_scale), and FP16 tiles (scale_en clear) through the same unit unchanged;
    the multiply's stages are in `tree_latency`. With the single-cycle and the pipelined accumulator."""
    rng = np.random.default_rng(21)
    dut = MPU(CFG, tile_scale=True, acc_stages=acc_stages, acc_fifo=4, gelu=False)
    assert dut.tree_latency == MPU(CFG, acc_stages=acc_stages, acc_fifo=4).tree_latency + dut.fin_mul_stages
    cases = [codes_case(rng, 19, 14, scale=np.float32(0.5)), mpu_case(rng, 9, 3, special=True),
             codes_case(rng, 8, 4, bits=3, bias=False), mpu_case(rng, 16, 5), codes_case(rng, 24, 9)]
    run_mpu(dut, cases, stall=0.2, seed=acc_stages, interleave=3 if acc_stages else 1)
