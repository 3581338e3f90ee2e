"""The ring kernel over the lossy link model (hw/ring_top.py) under cocotb: two kernels pass random messages
whole, in order and bit-exact through drops, bit flips, TX stalls and a stalling receiver; whole rings of 2 and
4 cores with ring kernels between them run a compiled GPT-2 program bit-exact to the functional ring.

SIM=icarus (default) or SIM=verilator. The rings are slow
(a cold generation of the core's and the kernel's Verilog takes minutes, the simulation tens of minutes on a
shared machine); benchmarks/ring_rtl.py runs them (benchmarks/ring_kernel.py the pair) and prints the figures
quoted in docs/board_flow.md."""
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


def check_kernel_ring(program, want_tokens, prompt, new, model=LOSSY, sim=None, core=None):
    """`program` on its cores joined through ring kernels and lossy links (`core`: a `KernelRingCore` of it
    already built): every run halts normally, the decode logits are bit-exact to the functional ring
    simulator's, the tokens are `want_tokens`, no kernel's buffer overflowed, and the links' losses were
    repaired (drops or flips seen, go-back-N replays made)."""
    from dfx.verify.ring_cosim import KernelRingCore
    core = core or KernelRingCore(program, model, sim=sim, kernel=SMALL_WINDOW)
    res = core.generate(prompt, new)
    for r in res.runs:
        assert r["status"] == regmap.STATUS_BITS["halted"], r
    steps = [(r["stream"], r["token"], r["pos"]) for r in res.runs]
    want = functional_run(program, steps)
    got = [r["logits"] for r in res.runs if r["stream"] == "decode"]
    assert len(got) == len(want) == new
    for i, (g, w) in enumerate(zip(got, want)):
        assert np.array_equal(g.view(np.uint16), w.view(np.uint16)), f"decode step {i}: ring logits differ"
    assert res.tokens == want_tokens
    kernels, links = res.counters["kernels"], res.counters["links"]
    assert len(kernels) == program.n_devices and len(links) == 2 * program.n_devices
    assert all(k["OVERFLOWS"] == 0 for k in kernels)
    if model.drop or model.flip:                        # the losses happened and were repaired
        assert sum(v["dropped"] + v["flipped"] for v in links.values()) > 0
        assert sum(k["TX_REPLAYS"] for k in kernels) > 0
    return res


@pytest.mark.slow      # 2 cores + 2 ring kernels: minutes of Verilog generation and simulator build, then the run
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


def test_link_model_latency_drops_and_flips():
    """The link model itself (amaranth.sim): a clean link delivers every word `latency` cycles later; a lossy one
    drops and flips about the share asked for, each flip is one bit, and what arrives stays in order."""
    from amaranth.sim import Simulator

    from dfx.hw.ring_top import LossyLink

    def run(model, n=3000):
        dut = LossyLink(model)
        sent, got = [], []

        async def bench(ctx):
            k = 0
            for cycle in range(n + model.latency + 2):
                ctx.set(dut.tx_tdata, k * 0x0101_0101 + 7)
                ctx.set(dut.tx_tvalid, cycle < n)
                await ctx.delay(1e-9)
                take = ctx.get(dut.tx_tvalid) and ctx.get(dut.tx_tready)
                if take:
                    sent.append((cycle, k * 0x0101_0101 + 7))
                    k += 1
                if ctx.get(dut.rx_tvalid):
                    got.append((cycle, ctx.get(dut.rx_tdata)))
                await ctx.tick()
            return ctx.get(dut.dropped), ctx.get(dut.flipped)

        sim = Simulator(dut)
        sim.add_clock(4e-9)
        out = {}

        async def wrap(ctx):
            out["counts"] = await bench(ctx)
        sim.add_testbench(wrap)
        sim.run()
        return sent, got, out["counts"]

    sent, got, (dropped, flipped) = run(LinkModel(latency=5))
    assert dropped == flipped == 0 and [w for _, w in got] == [w for _, w in sent]
    assert all(tg - ts == 5 for (ts, _), (tg, _) in zip(sent, got))
    model = LinkModel(latency=3, drop=3277, flip=3277, stall=6554, seed=9)     # 5%, 5%, 10%
    sent, got, (dropped, flipped) = run(model)
    assert len(sent) < 3000 * 0.95                      # TX stalls took cycles
    assert 0.03 < dropped / len(sent) < 0.07 and 0.03 < flipped / len(sent) < 0.07
    assert len(got) == len(sent) - dropped
    by_index = {w: i for i, (_, w) in enumerate(sent)}
    idx, flips = [], 0
    for _, w in got:                                    # a word is either intact or one bit off an intact one
        if w in by_index:
            idx.append(by_index[w])
        else:
            flips += 1
            cands = [v for _, v in sent if bin(v ^ w).count("1") == 1]
            assert cands, hex(w)
    assert idx == sorted(idx) and flips == flipped


def test_kernel_ring_instantiates_one_core_and_one_kernel_module():
    """The 4-core kernel ring's own Verilog holds the links and the wiring only: each core and each kernel is an
    instance of the one core module (`dfx_core`) and the one kernel module (`dfx_ring_kernel_sim`), generated
    once; the shell's ports are what the wrapper connects."""
    import re

    from dfx.config import load_config
    from dfx.hw.ring_top import COUNTERS, SHELL_NAME, KernelRing, KernelShell, ring_wrapper_verilog
    from dfx.hw.top import TOP_NAME, ring_name
    cfg = load_config("tiny")
    text = ring_wrapper_verilog(cfg, 4, LOSSY, SMALL_WINDOW)
    assert re.findall(rf"^\s*{TOP_NAME} (dev\d) \(", text, re.M) == ["dev0", "dev1", "dev2", "dev3"]
    assert re.findall(rf"^\s*{SHELL_NAME} (ring\d) \(", text, re.M) == ["ring0", "ring1", "ring2", "ring3"]
    assert not re.search(rf"^module ({TOP_NAME}|{SHELL_NAME})\b", text, re.M)
    assert re.search(rf"^module {ring_name(4)}\(", text, re.M)
    assert len(re.findall(r"^module \\?\S*link\d", text, re.M)) >= 1          # the links are in the wrapper
    ring = KernelRing(cfg, 4, LOSSY, SMALL_WINDOW)
    members = ring.signature.members
    assert all(f"ring{k}_{name.lower()}" in members for k in range(4) for name, _ in COUNTERS)
    assert "dev3_s_axi_control_awaddr" in members and not any(n.startswith("dev0_ring_") for n in members)
    shell = KernelShell(16 * cfg.d, **SMALL_WINDOW)
    for x in (shell, shell.kernel, shell.kernel.tx_ep, shell.kernel.rx_ep):
        x._MustUse__silence = True                          # only the signature is wanted
    assert {"ap_clk", "l0_clk", "l1_clk", "cage0_tx_tdata", "cage1_rx_tvalid", "stat_tx_replays"} <= set(
        shell.signature.members)
    with pytest.raises(ValueError, match="n must be an integer 2..8"):
        KernelRing(cfg, 9)


def test_plain_ring_joins_instances_of_one_core_module():
    """The plain ring (the multi-device rtl backend's design): n instances `dev<k>` of the one core module, core
    k's ring_tx wired straight to core (k+1) % n's ring_rx, every other port behind a `dev<k>_` prefix, the same
    ports and top name as `dfx.hw.top.RingTop`."""
    import re

    from dfx.config import load_config
    from dfx.hw.ring_top import PlainRing, plain_ring_verilog
    from dfx.hw.top import TOP_NAME, RingTop, ring_name
    cfg = load_config("tiny")
    text = plain_ring_verilog(cfg, 4)
    assert re.findall(rf"^\s*{TOP_NAME} (dev\d) \(", text, re.M) == ["dev0", "dev1", "dev2", "dev3"]
    assert re.findall(r"^module \\?(\S+)\(", text, re.M) == [ring_name(4)]       # the wrapper only
    for k in range(4):      # dev k's tx data reaches dev k+1's rx (one net, or an assign between two)
        tx = re.search(r"\.ring_tx_tdata\((\S+)\)", text[text.index(f"{TOP_NAME} dev{k} ("):]).group(1)
        rx = re.search(r"\.ring_rx_tdata\((\S+)\)", text[text.index(f"{TOP_NAME} dev{(k + 1) % 4} ("):]).group(1)
        assert tx == rx or re.search(rf"assign {re.escape(rx)} = {re.escape(tx)};", text), (k, tx, rx)
    ring = PlainRing(cfg, 2)
    ref = RingTop(cfg, 2)
    for x in (ref, *ref.tops, *(t.core for t in ref.tops)):
        x._MustUse__silence = True
    assert set(ring.signature.members) == set(ref.signature.members)
    with pytest.raises(ValueError, match="n must be an integer 2..8"):
        PlainRing(cfg, 1)
