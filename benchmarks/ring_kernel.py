"""The ring kernel over the lossy link model, measured: the kernel pair (hw/ring_top.py KernelPair) with the
impairments of tests/hw/test_ring_top.py. Prints the figures docs/board_flow.md and boards/u280/RING.md quote;
whole rings of 2 / 4 cores with ring kernels are benchmarks/ring_rtl.py.

    .venv/bin/python benchmarks/ring_kernel.py [--sim icarus|verilator] [--messages 40]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "hw"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sim", default=None, help="simulator (default $SIM, icarus)")
    ap.add_argument("--messages", type=int, default=40)
    a = ap.parse_args(argv)
    from test_ring_top import LOSSY, SMALL_WINDOW

    from dfx.verify.ring_cosim import run_pair
    print(f"link model: {LOSSY}; kernel: {SMALL_WINDOW}", file=sys.stderr)
    r = run_pair(128, LOSSY, messages=a.messages, seed=5, kernel=SMALL_WINDOW, sim=a.sim)
    ta, rb = r.status["a"], r.status["b"]
    print(f"pair (128-bit beats): {r.messages} messages / {r.beats} beats delivered whole and in order in "
          f"{r.sim_ns} ns simulated ({r.wall_s:.0f} s wall); forward link dropped {r.links['link0']['dropped']} "
          f"and flipped {r.links['link0']['flipped']} words, ACK link dropped {r.links['ack0']['dropped']} and "
          f"flipped {r.links['ack0']['flipped']}; sender: {ta['TX_FRAMES']} frames sent for {rb['RX_FRAMES']} "
          f"committed, {ta['TX_REPLAYS']} go-back-N replays, {ta['ACK_ERRORS']} bad ACK words; receiver: "
          f"{rb['CRC_ERRORS']} CRC errors, {rb['DESYNCS']} desynchronised words, {rb['DUPLICATES']} duplicates, "
          f"{rb['OVERFLOWS']} overflows")


if __name__ == "__main__":
    main()
