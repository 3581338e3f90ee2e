"""Random differential testing at scale: random valid programs on the RTL core (the fast harness) and on the
functional simulator, compared bit for bit (`dfx.verify.difftest`), with a coverage table.

    .venv/bin/python benchmarks/difftest.py [--programs 10000] [--seed 0] [--sim verilator] [--batch 500]
        [--devices 2] [--wformats int8,int4,...] [--batched] [--doc]

Prints the mismatches (each with the first differing instruction and its reproducer file under build/difftest/),
the programs the simulator refused (a generator bug), the opcode table (programs, instructions, edge bins hit per
field) and the bins that are not covered and why; a run of at least 1,000 programs also writes this report into
docs/rtl_core.md between its difftest markers (a run with --devices / --wformats / --batched between markers
of its own, e.g. `difftest-devices2`; `--doc` writes a shorter run too). SIGINT (Ctrl-C) stops it after the running batch and reports the
batches that finished (SIGTERM too). `--coverage-only` prints the coverage table of the seeds' programs without
simulating them. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from dfx.docblock import write_block

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
    ap.add_argument("--devices", type=int, default=1, help="a ring of this many cores (ALLGATHER over all)")
    ap.add_argument("--wformats", default="", help="quantized weight families the core is built with and the "
                    "programs draw (keys of dfx.hw.qfetch.CORE_FAMILIES, comma separated; 'all' for every one)")
    ap.add_argument("--batched", action="store_true", help="draw BATCH / CHUNK / SLOT (ISA version 2)")
    ap.add_argument("--coverage-only", action="store_true", help="no simulation: the coverage table of the "
                    "programs of these seeds (the generator's bins), e.g. for a run that ended without its report")
    ap.add_argument("--doc", action="store_true", help="write the report into docs/rtl_core.md however short")
    ap.add_argument("--no-subnormals", action="store_true",
                    help="memory images without binary16 subnormals (steps around the DMA LOAD DAZ bug; "
                         "tests/verify/difftest_repro/load_subnormal.json)")
    a = ap.parse_args(argv)
    from dfx.config import load_config
    from dfx.verify.difftest import DiffTest
    from dfx.hw.qfetch import CORE_FAMILIES
    from dfx.isa import BATCHED_OPS
    from dfx.verify.difftest_gen import NOT_COVERED, SUPPORTED, UNSUPPORTED
    cfg = load_config(a.config)
    wformats = tuple(CORE_FAMILIES) if a.wformats == "all" else tuple(f for f in a.wformats.split(",") if f)
    bad = [f for f in wformats if f not in CORE_FAMILIES]
    if bad:
        ap.error(f"--wformats {','.join(bad)}: accepted: {', '.join(CORE_FAMILIES)} or all")
    opts = (f"{f' --devices {a.devices}' if a.devices > 1 else ''}{f' --wformats {a.wformats}' if wformats else ''}"
            f"{' --batched' if a.batched else ''}")
    tag = (f"{f'-devices{a.devices}' if a.devices > 1 else ''}{'-wformats' if wformats else ''}"
           f"{'-batched' if a.batched else ''}")
    supported = SUPPORTED + (BATCHED_OPS if a.batched else ())
    unsupported = {k: v for k, v in UNSUPPORTED.items() if not (a.batched and k in BATCHED_OPS)}
    not_covered = {k: v for k, v in NOT_COVERED.items()
                   if not (k[1] == "wfmt" and wformats) and not (k[1] == "devices" and a.devices > 1)}
    if a.coverage_only:
        from collections import Counter

        from dfx.verify.difftest_gen import generate
        bins = Counter()
        for seed in tqdm(range(a.seed, a.seed + a.programs), desc="programs", file=sys.stderr):
            bins.update(generate(cfg, seed, not a.no_subnormals, a.devices, wformats, a.batched or None).bins)
        print(f"`.venv/bin/python benchmarks/difftest.py --coverage-only --programs {a.programs} --seed {a.seed}"
              f"{opts}{' --no-subnormals' if a.no_subnormals else ''}` (generator only): coverage bins hit: "
              f"{len(bins)}\n\n{coverage_table(bins, supported, unsupported, not_covered)}")
        return 0
    # SIGINT / SIGTERM stop the run after the running batch, also when it was started in the background (where
    # the shell leaves SIGINT ignored)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)
    t0 = time.time()
    dt = DiffTest(cfg, a.sim, subnormals=not a.no_subnormals, devices=a.devices, wformats=wformats,
                  batched=a.batched or None)
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
             f"{opts}{' --no-subnormals' if a.no_subnormals else ''}`: {rep.programs:,} programs (seeds {a.seed}.."
             f"{last}{'; interrupted before the end' if interrupted else ''}), config {cfg.name}, {a.sim}", "",
             f"- instructions executed: {rep.instructions:,}; RTL cycles: {rep.cycles:,}",
             f"- wall: {rep.wall_s:.0f} s (RTL simulations {rep.rtl_wall_s:.0f} s) on the shared machine",
             f"- mismatches: {len(rep.mismatches)}"]
    for m in rep.mismatches:
        lines.append(f"  - seed {m.seed}: {m.what}; first: {m.first}; reproducer: {m.reproducer}")
    lines.append(f"- programs the simulator refused (generator bugs): {len(rep.invalid)}")
    lines += [f"  - seed {seed}: {why}" for seed, why in rep.invalid[:10]]
    lines += [f"- coverage bins hit: {len(rep.bins)}", "",
              coverage_table(rep.bins, supported, unsupported, not_covered)]
    body = "\n".join(lines) + "\n"
    print(body)
    if (a.programs >= DOC_MIN_PROGRAMS or a.doc) and not a.no_doc:
        write_doc(body, tag)
    return 1 if rep.mismatches or rep.invalid else 0


def write_doc(body: str, tag: str = "") -> None:
    """The report into docs/rtl_core.md between its difftest markers (`difftest<tag>`; added after the last
    difftest report when missing)."""
    write_block(DOC, f"<!-- difftest{tag}:begin -->", f"<!-- difftest{tag}:end -->", body, missing="after",
                after=END)


if __name__ == "__main__":
    sys.exit(main())
