"""The integrated core reading quantized weights (hw/qfetch.py, hw/dequant.py) under cocotb: the tiny GPT-2
compiled with a quantized `--weights` format runs on a core built for that format, every decode step's logits
bit-exact to the functional simulator; a format the core was not built with stops the run with
STATUS.illegal_opcode.

SIM=icarus (default) or SIM=verilator. Slow (a core with d*l dequantisers is built and simulated per format)."""
import sys
from pathlib import Path

import numpy as np
import pytest

from dfx import isa, regmap
from dfx.verify.rtl_core import RtlCore, bisect
from dfx.verify.toolchain import missing_simulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gpt2_fixtures import make_hf_gpt2  # noqa: E402

pytestmark = [pytest.mark.cocotb, pytest.mark.slow,
              pytest.mark.skipif(missing_simulator() is not None, reason=str(missing_simulator()))]

TINY_GPT2 = dict(n_embd=32, n_head=2, n_layer=1, n_positions=16, vocab_size=64)
PROMPT = [5, 17, 42]
NEW_TOKENS = 3


@pytest.fixture(scope="module")
def model():
    return make_hf_gpt2(8, **TINY_GPT2)


def functional_logits(program, steps):
    from dfx.sim.ring import Ring
    dev = Ring(program).devices[0]
    sym, out = program.symbols, []
    for stream, token, pos in steps:
        dev.run(stream, token, pos)
        if stream == "decode":
            y = np.empty(sym.vocab_size, np.float16)
            for a, b in sym.logits_pieces[0]:
                y[a:b] = dev.ddr[sym.logits + 2 * a:sym.logits + 2 * b].view(np.float16)
            out.append(y)
    return out


def check_bitexact(core, program, res):
    for r in res.runs:
        assert r["status"] == regmap.STATUS_BITS["halted"], r
    steps = [(r["stream"], r["token"], r["pos"]) for r in res.runs]
    ref = functional_logits(program, steps)
    got = [r["logits"] for r in res.runs if r["stream"] == "decode"]
    assert len(got) == len(ref) == NEW_TOKENS
    for i, (g, w) in enumerate(zip(got, ref)):
        if not np.array_equal(g.view(np.uint16), w.view(np.uint16)):
            where = bisect(program, steps, core.run_steps(steps, trace=True))
            pytest.fail(f"{program.config.name} decode step {i}: RTL logits differ from the functional simulator "
                        f"({int(np.sum(g.view(np.uint16) != w.view(np.uint16)))} of {g.size}); first divergence: "
                        f"{where}")


WEIGHTS = "int4-oc-g128"


@pytest.fixture(scope="module")
def program(model):
    from dfx.compiler import compile_model
    return compile_model(model, "tiny", weights=WEIGHTS)


@pytest.fixture(scope="module")
def core(program):
    return RtlCore(program)                       # built with the program's families: int4


def test_quantized_generate_bitexact(core, program):
    """Prefill + greedy decode with int4-oc-g128 weights on the RTL: every decode's logits bit-exact to the
    functional simulator."""
    assert core.wformats == ("int4",)
    check_bitexact(core, program, core.generate(PROMPT, NEW_TOKENS))


def test_unbuilt_format_stops_with_illegal_opcode(core, program):
    """A LINEAR of a format the core was not built with (int8 here) stops with STATUS.illegal_opcode at its PC;
    an int4 LINEAR whose region descriptor does not match (k differs) too."""
    cfg = program.config
    lin8 = isa.Instr("LINEAR", dst=8, src=0, w=0, k=cfg.d, n=cfg.l, wfmt=1).encode()
    w4 = next(i for i in program.devices[0].streams["decode"] if i.fields().get("wfmt") == 2).fields()
    bad_k = isa.Instr("LINEAR", dst=8, src=0, w=w4["w"], k=w4["k"] + 1, n=w4["n"], wfmt=2).encode()
    nop, halt = isa.Instr("NOP").encode(), isa.Instr("HALT").encode()
    res = core.run_words({"int8": [nop, lin8, halt], "bad_k": [bad_k, halt]})
    ill = regmap.STATUS_BITS["illegal_opcode"]
    assert [(r["status"], r["error_pc"]) for r in res.runs] == [(ill, 1), (ill, 0)]


def test_quantized_session_tokens_equal_sim(core, program, tmp_path, monkeypatch):
    """The rtl backend (`run_session`, on the cocotbext-axi harness that shares the core's build) generates the
    same tokens as the sim backend: the same text."""
    from dfx.host.rtl_session import run_session
    from dfx.host.session import Session
    from dfx.program import save_program
    monkeypatch.setenv("DFX_RTL_HARNESS", "axi")
    path = tmp_path / "int4.dfx"
    save_program(program, path)
    res = run_session(path, PROMPT, NEW_TOKENS)
    with Session(program, "sim") as s:
        want = list(s.generate(PROMPT, NEW_TOKENS))
    assert res["tokens"] == want
