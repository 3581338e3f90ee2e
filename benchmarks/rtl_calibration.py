"""Cycle calibration: the scoreboard core's RTL cycles per instruction class (exposed cycles, program order) beside
the performance model's (dfx.perf with the constants the RTL fixes, perf/calibrate.py): in serial-issue mode, which
describes the core built in order (the one-at-a-time baseline), and overlapped (the DFX-style model with pipelined
units, a lower bound), for the same runs of the tiny random GPT-2 of tests/hw/test_core.py at the `tiny` config.
Writes the table into docs/rtl_core.md between its calibration markers and prints it.

    .venv/bin/python benchmarks/rtl_calibration.py [--sim icarus|verilator] [--profile deep]

--profile deep builds the core `dfx build` writes (the deep pipeline profile, `dfx.config.PIPELINE_ENV`: every
operator at its 300 MHz stages, the pipelined reset, the SLR slices) and compares it with the model's RTL engines
read from that same core; its table goes between the deep calibration markers.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dfx.docblock import write_block

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "hw"))
DOC = REPO / "docs" / "rtl_core.md"
MARKERS = {"default": ("<!-- calibration:begin -->", "<!-- calibration:end -->"),
           "deep": ("<!-- calibration-deep:begin -->", "<!-- calibration-deep:end -->")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sim", default=None)
    ap.add_argument("--profile", choices=sorted(MARKERS), default="default",
                    help="the core's pipeline profile (default: the simulation core; deep: the core `dfx build` writes)")
    a = ap.parse_args(argv)
    from dfx.config import PIPELINE_ENV
    os.environ[PIPELINE_ENV] = a.profile          # (before any engine is built: the model reads the same profile)
    from gpt2_fixtures import make_hf_gpt2
    from test_core import TINY_GPT2

    from dfx.compiler import compile_model
    from dfx.perf.calibrate import compare, table
    from dfx.verify.rtl_core import RtlCore
    prog = compile_model(make_hf_gpt2(8, **TINY_GPT2), "tiny")
    steps = [("prefill", 5, 0), ("prefill", 17, 1), ("decode", 42, 2), ("decode", 9, 7)]
    res = RtlCore(prog, sim=a.sim).run_steps(steps)
    rows = compare(prog, res.runs)
    flag = " --profile deep" if a.profile == "deep" else ""
    body = (f"Runs: {', '.join(f'{s} (token {t}, POS {p})' for s, t, p in steps)}; "
            f"`.venv/bin/python benchmarks/rtl_calibration.py{flag}` regenerates this table.\n\n" + table(rows))
    if not DOC.exists():
        DOC.write_text("# The integrated core\n")
    write_block(DOC, *MARKERS[a.profile], body)
    print(body)


if __name__ == "__main__":
    main()
