"""The multi-card part of the U280 build tree (`dfx build --board u280 --devices N`, N > 1): the `dfx_ring`
kernel between the core's ring stream and the Aurora 64B/66B cores of the two QSFP28 cages
(boards/u280/RING.md; the RTL is `dfx.hw.ring_kernel`), and its checks.

What it adds to the tree of `dfx.host.build`:

    ring/src/dfx_ring.v       the ring kernel (`dfx.hw.ring_kernel.verilog`: instantiates aurora_qsfp0/1)
    ring/kernel.xml           its two stream ports and the status block (ap_ctrl_none, no arguments to set)
    ring/package_xo.tcl       Vivado: package it with the Aurora cores -> ring/dfx_ring.xo (GT and refclk interfaces)
    aurora/gen_aurora_ip.tcl  Vivado: the two Aurora cores the kernel instantiates
    connectivity_ring.cfg     v++ --link: the core, the ring kernel, the streams between them, both cages
    RING.md                   the plan and the bring-up checks

`check_ring_tree` reads them back: every `dfx_ring_1` end of connectivity_ring.cfg must be a port of the ring
kernel (its Verilog when there, else the interfaces package_xo.tcl declares), every interface connected once,
the stream widths equal to the core's ring beat.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from string import Template

from dfx.config import AccelConfig
from dfx.errors import DfxError

RING_KERNEL = "dfx_ring"
RING_CU = f"{RING_KERNEL}_1"
RING_DIR = "ring"
STREAMS = {"s_axis_tx": "read_only", "m_axis_rx": "write_only"}     # the kernel's view
# the non-stream interfaces package_xo.tcl declares, and the Verilog ports behind each
INTERFACES = {"gt_port0": ("gt_port0_rxp", "gt_port0_rxn", "gt_port0_txp", "gt_port0_txn"),
              "gt_port1": ("gt_port1_rxp", "gt_port1_rxn", "gt_port1_txp", "gt_port1_txn"),
              "gt_refclk0": ("gt_refclk0_p", "gt_refclk0_n"), "gt_refclk1": ("gt_refclk1_p", "gt_refclk1_n"),
              "init_clk": ("init_clk",)}
GT_LANES = 4


class BuildError(DfxError):
    """The board build tree cannot be generated or does not agree with the core's config (`dfx.host.build`
    re-exports it; it lives here, the lower of the two modules)."""


def _hw():
    """dfx.hw.ring_kernel (the register table, the Aurora module names, the Verilog)."""
    try:
        # lazy: Amaranth is the optional `hw` extra; only multi-card trees need it
        from dfx.hw import ring_kernel
    except ImportError as e:
        raise BuildError(f"{RING_DIR}/src/{RING_KERNEL}.v: the ring kernel (dfx.hw.ring_kernel) is not importable "
                         f"here ({e}); a multi-card tree needs the hw extra") from e
    return ring_kernel


def ring_bits(cfg: AccelConfig) -> int:
    """The ring streams' data width, the core's and the ring kernel's: one VBUF entry per beat (dfx.hw.top)."""
    return 16 * cfg.d


def kernel_xml(cfg: AccelConfig) -> str:
    hw = _hw()
    root = ET.Element("root", versionMajor="1", versionMinor="6")
    k = ET.SubElement(root, "kernel", name=RING_KERNEL, language="ip_c", vlnv=f"dfx.org:kernel:{RING_KERNEL}:1.0",
                      attributes="", preferredWorkGroupSizeMultiple="0", workGroupSize="1", interrupt="false",
                      hwControlProtocol="ap_ctrl_none")
    ports = ET.SubElement(k, "ports")
    ET.SubElement(ports, "port", name="s_axi_control", mode="slave", range=f"0x{1 << hw.AXIL_ADDR_BITS:x}",
                  dataWidth="32", portType="addressable", base="0x0")
    for name, mode in STREAMS.items():
        ET.SubElement(ports, "port", name=name, mode=mode, dataWidth=str(ring_bits(cfg)), portType="stream")
    args = ET.SubElement(k, "args")
    for i, name in enumerate(STREAMS):
        ET.SubElement(args, "arg", name=name, addressQualifier="4", id=str(i), port=name, size="0x8",
                      offset="0x0", type=f"stream<ap_axiu<{ring_bits(cfg)},0,0,0>>&", hostOffset="0x0",
                      hostSize="0x8", memSize="0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def package_tcl(cfg: AccelConfig, label: str, tcl_word, part: str, freq_hz: int) -> str:
    """ring/package_xo.tcl; `label`: the config's name for comments, `tcl_word`: `dfx.host.board_files.tcl_word`."""
    hw = _hw()
    regs = "\n".join(f"set reg [ipx::add_register {name.lower()} $blk]; set_property address_offset 0x{off:x} "
                     f"$reg; set_property size 32 $reg" for off, name, _ in hw.STATUS_REGS)
    return Template((Path(__file__).resolve().parents[1] / "boards" / "u280" / "package_ring_xo.tcl.in").read_text()
                    ).substitute(kernel=RING_KERNEL, config_name=label, config_hash=cfg.config_hash,
                                 part=tcl_word(part), cores=" ".join(hw.AURORA),
                                 busifs=" ".join(["s_axi_control", *STREAMS]), freq_hz=freq_hz, span=1 << hw.AXIL_ADDR_BITS, registers=regs)


def aurora_tcl(cfg: AccelConfig, board: dict, tcl_word, v) -> str:
    link, vitis = board["link"], board["vitis"]
    user_bits = v(vitis, "aurora_user_bits")
    return Template((Path(__file__).resolve().parents[1] / "boards" / "u280" / "gen_aurora_ip.tcl.in").read_text()
                    ).substitute(part=tcl_word(v(board, "part")), lane_rate=v(link, "lane_rate_gbps"),
                                 refclk_mhz=v(vitis, "qsfp_refclk_mhz"), init_clk_mhz=v(vitis, "init_clk_mhz"),
                                 user_bits=user_bits, user_clk_mhz=v(link, "user_clk_mhz"),
                                 freq_mhz=f"{cfg.clock_mhz:g}", core_bits=ring_bits(cfg), cores=" ".join(_hw().AURORA))


def verilog(cfg: AccelConfig) -> str:
    """The ring kernel's Verilog; a BuildError (one line) when the conversion fails."""
    hw = _hw()
    try:
        return hw.verilog(cfg)
    except Exception as e:   # noqa: BLE001 - any conversion failure is the build's failure, in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BuildError(f"{RING_DIR}/src/{RING_KERNEL}.v: Verilog generation failed ({first})") from e


def aurora_stubs(board: dict) -> dict[str, str]:
    """File name -> a port-only Verilog module, for each of the two Aurora cores: the ports of PG074 the kernel
    connects (for `dfx.host.lint`: Verilator checks the instances' names, directions and widths against them)."""
    bits = board["vitis"]["aurora_user_bits"]
    bits = bits["value"] if isinstance(bits, dict) else bits
    tpl = Template((Path(__file__).resolve().parents[1] / "boards" / "u280" / "aurora_stub.v.in").read_text())
    return {f"{m}.v": tpl.substitute(module=m, user_msb=bits - 1, lane_msb=GT_LANES - 1) for m in _hw().AURORA}


def commands(part: str) -> list[list[str]]:
    """The Vivado runs of a multi-card tree, before the core's package_xo and the link."""
    return [["vivado", "-mode", "batch", "-source", "aurora/gen_aurora_ip.tcl", "-tclargs", part],
            ["vivado", "-mode", "batch", "-source", f"{RING_DIR}/package_xo.tcl", "-tclargs", part]]


def check_ring_tree(out: Path, cfg: AccelConfig, conn: str, verilog_ports) -> list[str]:
    """Problems of the multi-card part of a tree, one line each (see the module docstring)."""
    bad = []
    v = out / RING_DIR / "src" / f"{RING_KERNEL}.v"
    vp = verilog_ports(v.read_text()) if v.is_file() else None
    pkg = out / RING_DIR / "package_xo.tcl"
    pkg_text = pkg.read_text() if pkg.is_file() else ""
    if not pkg_text:
        bad.append(f"{RING_DIR}/package_xo.tcl: missing")
    try:
        kern = ET.parse(out / RING_DIR / "kernel.xml").getroot().find("kernel")
        streams = {p.get("name"): p for p in kern.find("ports") if p.get("portType") == "stream"}
    except (OSError, ET.ParseError, AttributeError, TypeError) as e:
        return bad + [f"{RING_DIR}/kernel.xml: unreadable ({type(e).__name__}: {e})"]
    if kern.get("hwControlProtocol") != "ap_ctrl_none":
        bad.append(f"{RING_DIR}/kernel.xml: hwControlProtocol {kern.get('hwControlProtocol')}, not ap_ctrl_none")
    for name in STREAMS:
        p = streams.get(name)
        if p is None:
            bad.append(f"{RING_DIR}/kernel.xml: no stream port {name}")
        elif p.get("dataWidth") != str(ring_bits(cfg)):
            bad.append(f"{RING_DIR}/kernel.xml: {name} is {p.get('dataWidth')} bits, the core's ring is "
                       f"{ring_bits(cfg)}")
        if vp is not None and vp.get(f"{name}_tdata") != ring_bits(cfg):
            bad.append(f"{RING_DIR}/src/{RING_KERNEL}.v: {name}_tdata is {vp.get(f'{name}_tdata')} bits, "
                       f"the core's ring is {ring_bits(cfg)}")
    # package_xo.tcl declares gt_port<cage> and gt_refclk<cage> in a loop over both cages; init_clk is a plain port
    declared = {"init_clk"} | {n for n in INTERFACES for kind in ("gt_port", "gt_refclk")
                               if n.startswith(kind) and f"ipx::add_bus_interface {kind}$cage" in pkg_text}
    for n, pins in INTERFACES.items():
        if vp is not None:
            missing = [p for p in pins if p not in vp]
            if missing:
                bad.append(f"{RING_DIR}/src/{RING_KERNEL}.v: interface {n} lacks ports {missing}")
            elif n.startswith("gt_port") and vp[pins[0]] != GT_LANES:
                bad.append(f"{RING_DIR}/src/{RING_KERNEL}.v: {pins[0]} is {vp[pins[0]]} lanes, not {GT_LANES}")
    # the link config's ends on the ring kernel
    used: dict[str, int] = {}
    for i, ln in enumerate(conn.splitlines(), 1):
        key, _, val = ln.strip().partition("=")
        if key == "stream_connect":
            for end in val.split(":"):
                cu, _, port = end.partition(".")
                if cu == RING_CU:
                    used[port] = used.get(port, 0) + 1
                    if port not in streams:
                        bad.append(f"connectivity_ring.cfg:{i}: {ln.strip()}: {RING_KERNEL} has no stream port {port} "
                                   f"({RING_DIR}/kernel.xml: {', '.join(streams)})")
        elif key == "connect":
            for end in val.split(":"):
                cu, _, port = end.partition("/")
                if cu == RING_CU:
                    used[port] = used.get(port, 0) + 1
                    if port not in INTERFACES or port not in declared:
                        bad.append(f"connectivity_ring.cfg:{i}: {ln.strip()}: {RING_KERNEL} has no interface {port} "
                                   f"({', '.join(INTERFACES)})")
                    elif vp is not None and any(p not in vp for p in INTERFACES[port]):
                        bad.append(f"connectivity_ring.cfg:{i}: {ln.strip()}: {RING_DIR}/src/{RING_KERNEL}.v lacks "
                                   f"the ports of {port}")
    for n in [*STREAMS, *INTERFACES]:
        if used.get(n, 0) != 1:
            bad.append(f"connectivity_ring.cfg: {RING_CU}'s {n} is connected {used.get(n, 0)} times, not once")
    return bad
