"""Verilog generation of the integrated core at every preset, the way `dfx build` does it: wall seconds, peak
resident memory and the size of the Verilog.

With a native Yosys (pyosys) `dfx build` converts in two child processes, Amaranth (elaborate, write RTLIL)
then Yosys (proc, memory_collect, write_verilog); this runs the same two steps (`python -m dfx.host.build
rtlil|yosys`) and measures each one's peak from its own rusage. Without pyosys the only way is Amaranth's
built-in WebAssembly Yosys (`dfx.hw.top.verilog`), measured as one step.

    python benchmarks/verilog_presets.py [--presets tiny,dfx] [--limit-gb 14] [--update-docs]

--limit-gb caps each step's address space (a step that needs more fails instead of swapping a shared machine);
--update-docs writes the table into the <!-- verilog-presets --> block of docs/rtl.md.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dfx.config import PRESETS, load_config
from dfx.host.build import native_yosys

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "rtl.md"
BEGIN, END = "<!-- verilog-presets -->", "<!-- /verilog-presets -->"
BUILTIN = ("import sys; from pathlib import Path; from dfx.config import load_config; from dfx.hw.top import verilog; "
           "Path(sys.argv[2]).write_text(verilog(load_config(sys.argv[1])))")


def step(argv: list[str], limit_gb: float | None) -> tuple[float, float, str]:
    """Run one child; (wall seconds, peak RSS in GiB, '' or the last line of its stderr when it failed)."""
    def cap():
        if limit_gb:
            n = int(limit_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (n, n))
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=cap)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    secs = time.monotonic() - t0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    failed = os.waitstatus_to_exitcode(status) != 0
    return secs, ru.ru_maxrss / 2**20, (lines[-1][:200] if lines else "failed") if failed else ""


def convert(name: str, limit_gb: float | None) -> dict:
    cfg = load_config(name)
    row = {"preset": name, "d": cfg.d, "l": cfg.l, "hbm": cfg.hbm_channels, "steps": []}
    with tempfile.TemporaryDirectory(prefix="dfx-vbench-") as tmp:
        v = Path(tmp) / "core.v"
        if native_yosys():
            il, cj = Path(tmp) / "core.il", Path(tmp) / "config.json"
            cj.write_text(json.dumps(cfg.to_dict()))
            plan = [("Amaranth -> RTLIL", ["-m", "dfx.host.build", "rtlil", str(cj), str(il)]),
                    ("native Yosys -> Verilog", ["-m", "dfx.host.build", "yosys", str(il), str(v)])]
        else:
            plan = [("Amaranth + built-in Yosys (wasm)", ["-c", BUILTIN, name, str(v)])]
        for label, argv in plan:
            secs, gib, err = step(argv, limit_gb)
            row["steps"].append({"step": label, "seconds": round(secs, 1), "peak_gib": round(gib, 2), "error": err})
            print(json.dumps({"preset": name, **row["steps"][-1]}), file=sys.stderr, flush=True)
            if err:
                return row
        text = v.read_text()
        row.update(bytes=len(text.encode()), lines=text.count("\n"))
    return row


def table(rows: list[dict]) -> str:
    lines = ["| preset | d | l | HBM ports | step | seconds | peak RSS (GiB) | Verilog (MB) | Verilog lines |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for i, s in enumerate(r["steps"]):
            size = (f"{r['bytes'] / 1e6:.1f} | {r['lines']:,}" if "bytes" in r and i == len(r["steps"]) - 1
                    else " | ")
            what = s["step"] + (f": failed ({s['error']})" if s["error"] else "")
            lines.append(f"| {r['preset']} | {r['d']} | {r['l']} | {r['hbm']} | {what} | {s['seconds']:,.0f} | "
                         f"{s['peak_gib']:.2f} | {size} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets (default: all)")
    ap.add_argument("--limit-gb", type=float, default=None, help="address-space cap per step, GiB")
    ap.add_argument("--update-docs", action="store_true", help=f"write the table into docs/{DOC.name}")
    args = ap.parse_args(argv)
    rows = [convert(name, args.limit_gb) for name in args.presets.split(",")]
    text = table(rows)
    print(text)
    if args.update_docs:
        src = DOC.read_text()
        if BEGIN not in src:
            raise SystemExit(f"{DOC} has no {BEGIN} ... {END} block")
        head, rest = src.split(BEGIN, 1)
        DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{rest.split(END, 1)[1]}")
    return 1 if any(s["error"] for r in rows for s in r["steps"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
