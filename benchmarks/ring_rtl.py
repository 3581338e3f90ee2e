"""Whole rings of cores with ring kernels over the lossy link model, in RTL simulation (hw/ring_top.py
`KernelRing`, verify/ring_cosim.py `KernelRingCore`): the tiny GPT-2 of tests/hw/test_core.py compiled for n
devices runs prefill + decode on n cores, each behind its ring kernel, joined by the lossy, delayed links of
tests/hw/test_ring_top.py; the decode logits are checked bit-exact against the functional ring
(dfx.sim.ring) and the tokens against the golden model. Prints, per ring: simulated cycles, wall time (Verilog
generation, simulator build and simulation apart), the links' drops and flips, the kernels' replays and CRC
errors, and the verdict. The figures docs/board_flow.md quotes.

    .venv/bin/python benchmarks/ring_rtl.py [--rings 2 4] [--sim icarus|verilator] [--new 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "hw"))


def run_ring(n: int, sim: str | None, new: int) -> dict:
    from gpt2_fixtures import make_hf_gpt2
    from test_core import PROMPT, TINY_GPT2, golden_greedy
    from test_ring_top import LOSSY, SMALL_WINDOW, check_kernel_ring

    from dfx.compiler import compile_model
    from dfx.verify.ring_cosim import KernelRingCore
    model = make_hf_gpt2(8, **{**TINY_GPT2, "n_head": max(2, n)})
    prompt = PROMPT[1:]
    program = compile_model(model, "tiny", devices=n)
    t0 = time.time()
    core = KernelRingCore(program, LOSSY, sim=sim, kernel=SMALL_WINDOW)     # generate (cached) and build
    t_build = time.time() - t0
    print(f"ring of {n} ({core.sim}): built in {t_build:.0f} s; simulating", file=sys.stderr, flush=True)
    res = check_kernel_ring(program, golden_greedy(model, prompt, new), prompt, new, core=core)
    return {"n": n, "res": res, "sim": core.sim, "build_s": t_build, "run_s": time.time() - t0 - t_build,
            "prompt": prompt}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sim", default=None, help="simulator (default $SIM, else icarus)")
    ap.add_argument("--rings", type=int, nargs="+", default=[2, 4], help="ring sizes (default 2 4)")
    ap.add_argument("--new", type=int, default=2, help="generated tokens (decode steps; default 2)")
    a = ap.parse_args(argv)
    from test_ring_top import LOSSY, SMALL_WINDOW
    print(f"link model: {LOSSY}; kernel: {SMALL_WINDOW}", file=sys.stderr)
    for n in a.rings:
        r = run_ring(n, a.sim, a.new)
        res, c = r["res"], r["res"].counters
        k, links = c["kernels"], c["links"].values()
        runs = ", ".join(f"{x['stream']} {x['cycles']}" for x in res.runs)
        print(f"ring of {n} cores + {n} ring kernels ({r['sim']}): "
              f"prompt {r['prompt']} + {a.new} decode steps = {len(res.runs)} runs ({runs} cycles); "
              f"{res.sim_cycles} cycles simulated; decode logits bit-exact to dfx.sim.ring, tokens {res.tokens} = "
              f"the golden model's; links dropped {sum(x['dropped'] for x in links)} and flipped "
              f"{sum(x['flipped'] for x in links)} words; kernels: {sum(x['TX_FRAMES'] for x in k)} frames sent, "
              f"{sum(x['RX_FRAMES'] for x in k)} committed, {sum(x['TX_REPLAYS'] for x in k)} go-back-N replays, "
              f"{sum(x['CRC_ERRORS'] for x in k)} CRC errors, {sum(x['DESYNCS'] for x in k)} desynchronised words, "
              f"{sum(x['DUPLICATES'] for x in k)} duplicates, {sum(x['OVERFLOWS'] for x in k)} overflows; "
              f"wall: {r['build_s']:.0f} s Verilog + simulator build, {r['run_s']:.0f} s simulation", flush=True)


if __name__ == "__main__":
    main()
