"""The matrix engine on the pipelined accumulator (hw/core_mpu.py, hw/core_rob.py): the chunk walk, the reorder
buffer's order under back-pressure, the interleave and the engine's profiles. The whole core on the deep MPU:
tests/hw/test_core.py with `MatrixEngine.PROFILE`."""
import random

import pytest
from amaranth.sim import Simulator

from dfx.config import PRESETS
from dfx.hw.core_mpu import MatrixEngine
from dfx.hw.core_rob import (BUFFERS, ROB_BURST, Reorder, chunks, interleave, stream_cycles,
                             tile_cycles)
from dfx.hw.mpu import STAGES_300MHZ, beat_order

CFG = PRESETS["tiny"]
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def fetch_order(kt, nt, i, b):
    """(block, row) of every tile in the order the weight streamer fetches them: chunk by chunk, block by block."""
    return [(j0 + u, i0 + r) for j0, i0, ic, bc in chunks(kt, nt, i, b) for u in range(ic) for r in range(bc)]


def run_reorder(kt, nt, i, b, seed, lag=0):
    """Feed the fetch order with random gaps and back-pressure; return (block, row) as the MPU gets them."""
    dut = Reorder(32, i, b, lag=lag)
    rng = random.Random(seed)
    order = fetch_order(kt, nt, i, b)
    got = []

    async def bench(ctx):
        ctx.set(dut.kt, kt)
        ctx.set(dut.nt, nt)
        await ctx.tick()                     # (kt and nt hold from a cycle before start)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        k = cycles = 0
        while len(got) < kt * nt and cycles < 50 * kt * nt + 100:
            vi = k < len(order) and rng.random() < 0.8
            ctx.set(dut.i.valid, vi)
            if vi:
                ctx.set(dut.i.payload, order[k][0] * 1000 + order[k][1])
            rdy = rng.random() < 0.8
            ctx.set(dut.o.ready, rdy)
            _, _, i_rdy, o_val, o_pay = await ctx.tick().sample(dut.i.ready, dut.o.valid, dut.o.payload)
            k += vi and i_rdy
            if o_val and rdy:
                got.append(divmod(o_pay, 1000))
            cycles += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("lag", [0, 1, 2, 4])
@pytest.mark.parametrize("kt,nt,i,b", [(4, 8, 10, 16), (4, 32, 10, 16), (37, 23, 10, 16), (5, 3, 3, 2), (1, 1, 10, 16),
                                       (9, 21, 4, 4), (3, 7, 1, 1), (2, 9, 2, 1)])
def test_reorder_hands_the_mpu_beat_order(kt, nt, i, b, lag):
    """Fewer blocks than I (nt < I), ragged last group and last row chunk, one tile, chunks of one or two tiles
    (more of them in flight than buffers when the lag is long): the MPU gets exactly `beat_order(kt, nt, I)`,
    with the memory `lag` registers from the write walk (an SLR crossing)."""
    assert run_reorder(kt, nt, i, b, seed=kt * nt + lag, lag=lag) == beat_order(kt, nt, i)


def test_chunks_cover_the_matrix_once():
    for kt, nt in [(4, 8), (37, 23), (16, 10), (1, 31)]:
        assert sorted(fetch_order(kt, nt, 10, ROB_BURST)) == sorted((j, r) for j in range(nt) for r in range(kt))


def test_interleave_and_profiles():
    assert interleave(0, 8) == 1 and interleave(8, 16) == 10 and interleave(8, 4) == 4
    assert set(MatrixEngine.PROFILES) == {"default", "deep"}
    deep = MatrixEngine(CFG, **STAGES_300MHZ)
    assert deep.interleave == STAGES_300MHZ["acc_stages"] + 2
    assert deep.rob.depth == BUFFERS * deep.interleave * ROB_BURST
    assert deep.mpu.acc_stages == STAGES_300MHZ["acc_stages"]
    flat = MatrixEngine(CFG, acc_stages=0)
    assert flat.interleave == 1 and flat.rob is None


def test_slr_stages_follow_the_pipeline_profile(monkeypatch):
    """The register slices on the operand broadcast and the joined tile: none by default, `BROADCAST_SLR_STAGES`
    under the deep profile, an explicit count wins, and a bad one is refused in one line."""
    from dfx.config import PIPELINE_ENV
    from dfx.hw.slr import BROADCAST_SLR_STAGES
    assert MatrixEngine(CFG).slr_stages == 0
    monkeypatch.setenv(PIPELINE_ENV, "deep")
    assert MatrixEngine(CFG).slr_stages == BROADCAST_SLR_STAGES > 0
    assert MatrixEngine(CFG, slr_stages=1).slr_stages == 1
    with pytest.raises(ValueError, match="slr_stages must be an integer 0..4, not 5"):
        MatrixEngine(CFG, slr_stages=5)


def test_stream_cycles():
    """Column-major at the single-cycle accumulator: a tile per cycle; interleaved, a tile per cycle once I >= the
    accumulator's latency, plus the first chunk's fill; fewer blocks than that wait for their partial sums."""
    assert stream_cycles(7, 9, 1, 1, rob=False) == 63
    kt, nt = 4 * ROB_BURST, 30
    full = stream_cycles(kt, nt, 10, 10)
    assert kt * nt < full <= kt * nt + 10 * ROB_BURST + 2 + 2 * ROB_BURST
    assert stream_cycles(4, 2, 10, 10) == 8 + 1 + 3 * 10 + 1
    assert tile_cycles(7, 9, 0, 8) == 63
    assert tile_cycles(4, 2, 8, 16) == stream_cycles(4, 2, 10, 10)
    assert tile_cycles(4, 2, 8, 16, quantized=True) == 2 * (3 * 10 + 1)
    assert MatrixEngine(CFG, **STAGES_300MHZ).tile_cycles(4, 2) == tile_cycles(4, 2, 8, 16)


@pytest.mark.slow          # an Icarus build of the deep core with two quantized families (~4 min) and ~5 min a format
@pytest.mark.cocotb
@pytest.mark.parametrize("fmt", ["int4-oc-g128", "bcq3-ic-g32"])
def test_deep_core_quantized_bitexact(fmt, monkeypatch):
    """The deep core (`DFX_RTL_MPU=deep`) on quantized weights (their tiles column-major through the pipelined
    accumulator, one block at a time): the tiny test GPT-2's decode logits bit-exact to the functional simulator.
    FP16 weights on the deep core: tests/hw/test_core.py with DFX_RTL_MPU=deep."""
    import sys
    from pathlib import Path

    import numpy as np

    from dfx.compiler import compile_model
    from dfx.verify.rtl_core import RtlCore
    from dfx.verify.toolchain import missing_simulator
    if missing_simulator() is not None:
        pytest.skip(str(missing_simulator()))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from gpt2_fixtures import make_hf_gpt2
    from test_core import TINY_GPT2, functional_run
    monkeypatch.setenv(MatrixEngine.PROFILE_ENV, "deep")
    monkeypatch.setenv("DFX_RTL_WFORMATS", "int4,bcq3")        # one build for both formats
    prog = compile_model(make_hf_gpt2(8, **TINY_GPT2), "tiny", weights=fmt)
    steps = [("prefill", 5, 0), ("decode", 17, 1)]
    res = RtlCore(prog).run_steps(steps)
    got = [r["logits"] for r in res.runs if r["stream"] == "decode"]
    want = functional_run(prog, steps)
    assert len(got) == len(want) == 1
    assert np.array_equal(got[0].view(np.uint16), want[0].view(np.uint16))
