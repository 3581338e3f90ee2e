"""Lint of a `dfx build` tree at a preset: `verilator --lint-only -Wall` of its core (and ring kernel) with the
waivers of boards/u280/lint.vlt (what `dfx build` runs) and, with --raw, without them (the message count per class
the waivers cover), each run's wall time and Verilator's peak RSS.

    .venv/bin/python benchmarks/dfx_lint.py TREE [--raw]      # TREE from `dfx build -o TREE --config dfx --devices 2`

Prints a Markdown table (one row per file and run, then one per class of the raw run).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tree", type=Path)
    ap.add_argument("--raw", action="store_true", help="also lint without the waivers and count each class")
    a = ap.parse_args(argv)
    from dfx.host import lint
    files = [("src/dfx_core.v", "dfx_core")]
    if (a.tree / "ring" / "src" / "dfx_ring.v").is_file():
        files.append(("ring/src/dfx_ring.v", "dfx_ring"))
    rows, classes = [], []
    runs = [("with lint.vlt", lint.WAIVERS)] + ([("no waivers", None)] if a.raw else [])
    for label, waivers in runs:
        rep = lint.lint_tree(a.tree, log=lambda m: print(m, file=sys.stderr)) if waivers else None
        if rep is not None:
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
            rows.append(f"| {', '.join(rep.files)} | {label} | {'clean' if rep.clean else '; '.join(rep.lines())} | "
                        f"{rep.seconds:.0f} | {rss:.2f} |")
            continue
        for rel, top in files:
            t0 = time.monotonic()
            srcs = [a.tree / rel]
            if top == "dfx_ring":            # the ring kernel needs the Aurora stand-ins: lint_tree writes them
                continue
            probs, _ = lint.run(srcs, top, a.tree, waivers=None)
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
            n = sum(p.count for p in probs)
            rows.append(f"| {rel} | {label} | {n:,} messages in {len(probs)} classes | {time.monotonic() - t0:.0f} | "
                        f"{rss:.2f} |")
            classes += [f"| {rel} | {p.rule or 'error'} | {p.count:,} |" for p in probs]
    print("| files | waivers | result | seconds | peak RSS so far (GiB) |\n|---|---|---|---:|---:|")
    print("\n".join(rows))
    if classes:
        print("\n| file | class (no waivers) | messages |\n|---|---|---:|")
        print("\n".join(classes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
