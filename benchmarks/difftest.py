"""Random differential testing at scale: random valid programs on the RTL core (the fast harness) and on the
functional simulator, compared bit for bit (`dfx.verify.difftest`), with a coverage table.

    .venv/bin/python benchmarks/difftest.py [--programs 10000] [--seed 0] [--sim verilator] [--batch 500]

Prints the mismatches (each with the first differing instruction and its reproducer file under build/difftest/),
the programs the simulator refused (a generator bug), the opcode table (programs, instructions, edge bins hit per
field) and the bins that are not covered and why; a run of at least 1,000 programs also writes this report into
docs/rtl_core.md between its difftest markers. SIGINT (Ctrl-C) stops it after the running batch and reports the
batches that finished. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

DOC = Path(__file__).resolve().parents[1] / "docs" / "rtl_core.md"
BEGIN, END = "<!-- difftest:begin -->", "<!-- difftest:end -->"
DOC_MIN_PROGRAMS = 1000          # shorter runs print their report only


def coverage_table(bins, supported, unsupported, not_covered) -> str:
    per_op = defaultdict(lambda: defaultdict(set))
    counts = {}
    for key, n in bins.items():
        if len(key) == 1:
            counts[key[0]] = n
        else:
            per_op[key[0]][key[1]].add(key[2] if len(key) > 2 else "hit")
    lines = ["| opcode | instructions | field bins hit |", "|---|---:|---|"]
    for mn in supported:
        fields = "; ".join(f"{f}: {', '.join(sorted(v))}" for f, v in sorted(per_op[mn].items())) or "-"
        lines.append(f"| {mn} | {counts.get(mn, 0)} | {fields} |")
    for extra in ("dep", "run"):
        if extra in per_op:
            lines.append(f"| ({extra}) | - | " + "; ".join(f"{f}: {', '.join(sorted(v))}"
                                                          for f, v in sorted(per_op[extra].items())) + " |")
    lines += ["", "Not covered:", ""]
    lines += [f"- {mn}: {why}" for mn, why in unsupported.items()]
    lines += [f"- {'.'.join(k)}: {why}" for k, why in not_covered.items()]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--programs", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0, help="first seed (programs use seed .. seed + programs - 1)")
    ap.add_argument("--sim", default="verilator")
    ap.add_argument("--batch", type=int, default=500, help="programs per simulator process")
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--no-doc", action="store_true", help="print only (runs of >= 1000 programs also write their "
                    "report into docs/rtl_core.md between its difftest markers)")
    ap.add_argument("--no-subnormals", action="store_true",
                    help="memory images without binary16 subnormals (steps around the DMA LOAD DAZ bug; "
                         "tests/verify/difftest_repro/load_subnormal.json)")
    a = ap.parse_args(argv)
    from dfx.config import load_config
    from dfx.verify.difftest import DiffTest
    from dfx.verify.difftest_gen import NOT_COVERED, SUPPORTED, UNSUPPORTED
    cfg = load_config(a.config)
    t0 = time.time()
    dt = DiffTest(cfg, a.sim, subnormals=not a.no_subnormals)
    print(f"[difftest] harness built in {time.time() - t0:.0f} s ({a.sim})", file=sys.stderr)
    interrupted = False
    with tqdm(total=a.programs, desc="programs", file=sys.stderr) as bar:
        def progress(n):
            bar.update(n)
            bar.set_postfix(mismatches=len(dt.report.mismatches), invalid=len(dt.report.invalid))
        try:
            rep = dt.run(range(a.seed, a.seed + a.programs), batch=a.batch, progress=progress)
        except KeyboardInterrupt:          # SIGINT: report the batches that finished
            rep, interrupted = dt.report, True
            rep.wall_s = time.time() - t0
    last = a.seed + rep.programs + len(rep.invalid) - 1
    lines = [f"`.venv/bin/python benchmarks/difftest.py --programs {a.programs} --seed {a.seed} --sim {a.sim}"
             f"{' --no-subnormals' if a.no_subnormals else ''}`: {rep.programs:,} programs (seeds {a.seed}.."
             f"{last}{'; interrupted before the end' if interrupted else ''}), config {cfg.name}, {a.sim}", "",
             f"- instructions executed: {rep.instructions:,}; RTL cycles: {rep.cycles:,}",
             f"- wall: {rep.wall_s:.0f} s (RTL simulations {rep.rtl_wall_s:.0f} s) on the shared machine",
             f"- mismatches: {len(rep.mismatches)}"]
    for m in rep.mismatches:
        lines.append(f"  - seed {m.seed}: {m.what}; first: {m.first}; reproducer: {m.reproducer}")
    lines.append(f"- programs the simulator refused (generator bugs): {len(rep.invalid)}")
    lines += [f"  - seed {seed}: {why}" for seed, why in rep.invalid[:10]]
    lines += [f"- coverage bins hit: {len(rep.bins)}", "",
              coverage_table(rep.bins, SUPPORTED, UNSUPPORTED, NOT_COVERED)]
    body = "\n".join(lines) + "\n"
    print(body)
    if a.programs >= DOC_MIN_PROGRAMS and not a.no_doc:
        write_doc(body)
    return 1 if rep.mismatches or rep.invalid else 0


def write_doc(body: str) -> None:
    """The report into docs/rtl_core.md between its difftest markers (added at the end when missing)."""
    text = DOC.read_text()
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    DOC.write_text(f"{head}{BEGIN}\n{body}{END}{rest.split(END, 1)[1]}")


if __name__ == "__main__":
    sys.exit(main())
