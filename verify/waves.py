"""Waveforms of the fast harness (`dfx run --backend rtl --waves out.fst`): the debug signals `FastTop` names
plainly at its top, where each simulator writes its FST, and reading one back.

Top-level signals of `dfx.verify.fast_top.FastTop` (on a ring of n > 1 cores, per core k with the prefix
`dev<k>_`):

    dbg_running         the core is running a program (from ap_start accepted to ap_done)
    dbg_pc              PC of the instruction in the controller's instruction register (the next to dispatch)
    dbg_pc_<unit>       PC of the instruction unit <unit> (mpu, vpu, dma, router) runs or ran last
    dbg_busy_<unit>     the unit is busy (what its BUSY_<UNIT> counter counts while running)
    dbg_issue_<unit>    one cycle: the controller starts an instruction on the unit
    dbg_done_<unit>     one cycle: the unit completes one

hw/ gives the core no debug ports at its top (its `dbg_*` outputs end inside `dfx_core`), so these are
cross-module references into the core's generated Verilog (`probe_verilog`): `check_probe` finds each name
they read in that text first and fails naming the missing ones when the RTL renames a signal.

Icarus writes `<top>.fst` in the build folder, Verilator (built with --trace-fst) `dump.fst` in the test folder
(`dump_path`). `read_fst(path, names)` reads top-level signals back with pywellen (the `test` extra).
"""
from __future__ import annotations

import re
from pathlib import Path

from dfx import regmap

UNITS = tuple(u.lower() for u in regmap.COUNTER_UNITS)      # the engines' instance names in the core
# debug signal -> (width, what it reads: a signal of the core module, or "<unit>.<port>" of an engine)
SIGNALS = {"running": (1, "running"), "pc": (32, "ir_pc"),
           **{f"pc_{u}": (32, f"ex_{u}0_pc") for u in UNITS},
           **{f"busy_{u}": (1, f"{u}.ctl__busy") for u in UNITS},
           **{f"issue_{u}": (1, f"{u}.ctl__start") for u in UNITS},
           **{f"done_{u}": (1, f"{u}.ctl__done") for u in UNITS}}


def signal_names(devices: int = 1) -> list[str]:
    """The debug signals at the top of the fast design (`dbg_pc`, ... or `dev0_dbg_pc`, ... on a ring)."""
    pre = [""] if devices == 1 else [f"dev{k}_" for k in range(devices)]
    return [f"{p}dbg_{s}" for p in pre for s in SIGNALS]


def probe_name(k: int) -> str:
    return f"dfx_fast_probe{k}"


def probe_verilog(top: str, devices: int) -> str:
    """One module per core whose outputs (the `SIGNALS`) are cross-module references into core k of the
    design `top` (`dfx.verify.fast_top.fast_name`); `FastTop` instantiates them."""
    out = []
    for k in range(devices):
        core = f"{top}.dut{'' if devices == 1 else f'.dev{k}'}.core"
        ports = ", ".join(SIGNALS)
        body = [f"  output {'' if w == 1 else f'[{w - 1}:0] '}{name};\n  assign {name} = {core}.{src};"
                for name, (w, src) in SIGNALS.items()]
        out.append(f"module {probe_name(k)}({ports});\n" + "\n".join(body) + "\nendmodule\n")
    return "\n".join(out)


def _modules(text: str) -> dict[str, str]:
    """Module name (without the escape backslash) -> its text."""
    mods = {}
    for mt in re.finditer(r"^module\s+\\?(\S+)\s*\((.*?)^endmodule", text, re.M | re.S):
        mods[mt.group(1)] = mt.group(2)
    return mods


def check_probe(core_text: str) -> None:
    """Every signal `SIGNALS` reads is declared in the core's Verilog (each core module of a ring, too);
    RuntimeError naming the missing ones otherwise."""
    mods = _modules(core_text)
    cores = [n for n in mods if n.endswith(".core")]
    missing = [] if cores else ["the core module (<top>.core)"]
    for core in cores:
        for _, src in SIGNALS.values():
            unit, _, port = src.rpartition(".")
            body = mods.get(f"{core}.{unit}", "") if unit else mods[core]
            kinds = "output|input" if unit else "reg|wire|output"
            if not re.search(rf"^\s*(?:{kinds})\s+(?:\[\d+:0\]\s+)?{re.escape(port)}\s*[;=]", body, re.M):
                missing.append(f"{core}.{src}")
    if missing:
        raise RuntimeError(f"the fast harness's debug probes read signals the core's Verilog lacks: "
                           f"{', '.join(missing[:8])}; update verify/waves.py SIGNALS to the RTL's names")


def dump_path(sim: str, bdir: Path, test_dir: Path, top: str) -> Path:
    """Where the simulator wrote its FST (cocotb's runner: Icarus in the build folder, Verilator in the test
    folder)."""
    return Path(bdir) / f"{top}.fst" if sim == "icarus" else Path(test_dir) / "dump.fst"


def read_fst(path: str | Path, names: list[str]) -> dict[str, tuple[list[int], list[int]]]:
    """Top-level signals `names` of a waveform file: name -> (times in the file's unit, values) at each change
    (x/z bits read as 0). KeyError naming a signal the file lacks."""
    import pywellen  # lazy: the `test` extra (reading waveforms back: tests, benchmarks/waves_figure.py)
    w = pywellen.Waveform(str(path))
    tops = {}
    for var in w.all_vars():
        scope, _, name = var.full_name.rpartition(".")
        if "." not in scope and not scope.startswith("$"):         # the design's top (not Verilator's $rootio)
            tops.setdefault(name, var)
    missing = [n for n in names if n not in tops]
    if missing:
        raise KeyError(f"{path} has no top-level signal(s) {', '.join(missing)}")
    out = {}
    for name in names:
        times, values = [], []
        w.stream_changes(lambda t, _sid, v: (times.append(int(t)), values.append(_int(v))), [tops[name]])
        out[name] = (times, values)
    return out


def _int(v) -> int:
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        return int(v.lower().translate(str.maketrans("xz", "00")) or "0", 2)
    return 0
