"""Tile-scaled integer weights (`dfx.tilescale`, `AccelConfig.tile_scale`): which formats a tile-scaled core
reads, the codes and per-tile scales it gets, and `numerics.mpu_matvec(..., tile_scale=)` against a reference
built from the definition's steps (docs/numerics.md, "Tile-scaled weights")."""
import re

import numpy as np
import pytest

from dfx import formats as F
from dfx import numerics as nx
from dfx.compiler.quant.rtn import rtn
from dfx.tilescale import tile_scale_cannot_read, tile_scale_weights

F16, F32 = np.float16, np.float32
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


# ---------------------------------------------------------------------------------------- what is served
@pytest.mark.parametrize("name", ["fp16", "int4-oc", "int3-oc", "int4-oc-g128", "int4-oc-g64", "int3-oc-g32"])
def test_served_at_d8(name):
    assert tile_scale_cannot_read(name, 8) is None
    assert tile_scale_cannot_read(F.parse(name), 8, phase=0) is None


@pytest.mark.parametrize("name, d, phase, why", [
    ("int8-oc", 8, 0, "int8-oc has 8-bit codes"),
    ("int4-oc-g128-asym", 8, 0, r"int4-oc-g128-asym has zero points \(-asym\)"),
    ("int4-ic-g128", 8, 0, r"int4-ic-g128 has per-input-channel groups \(ic\): one scale per row, not per row tile"),
    ("fp8e4m3", 8, 0, "fp8e4m3 has fp8e4m3 codes, not integers"),
    ("bcq3-oc-g64", 8, 0, "bcq3-oc-g64 has bcq codes, not integers"),
    ("int4-oc-g32", 64, 0, "int4-oc-g32 has groups of 32 rows, not a multiple of d = 64"),
    ("int4-oc-g64", 8, 4, r"int4-oc-g64 starts at row 4 of its group \(descriptor phase\), not at a multiple of d = 8"),
])
def test_refused_with_one_sentence(name, d, phase, why):
    msg = tile_scale_cannot_read(name, d, phase)
    assert msg is not None and "\n" not in msg
    assert msg.startswith(f"a tile-scaled core (AccelConfig.tile_scale) reads symmetric int3/int4 codes with one "
                          f"scale per output column and row tile of d = {d} rows")
    assert re.search(why + "$", msg), msg


def test_phase_that_is_a_multiple_of_d_is_served():
    assert tile_scale_cannot_read("int4-oc-g64", 8, 16) is None
    assert tile_scale_cannot_read("int4-oc-g128", 64, 64) is None


# ---------------------------------------------------------------------------------------- codes and scales
def _qw(rng, name, k, n, phase=0):
    fmt = F.parse(name)
    qw = rtn((rng.standard_normal((k, n)) * np.exp2(rng.integers(-6, 4, (1, n)))).astype(F32), fmt)
    if phase:                                 # the same codes, read as a piece starting `phase` rows into a group
        rows = -(-(k + phase) // fmt.group)
        scales = rng.uniform(1e-3, 1.0, (rows, n)).astype(F16)
        qw = F.QuantWeight(fmt, qw.codes, scales, phase=phase).check()
    return qw


@pytest.mark.parametrize("name, k, n, d, phase", [
    ("int4-oc-g128", 256, 24, 8, 0), ("int4-oc-g64", 200, 9, 8, 0), ("int3-oc-g32", 77, 5, 8, 0),
    ("int4-oc", 70, 6, 8, 0), ("int4-oc-g64", 130, 7, 16, 16), ("int3-oc-g128", 300, 4, 64, 64),
    ("int4-oc-g128", 129, 3, 64, 0),
])
def test_codes_and_tile_scales_reproduce_dequant(name, k, n, d, phase):
    rng = np.random.default_rng(k + n + d + phase)
    qw = _qw(rng, name, k, n, phase)
    v16, ts = tile_scale_weights(qw, d)
    assert v16.dtype == F16 and v16.shape == (k, n) and ts.dtype == F16 and ts.shape == (-(-k // d), n)
    np.testing.assert_array_equal(v16.astype(np.int32), qw.codes)            # the codes' integer values, exact
    g = qw.fmt.group or k
    for i in range(ts.shape[0]):              # the scale of the group holding the tile's first row
        np.testing.assert_array_equal(ts[i].view(np.uint16), qw.scales[(i * d + phase) // g].view(np.uint16))
        last = min(i * d + d, k) - 1          # ... which every row of the tile shares
        assert (i * d + phase) // g == (last + phase) // g
    s_rows = F.expand_groups(qw.scales, qw.fmt, k, n, phase)
    want = nx.to_fp16(v16.astype(F32) * nx.widen16(s_rows))
    np.testing.assert_array_equal(want.view(np.uint16), qw.dequant().view(np.uint16))
    np.testing.assert_array_equal(s_rows.view(np.uint16), np.repeat(ts, d, axis=0)[:k].view(np.uint16))


def test_tile_scale_weights_refuses_what_cannot_be_read():
    rng = np.random.default_rng(1)
    with pytest.raises(F.FormatError, match="has zero points"):
        tile_scale_weights(_qw(rng, "int4-oc-g64-asym", 64, 4), 8)
    with pytest.raises(F.FormatError, match="not a multiple of d = 64"):
        tile_scale_weights(_qw(rng, "int4-oc-g32", 64, 4), 64)
    with pytest.raises(F.FormatError, match="fp16 matrices"):
        tile_scale_weights(F.QuantWeight(F.FP16, np.zeros((8, 4), F16)), 8)


# ---------------------------------------------------------------------------------------- the MPU definition
def _codes(rng, shape, bits=4):
    return rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), shape).astype(F16)


def _wide16(rng, shape):
    """binary16 activations over a wide range, mixed signs (DAZ-clean)."""
    return nx.daz16((rng.standard_normal(shape) * np.exp2(rng.integers(-14, 12, shape))).astype(F16))


def _reference(x, v, ts, bias, d):
    """The definition step by step, no float64: per row tile the pairwise tree of exact binary32 products, then
    one binary32 multiply by the widened scale, then ((+0 + g0') + g1') + ..., then + bias."""
    x32, v32, s32 = nx.widen16(x), nx.widen16(v), nx.widen16(ts)
    m, k = x32.shape
    n = v32.shape[1]
    kt = -(-k // d)
    xp = np.zeros((m, kt * d), F32)
    vp = np.zeros((kt * d, n), F32)
    xp[:, :k], vp[:k] = x32, v32
    acc = np.zeros((m, n), F32)
    for i in range(kt):
        p = xp[:, i * d:(i + 1) * d, None] * vp[None, i * d:(i + 1) * d]      # (m, d, n), exact
        while p.shape[1] > 1:
            p = p[:, 0::2] + p[:, 1::2]
        g = p[:, 0] * s32[i]                                                  # binary32 RNE
        acc = acc + g if i else F32(0.0) + g
    return acc + nx.widen16(bias) if bias is not None else acc


@pytest.mark.parametrize("d, k, n", [(1, 5, 3), (2, 7, 4), (8, 8, 1), (8, 29, 6), (16, 100, 9), (64, 200, 5)])
def test_mpu_matvec_tile_scale_matches_the_definition(d, k, n):
    rng = np.random.default_rng(d * 100 + k)
    x, v, b = _wide16(rng, (3, k)), _codes(rng, (k, n)), _wide16(rng, n)
    ts = nx.daz16((rng.uniform(0.5, 2, (-(-k // d), n)) * np.exp2(rng.integers(-14, 10, (-(-k // d), n))))
                  .astype(F16))
    for bias in (None, b):
        got = nx.mpu_matvec(x, v, bias, d=d, tile_scale=ts)
        want = _reference(x, v, ts, bias, d)
        np.testing.assert_array_equal(nx.fp32_bits(got), nx.fp32_bits(want))
        # binary32 scales holding the same binary16 values (the simulator's cached form) give the same bits
        np.testing.assert_array_equal(nx.fp32_bits(nx.mpu_matvec(x, v, bias, d=d, tile_scale=nx.widen16(ts))),
                                      nx.fp32_bits(got))
    np.testing.assert_array_equal(nx.fp16_bits(nx.mpu(x, v, b, d=d, scale=0.5, act="gelu", tile_scale=ts)),
                                  nx.fp16_bits(nx.mpu_finish(nx.mpu_matvec(x, v, b, d, ts), 0.5, "gelu")))


def test_tile_scale_none_is_the_unscaled_path_and_ones_scale_nothing():
    rng = np.random.default_rng(3)
    x, w = _wide16(rng, (2, 50)), _wide16(rng, (50, 7))
    plain = nx.mpu_matvec(x, w, d=8)
    np.testing.assert_array_equal(nx.fp32_bits(nx.mpu_matvec(x, w, d=8, tile_scale=None)), nx.fp32_bits(plain))
    ones = np.ones((7, 7), F16)
    np.testing.assert_array_equal(nx.fp32_bits(nx.mpu_matvec(x, w, d=8, tile_scale=ones)), nx.fp32_bits(plain))


def test_tile_scale_small_case_by_hand():
    """d=2, K=4 (two row tiles), one column: x = [1, 2, 3, 0.5], codes [3, -2, 7, -8], scales [0.25, 1/3].
    g0 = 1*3 + 2*-2 = -1, g0' = -0.25; g1 = 3*7 + 0.5*-8 = 17, g1' = RNE32(17 * fp16(1/3)); acc = (+0 + g0') + g1'."""
    x = np.array([1.0, 2.0, 3.0, 0.5], F16)
    v = np.array([[3.0], [-2.0], [7.0], [-8.0]], F16)
    s = np.array([[0.25], [1 / 3]], F16)
    third = F32(F16(1 / 3))                                   # 0.33325195... = 1365 * 2^-12
    want = F32(F32(0.0) + F32(-0.25)) + F32(F32(17.0) * third)
    got = nx.mpu_matvec(x, v, d=2, tile_scale=s)
    assert got.shape == (1,) and got[0] == want
    assert float(got[0]) == -0.25 + 17 * 1365 / 4096      # exact here: every step fits binary32
    # dequantising first (today's path) rounds 7/3 and -8/3 to binary16 and gives another result
    assert nx.mpu_matvec(x, nx.to_fp16(v.astype(F32) * nx.widen16(np.repeat(s, 2, 0))), d=2)[0] != got[0]


def test_tile_scale_shape_is_checked():
    x, v = np.ones(10, F16), np.ones((10, 3), F16)
    with pytest.raises(ValueError, match=r"tile_scale must be \(ceil\(K/d\), N\) = \(2, 3\)"):
        nx.mpu_matvec(x, v, d=8, tile_scale=np.ones((1, 3), F16))
    with pytest.raises(ValueError, match="K >= 1"):
        nx.mpu_matvec(np.ones(0, F16), np.ones((0, 3), F16), d=8, tile_scale=np.ones((0, 3), F16))


def test_no_subnormal_arises_in_the_scaled_group_sums():
    """The smallest nonzero |g| is 2^-24 (the smallest binary16 normal 2^-14 times code 1, on the 2^-24 grid of
    binary16 normals' products with integers) and the smallest scale after DAZ is 2^-14: g' >= 2^-38, far above
    binary32's 2^-126; the largest |g| is 65504 * 8 * d: times 65504 it is finite for every d <= 2^16."""
    x = np.array([[2.0 ** -14, 2.0 ** -14 * (1 + 2 ** -10)]], F16)
    v = np.array([[1.0], [-1.0]], F16)
    got = nx.mpu_matvec(x, v, d=2, tile_scale=np.array([[2.0 ** -14]], F16))
    assert got[0, 0] == F32(-(2.0 ** -24) * 2.0 ** -14) and got[0, 0] != 0
    assert np.isfinite(F32(65504.0 * 8 * 65536) * F32(65504.0))
    sub = np.array([[6e-8]], F16)                             # a subnormal scale reads as zero (DAZ)
    assert nx.mpu_matvec(x, v, d=2, tile_scale=sub)[0, 0] == 0
