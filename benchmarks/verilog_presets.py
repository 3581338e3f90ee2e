"""Verilog generation of the integrated core (`dfx.hw.top.verilog`, what `dfx build` writes) at every preset:
wall seconds, peak resident memory and the size of the Verilog, one fresh Python process per preset (so each
peak is that conversion's own: elaboration, Amaranth's netlist and its bundled Yosys writing the Verilog).

    python benchmarks/verilog_presets.py [--presets tiny,dfx] [--limit-gb 14] [--update-docs]

--limit-gb caps each child's address space (a conversion that needs more fails instead of swapping a shared
machine); --update-docs writes the table into the <!-- verilog-presets --> block of docs/rtl.md.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "rtl.md"
BEGIN, END = "<!-- verilog-presets -->", "<!-- /verilog-presets -->"


def convert_one(name: str) -> dict:
    """In this process: convert preset `name`, report seconds, peak RSS and the Verilog's size."""
    from dfx.config import load_config
    from dfx.hw.top import verilog
    cfg = load_config(name)
    t0 = time.monotonic()
    text = verilog(cfg)
    secs = time.monotonic() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss          # Linux: KiB
    return {"preset": name, "d": cfg.d, "l": cfg.l, "hbm": cfg.hbm_channels, "seconds": round(secs, 1),
            "peak_gib": round(peak_kb / 2**20, 2), "bytes": len(text.encode()), "lines": text.count("\n")}


def run_child(name: str, limit_gb: float | None) -> dict:
    cmd = [sys.executable, __file__, "--one", name]
    if limit_gb:
        cmd += ["--limit-gb", str(limit_gb)]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        last = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"preset": name, "error": f"exit {r.returncode} after {time.monotonic() - t0:.0f} s: {last}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = ["| preset | d | l | HBM ports | seconds | peak RSS (GiB) | Verilog (MB) | Verilog lines |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['preset']} | | | | failed: {r['error']} | | | |")
        else:
            lines.append(f"| {r['preset']} | {r['d']} | {r['l']} | {r['hbm']} | {r['seconds']:,.0f} | "
                         f"{r['peak_gib']:.2f} | {r['bytes'] / 1e6:.1f} | {r['lines']:,} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default=None, help="comma-separated presets (default: all of dfx.config.PRESETS)")
    ap.add_argument("--limit-gb", type=float, default=None, help="address-space cap per conversion, GB")
    ap.add_argument("--update-docs", action="store_true", help=f"write the table into {DOC.name}")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        if args.limit_gb:
            cap = int(args.limit_gb * 1e9)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        print(json.dumps(convert_one(args.one)))
        return 0
    from dfx.config import PRESETS
    names = args.presets.split(",") if args.presets else list(PRESETS)
    rows = []
    for name in names:
        rows.append(run_child(name, args.limit_gb))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    if args.update_docs:
        src = DOC.read_text()
        if BEGIN not in src:
            raise SystemExit(f"{DOC} has no {BEGIN} ... {END} block")
        head, rest = src.split(BEGIN, 1)
        DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{rest.split(END, 1)[1]}")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
