"""Random differential testing (`dfx.verify.difftest`): a few hundred random programs agree bit for bit between
the RTL core (fast harness) and the functional simulator; a program on which they differ is bisected to its
first differing instruction and leaves a reproducer that replays. The 10,000-program run is benchmarks/difftest.py."""
import pytest
from verify_helpers import need_fast_rtl

from dfx import isa
from dfx.config import load_config
from dfx.verify.difftest import DiffTest, compare, job, load_reproducer, reference, reproducer
from dfx.verify.difftest_gen import generate
from dfx.verify.toolchain import simulator

CFG = load_config("tiny")
CI_PROGRAMS = 300 if simulator() == "verilator" else 12     # Icarus runs the core at ~1k cycles/s


@pytest.fixture(scope="module")
def dt(tmp_path_factory):
    need_fast_rtl()
    return DiffTest(CFG, out_dir=tmp_path_factory.mktemp("difftest"), subnormals=True)


@pytest.mark.cocotb
def test_random_programs_agree(dt):
    rep = dt.run(range(CI_PROGRAMS), batch=150)
    assert rep.programs == CI_PROGRAMS and not rep.invalid
    assert not rep.mismatches, "\n".join(f"seed {m.seed}: {m.what}; first: {m.first}; {m.reproducer}"
                                         for m in rep.mismatches)


@pytest.mark.cocotb
@pytest.mark.slow       # the bisection runs every prefix: ~60 jobs (minutes on Icarus)
def test_a_difference_is_bisected_and_reproduced(dt, tmp_path):
    """An odd DDR address: the simulator loads from it, the RTL stops with STATUS.address_range at decode of
    that LOAD. The bisection names the LOAD; the reproducer replays the same difference."""
    p = generate(CFG, 7, subnormals=False)
    bad = isa.Instr("LOAD", vaddr=0, addr=3, n=4)
    at = len(p.instrs) // 2
    p.instrs = p.instrs[:at] + [bad] + p.instrs[at:]
    [res] = dt.core.run([job(CFG, p)])
    why = compare(CFG, p, reference(CFG, p), res)
    assert why and f"pc {at}" in why
    first = dt.bisect(p)
    assert first.startswith(f"run 0 pc {at} `LOAD"), first
    path = reproducer(CFG, p, why, first, tmp_path / "r.json")
    cfg2, q = load_reproducer(path)
    assert q.instrs == p.instrs and q.ddr == p.ddr and q.hbm == p.hbm
    [res2] = dt.core.run([job(cfg2, q)])
    assert compare(cfg2, q, reference(cfg2, q), res2) == why


@pytest.mark.cocotb
def test_load_flushes_subnormals(dt):
    """The reproducer tests/verify/difftest_repro/load_subnormal.json (#21: the RTL DMA LOAD once kept binary16
    subnormals): LOAD 8 elements with subnormals, STORE them back. The core's DMA flushes them to signed zeros
    on LOAD (DAZ, hw/dma.py `daz16_lanes`), as the simulator does (sim/functional.py `_load`)."""
    from pathlib import Path
    cfg, p = load_reproducer(Path(__file__).parent / "difftest_repro" / "load_subnormal.json")
    [res] = dt.core.run([job(cfg, p)])
    assert compare(cfg, p, reference(cfg, p), res) is None


@pytest.mark.cocotb
@pytest.mark.slow       # a build of its own: a ring of two cores (several minutes), then 20 programs
def test_two_device_allgather_programs_agree(tmp_path):
    """`--devices 2`: random programs with ALLGATHER over both cores of the fast harness's ring agree with the
    simulated ring (`dfx.sim.ring.Ring`) on both devices."""
    need_fast_rtl()
    ring = DiffTest(CFG, out_dir=tmp_path, devices=2)
    rep = ring.run(range(20), batch=20)
    assert rep.programs == 20 and not rep.invalid
    assert not rep.mismatches, [(m.seed, m.what, m.first) for m in rep.mismatches]


@pytest.mark.cocotb
@pytest.mark.slow       # a build of its own: the core with three quantized tile fetchers, then 40 programs
def test_quantized_weight_programs_agree(tmp_path):
    """`--wformats`: LINEARs on quantized regions (INT4, FP8 E4M3, BCQ2 in their axis / group / zero-point
    variants) agree with the simulator's dequantisation."""
    need_fast_rtl()
    quant = DiffTest(CFG, out_dir=tmp_path, wformats=("int4", "fp8e4m3", "bcq2"))
    rep = quant.run(range(40), batch=40)
    assert rep.programs == 40 and not rep.invalid
    assert any(k[:2] == ("LINEAR", "wfmt") for k in rep.bins)
    assert not rep.mismatches, [(m.seed, m.what, m.first) for m in rep.mismatches]


@pytest.mark.cocotb
@pytest.mark.slow       # the core with every quantized tile fetcher: a build of its own (tens of minutes)
def test_fp8e5m2_subnormal_code_reproducer():
    """The reproducer tests/verify/difftest_repro/fp8e5m2_subnormal_code.json (seed 413 of `--wformats all
    --batched`): an FP8 E5M2 weight whose code is a binary16 subnormal, times a scale of -2.27, is a normal
    weight; the dequantiser once widened the code's value with DAZ and lost that product's term of the LINEAR.
    The dequantiser's ROM now holds each code's exact binary32 value (hw/dequant.py; tests/hw/test_dequant.py
    covers it without the core)."""
    from pathlib import Path

    from dfx.verify.difftest import replay
    need_fast_rtl()
    assert replay(Path(__file__).parent / "difftest_repro" / "fp8e5m2_subnormal_code.json") is None
