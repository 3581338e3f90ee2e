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


@pytest.mark.parametrize("weights", ["int4-oc-g128"])
def test_quantized_generate_bitexact(model, weights):
    """Prefill + greedy decode with quantized weights on the RTL: logits bit-exact to the functional simulator,
    and the same tokens."""
    from dfx.compiler import compile_model
    program = compile_model(model, "tiny", weights=weights)
    core = RtlCore(program)
    assert core.wformats == (weights.split("-")[0],)
    res = core.generate(PROMPT, NEW_TOKENS)
    check_bitexact(core, program, res)
