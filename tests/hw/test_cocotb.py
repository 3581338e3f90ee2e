"""Every arithmetic unit, the MPU and the VPU in a Verilog simulator under cocotb (`dfx.verify.units`),
compared bit for bit with `dfx.numerics` by an in-order scoreboard, under random backpressure. SIM=icarus (default) or SIM=verilator; WAVES=1 writes a trace into
build/rtl_sim/<design>_<sim>/. The `slow` ones run every binary16 input through GELU and exp and thousands
of random matrices through the MPU (use SIM=verilator for those)."""
import numpy as np
import pytest
from hw_helpers import unit_bank
from hw_vectors import ref_exp16, ref_gelu16, vpu_expected
from test_mpu import mpu_case
from test_vpu import vpu_cases

from dfx import numerics as nx
from dfx.config import PRESETS
from dfx.hw.mpu import MPU, mpu_beats, pack16
from dfx.hw.vpu import VPU, vpu_beats
from dfx.verify.toolchain import missing_simulator
from dfx.verify.units import run_vectors

pytestmark = [pytest.mark.cocotb,
              pytest.mark.skipif(missing_simulator(axi=False) is not None,
                                 reason=str(missing_simulator(axi=False)))]
CFG = PRESETS["tiny"]


def _leaf_bank(n, seed):
    from hw_vectors import leaf_units
    units = leaf_units(n, seed)
    bank = unit_bank({name: factory() for name, (factory, _, _) in units.items()})
    sources = {f"{name}_i": words for name, (_, words, _) in units.items()}
    sinks = {f"{name}_o": [int(v) for v in exp] for name, (_, _, exp) in units.items()}
    return bank, sources, sinks


def test_leaf_units_cocotb():
    """All ten leaf units at once: corner grids plus 400 random vectors each."""
    bank, sources, sinks = _leaf_bank(400, seed=11)
    run_vectors(bank, "leaf_units", sources, sinks, seed=1, stall=0.2)


def mpu_program(rng, n_cases):
    xs, ws, want = [], [], []
    for r in range(n_cases):
        k, n = int(rng.integers(1, 4 * CFG.d)), int(rng.integers(1, 4 * CFG.l))
        c = mpu_case(rng, k, n, bias=r % 2 == 0, scale=np.float32(rng.uniform(-2, 2)) if r % 3 == 0 else None,
                     gelu=r % 4 == 1, mask_limit=int(rng.integers(0, n)) if r % 5 == 2 else None,
                     special=r % 7 == 3)
        xx, ww = mpu_beats(CFG, c["x"], c["w"], c["bias"], c["scale"], c["gelu"], c["mask_limit"])
        xs += xx
        ws += ww
        with np.errstate(all="ignore"):
            y = nx.mpu(c["x"][None], c["w"], c["bias"], d=CFG.d, scale=c["scale"],
                       act="gelu" if c["gelu"] else None, mask_limit=c["mask_limit"])[0]
            # the padding columns: zero weights and bias give +0, through scale and GELU as the spec says
            nt = -(-n // CFG.l)
            pad = nx.mpu(c["x"][None], np.zeros((k, nt * CFG.l - n), np.float16), None, d=CFG.d,
                         scale=c["scale"], act="gelu" if c["gelu"] else None)[0] if nt * CFG.l > n else []
            yp = np.concatenate([y, pad]).astype(np.float16)
            if c["mask_limit"] is not None:
                yp = nx.mask16(yp, c["mask_limit"])
        want += [pack16(yp[j * CFG.l:(j + 1) * CFG.l]) for j in range(nt)]
    return xs, ws, want


def test_mpu_cocotb():
    xs, ws, want = mpu_program(np.random.default_rng(21), 24)
    run_vectors(MPU(CFG), "mpu_tiny", {"x": xs, "w": ws}, {"o": want}, seed=2, stall=0.2)


def vpu_program(rng, rounds):
    ins, want = [], []
    for _ in range(rounds):
        for op, kw in vpu_cases(rng):
            ins += vpu_beats(CFG, op, **kw)
            want += vpu_expected(CFG, op, **kw)
    return ins, want


def test_vpu_cocotb():
    ins, want = vpu_program(np.random.default_rng(31), 2)
    run_vectors(VPU(CFG), "vpu_tiny", {"i": ins}, {"o": want}, seed=3, stall=0.2)


@pytest.mark.slow
def test_gelu_exp_exhaustive_cocotb():
    """Every one of the 65536 binary16 inputs through the GELU and exp units (about 1 min on Verilator)."""
    from dfx.hw.sfu import Exp16Unit, Gelu16Unit
    x = np.arange(1 << 16, dtype=np.uint16)
    bank = unit_bank({"gelu": Gelu16Unit(), "exp": Exp16Unit()})
    run_vectors(bank, "gelu_exp_all", {"gelu_i": list(x), "exp_i": list(x)},
               {"gelu_o": [int(v) for v in ref_gelu16(x)], "exp_o": [int(v) for v in ref_exp16(x)]},
               stall=0.0, timeout=1000)


@pytest.mark.slow
def test_leaf_units_many_random_cocotb():
    bank, sources, sinks = _leaf_bank(20000, seed=12)
    run_vectors(bank, "leaf_units_big", sources, sinks, seed=4, stall=0.05)


@pytest.mark.slow
def test_mpu_many_matrices_cocotb():
    xs, ws, want = mpu_program(np.random.default_rng(22), 400)
    run_vectors(MPU(CFG), "mpu_tiny", {"x": xs, "w": ws}, {"o": want}, seed=5, stall=0.1)
