"""The Alveo U280 board flow: the build tree of the Vitis RTL kernel and the commands that turn it into an
xclbin (docs/design.md, Board flow). `dfx build --board u280 -o DIR` calls `build_tree`.

What it writes (every file from the core's config and `dfx.regmap`; templates and board data in `boards/u280/`):

    src/dfx_core.v            the core, `dfx.hw.top.verilog(cfg)` (Vitis port names; skipped with --no-verilog)
    kernel.xml                the kernel's arguments and interfaces, from `dfx.regmap`
    package_xo.tcl            Vivado: package src/ as an RTL kernel -> dfx_core.xo
    connectivity.cfg          v++ --link: m_axi_hbmNN -> HBM[NN], m_axi_ddr -> DDR[0], clock, ring of one card
    connectivity_ring.cfg     the same with the QSFP ring through the dfx_ring Aurora kernel (RING.md)
    aurora/gen_aurora_ip.tcl  Vivado: the Aurora 64B/66B cores for both QSFP28 cages
    RING.md                   what Vivado must do for the multi-card ring
    build.json                the config, its hash, ports, banks and clock (what `check_tree` verifies)
    build.sh                  the exact commands, in order

`check_tree` re-reads the files and checks them against the config (port counts, bank mapping, widths,
offsets, clock) and, when the Verilog is there, against the Verilog's ports.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from dfx import regmap
from dfx.config import AccelConfig
from dfx.errors import DfxError, UsageError
from dfx.verify.toolchain import venv_path

BOARDS = ("u280",)
KERNEL = "dfx_core"
CU = f"{KERNEL}_1"
RING_KERNEL = "dfx_ring"
BOARD_DIR = Path(__file__).resolve().parents[1] / "boards"


class BuildError(DfxError):
    """The board build tree cannot be generated or does not agree with the core's config."""


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
    hz = int(round(cfg.clock_mhz * 1e6))
    lines = [f"# v++ --link config for {KERNEL} (config {cfg.name}, hash {cfg.config_hash}); generated by "
             "`dfx build`, do not edit", "[connectivity]", f"nk={KERNEL}:1:{CU}"]
    lines += [f"sp={CU}.{port}:{bank}" for port, bank in bank_map(cfg).items()]
    if ring:
        lines += [f"nk={RING_KERNEL}:1:{RING_KERNEL}_1",
                  f"stream_connect={CU}.ring_tx:{RING_KERNEL}_1.s_axis_tx",
                  f"stream_connect={RING_KERNEL}_1.m_axis_rx:{CU}.ring_rx",
                  f"connect=io_clk_qsfp0_refclka_00:{RING_KERNEL}_1/gt_refclk0",
                  f"connect={RING_KERNEL}_1/gt_port0:io_gt_qsfp0_00",
                  f"connect=io_clk_qsfp1_refclka_00:{RING_KERNEL}_1/gt_refclk1",
                  f"connect={RING_KERNEL}_1/gt_port1:io_gt_qsfp1_00",
                  f"connect={RING_KERNEL}_1/init_clk:ii_level0_wire/ulp_m_aclk_freerun_ref_00"]
    else:
        lines += ["# a ring of one card: the router's output comes straight back (1-device programs)",
                  f"stream_connect={CU}.ring_tx:{CU}.ring_rx"]
    lines += ["", "[clock]", f"freqHz={hz}:{CU}.ap_clk", ""]
    return "\n".join(lines)


def _tcl_registers(cfg: AccelConfig) -> str:
    out = []
    for r in regmap.regmap(cfg):
        if r.arg is None:
            continue
        n = r.name.lower()
        out.append(f"set reg [ipx::add_register {n} $blk]; set_property address_offset 0x{r.offset:x} $reg; "
                   f"set_property size {r.width} $reg")
    return "\n".join(out)


def _tcl_pointer_refs(cfg: AccelConfig) -> str:
    out = []
    for r in regmap.regmap(cfg):
        if r.arg == "pointer":
            out.append(f"ipx::add_register_parameter ASSOCIATED_BUSIF [ipx::get_registers {r.name.lower()} "
                       f"-of_objects $blk]; set_property value {r.port} [ipx::get_register_parameters "
                       f"ASSOCIATED_BUSIF -of_objects [ipx::get_registers {r.name.lower()} -of_objects $blk]]")
    return "\n".join(out)


def package_tcl(cfg: AccelConfig, board: dict) -> str:
    busifs = ["s_axi_control", *m_axi_ports(cfg), "ring_tx", "ring_rx"]
    return Template((BOARD_DIR / "u280" / "package_xo.tcl.in").read_text()).substitute(
        kernel=KERNEL, config_name=cfg.name, config_hash=cfg.config_hash, part=_v(board, "part"),
        all_busifs=" ".join(busifs), freq_hz=int(round(cfg.clock_mhz * 1e6)), span=regmap.span(cfg),
        registers=_tcl_registers(cfg), pointer_refs=_tcl_pointer_refs(cfg))


def aurora_tcl(cfg: AccelConfig, board: dict) -> str:
    link, vitis = board["link"], board["vitis"]
    user_bits = _v(vitis, "aurora_user_bits")
    return Template((BOARD_DIR / "u280" / "gen_aurora_ip.tcl.in").read_text()).substitute(
        part=_v(board, "part"), lane_rate=_v(link, "lane_rate_gbps"), refclk_mhz=_v(vitis, "qsfp_refclk_mhz"),
        init_clk_mhz=_v(vitis, "init_clk_mhz"),
        user_bits=user_bits, user_bytes=user_bits // 8, user_clk_mhz=_v(link, "user_clk_mhz"),
        freq_mhz=f"{cfg.clock_mhz:g}", core_bits=ring_bits(cfg), core_bytes=ring_bits(cfg) // 8)


def commands(board: dict) -> list[str]:
    plat = _v(board, "vitis", "platform_full")
    part = _v(board, "part")
    return [f"vivado -mode batch -source package_xo.tcl -tclargs {part}",
            f"v++ --link -t hw --platform {plat} --config connectivity.cfg -o {KERNEL}_u280.xclbin {KERNEL}.xo"]


# ------------------------------------------------------------------------------------------------ tree
@dataclass
class BuildResult:
    out: Path
    files: list[str]
    verilog: str | None                  # None when written; else why not
    commands: list[str]
    ran: list[tuple[str, int]] = field(default_factory=list)
    missing_tools: list[str] = field(default_factory=list)


def write_verilog(cfg: AccelConfig, path: Path) -> None:
    # lazy: Amaranth is the optional `hw` extra; a build tree without Verilog (verilog=False) does without it
    from dfx.hw.top import verilog
    path.write_text(verilog(cfg))


def build_tree(cfg: AccelConfig, out: str | Path, board: str = "u280", verilog: bool = True,
               run_tools: bool = True, log=print) -> BuildResult:
    data = board_data(board)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    (out / "src").mkdir(exist_ok=True)
    (out / "aurora").mkdir(exist_ok=True)
    files = {
        "kernel.xml": kernel_xml(cfg),
        "package_xo.tcl": package_tcl(cfg, data),
        "connectivity.cfg": connectivity(cfg),
        "connectivity_ring.cfg": connectivity(cfg, ring=True),
        "aurora/gen_aurora_ip.tcl": aurora_tcl(cfg, data),
        "RING.md": (BOARD_DIR / "u280" / "RING.md").read_text(),
    }
    cmds = commands(data)
    files["build.sh"] = ("#!/bin/sh\n# Generated by `dfx build`: package the core, link the xclbin.\nset -e\n"
                         'cd "$(dirname "$0")"\n' + "\n".join(cmds) + "\n")
    manifest = {"board": board, "platform": _v(data, "vitis", "platform_full"), "part": _v(data, "part"),
                "kernel": KERNEL, "compute_unit": CU, "config": cfg.to_dict(), "config_hash": cfg.config_hash,
                "clock_hz": int(round(cfg.clock_mhz * 1e6)), "m_axi": m_axi_ports(cfg), "banks": bank_map(cfg),
                "ring_bits": ring_bits(cfg), "regmap_span": regmap.span(cfg)}
    files["build.json"] = json.dumps(manifest, indent=1) + "\n"
    for name, text in files.items():
        (out / name).write_text(text)
    (out / "build.sh").chmod(0o755)
    why = None
    vpath = out / "src" / f"{KERNEL}.v"
    if verilog:
        try:
            write_verilog(cfg, vpath)
        except ImportError as e:
            why = f"the integrated core (dfx.hw.top) is not importable here ({e})"
        except Exception as e:   # noqa: BLE001 - report, the rest of the tree stands
            why = f"Verilog generation failed ({type(e).__name__}: {e})"
    else:
        why = "skipped (--no-verilog)"
    if why:
        vpath.unlink(missing_ok=True)
        log(f"note: src/{KERNEL}.v not written: {why}; package_xo.tcl needs it "
            f"(python -m dfx.hw.top --config FILE -o {vpath})")
    problems = check_tree(out, cfg)
    if problems:
        raise BuildError(f"the generated tree disagrees with the config: {'; '.join(problems)}")
    res = BuildResult(out, sorted(files) + ([f"src/{KERNEL}.v"] if not why else []), why, cmds)
    tools = {"vivado": shutil.which("vivado"), "v++": shutil.which("v++")}
    res.missing_tools = [t for t, p in tools.items() if not p]
    if run_tools and not res.missing_tools and not why:
        for c in cmds:
            log(f"$ {c}")
            rc = subprocess.run(c, shell=True, cwd=out).returncode
            res.ran.append((c, rc))
            if rc:
                raise BuildError(f"`{c}` failed with exit code {rc} (logs in {out})")
    return res


# ------------------------------------------------------------------------------------------------ checks
def verilog_ports(text: str) -> dict[str, int]:
    """Port name -> width of the top module's ports (Amaranth's Verilog: `input [N:0] name;` / `input name;`)."""
    ports = {}
    for m in re.finditer(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):0\]\s*)?(\w+)\s*[;,]", text, re.M):
        ports[m.group(3)] = int(m.group(2)) + 1 if m.group(2) else 1
    return ports


def check_tree(out: str | Path, cfg: AccelConfig) -> list[str]:
    """Problems in a build tree against `cfg` (empty list: consistent)."""
    out = Path(out)
    bad = []
    root = ET.parse(out / "kernel.xml").getroot()
    kern = root.find("kernel")
    ports = {p.get("name"): p for p in kern.find("ports")}
    args = list(kern.find("args"))
    want_ports = m_axi_ports(cfg)
    got_maxi = {n: int(p.get("dataWidth")) for n, p in ports.items() if p.get("mode") == "master"}
    if got_maxi != want_ports:
        bad.append(f"kernel.xml m_axi ports {sorted(got_maxi)} != {len(want_ports)} expected")
    if int(ports["s_axi_control"].get("range"), 16) != regmap.span(cfg):
        bad.append("kernel.xml s_axi_control range differs from dfx.regmap.span")
    regs = {r.name.lower(): r for r in regmap.regmap(cfg) if r.arg}
    for a in args:
        n = a.get("name")
        if n in regs:
            r = regs.pop(n)
            if int(a.get("offset"), 16) != r.offset or int(a.get("size"), 16) != r.width // 8:
                bad.append(f"kernel.xml arg {n}: offset/size differ from dfx.regmap")
            if r.arg == "pointer" and a.get("port") != r.port:
                bad.append(f"kernel.xml arg {n} on port {a.get('port')}, regmap says {r.port}")
    if regs:
        bad.append(f"kernel.xml lacks args {sorted(regs)}")
    if [int(a.get("id")) for a in args] != list(range(len(args))):
        bad.append("kernel.xml arg ids are not 0..n-1 in order")
    for cfgname in ("connectivity.cfg", "connectivity_ring.cfg"):
        text = (out / cfgname).read_text()
        sp = dict(re.findall(rf"^sp={CU}\.(\w+):(\S+)$", text, re.M))
        if sp != bank_map(cfg):
            bad.append(f"{cfgname}: sp= mapping {sp} != {bank_map(cfg)}")
        clk = re.findall(rf"^freqHz=(\d+):{CU}\.ap_clk$", text, re.M)
        if clk != [str(int(round(cfg.clock_mhz * 1e6)))]:
            bad.append(f"{cfgname}: clock {clk} != {cfg.clock_mhz} MHz")
    tcl = (out / "package_xo.tcl").read_text()
    for p in want_ports:
        if p not in tcl:
            bad.append(f"package_xo.tcl does not associate {p}")
    v = out / "src" / f"{KERNEL}.v"
    if v.is_file():
        vp = verilog_ports(v.read_text())
        for p, bits in want_ports.items():
            got = (vp.get(f"{p}_rdata"), vp.get(f"{p}_wdata"))
            if got != (bits, bits):
                bad.append(f"src/{KERNEL}.v: {p}_rdata/wdata are {got[0]}/{got[1]} bits, kernel.xml says {bits}")
        extra = sorted({m.group(1) for m in (re.match(r"(m_axi_\w+?)_(?:ar|aw|r|w|b)\w+$", n) for n in vp) if m}
                       - set(want_ports))
        if extra:
            bad.append(f"src/{KERNEL}.v has m_axi interfaces kernel.xml lacks: {extra}")
        for s in ("ap_clk", "ap_rst_n", "s_axi_control_awaddr", "ring_tx_tdata", "ring_rx_tdata"):
            if s not in vp:
                bad.append(f"src/{KERNEL}.v has no port {s}")
        if vp.get("ring_tx_tdata", ring_bits(cfg)) != ring_bits(cfg):
            bad.append(f"src/{KERNEL}.v ring_tx_tdata is {vp['ring_tx_tdata']} bits, kernel.xml says {ring_bits(cfg)}")
    return bad


def lint(out: str | Path) -> tuple[bool, str]:
    """`verilator --lint-only` of src/dfx_core.v: (clean, output)."""
    v = Path(out) / "src" / f"{KERNEL}.v"
    exe = shutil.which("verilator", path=venv_path())
    if not exe:
        raise BuildError("verilator is not installed (scripts/bootstrap.sh links it into .venv/bin)")
    r = subprocess.run([exe, "--lint-only", "-Wall", "-Wno-fatal", "-Wno-DECLFILENAME", "-Wno-UNUSEDSIGNAL",
                        "-Wno-UNUSEDPARAM", "--top-module", KERNEL, str(v)], capture_output=True, text=True)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("%Error")]
    return r.returncode == 0 and not errors, r.stderr
