"""The kernel top's SLR-crossing register slices and pipelined reset (hw/slr.py, hw/top.py): the slice in
amaranth.sim under random backpressure, the reset pipeline's delay, and (slow) a compiled GPT-2 program on
the top with both, bit-exact to the functional simulator, its cycle count longer by the added latency."""
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from dfx.hw.slr import RegSlice, ResetPipe
from dfx.hw.top import Top


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_reg_slice_keeps_every_beat_in_order(stall):
    dut = RegSlice(16)
    rng = np.random.default_rng(3)
    beats = [int(x) for x in rng.integers(0, 1 << 16, 200)]
    got, cycles = [], [0]

    async def source(ctx):
        for b in beats:
            ctx.set(dut.i_data, b)
            ctx.set(dut.i_valid, 1)
            while True:                                # accepted on the edge where ready is high
                ready = ctx.get(dut.i_ready)
                await ctx.tick()
                if ready:
                    break
            if rng.random() < stall:
                ctx.set(dut.i_valid, 0)
                await ctx.tick()
        ctx.set(dut.i_valid, 0)

    async def sink(ctx):
        while len(got) < len(beats) and cycles[0] < 10 * len(beats):
            ready = int(rng.random() >= stall)
            ctx.set(dut.o_ready, ready)
            valid, data = ctx.get(dut.o_valid), ctx.get(dut.o_data)
            await ctx.tick()
            cycles[0] += 1
            if ready and valid:
                got.append(data)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    assert got == beats
    if stall == 0.0:
        assert cycles[0] <= len(beats) + 2               # one beat per cycle, one cycle of latency


def test_reset_pipe_delays_the_reset():
    from amaranth import ClockDomain, Module, Signal
    m = Module()
    m.domains.rst_src = ClockDomain("rst_src", reset_less=True)
    m.submodules.rp = rp = ResetPipe(3)
    rin = Signal()
    m.d.comb += rp.rst_in.eq(rin)
    seen = []

    async def bench(ctx):
        ctx.set(rin, 0)
        for _ in range(5):
            seen.append(ctx.get(rp.rst_out))
            await ctx.tick("rst_src")
        ctx.set(rin, 1)
        for _ in range(5):
            seen.append(ctx.get(rp.rst_out))
            await ctx.tick("rst_src")

    sim = Simulator(m)
    sim.add_clock(1e-8, domain="rst_src")
    sim.add_testbench(bench)
    sim.run()
    assert seen == [1, 1, 1, 0, 0, 0, 0, 0, 1, 1]          # powers up asserted; follows 3 cycles late
    with pytest.raises(ValueError, match="reset_stages must be an integer 0..16, not 17"):
        ResetPipe(17)


def test_top_refuses_bad_stage_counts():
    from dfx.config import PRESETS
    with pytest.raises(ValueError, match="hbm_slr_stages must be an integer 0..4, not 5"):
        Top(PRESETS["tiny"], hbm_slr_stages=5)


@pytest.mark.slow
@pytest.mark.cocotb
def test_pipelined_top_is_bitexact(monkeypatch, tmp_path):
    """A compiled one-layer GPT-2 (tests/hw/test_core.py's) on the top with 3 reset stages and 2 register
    slices on every HBM channel: logits bit-exact to the functional simulator, tokens as before; the run
    takes more cycles (each HBM request and its data cross 2 x 2 more registers)."""
    import functools

    from dfx.verify import core_build
    from dfx.verify.rtl_core import RtlCore
    from dfx.verify.toolchain import missing_simulator
    if missing_simulator() is not None:
        pytest.skip(str(missing_simulator()))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_core import NEW_TOKENS, PROMPT, TINY_GPT2, functional_run, make_hf_gpt2

    from dfx.compiler import compile_model
    from dfx.hw import top
    model = make_hf_gpt2(8, **TINY_GPT2)
    program = compile_model(model, "tiny")
    base = RtlCore(program).generate(PROMPT, NEW_TOKENS)
    monkeypatch.setattr(core_build, "BUILD", tmp_path)             # a build folder of its own
    monkeypatch.setattr(core_build, "_VERILOG_CACHE", {})
    monkeypatch.setattr(core_build, "verilog", functools.partial(top.verilog, reset_stages=3, hbm_slr_stages=2))
    res = RtlCore(program).generate(PROMPT, NEW_TOKENS)
    steps = [(r["stream"], r["token"], r["pos"]) for r in res.runs]
    ref = functional_run(program, steps)
    got = [r["logits"] for r in res.runs if r["stream"] == "decode"]
    for g, w in zip(got, ref):
        np.testing.assert_array_equal(g.view(np.uint16), w.view(np.uint16))
    assert res.tokens == base.tokens
    extra = [r["cycles"] - b["cycles"] for r, b in zip(res.runs, base.runs)]
    print("cycles:", [b["cycles"] for b in base.runs], "->", [r["cycles"] for r in res.runs], "extra", extra)
    assert all(e > 0 for e in extra)
