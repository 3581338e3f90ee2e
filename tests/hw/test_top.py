"""The kernel top's SLR-crossing register slices and pipelined reset (hw/slr.py, hw/top.py): the slice in
amaranth.sim under random backpressure, the reset pipeline's delay, and (slow) a compiled GPT-2 program on
the top with both, bit-exact to the functional simulator, its cycle count longer by the added latency."""
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from dfx.hw.slr import ForwardSlice, RegSlice, ResetPipe, slice_chain
from dfx.hw.top import Top


def _run_stream(dut, ports, stall: float, latency: int):
    """200 random beats into `ports` (i_valid, i_ready, i_data, o_valid, o_ready, o_data) under random gaps at
    the source and random backpressure at the sink (`stall` of the cycles each): every beat comes out once, in
    order; without stalls one beat a cycle after `latency` cycles."""
    i_valid, i_ready, i_data, o_valid, o_ready, o_data = ports
    rng = np.random.default_rng(3)
    beats = [int(x) for x in rng.integers(0, 1 << 16, 200)]
    got, cycles = [], 0

    async def bench(ctx):                      # one process: every cycle both ends set, then read, then tick
        nonlocal cycles
        sent, gap = 0, False
        while len(got) < len(beats) and cycles < 10 * len(beats):
            o_rdy = int(rng.random() >= stall)
            ctx.set(o_ready, o_rdy)
            offer = sent < len(beats) and not gap
            ctx.set(i_valid, int(offer))
            ctx.set(i_data, beats[sent] if offer else 0)
            took = offer and ctx.get(i_ready)  # ready may follow o_ready through a gate: read after both sets
            if o_rdy and ctx.get(o_valid):
                got.append(ctx.get(o_data))
            await ctx.tick()
            cycles += 1
            if took:
                sent += 1
                gap = rng.random() < stall
            else:
                gap = False

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == beats
    if stall == 0.0:
        assert cycles <= len(beats) + latency + 1     # one beat per cycle


@pytest.mark.parametrize("stall", [0.0, 0.5])
@pytest.mark.parametrize("kind", [RegSlice, ForwardSlice])
def test_slice_keeps_every_beat_in_order(kind, stall):
    dut = kind(16)
    _run_stream(dut, (dut.i_valid, dut.i_ready, dut.i_data, dut.o_valid, dut.o_ready, dut.o_data), stall, 1)


@pytest.mark.parametrize("stall", [0.0, 0.3, 0.6])
@pytest.mark.parametrize("forward", [(0,), (1, 2), (0, 1, 2)])
def test_mixed_slice_chain_keeps_every_beat_in_order(forward, stall):
    """The chains `Top` builds on an HBM channel (forward stages toward the core, a full slice at the port)
    and an all-forward one: three stages, every beat once, in order, one a cycle."""
    from amaranth import Module, Signal
    m = Module()
    i_valid, i_ready, i_data, o_ready = Signal(), Signal(), Signal(16), Signal()
    o_valid, far_ready, o_data = slice_chain(m, "c", 3, i_valid, i_ready, i_data, 16, forward=forward)
    m.d.comb += far_ready.eq(o_ready)
    _run_stream(m, (i_valid, i_ready, i_data, o_valid, o_ready, o_data), stall, 3)


@pytest.mark.synthesis
def test_slices_cost_a_multiplexer_per_bit_only_when_full(tmp_path):
    """The point of `ForwardSlice`: Yosys maps a full slice's payload to a LUT per bit (the skid choice) and
    a forward one's to flip-flops with a clock enable."""
    from dfx.hw.synth import SynthError, find_yosys, synthesize
    try:
        ys = find_yosys()
    except SynthError as e:
        pytest.skip(str(e))
    full = synthesize(RegSlice(64), "full", tmp_path, yosys=ys)
    fwd = synthesize(ForwardSlice(64), "fwd", tmp_path, yosys=ys)
    assert full.lut >= 64 and fwd.lut <= 4 and fwd.ff == 65


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


def test_deep_pipeline_profile_builds_the_300mhz_depths(monkeypatch):
    """$DFX_RTL_PIPELINE=deep (what `dfx build` writes for a board) gives every unit its 300 MHz depths and the
    top its pipelined reset and SLR slices; unset, the core the simulation backends run."""
    from dfx.config import PIPELINE_ENV, PRESETS
    from dfx.hw import dequant, mpu, vpu
    from dfx.hw.core_mpu import MatrixEngine
    from dfx.hw.core_vpu import VectorEngine
    from dfx.hw.pipe import DEEP_TOP
    cfg = PRESETS["tiny"]
    monkeypatch.delenv(PIPELINE_ENV, raising=False)
    monkeypatch.delenv(MatrixEngine.PROFILE_ENV, raising=False)
    base = Top(cfg)
    assert (base.reset_stages, base.hbm_slr_stages) == (0, 0)
    assert MatrixEngine.profile() == "default" and "add_stages" not in VectorEngine.vpu_params(cfg)
    monkeypatch.setenv(PIPELINE_ENV, "deep")
    deep = Top(cfg, reset_stages=1)                   # an explicit count still wins
    assert (deep.reset_stages, deep.hbm_slr_stages) == (1, DEEP_TOP["hbm_slr_stages"])
    assert Top(cfg).reset_stages == DEEP_TOP["reset_stages"]
    assert MatrixEngine.profile() == "deep" and MatrixEngine.mpu_params(cfg) == mpu.STAGES_300MHZ
    assert VectorEngine.vpu_params(cfg).items() >= vpu.STAGES_300MHZ.items()
    assert VectorEngine.vpu_params(cfg)["dsp_add"] == "model" and "dsp_add" not in VectorEngine.vpu_params(cfg, False)
    eng = MatrixEngine(cfg, wformats=("int4",))
    assert eng.mpu.acc_stages == mpu.STAGES_300MHZ["acc_stages"]
    assert eng.qtiles[0].dq[0].latency == dequant.Dequantizer("int4-oc", **dequant.STAGES_300MHZ).latency > \
        dequant.Dequantizer("int4-oc").latency
    monkeypatch.setenv(MatrixEngine.PROFILE_ENV, "default")      # $DFX_RTL_MPU still picks the MPU's alone
    assert MatrixEngine.profile() == "default"


def embedded_model_bit_exact(weights, env: dict, monkeypatch, tmp_path, cfg="tiny"):
    """The embedded model's program (`weights`, for config `cfg`) on the rtl backend (the fast harness; Verilator
    where installed) with the core built under `env`: the sim backend's tokens, every token's logits bit-exact."""
    from dfx.compiler import compile_model
    from dfx.host.rtl_session import run_session
    from dfx.host.session import Session
    from dfx.models.checkpoint import DEFAULT_MODEL_DIR
    from dfx.program import save_program
    from dfx.verify.toolchain import missing_simulator
    sim = "verilator" if missing_simulator("verilator") is None else None
    if missing_simulator(sim) is not None:
        pytest.skip(str(missing_simulator(sim)))
    prog = compile_model(DEFAULT_MODEL_DIR, cfg, weights=weights, max_seq=16)
    path = tmp_path / "p.dfx"
    save_program(prog, path)
    prompt, new = list(b"de"), 2
    logits = []
    with Session(prog, "sim") as s:
        read = s.backend.read_logits
        s.backend.read_logits = lambda: logits.append(np.asarray(read(), np.float16).copy()) or logits[-1]
        want = [int(t) for t in s.generate(prompt, new)]
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("DFX_RTL_WFORMATS", raising=False)
    res = run_session(path, prompt, new, sim=sim, logits=True)
    assert res["tokens"] == want
    assert len(res["logits"]) == len(logits) == new
    for g, w in zip(res["logits"], logits):
        np.testing.assert_array_equal(np.asarray(g, np.float16).view(np.uint16), w.view(np.uint16))


@pytest.mark.slow
@pytest.mark.parametrize("weights", ["int4-oc-g128", "fp16"])
def test_deep_pipeline_core_runs_the_embedded_model(weights, monkeypatch, tmp_path):
    """The core `dfx build` writes for a board ($DFX_RTL_PIPELINE=deep: every unit at its 300 MHz depths, the
    pipelined reset, the SLR slices) on the rtl backend: the embedded model generates the sim backend's tokens
    with every token's logits bit-exact (a Verilator build of its own, ~10 min here, then ~2 min a format)."""
    from dfx.config import PIPELINE_ENV
    embedded_model_bit_exact(weights, {PIPELINE_ENV: "deep"}, monkeypatch, tmp_path)


def test_table_dequantisers_env(monkeypatch):
    """$DFX_RTL_QTABLES=1 builds the matrix engine's int3 / int4 tile fetchers with one table dequantiser per lane
    (other families keep their element dequantisers); any value but 0 or 1 is refused in one line."""
    from dfx.config import load_config
    from dfx.hw.core_mpu import MatrixEngine
    cfg = load_config("tiny")
    monkeypatch.setenv(MatrixEngine.QTABLES_ENV, "1")
    eng = MatrixEngine(cfg, wformats=("int4", "int8"))
    eng._MustUse__silence = True
    assert [(q.family, q.tables, len(q.dq)) for q in eng.qtiles] == [("int4", True, cfg.l), ("int8", False, cfg.d * cfg.l)]
    monkeypatch.setenv(MatrixEngine.QTABLES_ENV, "yes")
    with pytest.raises(ValueError, match="DFX_RTL_QTABLES='yes'"):
        MatrixEngine(cfg, wformats=("int4",))


@pytest.mark.slow
def test_table_dequantiser_core_runs_the_embedded_model(monkeypatch, tmp_path):
    """The core built with table dequantisers ($DFX_RTL_QTABLES=1) runs the embedded model's int4-oc-g128 weights:
    the sim backend's tokens, every token's logits bit-exact (a Verilator build of its own, a few minutes)."""
    from dfx.hw.core_mpu import MatrixEngine
    embedded_model_bit_exact("int4-oc-g128", {MatrixEngine.QTABLES_ENV: "1"}, monkeypatch, tmp_path)


def test_tile_scaled_engine_builds_code_fetchers():
    """A tile-scaled config (`AccelConfig.tile_scale`) builds its int3 / int4 fetchers as code fetchers (one
    `CodeTile` per lane) and an MPU that scales each lane's tree sum; a family it cannot multiply as codes is
    refused in one line."""
    from dfx.config import load_config
    from dfx.hw.core_mpu import MatrixEngine
    cfg = load_config("tiny").replace(tile_scale=True)
    eng = MatrixEngine(cfg, wformats=("int4", "int3"))
    eng._MustUse__silence = True
    assert [(q.family, q.codes, len(q.dq)) for q in eng.qtiles] == [("int4", True, cfg.l), ("int3", True, cfg.l)]
    assert eng.mpu.tile_scale and not MatrixEngine(load_config("tiny"), wformats=("int4",)).mpu.tile_scale
    with pytest.raises(ValueError, match="a tile-scaled core .* reads int3 and int4 codes only, not int8"):
        MatrixEngine(cfg, wformats=("int4", "int8"))


@pytest.mark.slow
@pytest.mark.parametrize("env", [{}, {"DFX_RTL_PIPELINE": "deep"}], ids=["default", "deep"])
def test_tile_scaled_core_runs_the_embedded_model(env, monkeypatch, tmp_path):
    """The tile-scaled core (`AccelConfig.tile_scale`: code fetchers, the MPU scaling each lane's tree sum) runs
    the embedded model's int4-oc-g128 weights: the sim backend's tokens, every token's logits bit-exact, at the
    default depths and as `dfx build` writes it (a Verilator build each)."""
    from dfx.config import load_config
    embedded_model_bit_exact("int4-oc-g128", env, monkeypatch, tmp_path, load_config("tiny").replace(tile_scale=True))
