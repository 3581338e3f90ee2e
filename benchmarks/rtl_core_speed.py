"""RTL simulation speed of the integrated core: simulated cycles per second of wall time and wall time per
generated token, on Icarus and Verilator (whichever are installed), for the tiny random GPT-2 of
tests/hw/test_core.py compiled at the `tiny` config.

    .venv/bin/python benchmarks/rtl_core_speed.py [--sims icarus,verilator] [--tokens 3]

Prints a Markdown table and writes it into docs/rtl_core.md between its speed markers. The first run of a simulator includes its
build (Verilog generation, then Icarus' compile or Verilator's C++ build); the table is measured on the
second, built one. Wall time includes the simulator's start-up and the cocotbext-axi bus models, which
bound the speed (see /work/shared/TOOLCHAIN.md).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "hw"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sims", default="icarus,verilator")
    ap.add_argument("--tokens", type=int, default=3, help="new tokens to generate (after a 3-token prompt)")
    a = ap.parse_args(argv)
    from gpt2_fixtures import make_hf_gpt2
    from test_core import PROMPT, TINY_GPT2

    from dfx.compiler import compile_model
    from dfx.verify.rtl_core import RtlCore
    from dfx.verify.toolchain import missing_simulator
    prog = compile_model(make_hf_gpt2(8, **TINY_GPT2), "tiny")
    rows = []
    for sim in a.sims.split(","):
        why = missing_simulator(sim)
        if why:
            rows.append(f"| {sim} | - | - | - | - | not run: {why} |")
            continue
        t0 = time.time()
        core = RtlCore(prog, sim=sim)
        build_s = time.time() - t0
        res = core.generate(PROMPT, a.tokens)
        steps = len(res.runs)
        cyc = res.sim_cycles
        rows.append(f"| {sim} | {cyc} | {res.wall_s:.1f} | {cyc / res.wall_s:.0f} | {res.wall_s / steps:.2f} | "
                    f"{steps} token steps ({len(PROMPT)} prompt + {a.tokens - 1} decode), build {build_s:.0f} s |")
    doc = REPO / "docs" / "rtl_core.md"
    begin, end = "<!-- speed:begin -->", "<!-- speed:end -->"
    old = {}
    if doc.exists() and begin in doc.read_text():
        for line in doc.read_text().split(begin, 1)[1].split(end, 1)[0].splitlines():
            if line.startswith("| ") and not line.startswith("| simulator"):
                old[line.split("|")[1].strip()] = line
    for r in rows:                                      # rows of simulators not run this time are kept
        old[r.split("|")[1].strip()] = r
    text = ("`.venv/bin/python benchmarks/rtl_core_speed.py` (tiny random GPT-2, `tiny` config, one core; "
            "shared 2-core machine, so wall times are upper bounds)\n\n"
            "| simulator | simulated cycles | wall s | cycles/s | wall s per token | notes |\n"
            "|---|---:|---:|---:|---:|---|\n" + "\n".join(old.values()) + "\n")
    if doc.exists() and begin in doc.read_text():
        t = doc.read_text()
        head, rest = t.split(begin, 1)
        doc.write_text(f"{head}{begin}\n{text}{end}{rest.split(end, 1)[1]}")
    print(text)


if __name__ == "__main__":
    main()
