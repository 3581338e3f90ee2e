"""The integrated core reading quantized weights (hw/qfetch.py, hw/dequant.py): every weight format the compiler
accepts (`dfx.formats.all_formats()`, fp16 too) on ONE core built with every family (`CORE_FAMILIES`) in the fast
harness (`dfx.verify.fast_core`): the tiny test GPT-2 compiled with each format, prefill + greedy decode, every
decode step's logits bit-exact to the functional simulator (all programs in one simulation, one test per format).
The rtl backend (`run_session`, `DFX_RTL_WFORMATS=all`: the same build) generates the sim backend's tokens. A
format the core was not built with stops the run with STATUS.illegal_opcode (the FP16-only core), and so does a
region descriptor that does not match its instruction.

SIM=verilator (the default here: the all-family core is large) or SIM=icarus. Slow (the all-family core's
Verilator build takes 15-40 minutes on a loaded machine; benchmarks/rtl_formats.py runs the embedded model in
every format on the same build)."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from dfx import isa, regmap
from dfx.formats import all_formats
from dfx.hw.qfetch import CORE_FAMILIES
from dfx.verify.fast_core import FastCore, FastJob, greedy_steps
from dfx.verify.rtl_core import ddr_layout
from dfx.verify.toolchain import missing_simulator, simulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gpt2_fixtures import make_hf_gpt2  # noqa: E402

SIM = simulator(os.environ.get("SIM", "verilator"))
pytestmark = [pytest.mark.cocotb, pytest.mark.slow,
              pytest.mark.skipif(missing_simulator(SIM) is not None, reason=str(missing_simulator(SIM)))]

TINY_GPT2 = dict(n_embd=32, n_head=2, n_layer=1, n_positions=16, vocab_size=64)
PROMPT = [5, 17, 42]
NEW_TOKENS = 3
FORMATS = [f.name for f in all_formats()]
HALTED = regmap.STATUS_BITS["halted"]
ILLEGAL = regmap.STATUS_BITS["illegal_opcode"]


@pytest.fixture(scope="module")
def model():
    return make_hf_gpt2(8, **TINY_GPT2)


@pytest.fixture(scope="module")
def programs(model):
    from dfx.compiler import compile_model
    return {name: compile_model(model, "tiny", weights=name) for name in FORMATS}


@pytest.fixture(scope="module")
def core():
    """The core with every quantized family, in the fast harness (the build `DFX_RTL_WFORMATS=all` gives the rtl
    backend, and benchmarks/rtl_formats.py's)."""
    from dfx.config import load_config
    return FastCore(load_config("tiny"), SIM, wformats=tuple(CORE_FAMILIES))


@pytest.fixture(scope="module")
def results(core, programs):
    """Every format's greedy generation on the simulator and its replay on the core, in one simulation:
    {format: (simulator tokens, simulator logits, RTL result)}."""
    refs = {name: greedy_steps(prog, PROMPT, NEW_TOKENS) for name, prog in programs.items()}
    jobs = [FastCore.job_for(programs[name], refs[name][0], logits=True) for name in FORMATS]
    return {name: (refs[name][1], refs[name][2], res) for name, res in zip(FORMATS, core.run(jobs))}


def test_core_has_every_family(programs):
    """Every format the compiler accepts is one the all-family core reads (no program is refused)."""
    from dfx.verify.core_build import quantized_refusal
    assert {name: quantized_refusal(p) for name, p in programs.items()} == {name: None for name in FORMATS}


@pytest.mark.parametrize("name", FORMATS)
def test_format_bitexact(results, name):
    """Prefill + greedy decode in format `name` on the all-family core: every run halts, every decode step's
    logits are bit-exact to the functional simulator, so the RTL picks the simulator's tokens."""
    tokens, want, res = results[name]
    assert [(r["stream"], r["status"]) for r in res["runs"] if r["status"] != HALTED] == []
    got = res["logits"]
    assert len(got) == len(want) == NEW_TOKENS
    for i, (g, w) in enumerate(zip(got, want)):
        diff = int(np.sum(g.view(np.uint16) != w.view(np.uint16)))
        assert diff == 0, f"{name} decode step {i}: {diff} of {g.size} logits differ from the functional simulator"
    assert [int(np.argmax(g)) for g in got] == tokens


def raw_job(program, streams: dict[str, list[int]]) -> FastJob:
    """A job running raw instruction streams (one run each) over `program`'s memory images."""
    ddr, _ = ddr_layout(program)
    ddr, entries = bytearray(ddr), {}
    for name, words in streams.items():
        ddr.extend(b"\0" * (-len(ddr) % 4096))
        entries[name] = len(ddr)
        ddr.extend(b"".join(int(w).to_bytes(isa.WORD_BYTES, "little") for w in words))
    return FastJob([{"ddr": bytes(ddr), "hbm": bytes(program.devices[0].hbm)}], [entries],
                   [[name, 0, 0] for name in streams])


def _quant_linear(program, wfmt: int) -> dict:
    return next(i for i in program.devices[0].streams["decode"] if i.fields().get("wfmt") == wfmt).fields()


def test_bad_descriptor_stops_with_illegal_opcode(core, programs):
    """On the all-family core, an int4 LINEAR whose region descriptor does not match the instruction (k differs)
    stops with STATUS.illegal_opcode at its PC; a matching one halts."""
    prog = programs["int4-oc-g128"]
    w4 = _quant_linear(prog, 2)
    good = isa.Instr("LINEAR", dst=8, src=0, w=w4["w"], k=w4["k"], n=w4["n"], wfmt=2).encode()
    bad_k = isa.Instr("LINEAR", dst=8, src=0, w=w4["w"], k=w4["k"] + 1, n=w4["n"], wfmt=2).encode()
    halt = isa.Instr("HALT").encode()
    [res] = core.run([raw_job(prog, {"good": [good, halt], "bad_k": [bad_k, halt]})])
    good_run, bad_run = res["runs"]
    assert good_run["status"] == HALTED
    assert (bad_run["status"], bad_run["error_pc"]) == (ILLEGAL, 0)


def test_unbuilt_format_stops_with_illegal_opcode(programs):
    """A LINEAR of a format the core was not built with (int8 on the FP16-only core, the rtl backend's build for
    FP16 programs) stops with STATUS.illegal_opcode at its PC."""
    from dfx.config import load_config
    prog = programs["int8-oc"]
    w8 = _quant_linear(prog, 1)
    lin8 = isa.Instr("LINEAR", dst=8, src=0, w=w8["w"], k=w8["k"], n=w8["n"], wfmt=1).encode()
    nop, halt = isa.Instr("NOP").encode(), isa.Instr("HALT").encode()
    [res] = FastCore(load_config("tiny"), SIM).run([raw_job(prog, {"int8": [nop, lin8, halt]})])
    assert [(r["status"], r["error_pc"]) for r in res["runs"]] == [(ILLEGAL, 1)]


@pytest.mark.parametrize("name", ["int8-ic-g32-asym", "fp8e5m2-oc-g64", "bcq3-ic-g32"])
def test_rtl_backend_tokens_equal_sim(core, programs, name, tmp_path, monkeypatch):
    """The rtl backend (`run_session` on the fast harness; `DFX_RTL_WFORMATS=all`: the all-family build) generates
    the sim backend's tokens, i.e. the same text."""
    from dfx.host.rtl_session import run_session
    from dfx.host.session import Session
    from dfx.program import save_program
    monkeypatch.setenv("DFX_RTL_WFORMATS", "all")
    monkeypatch.delenv("DFX_RTL_HARNESS", raising=False)
    path = tmp_path / f"{name}.dfx"
    save_program(programs[name], path)
    res = run_session(path, PROMPT, NEW_TOKENS, sim=SIM)
    with Session(programs[name], "sim") as s:
        want = list(s.generate(PROMPT, NEW_TOKENS))
    assert res["tokens"] == want
