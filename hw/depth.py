"""Logic depth and an Fmax estimate: the longest register-to-register path of a unit as Yosys maps it for
UltraScale+ (`synth_xilinx -family xcup -noiopad -flatten`), in LUT levels, carry segments, MUXF levels and
routed nets, and the clock that path allows under a stated per-element delay model.

    python -m dfx.hw.depth --units 'add32;add32:stages=8;mul16'         # one row per unit spec
    python -m dfx.hw.depth --config tiny --units 'mpu:acc_stages=2'     # a whole (small) unit

The walk (`longest_path`) runs over the mapped netlist (`write_json`): every flip-flop output, block-RAM
output, registered DSP48E2 output and module input starts a path; every flip-flop data/enable/reset input,
block-RAM input, registered DSP48E2 input and module output ends one; LUTs (and INV, and the combinational
read of LUTRAM/SRL), CARRY4/CARRY8, MUXF7/8/9 and unregistered DSP48E2s are the combinational cells between.
Ports count as registers: in the core every unit's streams come from and go to registered FIFOs or pipeline
registers. The path kept is the one with the largest estimated delay (`Delays`), and its cells are counted.

The delay model is a first-order one, stated in boards/u280/board.json ("timing", with sources): DS923 (the
Virtex UltraScale+ data sheet, which covers the U280's XCU280 die) publishes block figures (DSP48E2 Fmax
with and without pipeline registers, clock-network Fmax) but no CLB LUT or routing delays, so the per-LUT and
per-net figures are assumptions of typical routed -2 values; the depth target is therefore also stated in LUT
levels (`Delays.max_levels`), which does not depend on them. Yosys is not Vivado: no retiming, no physical
optimisation, CARRY4 where Vivado would use CARRY8 (one CARRY4 segment = 4 bits of carry here).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from amaranth.back import verilog

from dfx.config import load_config

from .dequant import Dequantizer
from .fp import Fp16MulUnit, Fp32AddUnit, Fp32MulUnit, Fp32ToFp16Unit
from .mpu import MPU
from .sfu import Exp16Unit, Gelu16Unit, RecipUnit, RsqrtUnit
from .vpu import VPU

SEQ = ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")
CLOCK_PORTS = {"C", "CLK", "WCLK", "CLKARDCLK", "CLKBWRCLK", "CLKA", "CLKB"}
DSP_REGS = ("AREG", "BREG", "CREG", "DREG", "ADREG", "MREG", "PREG", "ACASCREG", "BCASCREG")
# A DSP48E2 data input and the registers that capture it (UG579); the other inputs (clock enables, resets,
# cascades) are a register's controls.
DSP_PIN_REGS = {"A": ("AREG", "MREG"), "B": ("BREG", "MREG"), "D": ("DREG", "ADREG", "MREG"), "C": ("CREG",),
                "ALUMODE": ("ALUMODEREG",), "OPMODE": ("OPMODEREG",), "INMODE": ("INMODEREG",),
                "CARRYIN": ("CARRYINREG",), "CARRYINSEL": ("CARRYINSELREG",)}


@dataclass(frozen=True)
class Delays:
    """Per-element delays (ns) for UltraScale+ -2; every value comes from boards/<board>/board.json."""
    lut: float           # one LUT (cell)
    net: float           # one routed net (general interconnect between two cells)
    carry4: float        # one 4-bit carry segment (half a CARRY8)
    muxf: float          # one MUXF7/8/9 (dedicated, no net before it)
    dsp_comb: float      # through a DSP48E2 with no pipeline registers
    ram_out: float       # clock to output of a block RAM (no output register)
    overhead: float      # clock-to-Q + setup + clock uncertainty of one reg-to-reg path
    target_mhz: float    # the clock the performance goals use

    @property
    def level(self) -> float:
        return self.lut + self.net

    @property
    def max_levels(self) -> int:
        """LUT levels (each with its net) that fit the target period."""
        return int((1000.0 / self.target_mhz - self.overhead - self.net) // self.level)

    @classmethod
    def from_board(cls, board: str = "u280") -> "Delays":
        t = json.loads((files("dfx.boards") / board / "board.json").read_text())["timing"]
        return cls(**{k: float(t[k]["value"]) for k in
                      ("lut", "net", "carry4", "muxf", "dsp_comb", "ram_out", "overhead", "target_mhz")})


@dataclass
class CritPath:
    """The critical path of one netlist."""
    luts: int = 0
    carry: int = 0           # carry segments (CARRY4 = 4 bits; a CARRY8 counts 2)
    muxf: int = 0
    dsp: int = 0             # unregistered DSP48E2s passed through
    nets: int = 0            # routed nets
    delay_ns: float = 0.0    # estimated, including `Delays.overhead`
    start: str = ""
    end: str = ""
    cells: list[str] = field(default_factory=list)

    @property
    def fmax_mhz(self) -> float:
        return 1000.0 / self.delay_ns if self.delay_ns else float("inf")


def _bits(conn) -> list:
    return [b for b in conn if isinstance(b, int)]


def _param_int(v) -> int:
    """A Yosys JSON parameter as an int (binary strings of 32 digits, or plain ints)."""
    if isinstance(v, int):
        return v
    v = str(v).strip()
    return int(v, 2) if v and set(v) <= {"0", "1"} else int(v or 0)


def _kind(ctype: str) -> str:
    t = ctype.lstrip("\\$")
    if t in SEQ or t.startswith(("RAMB", "URAM", "FIFO")):
        return "seq"
    if t.startswith("LUT") or t == "INV":
        return "lut"
    if t.startswith("CARRY"):
        return "carry"
    if t.startswith("MUXF"):
        return "muxf"
    if t == "DSP48E2":
        return "dsp"
    if t.startswith(("SRL", "RAM")):           # LUTRAM / shift register: combinational read, clocked write
        return "lutram"
    if t.startswith(("BUFG", "IBUF", "OBUF")):
        return "buf"
    return "seq"                                # anything else: a boundary (conservative for depth)


def longest_paths(netlist: dict, top: str, delays: Delays, group=None) -> dict[str, CritPath]:
    """The path with the largest estimated delay through `netlist` (Yosys `write_json`) module `top` into
    each group of endpoints (`group(end register name)`; None: one group "")."""
    mod = netlist["modules"][top]
    drivers: dict[int, tuple[str, str]] = {}        # net bit -> (cell, output port)
    for name, c in mod["cells"].items():
        for port, d in c.get("port_directions", {}).items():
            if d == "output":
                for b in _bits(c["connections"].get(port, [])):
                    drivers[b] = (name, port)
    cells = mod["cells"]
    arrival: dict[int, tuple[float, tuple | None]] = {}      # net -> (delay, (cell, input net) back-pointer)

    def registered_dsp(c) -> bool:
        return any(_param_int(c["parameters"].get(r, 0)) for r in DSP_REGS)

    def preg(c) -> bool:
        return bool(_param_int(c["parameters"].get("PREG", 0)))

    def open_pins(c) -> list[str]:
        """The DSP's data inputs that no register of the slice captures (combinational to P)."""
        return [p for p, regs in DSP_PIN_REGS.items() if p in c.get("port_directions", {})
                and not any(_param_int(c["parameters"].get(r, 0)) for r in regs)]

    def intrinsic(c) -> float:
        k = _kind(c["type"])
        if k in ("lut", "lutram"):
            return delays.lut
        if k == "carry":
            return (2 if "8" in c["type"] else 1) * delays.carry4
        if k == "muxf":
            return delays.muxf
        # dsp_comb is register to register through the DSP (its A/B and P registers packed, as Vivado packs
        # a fabric register next to it): the nets and the overhead the walk adds around it come off
        return max(delays.dsp_comb - 2 * delays.net - delays.overhead, 0.0)

    def is_comb(c) -> bool:
        k = _kind(c["type"])
        return k in ("lut", "lutram", "carry", "muxf") or (k == "dsp" and not preg(c))

    def link(b: int, consumer) -> float:
        """The routed-net delay of net `b` into `consumer` (0 on a dedicated link)."""
        return 0.0 if _chained(cells, drivers, b, consumer) else delays.net

    def arrive(bit: int) -> float:
        """Arrival time at the driver's output of net `bit` (iterative DFS, memoised)."""
        stack = [bit]
        while stack:
            b = stack[-1]
            if b in arrival:
                stack.pop()
                continue
            drv = drivers.get(b)
            if drv is None or not is_comb(cells[drv[0]]):
                ram = drv is not None and cells[drv[0]]["type"].lstrip("\\$").startswith(("RAMB", "URAM"))
                arrival[b] = (delays.ram_out if ram else 0.0, None)
                stack.pop()
                continue
            c = cells[drv[0]]
            if _kind(c["type"]) == "lutram":      # only the read address is combinational
                ins = [x for p in c["port_directions"] if p.startswith(("A", "ADDR"))
                       for x in _bits(c["connections"].get(p, []))]
            elif _kind(c["type"]) == "dsp":        # P without PREG: from the open inputs (and internal registers)
                ins = [x for p in open_pins(c) for x in _bits(c["connections"].get(p, []))]
            else:
                ins = [x for p, dirn in c["port_directions"].items() if dirn == "input" and p not in CLOCK_PORTS
                       for x in _bits(c["connections"].get(p, []))]
            todo = [x for x in ins if x not in arrival]
            if todo:
                stack.extend(todo)
                continue
            inner = delays.net if _kind(c["type"]) == "dsp" and registered_dsp(c) else 0.0   # from A/B/M regs
            best = max([(arrival[x][0] + link(x, c), x) for x in ins] + [(inner, None)], key=lambda t: t[0])
            arrival[b] = (best[0] + intrinsic(c), (drv[0], best[1]))
            stack.pop()
        return arrival[bit][0]

    # (net, where, delay after the net): a DSP48E2 with PREG ends the paths into its open inputs at P, through
    # the slice (dsp_comb is register to register: less the overhead the end adds)
    ends = []
    through = max(delays.dsp_comb - delays.overhead, 0.0)
    for name, c in cells.items():
        k = _kind(c["type"])
        if k == "seq" or k == "lutram" or (k == "dsp" and registered_dsp(c)):
            opened = set(open_pins(c)) if k == "dsp" else set()
            for p, dirn in c.get("port_directions", {}).items():
                if dirn == "input" and p not in CLOCK_PORTS and (p not in opened or preg(c)):
                    extra = through if p in opened else 0.0
                    ends += [(b, f"{name}.{p}", extra) for b in _bits(c["connections"].get(p, []))]
    for pname, port in mod.get("ports", {}).items():
        if port["direction"] == "output":
            ends += [(b, pname, 0.0) for b in _bits(port["bits"])]
    if not ends:
        return {}
    names = _net_names(mod)

    def end_name(where: str) -> str:
        cell = where.rsplit(".", 1)[0]
        if cell in cells:                          # name the register by the net its output drives
            q = [x for p, dirn in cells[cell]["port_directions"].items() if dirn == "output"
                 for x in _bits(cells[cell]["connections"].get(p, []))]
            return names.get(q[0], where) if q else where
        return where

    best: dict[str, tuple[float, int, str, str]] = {}
    for b, where, extra in ends:
        t = arrive(b) + delays.net + extra
        nm = end_name(where)
        g = group(nm) if group else ""
        if g not in best or t > best[g][0]:
            best[g] = (t, b, nm, where.rsplit(".", 1)[0] if extra else "")
    out = {}
    for g, (t, b, nm, dsp) in best.items():
        out[g] = _backtrack(cells, arrival, names, mod, b, t + delays.overhead, nm)
        if dsp:                                    # the path ends at the P register of this slice
            out[g].dsp += 1
            out[g].cells.append(f"DSP48E2:{dsp}")
    return out


def longest_path(netlist: dict, top: str, delays: Delays) -> CritPath:
    """The path with the largest estimated delay through `netlist` (Yosys `write_json`) module `top`."""
    return longest_paths(netlist, top, delays).get("", CritPath())


def register_group(name: str) -> str:
    """A register's group for `longest_paths`: its signal name without the bit index and Pipe's `_<n>`
    suffix (`add_sum_46[1]` -> `add_sum`, `c0_12[3]` -> `c0`)."""
    return re.sub(r"(_\d+)?(\[\d+\])?$", "", name)


def _backtrack(cells, arrival, names, mod, b, delay, end) -> CritPath:
    path = CritPath(delay_ns=round(delay, 3), end=end)
    while b is not None and arrival[b][1] is not None:
        cname, b_in = arrival[b][1]
        c = cells[cname]
        k = _kind(c["type"])
        path.cells.append(f"{c['type'].lstrip(chr(92) + '$')}:{cname}")
        if k in ("lut", "lutram"):
            path.luts += 1
        elif k == "carry":
            path.carry += 2 if "8" in c["type"] else 1
        elif k == "muxf":
            path.muxf += 1
        else:
            path.dsp += 1
        b = b_in
    path.cells.reverse()
    if b is None and path.cells and path.cells[0].startswith("DSP48E2:"):   # from the slice's own registers
        path.start = path.cells[0].split(":", 1)[1]
    else:
        path.start = names.get(b, _port_of(mod, b)) if b is not None else "constant"
    path.nets = _count_nets(path, cells)
    return path


def _chained(cells, drivers, bit, consumer) -> bool:
    """Whether net `bit` into `consumer` is a dedicated connection (carry CO -> CI, LUT -> MUXF, MUXF ->
    MUXF), which has no routed net."""
    drv = drivers.get(bit)
    if drv is None:
        return False
    src = _kind(cells[drv[0]]["type"])
    dst = _kind(consumer["type"])
    return (src == "carry" and dst == "carry" and drv[1].startswith("CO")) or \
        (dst == "muxf" and src in ("lut", "muxf"))


def _count_nets(path: CritPath, cells) -> int:
    """Routed nets on the path: one into every cell except the dedicated links, plus the one to the end."""
    kinds = [_kind(cells[c.split(":", 1)[1]]["type"]) for c in path.cells]
    n = 1
    for prev, cur in zip([None] + kinds, kinds):
        dedicated = (prev == "carry" and cur == "carry") or (cur == "muxf" and prev in ("lut", "muxf"))
        n += 0 if dedicated else 1
    return n


def _net_names(mod) -> dict[int, str]:
    """net bit -> a readable name (`wire[i]`), public names preferred over Yosys's generated ones."""
    out: dict[int, str] = {}
    for nm, n in sorted(mod.get("netnames", {}).items(), key=lambda kv: (kv[1].get("hide_name", 0), len(kv[0]))):
        for i, b in enumerate(n["bits"]):
            if isinstance(b, int) and b not in out:
                out[b] = f"{nm}[{i}]"
    return out


def _port_of(mod, bit) -> str:
    for pname, port in mod.get("ports", {}).items():
        if bit in port["bits"]:
            return pname
    return "constant"


# The wire delay (ps, `&if -W`) ABC9 maps with in the depth measurements (`synth_json`; hw/blackbox.py `NOMFS`).
# synth_xilinx's 300 against the LUT pin delays of Yosys's cells_sim.v (127 ps on I5 to 642 ps on I0) makes a
# chain of small LUTs on fast pins cheaper to ABC9 than one LUT6 (a 6-input AND came out as LUT2 -> LUT3 -> LUT3),
# and the depth walk, whose model charges 0.10 ns per LUT and 0.35 ns per routed net, counts every level. 1500 ps
# gives ABC9 that model's proportion of net to LUT (3.5 to 1 against cells_sim's mean pin delay, 420 ps), so it
# maps for fewer levels, as a timing-driven Vivado run with routed nets would (docs/rtl.md, "Logic depth and Fmax").
ABC9_WIRE_PS = 1500


# ============================================================================================ running Yosys
CHILD = """
import sys
from pyosys import libyosys as ys
src, top, out, W = sys.argv[1:5]
split = sys.argv[5:6] == ["split"]
d = ys.Design()
ys.run_pass(f"read_verilog {src}", d)
ys.run_pass(f"scratchpad -set synth_xilinx.abc9.W {W}", d)     # (hw.blackbox.ABC9_WIRE_PS)
if split:                  # (see SPLIT_ASSERT) the same script, the nets split to bits before the LUT mapping
    ys.run_pass(f"synth_xilinx -family xcup -noiopad -flatten -top {top} -run :map_luts", d)
    ys.run_pass("splitnets", d)
    ys.run_pass(f"synth_xilinx -family xcup -noiopad -flatten -top {top} -run map_luts:", d)
else:
    ys.run_pass(f"synth_xilinx -family xcup -noiopad -flatten -top {top}", d)
ys.run_pass(f"write_json {out}", d)
ys.run_pass(f"tee -q -o {top}.stat.json stat -json", d)
"""


# Yosys 0.70's ABC9 reintegration can fail on a wire name it makes twice (YosysHQ/yosys#4349: "Assert
# `count_id(wire->name) == 0' failed", e.g. on `hw.dequant.TableDequantizer`); the fix proposed there is
# `splitnets` before the mapping. `synth_json` then runs the script again with the nets split to bits before
# `map_luts` (the same passes otherwise), for that design only.
SPLIT_ASSERT = "Assert `count_id(wire->name) == 0' failed"


class DepthError(RuntimeError):
    """Synthesis for the depth analysis could not run or finish; the message is one line."""


def synth_json(component, name: str, build_dir: Path, timeout: float | None = None,
               mem_bytes: int = 8_000_000_000) -> tuple[dict, float]:
    """Write the component's Verilog, map it with native Yosys (pyosys, in a child process capped at
    `mem_bytes` of address space), return (the `write_json` netlist, seconds). Reuses a netlist built from
    the same Verilog."""
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    # (the wire delay ABC9 maps with belongs to the build: a changed one rebuilds)
    text = verilog.convert(component, name=name, emit_src=False) + f"// abc9 -W {ABC9_WIRE_PS}\n"
    src, out = build_dir / f"{name}.v", build_dir / f"{name}.json"
    if src.exists() and src.read_text() == text and out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return json.loads(out.read_text()), 0.0
    src.write_text(text)
    out.unlink(missing_ok=True)

    def cap():                                   # never above a limit this process inherited
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        lim = mem_bytes if hard == resource.RLIM_INFINITY else min(mem_bytes, hard)
        resource.setrlimit(resource.RLIMIT_AS, (lim, hard))
    t0 = time.time()
    for extra in ([], ["split"]):
        try:
            r = subprocess.run([sys.executable, "-c", CHILD, src.name, name, out.name, str(ABC9_WIRE_PS)] + extra,
                               cwd=build_dir,
                               capture_output=True, text=True, timeout=timeout, preexec_fn=cap)
        except subprocess.TimeoutExpired:
            raise DepthError(f"Yosys on {name} ran past {timeout:.0f} s") from None
        if not (r.returncode and SPLIT_ASSERT in r.stdout + r.stderr):
            break
        print(f"synth_json: {name}: Yosys hit its ABC9 wire-name assert (yosys#4349); again with splitnets "
              "before map_luts", file=sys.stderr, flush=True)
    if r.returncode or not out.exists():
        err = [ln for ln in (r.stdout + r.stderr).splitlines() if "ERROR" in ln or "Error" in ln]
        raise DepthError(f"Yosys failed on {name} (exit {r.returncode}): {(err or ['no output'])[-1][:200]}")
    (build_dir / f"{name}.log").write_text(r.stdout)
    return json.loads(out.read_text()), time.time() - t0


def analyse(component, name: str, build_dir: Path, delays: Delays | None = None,
            timeout: float | None = None) -> tuple[CritPath, float]:
    """(critical path, Yosys seconds) of one component."""
    delays = delays or Delays.from_board()
    net, secs = synth_json(component, name, build_dir, timeout)
    return longest_path(net, name, delays), secs


# ============================================================================================ the table
DEPTH_COLUMNS = ("unit", "parameters", "LUT levels", "carry (CARRY4)", "MUXF", "DSP (comb)", "nets",
                 "est. delay (ns)", "est. Fmax (MHz)", "within target", "path")


def depth_row(unit: str, params: str, p: CritPath, delays: Delays) -> str:
    ok = "yes" if p.delay_ns <= 1000.0 / delays.target_mhz and p.luts <= delays.max_levels else "NO"
    where = f"{_short(p.start)} -> {_short(p.end)}"
    return "| " + " | ".join([unit, params, str(p.luts), str(p.carry), str(p.muxf), str(p.dsp), str(p.nets),
                              f"{p.delay_ns:.2f}", f"{p.fmax_mhz:.0f}", ok, where]) + " |"


def depth_table(rows: list[str]) -> str:
    return "\n".join(["| " + " | ".join(DEPTH_COLUMNS) + " |", "|" + "---|" * len(DEPTH_COLUMNS)] + rows)


def parse_depth_table(text: str) -> list[dict[str, str]]:
    """Rows of a `depth_table`; ValueError names a malformed line."""
    lines = [ln for ln in text.strip().splitlines() if ln.startswith("|")]
    if not lines or [c.strip() for c in lines[0].strip("|").split("|")] != list(DEPTH_COLUMNS):
        raise ValueError(f"the depth table's header must be {DEPTH_COLUMNS}, not {lines[:1]}")
    out = []
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        if len(cells) != len(DEPTH_COLUMNS):
            raise ValueError(f"depth row must have {len(DEPTH_COLUMNS)} cells: {ln!r}")
        row = dict(zip(DEPTH_COLUMNS, cells))
        int(row["LUT levels"]), float(row["est. Fmax (MHz)"])
        out.append(row)
    return out


def _short(s: str) -> str:
    s = s.split(".")[0] if s.count(".") else s
    return s[:40]


def unit_factories(cfg, specs: list[str]) -> dict:
    """`name[:k=v,...]` specs -> {spec: (parameter text, factory)}: the leaf units (stream-wrapped
    operators: add32, add32dsp (on DSP48E2), mul16, mul32, round16, gelu16, exp16, recip, rsqrt, dq_int4) and the MPU / VPU at `cfg`
    (mpu takes l=, d= to cut the config; the other keys go to the constructor)."""
    leaf = {"add32": Fp32AddUnit, "add32dsp": add32dsp, "mul16": Fp16MulUnit, "mul32": Fp32MulUnit,
            "round16": Fp32ToFp16Unit, "gelu16": Gelu16Unit, "exp16": Exp16Unit, "recip": RecipUnit,
            "rsqrt": RsqrtUnit, "dq_int4": dq_int4}
    out = {}
    for spec in specs:
        name, _, rest = spec.partition(":")
        kw = {k: int(v) for k, v in (kv.split("=") for kv in rest.split(",") if kv)}
        if name in leaf:
            out[spec] = (rest.replace(",", ", "), lambda c=leaf[name], kw=kw: c(**kw))
        elif name in ("mpu", "vpu"):
            cut = {k: kw.pop(k) for k in ("l", "d", "vpu_width") if k in kw}
            c2 = dataclasses.replace(cfg, **cut) if cut else cfg
            unit = MPU if name == "mpu" else VPU
            if "gelu" in kw:
                kw["gelu"] = bool(kw["gelu"])
            if "dsp_add" in kw:                      # 1: the DSP48E2 primitives, 0: LUT adders (default: model)
                kw["dsp_add"] = "primitive" if kw["dsp_add"] else None
            params = ", ".join([f"{cfg.name}: d={c2.d}, l={c2.l}"] + [f"{k}={v}" for k, v in kw.items()])
            out[spec] = (params, lambda u=unit, c2=c2, kw=kw: u(c2, **kw))
        else:
            raise DepthError(f"unknown unit {name!r}; accepted: {', '.join([*leaf, 'mpu', 'vpu'])}")
    return out


def dq_int4(**kw) -> Dequantizer:
    """One INT4 dequantiser (`hw.dequant`, the best modelled configuration's weight format int4-oc-g128; the
    core puts d*l of them in front of the MPU)."""
    return Dequantizer("int4-oc-g128", **kw)


def add32dsp(**kw) -> Fp32AddUnit:
    """The binary32 adder with its alignment and add on two DSP48E2 primitives (`fp.fp32_add`'s dsp)."""
    return Fp32AddUnit(dsp="primitive", **kw)


def module_name(spec: str) -> str:
    """A Verilog module (and file) name for a unit spec (`add32:stages=8` -> `d_add32_stages_8`)."""
    return "d_" + "".join(ch if ch.isalnum() else "_" for ch in spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dfx.hw.depth", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--units", default="add32;mul16;mul32;round16",
                    help="';'-separated unit specs NAME[:k=v,...], e.g. 'add32:stages=8;mpu:acc_stages=2'")
    ap.add_argument("--build", default="build/depth")
    ap.add_argument("--timeout", type=float, default=None)
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    delays = Delays.from_board()
    rows = []
    try:
        for name, (params, make) in unit_factories(cfg, args.units.split(";")).items():
            print(f"depth: {name} ...", file=sys.stderr, flush=True)
            p, secs = analyse(make(), module_name(name), Path(args.build), delays, args.timeout)
            print(f"  {p.luts} LUT, {p.carry} carry, {p.delay_ns:.2f} ns ({secs:.0f} s)", file=sys.stderr)
            rows.append(depth_row(name, params or "-", p, delays))
    except DepthError as e:
        raise SystemExit(f"dfx.hw.depth: {e}") from None
    print(depth_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
