"""Regenerate the logic-depth and resource tables of docs/rtl.md (hours at the dfx preset; not CI).

    python benchmarks/resource_tables.py --depth [--config tiny] [--update-docs]     # minutes
    python benchmarks/resource_tables.py --resources [--update-docs]                 # hours: both presets

--depth runs `dfx.hw.depth` (Yosys synth_xilinx -family xcup + the register-to-register walk) on every
arithmetic unit twice: at the pipeline depths the units had before the depth analysis ("default") and at the
depths that close 300 MHz ("deep": `DEEP`), plus the MPU at the config with the deep stages and the pipelined accumulator, its GELU
units left out (measured as gelu16). The per-stage logic of the MPU does not depend on l, and d sets only
the number of tree levels, so the tiny config's depth is the dfx preset's. --resources runs `dfx.hw.synth` at both presets with the lane splits the docs use. Each Yosys run
is one child process, one at a time, capped at 8 GB of address space. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dfx.config import load_config
from dfx.hw.depth import Delays, analyse, depth_row, depth_table, unit_factories
from dfx.hw.fp import ADD_MAX_STAGES, MUL16_CUTS, MUL32_CUTS
from dfx.hw.mpu import STAGES_300MHZ
from dfx.hw.synth import main as synth_main

DOC = Path(__file__).resolve().parents[1] / "docs" / "rtl.md"
A, M16, M32 = ADD_MAX_STAGES, len(MUL16_CUTS), len(MUL32_CUTS)
# Pipeline depths for 300 MHz: every operator with all its cuts (hw.mpu.STAGES_300MHZ for the MPU).
DEEP = {"add32": f"stages={A}", "mul32": f"stages={M32}", "mul16": f"stages={M16}", "round16": "stages=2",
        "gelu16": f"add_stages={A},mul_stages={M32}", "exp16": f"add_stages={A},mul_stages={M32}",
        "recip": f"add_stages={A},mul_stages={M32}", "rsqrt": f"add_stages={A},mul_stages={M32}"}
DEFAULT = {"add32": "stages=2", "mul32": "stages=2", "mul16": "stages=1", "round16": "stages=1",
           "gelu16": "", "exp16": "", "recip": "", "rsqrt": ""}
MPU_DEEP = ",".join(f"{k}={v}" for k, v in STAGES_300MHZ.items())


def depth_specs(cfg, units: list[str]) -> list[tuple[str, str]]:
    """(label, unit spec) pairs for `unit_factories`."""
    out = []
    for u in units:
        if u == "mpu":
            out.append(("MPU, deep", f"mpu:gelu=0,{MPU_DEEP}"))
        else:
            out.append((f"{u}, default", f"{u}:{DEFAULT[u]}"))
            out.append((f"{u}, deep", f"{u}:{DEEP[u]}"))
    return out


def run_depth(cfg, units: list[str], build: Path) -> str:
    delays = Delays.from_board()
    rows = []
    specs = depth_specs(cfg, units)
    facts = unit_factories(cfg, [s for _, s in specs])
    for label, spec in specs:
        params, make = facts[spec]
        name = "d_" + "".join(ch if ch.isalnum() else "_" for ch in spec)
        print(f"depth: {label} ({spec}) ...", file=sys.stderr, flush=True)
        p, secs = analyse(make(), name, build, delays)
        print(f"  {p.luts} LUT levels, {p.carry} carry, {p.delay_ns:.2f} ns, {secs:.0f} s", file=sys.stderr,
              flush=True)
        rows.append(depth_row(label, params or "-", p, delays))
    return depth_table(rows)


def update_block(doc: Path, tag: str, text: str) -> None:
    begin, end = f"<!-- {tag} -->", f"<!-- /{tag} -->"
    src = doc.read_text()
    if begin not in src or end not in src:
        raise SystemExit(f"resource_tables: {doc} has no {begin} ... {end} block")
    head, rest = src.split(begin, 1)
    doc.write_text(f"{head}{begin}\n{text}\n{end}{rest.split(end, 1)[1]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depth", action="store_true", help="the logic-depth table")
    ap.add_argument("--resources", action="store_true", help="the resource tables at both presets (hours)")
    ap.add_argument("--config", default="tiny", help="config of the MPU lane in the depth table (default tiny)")
    ap.add_argument("--units", default="add32,mul16,mul32,round16,gelu16,exp16,recip,rsqrt,mpu")
    ap.add_argument("--build", default="build/resource_tables")
    ap.add_argument("--update-docs", action="store_true")
    a = ap.parse_args(argv)
    if not (a.depth or a.resources):
        ap.error("give --depth and/or --resources")
    if a.depth:
        cfg = load_config(a.config)
        table = run_depth(cfg, a.units.split(","), Path(a.build) / "depth")
        print(table)
        if a.update_docs:
            update_block(DOC, f"depth:{cfg.name}", table)
    if a.resources:
        upd = ["--update-docs"] if a.update_docs else []
        synth_main(["--config", "tiny", "--build", f"{a.build}/synth"] + upd)
        synth_main(["--config", "dfx", "--split", "mpu=1,2", "--split", "vpu=4,8,16", "--build",
                    f"{a.build}/synth"] + upd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
