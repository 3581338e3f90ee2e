"""The ring kernel over the lossy link model (hw/ring_top.py) under cocotb: two kernels pass random messages
whole, in order and bit-exact through drops, bit flips, TX stalls and a stalling receiver; whole rings of 2 and
4 cores with ring kernels between them run a compiled GPT-2 program bit-exact to the functional ring.

SIM=icarus (default) or SIM=verilator. The rings are slow (a cold build of their Verilog takes many minutes);
benchmarks/ring_kernel.py runs them and prints the figures quoted in docs/board_flow.md."""
import sys
from pathlib import Path

import numpy as np
import pytest

from dfx import regmap
from dfx.hw.ring_top import LinkModel
from dfx.verify.toolchain import missing_simulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpt2_fixtures import make_hf_gpt2  # noqa: E402
from test_core import PROMPT, TINY_GPT2, functional_run, golden_greedy  # noqa: E402

pytestmark = [pytest.mark.cocotb,
              pytest.mark.skipif(missing_simulator() is not None, reason=str(missing_simulator()))]

# about 2% of words dropped, 2% with a flipped bit, 3% of cycles with tready low, each direction
LOSSY = LinkModel(latency=12, drop=1500, flip=1500, stall=2000, seed=3)
SMALL_WINDOW = dict(window=8, timeout=256)      # the sender's window and timeout at simulation scale


def test_pair_over_lossy_link():
    """40 random messages (1..12 beats of the tiny preset's 128 bits) from kernel A to kernel B over a lossy
    link, the sink stalling (5% of cycles start a stall of up to 200 cycles): every message arrives whole,
    in order and bit-exact (the testbench checks each), nothing overflows, and the link's losses were
    really repaired (CRC errors and replays counted)."""
    from dfx.verify.ring_cosim import run_pair
    res = run_pair(128, LOSSY, messages=40, seed=5, kernel=SMALL_WINDOW)
    a, b = res.status["a"], res.status["b"]
    assert res.messages == 40
    assert a["ID"] == b["ID"] == 0x44465852
    assert a["LINK"] & 3 == 3 and b["LINK"] & 3 == 3
    assert b["OVERFLOWS"] == 0
    assert res.links["link0"]["dropped"] > 0 and res.links["link0"]["flipped"] > 0
    assert a["TX_REPLAYS"] > 0 and b["CRC_ERRORS"] + b["DESYNCS"] > 0
    assert b["RX_FRAMES"] <= a["TX_FRAMES"]


def check_kernel_ring(program, want_tokens, prompt, new, model=LOSSY, sim=None):
    """`program` on its cores joined through ring kernels and lossy links: every run halts normally, the decode
    logits are bit-exact to the functional ring simulator's, and the tokens are `want_tokens`."""
    from dfx.verify.ring_cosim import KernelRingCore
    res = KernelRingCore(program, model, sim=sim, kernel=SMALL_WINDOW).generate(prompt, new)
    for r in res.runs:
        assert r["status"] == regmap.STATUS_BITS["halted"], r
    steps = [(r["stream"], r["token"], r["pos"]) for r in res.runs]
    want = functional_run(program, steps)
    got = [r["logits"] for r in res.runs if r["stream"] == "decode"]
    assert len(got) == len(want) == new
    for i, (g, w) in enumerate(zip(got, want)):
        assert np.array_equal(g.view(np.uint16), w.view(np.uint16)), f"decode step {i}: ring logits differ"
    assert res.tokens == want_tokens
    return res


@pytest.mark.slow      # a cold build of 2 cores + 2 ring kernels (Verilog + simulator) takes many minutes here
def test_ring_of_two_cores_with_kernels():
    from dfx.compiler import compile_model
    model = make_hf_gpt2(8, **TINY_GPT2)
    prompt, new = PROMPT[1:], 2
    check_kernel_ring(compile_model(model, "tiny", devices=2), golden_greedy(model, prompt, new), prompt, new)


@pytest.mark.slow
def test_ring_of_four_cores_with_kernels():
    from dfx.compiler import compile_model
    model4 = make_hf_gpt2(8, **{**TINY_GPT2, "n_head": 4})
    prompt, new = PROMPT[1:], 2
    check_kernel_ring(compile_model(model4, "tiny", devices=4), golden_greedy(model4, prompt, new), prompt, new)
