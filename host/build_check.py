"""`check_tree` (and `dfx build --check DIR`): a build tree read back and checked against the core's config and
`dfx.regmap`, one line per mismatch (the checks `dfx.host.build.build_tree` runs on what it wrote).
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from dfx import regmap
from dfx.config import AccelConfig
from dfx.errors import DfxError

from . import ring_build
from .board_files import CU, KERNEL, _ctrl_registers, _v, bank_map, board_data, kernel_frequency, m_axi_ports, ring_bits
from .ring_build import RING_DIR, RING_KERNEL


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
