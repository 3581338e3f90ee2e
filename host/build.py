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

`check_tree` (and `dfx build --check DIR`) re-reads the files and checks them against the config and
`dfx.regmap`, one line per mismatch: kernel.xml's args and package_xo.tcl's registers, the link configs'
nk=/sp=/slr=/stream_connect= lines against the kernel's ports (kernel.xml and the Verilog), the clock, the
Verilog's port widths, and (devices > 1) the ring kernel's ports against connectivity_ring.cfg. No path reaches a shell or Tcl unquoted: tools run from argument lists
(docs/board_flow.md, Paths and quoting).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from dfx import progress, regmap
from dfx.config import PIPELINE_ENV, PIPELINES, AccelConfig
from dfx.errors import DfxError, UsageError

from . import ring_build
from .ring_build import RING_CU, RING_DIR, RING_KERNEL, BuildError  # noqa: F401 (BuildError: re-exported)

BOARDS = ("u280",)
KERNEL = "dfx_core"
CU = f"{KERNEL}_1"
BOARD_DIR = Path(__file__).resolve().parents[1] / "boards"


def board_data(board: str) -> dict:
    if board not in BOARDS:
        raise UsageError(f"unknown board {board!r}; accepted: {', '.join(BOARDS)}")
    data = json.loads((BOARD_DIR / board / "board.json").read_text())
    if "vitis" not in data:
        raise BuildError(f"boards/{board}/board.json has no 'vitis' section (platform, QSFP clocks)")
    return data


def _v(d: dict, *path):
    for p in path:
        d = d[p]
    return d["value"] if isinstance(d, dict) and "value" in d else d


# ------------------------------------------------------------------------------------------------ widths
def ddr_bits(cfg: AccelConfig) -> int:
    return 16 * cfg.d               # dfx.hw.top: the DDR port moves one VBUF entry per beat


def ring_bits(cfg: AccelConfig) -> int:
    return 16 * cfg.d               # dfx.hw.top: one VBUF entry per ring beat


def m_axi_ports(cfg: AccelConfig) -> dict[str, int]:
    """m_axi interface -> data width in bits."""
    out = {regmap.hbm_port_name(c): cfg.hbm_width for c in range(cfg.hbm_channels)}
    out["m_axi_ddr"] = ddr_bits(cfg)
    return out


def bank_map(cfg: AccelConfig) -> dict[str, str]:
    """m_axi interface -> Vitis memory bank (as in the connectivity `sp=` lines)."""
    out = {regmap.hbm_port_name(c): f"HBM[{c}]" for c in range(cfg.hbm_channels)}
    out["m_axi_ddr"] = "DDR[0]"
    return out


# ------------------------------------------------------------------------------------------------ files
def kernel_xml(cfg: AccelConfig) -> str:
    """kernel.xml of the RTL kernel: one arg per kernel-argument register of `dfx.regmap`, plus the ring."""
    root = ET.Element("root", versionMajor="1", versionMinor="6")
    k = ET.SubElement(root, "kernel", name=KERNEL, language="ip_c", vlnv=f"dfx.org:kernel:{KERNEL}:1.0",
                      attributes="", preferredWorkGroupSizeMultiple="0", workGroupSize="1", interrupt="true",
                      hwControlProtocol="ap_ctrl_hs")
    ports = ET.SubElement(k, "ports")
    ET.SubElement(ports, "port", name="s_axi_control", mode="slave", range=f"0x{regmap.span(cfg):x}",
                  dataWidth="32", portType="addressable", base="0x0")
    for name, bits in m_axi_ports(cfg).items():
        ET.SubElement(ports, "port", name=name, mode="master", range="0xFFFFFFFFFFFFFFFF", dataWidth=str(bits),
                      portType="addressable", base="0x0")
    for name, mode in (("ring_tx", "write_only"), ("ring_rx", "read_only")):
        ET.SubElement(ports, "port", name=name, mode=mode, dataWidth=str(ring_bits(cfg)), portType="stream")
    args = ET.SubElement(k, "args")
    i = 0
    for r in regmap.regmap(cfg):
        if r.arg is None:
            continue
        size = f"0x{r.width // 8:x}"
        if r.arg == "pointer":
            ET.SubElement(args, "arg", name=r.name.lower(), addressQualifier="1", id=str(i), port=r.port,
                          size=size, offset=f"0x{r.offset:x}", type="void*", hostOffset="0x0", hostSize=size)
        else:
            ET.SubElement(args, "arg", name=r.name.lower(), addressQualifier="0", id=str(i), port="s_axi_control",
                          size=size, offset=f"0x{r.offset:x}", type="uint", hostOffset="0x0", hostSize=size)
        i += 1
    for name in ("ring_tx", "ring_rx"):
        ET.SubElement(args, "arg", name=name, addressQualifier="4", id=str(i), port=name, size="0x8",
                      offset="0x0", type=f"stream<ap_axiu<{ring_bits(cfg)},0,0,0>>&", hostOffset="0x0",
                      hostSize="0x8", memSize="0")
        i += 1
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def connectivity(cfg: AccelConfig, ring: bool = False) -> str:
    """The v++ --link config: one compute unit, every m_axi port on its bank, the ring. No `[clock]` section:
    the U280 platform's kernel clock 0 is scalable and set by `--kernel_frequency` (build.sh); `freqHz=` is
    for platforms with fixed clocks (UG1393, --clock options). No `slr=`: see docs/board_flow.md, Placement."""
    lines = [f"# v++ --link config for {KERNEL} (config {_label(cfg.name)}, hash {cfg.config_hash}); generated by "
             "`dfx build`, do not edit", "[connectivity]", f"nk={KERNEL}:1:{CU}"]
    lines += [f"sp={CU}.{port}:{bank}" for port, bank in bank_map(cfg).items()]
    if ring:
        lines += [f"nk={RING_KERNEL}:1:{RING_CU}",
                  f"stream_connect={CU}.ring_tx:{RING_CU}.s_axis_tx",
                  f"stream_connect={RING_CU}.m_axis_rx:{CU}.ring_rx",
                  f"connect=io_clk_qsfp0_refclka_00:{RING_CU}/gt_refclk0",
                  f"connect={RING_CU}/gt_port0:io_gt_qsfp0_00",
                  f"connect=io_clk_qsfp1_refclka_00:{RING_CU}/gt_refclk1",
                  f"connect={RING_CU}/gt_port1:io_gt_qsfp1_00",
                  f"connect={RING_CU}/init_clk:ii_level0_wire/ulp_m_aclk_freerun_ref_00"]
    else:
        lines += ["# a ring of one card: the router's output comes straight back (1-device programs)",
                  f"stream_connect={CU}.ring_tx:{CU}.ring_rx"]
    lines += ["# placement: no slr= (why: docs/board_flow.md, Placement)", ""]
    return "\n".join(lines)


def _label(text: str) -> str:
    """`text` for a comment line of a generated script (no newline, quote or escape can end the comment)."""
    return re.sub(r"[^\w.+-]", "_", text)


_TCL_SPECIAL = re.compile(r'([\\$\[\]{}";\s#])')


def tcl_word(text: str) -> str:
    """`text` as one Tcl word, every character taken literally (backslash-escaped, newlines as \\n)."""
    if not text:
        return "{}"
    return _TCL_SPECIAL.sub(lambda m: {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(m.group(1), "\\" + m.group(1)),
                            text)


def _ctrl_registers(cfg: AccelConfig) -> list[regmap.Register]:
    """The registers package_xo.tcl declares: the ap_ctrl_hs block below 0x10 and every kernel argument."""
    return [r for r in regmap.regmap(cfg) if r.arg is not None or r.offset < 0x10]


def _tcl_registers(cfg: AccelConfig) -> str:
    return "\n".join(f"set reg [ipx::add_register {r.name.lower()} $blk]; set_property address_offset "
                     f"0x{r.offset:x} $reg; set_property size {r.width} $reg" for r in _ctrl_registers(cfg))


def _tcl_pointer_refs(cfg: AccelConfig) -> str:
    return "\n".join(f"set p [ipx::add_register_parameter ASSOCIATED_BUSIF [ipx::get_registers {r.name.lower()} "
                     f"-of_objects $blk]]; set_property value {r.port} $p"
                     for r in regmap.regmap(cfg) if r.arg == "pointer")


def package_tcl(cfg: AccelConfig, board: dict) -> str:
    busifs = ["s_axi_control", *m_axi_ports(cfg), "ring_tx", "ring_rx"]
    return Template((BOARD_DIR / "u280" / "package_xo.tcl.in").read_text()).substitute(
        kernel=KERNEL, config_name=_label(cfg.name), config_hash=cfg.config_hash, part=tcl_word(_v(board, "part")),
        all_busifs=" ".join(busifs), freq_hz=clock_hz(cfg), span=regmap.span(cfg),
        registers=_tcl_registers(cfg), pointer_refs=_tcl_pointer_refs(cfg))


def clock_hz(cfg: AccelConfig) -> int:
    return int(round(cfg.clock_mhz * 1e6))


def kernel_frequency(cfg: AccelConfig) -> str:
    """v++ --kernel_frequency: the platform's scalable clock 0 (ap_clk) at the config's clock, in MHz."""
    return f"0:{cfg.clock_mhz:g}"


def commands(board: dict, cfg: AccelConfig, devices: int = 1) -> list[list[str]]:
    """The tool invocations, as argument lists, run in the tree (build.sh and `build_tree` run exactly these).
    More than one device: the Aurora cores and the ring kernel first, then the link with both kernels."""
    plat, part = _v(board, "vitis", "platform_full"), _v(board, "part")
    ring = devices > 1
    xos = [f"{KERNEL}.xo"] + ([f"{RING_DIR}/{RING_KERNEL}.xo"] if ring else [])
    return ((ring_build.commands(part) if ring else [])
            + [["vivado", "-mode", "batch", "-source", "package_xo.tcl", "-tclargs", part],
               ["v++", "--link", "-t", "hw", "--platform", plat, "--config",
                "connectivity_ring.cfg" if ring else "connectivity.cfg", "--kernel_frequency", kernel_frequency(cfg),
                "-o", f"{KERNEL}_u280.xclbin", *xos]])


def build_sh(cmds: list[list[str]]) -> str:
    return ("#!/bin/sh\n# Generated by `dfx build`: package the core, link the xclbin.\nset -e\n"
            'cd "$(dirname "$0")"\n' + "\n".join(shlex.join(c) for c in cmds) + "\n")


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
def verilog_ports(text: str) -> dict[str, int]:
    """Port name -> width of the top module's ports (Amaranth's Verilog: `input [N:0] name;` / `input name;`)."""
    ports = {}
    for m in re.finditer(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):0\]\s*)?(\w+)\s*[;,]", text, re.M):
        ports[m.group(3)] = int(m.group(2)) + 1 if m.group(2) else 1
    return ports


def verilog_masters(ports: dict[str, int]) -> set[str]:
    """The AXI master interfaces among a top's ports (`m_axi_<name>_<channel signal>`)."""
    return {m.group(1) for m in (re.match(r"(m_axi_\w+?)_(?:ar|aw|r|w|b)\w+$", n) for n in ports) if m}


def check_tree(out: str | Path, cfg: AccelConfig | None = None, board: str | None = None) -> list[str]:
    """Problems in a build tree, one line each (empty list: consistent): kernel.xml and package_xo.tcl against
    `dfx.regmap`, the link configs' nk=/sp=/slr=/stream_connect= lines against the kernel's ports (kernel.xml
    and, when there, src/dfx_core.v) and the config's banks, build.sh's kernel clock, the Verilog's widths.
    `cfg`/`board`: those of build.json when not given."""
    out = Path(out)
    try:
        manifest = json.loads((out / "build.json").read_text())
    except (OSError, ValueError) as e:
        return [f"build.json: unreadable ({type(e).__name__}: {e}); not a `dfx build` tree?"]
    bad = []
    if cfg is None:
        try:
            cfg = AccelConfig.from_dict(manifest["config"])
        except (KeyError, TypeError, DfxError) as e:
            return [f"build.json: no valid config ({e})"]
    if manifest.get("config_hash") != cfg.config_hash:
        bad.append(f"build.json: config hash {manifest.get('config_hash')}, the config's is {cfg.config_hash}")
    data = board_data(board or manifest.get("board", "u280"))
    try:
        kern = ET.parse(out / "kernel.xml").getroot().find("kernel")
        ports = {p.get("name"): p for p in kern.find("ports")}
        args = list(kern.find("args"))
    except (OSError, ET.ParseError, AttributeError, TypeError) as e:
        return bad + [f"kernel.xml: unreadable ({type(e).__name__}: {e})"]
    bad += _check_kernel_xml(cfg, ports, args)
    masters = {n for n, p in ports.items() if p.get("mode") == "master"}
    streams = {n for n, p in ports.items() if p.get("portType") == "stream"}
    v = out / "src" / f"{KERNEL}.v"
    vmasters = None
    if v.is_file():
        vp = verilog_ports(v.read_text())
        vmasters = verilog_masters(vp)
        bad += _check_verilog(cfg, vp, vmasters)
    bad += _check_package_tcl(cfg, _read(out, "package_xo.tcl"))
    slrs = _v(data, "vitis", "slrs")
    devices = manifest.get("devices", 1)
    for name, ring in (("connectivity.cfg", False), ("connectivity_ring.cfg", True))[:2 if devices > 1 else 1]:
        bad += _check_connectivity(cfg, name, _read(out, name), masters, vmasters, streams, slrs, ring)
    if devices > 1:
        bad += ring_build.check_ring_tree(out, cfg, _read(out, "connectivity_ring.cfg"), verilog_ports)
    bad += _check_build_sh(cfg, _read(out, "build.sh"), devices)
    return bad


def _read(out: Path, name: str) -> str:
    p = out / name
    return p.read_text() if p.is_file() else ""


def _check_kernel_xml(cfg: AccelConfig, ports: dict, args: list) -> list[str]:
    bad = []
    want_ports = m_axi_ports(cfg)
    got_maxi = {n: p.get("dataWidth") for n, p in ports.items() if p.get("mode") == "master"}
    for n in sorted(set(want_ports) - set(got_maxi)):
        bad.append(f"kernel.xml: no master port {n} (the core has {len(want_ports)} m_axi ports)")
    for n in sorted(set(got_maxi) - set(want_ports)):
        bad.append(f"kernel.xml: master port {n} is not an m_axi port of the core")
    for n in sorted(set(got_maxi) & set(want_ports)):
        if got_maxi[n] != str(want_ports[n]):
            bad.append(f"kernel.xml: port {n} is {got_maxi[n]} bits wide, the core's is {want_ports[n]}")
    ctrl = ports.get("s_axi_control")
    if ctrl is None or int(ctrl.get("range", "0"), 16) != regmap.span(cfg):
        bad.append(f"kernel.xml: s_axi_control range is not dfx.regmap.span (0x{regmap.span(cfg):x})")
    regs = {r.name.lower(): r for r in regmap.regmap(cfg) if r.arg}
    for a in args:
        n = a.get("name")
        r = regs.pop(n, None)
        if r is None:
            if n not in ("ring_tx", "ring_rx"):
                bad.append(f"kernel.xml: arg {n} is not a kernel argument of dfx.regmap")
            continue
        off, size = int(a.get("offset", "-1"), 16), int(a.get("size", "0"), 16)
        if off != r.offset:
            bad.append(f"kernel.xml: arg {n} at offset 0x{off:x}, dfx.regmap has {r.name} at 0x{r.offset:x}")
        if size != r.width // 8:
            bad.append(f"kernel.xml: arg {n} is {size} bytes, dfx.regmap's {r.name} is {r.width // 8}")
        want_port = r.port if r.arg == "pointer" else "s_axi_control"
        if a.get("port") != want_port:
            bad.append(f"kernel.xml: arg {n} on port {a.get('port')}, dfx.regmap puts it on {want_port}")
    for n, r in regs.items():
        bad.append(f"kernel.xml: no arg {n} (dfx.regmap {r.name} at 0x{r.offset:x})")
    if [a.get("id") for a in args] != [str(i) for i in range(len(args))]:
        bad.append("kernel.xml: arg ids are not 0..n-1 in order")
    return bad


def _check_package_tcl(cfg: AccelConfig, text: str) -> list[str]:
    bad = []
    got = {m.group(1): (int(m.group(2), 16), int(m.group(3))) for m in re.finditer(
        r"ipx::add_register (\w+) \$blk\]; set_property address_offset (0x[0-9a-fA-F]+) \$reg; "
        r"set_property size (\d+) \$reg", text)}
    for r in _ctrl_registers(cfg):
        n = r.name.lower()
        if n not in got:
            bad.append(f"package_xo.tcl: no register {n} (dfx.regmap {r.name} at 0x{r.offset:x})")
        elif got[n] != (r.offset, r.width):
            bad.append(f"package_xo.tcl: register {n} at 0x{got[n][0]:x}, {got[n][1]} bits; dfx.regmap has "
                       f"{r.name} at 0x{r.offset:x}, {r.width} bits")
    for n in sorted(set(got) - {r.name.lower() for r in _ctrl_registers(cfg)}):
        bad.append(f"package_xo.tcl: register {n} is not in dfx.regmap")
    busifs = re.search(r"^foreach busif \{([^}]*)\}", text, re.M)
    assoc = set(busifs.group(1).split()) if busifs else set()
    for p in m_axi_ports(cfg):
        if p not in assoc:
            bad.append(f"package_xo.tcl: {p} is not associated with ap_clk")
    if not re.search(r"ipx::add_bus_parameter FREQ_HZ ", text):
        bad.append("package_xo.tcl: ap_clk has no FREQ_HZ bus parameter (ipx::add_bus_parameter)")
    return bad


def _check_verilog(cfg: AccelConfig, vp: dict[str, int], vmasters: set[str]) -> list[str]:
    bad = []
    want_ports = m_axi_ports(cfg)
    for p, bits in want_ports.items():
        got = (vp.get(f"{p}_rdata"), vp.get(f"{p}_wdata"))
        if got != (bits, bits):
            bad.append(f"src/{KERNEL}.v: {p}_rdata/wdata are {got[0]}/{got[1]} bits, kernel.xml says {bits}")
    extra = sorted(vmasters - set(want_ports))
    if extra:
        bad.append(f"src/{KERNEL}.v has m_axi interfaces kernel.xml lacks: {extra}")
    for s in ("ap_clk", "ap_rst_n", "s_axi_control_awaddr", "ring_tx_tdata", "ring_rx_tdata"):
        if s not in vp:
            bad.append(f"src/{KERNEL}.v has no port {s}")
    if vp.get("ring_tx_tdata", ring_bits(cfg)) != ring_bits(cfg):
        bad.append(f"src/{KERNEL}.v ring_tx_tdata is {vp['ring_tx_tdata']} bits, kernel.xml says {ring_bits(cfg)}")
    return bad


def _check_connectivity(cfg: AccelConfig, name: str, text: str, masters: set[str], vmasters: set[str] | None,
                        streams: set[str], slrs: list[str], ring: bool) -> list[str]:
    """One line per wrong nk=/sp=/slr=/stream_connect= line of a v++ link config."""
    if not text:
        return [f"{name}: missing"]
    bad, cus, named = [], {}, set()
    kernels = (KERNEL, RING_KERNEL) if ring else (KERNEL,)
    banks = bank_map(cfg)
    lines = [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), 1)]
    lines = [(i, ln) for i, ln in lines if ln and not ln.startswith("#") and not ln.startswith("[")]
    for i, ln in lines:                                   # nk= first: sp=/slr= may name any declared unit
        key, _, val = ln.partition("=")
        if key.strip() != "nk":
            continue
        parts = val.split(":")
        if len(parts) != 3 or parts[0] not in kernels or not parts[1].isdigit():
            bad.append(f"{name}:{i}: {ln}: not nk=<kernel>:<count>:<units> of a kernel of this tree "
                       f"({', '.join(kernels)})")
            continue
        units = parts[2].split(".")
        if len(units) != int(parts[1]):
            bad.append(f"{name}:{i}: {ln}: {parts[1]} compute units, {len(units)} named")
        for u in units:
            cus[u] = parts[0]
    if CU not in cus:
        bad.append(f"{name}: no nk= line declares {CU} (nk={KERNEL}:1:{CU})")
    for i, ln in lines:
        key, _, val = ln.partition("=")
        key = key.strip()
        where = f"{name}:{i}: {ln}"
        if key == "sp":
            mt = re.fullmatch(r"([\w]+)\.(\w+):(\S+)", val)
            if not mt:
                bad.append(f"{where}: not sp=<unit>.<port>:<bank>")
                continue
            cu, port, bank = mt.groups()
            named.add(port)
            if cus.get(cu) != KERNEL:
                bad.append(f"{where}: {cu} is not a compute unit of {KERNEL} (nk=)")
            elif port not in masters:
                bad.append(f"{where}: {KERNEL} has no AXI master port {port} (kernel.xml)")
            elif vmasters is not None and port not in vmasters:
                bad.append(f"{where}: {KERNEL} has no AXI master port {port} (src/{KERNEL}.v)")
            elif bank != banks.get(port):
                bad.append(f"{where}: the core addresses {port} as {banks.get(port)}, not {bank}")
        elif key == "slr":
            mt = re.fullmatch(r"(\w+):(\w+)", val)
            if not mt:
                bad.append(f"{where}: not slr=<unit>:<SLR>")
            elif mt.group(1) not in cus:
                bad.append(f"{where}: {mt.group(1)} is not a compute unit declared by nk=")
            elif mt.group(2) not in slrs:
                bad.append(f"{where}: {mt.group(2)} is not an SLR of the board ({', '.join(slrs)})")
        elif key == "stream_connect":
            for end in val.split(":"):
                cu, _, port = end.partition(".")
                if cu not in cus:
                    bad.append(f"{where}: {cu} is not a compute unit declared by nk=")
                elif cus[cu] == KERNEL and port not in streams:
                    bad.append(f"{where}: {KERNEL} has no stream port {port} (kernel.xml)")
        elif key not in ("nk", "connect"):
            bad.append(f"{where}: unknown key {key} (nk, sp, slr, stream_connect, connect)")
    for port in sorted(set(banks) - named):
        bad.append(f"{name}: no sp= line for {port} (sp={CU}.{port}:{banks[port]})")
    return bad


def _check_build_sh(cfg: AccelConfig, text: str, devices: int = 1) -> list[str]:
    bad = []
    freqs = re.findall(r"--kernel_frequency[ =](\S+)", text)
    if freqs != [kernel_frequency(cfg)]:
        bad.append(f"build.sh: v++ --kernel_frequency {' '.join(freqs) or '(none)'}, the config's clock is "
                   f"{kernel_frequency(cfg)} (clock 0 at {cfg.clock_mhz:g} MHz)")
    want = "connectivity_ring.cfg" if devices > 1 else "connectivity.cfg"
    if f"--config {want}" not in text or (devices > 1) != (f"{RING_DIR}/{RING_KERNEL}.xo" in text):
        bad.append(f"build.sh: v++ --link must use {want}" + (f" and {RING_DIR}/{RING_KERNEL}.xo" if devices > 1 else
                                                               ""))
    return bad


if __name__ == "__main__":
    raise SystemExit(_step(sys.argv[1:]))
