"""Lint of a `dfx build` tree at a preset: `verilator --lint-only -Wall` of its core (and ring kernel) with the
waivers of boards/u280/lint.vlt (what `dfx build` runs) and, with --raw, without them (the message count per class
the waivers cover), each run's wall time and Verilator's peak RSS.

    .venv/bin/python benchmarks/dfx_lint.py TREE [--raw]      # TREE from `dfx build -o TREE --config dfx --devices 2`
    .venv/bin/python benchmarks/dfx_lint.py TREE --ring-only dfx   # writes TREE/ring/src/dfx_ring.v at the preset
                                                                    # (dfx.host.ring_build.verilog), lints it alone

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
    ap.add_argument("--ring-only", metavar="CONFIG", help="generate the ring kernel's Verilog at CONFIG into TREE "
                    "(no core) and lint that")
    a = ap.parse_args(argv)
    from dfx.host import lint
    if a.ring_only:
        from dfx.config import load_config
        from dfx.host.ring_build import verilog
        t0 = time.monotonic()
        (a.tree / "ring" / "src").mkdir(parents=True, exist_ok=True)
        (a.tree / "ring" / "src" / "dfx_ring.v").write_text(verilog(load_config(a.ring_only)))
        print(f"ring/src/dfx_ring.v at {a.ring_only}: {time.monotonic() - t0:.0f} s", file=sys.stderr)
    files = [("src/dfx_core.v", "dfx_core")] if (a.tree / "src" / "dfx_core.v").is_file() else []
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
