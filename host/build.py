"""The Alveo U280 board flow: the build tree of the Vitis RTL kernel and the commands that turn it into an
xclbin (docs/design.md, Board flow). `dfx build --board u280 -o DIR` calls `build_tree`.

What it writes (every file from the core's config and `dfx.regmap`; templates and board data in `boards/u280/`):

    src/dfx_core.v            the core (`core_verilog`: Vitis port names; skipped with --no-verilog). Generated
                              first: when it fails, `build_tree` raises a one-line BuildError and writes nothing
    kernel.xml                the kernel's arguments and interfaces, from `dfx.regmap`
    package_xo.tcl            Vivado: package src/ as an RTL kernel -> dfx_core.xo (FREQ_HZ added, then set)
    connectivity.cfg          v++ --link: nk=, m_axi_hbmNN -> HBM[NN], m_axi_ddr -> DDR[0], ring of one card
    (devices > 1)             connectivity_ring.cfg, ring/, aurora/, RING.md: `dfx.host.ring_build`
    build.json                the config, its hash, ports, banks, clock and which Yosys wrote the Verilog
    build.sh                  the exact commands, in order, shell-quoted (v++ --kernel_frequency: the clock)

`dfx.host.build_check.check_tree` (and `dfx build --check DIR`) re-reads the files and checks them against the config and
`dfx.regmap`, one line per mismatch: kernel.xml's args and package_xo.tcl's registers, the link configs'
nk=/sp=/slr=/stream_connect= lines against the kernel's ports (kernel.xml and the Verilog), the clock, the
Verilog's port widths, and (devices > 1) the ring kernel's ports against connectivity_ring.cfg. No path reaches a shell or Tcl unquoted: tools run from argument lists
(docs/board_flow.md, Paths and quoting). The files' text comes from `dfx.host.board_files`.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from dfx import progress, regmap
from dfx.config import PIPELINE_ENV, PIPELINES, AccelConfig
from dfx.errors import UsageError

from . import ring_build
from .board_files import (BOARD_DIR, CU, KERNEL, _label, _v, bank_map, board_data, build_sh, clock_hz, commands,
                          connectivity, kernel_frequency, kernel_xml, m_axi_ports, package_tcl, ring_bits, tcl_word)
from .build_check import check_tree
from .ring_build import RING_DIR, RING_KERNEL, BuildError  # noqa: F401 (BuildError: re-exported)


# ------------------------------------------------------------------------------------------------ tree
@dataclass
class BuildResult:
    out: Path
    files: list[str]
    verilog: str | None                  # None when written; else why not (only --no-verilog)
    commands: list[str]                  # as build.sh has them (shell-quoted)
    ran: list[tuple[str, int]] = field(default_factory=list)
    missing_tools: list[str] = field(default_factory=list)


def native_yosys() -> bool:
    """Whether a native Yosys (the `pyosys` package, libyosys) is installed. Amaranth's own Yosys is WebAssembly,
    4 GB of memory at most: enough for the tiny preset, not for the dfx one (docs/rtl.md, Verilog of the
    integrated core)."""
    return importlib.util.find_spec("pyosys") is not None


def core_verilog(cfg: AccelConfig, pipeline: str = "default", weights: tuple[str, ...] = ()) -> tuple[str, str]:
    """The core's Verilog at pipeline profile `pipeline` (`dfx.config.PIPELINES`), with a tile fetcher for each
    quantized family of `weights` (`hw.qfetch.CORE_FAMILIES`), and which Yosys wrote it; a BuildError (one line)
    when the conversion fails.

    With a native Yosys: Amaranth writes RTLIL in one child process, Yosys turns it into Verilog in another
    (the passes of `amaranth.back.verilog`: proc -nomux -norom, memory_collect, write_verilog -norename), so
    the two peaks (8.5 and 5.4 GiB at the dfx preset) never add up. Without: `dfx.hw.top.verilog` in-process."""
    if native_yosys():
        with tempfile.TemporaryDirectory(prefix="dfx-verilog-") as tmp:
            il, v, cj = Path(tmp) / "core.il", Path(tmp) / "core.v", Path(tmp) / "config.json"
            cj.write_text(json.dumps(cfg.to_dict()))
            _child(cfg, ["rtlil", str(cj), str(il), *weights], pipeline)
            _child(cfg, ["yosys", str(il), str(v)], pipeline)
            return v.read_text(), f"native Yosys {importlib.metadata.version('pyosys')} (pyosys)"
    try:
        # lazy: Amaranth is the optional `hw` extra; a build tree without Verilog (verilog=False) does without it
        from dfx.hw.top import verilog
    except ImportError as e:
        raise BuildError(f"src/{KERNEL}.v: the core (dfx.hw.top) is not importable here ({e}); "
                         "install the hw extra or pass --no-verilog") from e
    saved = os.environ.get(PIPELINE_ENV)
    os.environ[PIPELINE_ENV] = pipeline
    try:
        return verilog(cfg, **({"wformats": tuple(weights)} if weights else {})), \
            "Amaranth's built-in Yosys (WebAssembly)"
    except Exception as e:   # noqa: BLE001 - any conversion failure is the build's failure, in one line
        raise _verilog_failed(cfg, f"{type(e).__name__}: {e}") from e
    finally:
        if saved is None:
            os.environ.pop(PIPELINE_ENV, None)
        else:
            os.environ[PIPELINE_ENV] = saved


def _verilog_failed(cfg: AccelConfig, why: str) -> BuildError:
    first = why.strip().splitlines()[0].rstrip(": ") if why.strip() else "no message"
    hint = ("; Amaranth's built-in Yosys is WebAssembly (4 GB at most): `pip install pyosys` gives `dfx build` "
            "a native one") if "wasm" in why else ""
    return BuildError(f"src/{KERNEL}.v: Verilog generation failed at config {_label(cfg.name)} ({first}){hint}")


def _child(cfg: AccelConfig, args: list[str], pipeline: str) -> None:
    """Run one conversion step (`python -m dfx.host.build STEP ...`) in a fresh process at pipeline profile
    `pipeline` (Yosys's log discarded)."""
    r = subprocess.run([sys.executable, "-m", "dfx.host.build", *args], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, env={**os.environ, PIPELINE_ENV: pipeline})
    if r.returncode:
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        raise _verilog_failed(cfg, lines[-1] if lines else f"{args[0]} step exited with {r.returncode}")


def _step(argv: list[str]) -> int:
    """The child side of `_child`: `rtlil CONFIG.json OUT.il [FAMILY ...]` or `yosys IN.il OUT.v`."""
    try:
        if argv[0] == "rtlil":
            # lazy: Amaranth is the optional `hw` extra, loaded only in this child process
            from amaranth.back import rtlil
            from dfx.hw.top import TOP_NAME, Top
            cfg = AccelConfig.from_dict(json.loads(Path(argv[1]).read_text()))
            top = Top(cfg, wformats=tuple(argv[3:])) if argv[3:] else Top(cfg)
            Path(argv[2]).write_text(rtlil.convert(top, name=TOP_NAME, emit_src=False))
        elif argv[0] == "yosys":
            # lazy: pyosys (native Yosys) is optional; only this child process loads it
            from pyosys import libyosys as ys
            design = ys.Design()
            for cmd in (f"read_rtlil {argv[1]}", "proc -nomux -norom", "memory_collect",
                        f"write_verilog -norename {argv[2]}"):
                ys.run_pass(cmd, design)
        else:
            raise ValueError(f"unknown step {argv[0]!r}; accepted: rtlil, yosys")
    except Exception as e:   # noqa: BLE001 - the parent reports the last stderr line
        print(f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}", file=sys.stderr)
        return 1
    return 0


def build_tree(cfg: AccelConfig, out: str | Path, board: str = "u280", verilog: bool = True,
               run_tools: bool = True, log=print, devices: int = 1, pipeline: str = "deep",
               weights=()) -> BuildResult:
    """The tree for one card (`devices` = 1: the ring is the card itself) or for a ring of `devices` cards (the
    same xclbin on each: the core and the `dfx_ring` kernel on both QSFP28 cages; `dfx.host.ring_build`).
    `pipeline`: the core's pipeline profile (`dfx.config.PIPELINES`): "deep" (the default), every unit at its
    300 MHz depths with the pipelined reset and the SLR slices; "default", the simulation backends' core.
    `weights`: the quantized weight families the core reads besides FP16 (`dfx.verify.core_build.build_families`), one tile fetcher each
    in the matrix engine; () builds the FP16 core."""
    data = board_data(board)
    if weights:                 # lazy: the families are the RTL's (the optional `hw` extra)
        from dfx.verify.core_build import build_families
        weights = build_families(cfg, weights)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: exists and is not a directory")
    if not isinstance(devices, int) or not 1 <= devices <= cfg.devices:
        raise UsageError(f"--devices must be an integer 1..{cfg.devices} (the config's ring size), not {devices!r}")
    if pipeline not in PIPELINES:
        raise UsageError(f"--pipeline must be one of {', '.join(PIPELINES)}, not {pipeline!r}")
    ring = devices > 1
    # the Verilog first: a failed conversion leaves no tree whose build.sh would fail later
    with progress.Ticking(f"verilog: {KERNEL} ({cfg.name})"):
        vtext, vby = core_verilog(cfg, pipeline, weights) if verilog else (None, None)
    with progress.Ticking(f"verilog: dfx_ring ({cfg.name})"):
        rtext = ring_build.verilog(cfg) if verilog and ring else None
    out.mkdir(parents=True, exist_ok=True)
    (out / "src").mkdir(exist_ok=True)
    files = {"kernel.xml": kernel_xml(cfg), "package_xo.tcl": package_tcl(cfg, data),
             "connectivity.cfg": connectivity(cfg)}
    if ring:
        for d in ("aurora", RING_DIR, f"{RING_DIR}/src"):
            (out / d).mkdir(exist_ok=True)
        files.update({
            "connectivity_ring.cfg": connectivity(cfg, ring=True),
            "aurora/gen_aurora_ip.tcl": ring_build.aurora_tcl(cfg, data, tcl_word, _v),
            f"{RING_DIR}/kernel.xml": ring_build.kernel_xml(cfg),
            f"{RING_DIR}/package_xo.tcl": ring_build.package_tcl(cfg, _label(cfg.name), tcl_word, _v(data, "part"),
                                                                 clock_hz(cfg)),
            "RING.md": (BOARD_DIR / "u280" / "RING.md").read_text()})
        if rtext is not None:
            files[f"{RING_DIR}/src/{RING_KERNEL}.v"] = rtext
    argv = commands(data, cfg, devices)
    files["build.sh"] = build_sh(argv)
    manifest = {"board": board, "platform": _v(data, "vitis", "platform_full"), "part": _v(data, "part"),
                "kernel": KERNEL, "compute_unit": CU, "config": cfg.to_dict(), "config_hash": cfg.config_hash,
                "clock_hz": clock_hz(cfg), "kernel_frequency": kernel_frequency(cfg), "m_axi": m_axi_ports(cfg),
                "banks": bank_map(cfg), "ring_bits": ring_bits(cfg), "regmap_span": regmap.span(cfg),
                "verilog_by": vby, "devices": devices, "pipeline": pipeline, "weights": list(weights)}
    files["build.json"] = json.dumps(manifest, indent=1) + "\n"
    vpath = out / "src" / f"{KERNEL}.v"
    if vtext is not None:
        files[f"src/{KERNEL}.v"] = vtext
    else:
        vpath.unlink(missing_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
    (out / "build.sh").chmod(0o755)
    why = None if verilog else "skipped (--no-verilog)"
    if why:
        log(f"note: src/{KERNEL}.v not written: {why}; package_xo.tcl needs it "
            f"({shlex.join(['python', '-m', 'dfx.hw.top', '--config', 'FILE', '-o', str(vpath)])})")
    problems = check_tree(out, cfg, board)
    if problems:
        raise BuildError(f"the generated tree disagrees with the config: {'; '.join(problems)}")
    res = BuildResult(out, sorted(files), why, [shlex.join(c) for c in argv])
    tools = {"vivado": shutil.which("vivado"), "v++": shutil.which("v++")}
    res.missing_tools = [t for t, p in tools.items() if not p]
    if run_tools and not res.missing_tools and not why:
        for c, shown in zip(argv, res.commands):
            log(f"$ {shown}")
            rc = subprocess.run([tools[c[0]], *c[1:]], cwd=out).returncode
            res.ran.append((shown, rc))
            if rc:
                raise BuildError(f"`{shown}` failed with exit code {rc} (logs in {out})")
    return res


# ------------------------------------------------------------------------------------------------ checks


if __name__ == "__main__":
    raise SystemExit(_step(sys.argv[1:]))
