"""A unit as a black box, for measuring what surrounds it: `Blackbox(unit, name)` has the unit's signature and
attributes (its latency, parameters: read through to the unit) but elaborates to one `Instance` of a module
`name` with the unit's ports, whose body is not given (`stub_verilog`: a `(* blackbox *)` declaration that
`read_verilog -lib` takes). Yosys then keeps every cell that drives the box's inputs or reads its outputs
(nothing is folded to a constant, as it would be behind an empty module) and maps nothing of the unit itself,
so a synthesis of the design around it counts the rest exactly; the unit is measured on its own.

`swap_units(module, names)` replaces, while the `with` block runs, the classes `names` of `module` (the
constructors the design calls, e.g. `dfx.hw.core_mpu.MPU`) by ones that build the unit and wrap it, so a
design that makes its units inside `elaborate` (the core makes its engines there) gets boxes without a change.
`synth_boxed` maps such a design with Yosys (`synth_xilinx -family xcup -noiopad -flatten`, the native Yosys
of `pyosys`, as `dfx.hw.depth` runs it) and returns its cell counts.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

import contextlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from amaranth import Instance, Module
from amaranth.back import rtlil
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from .depth import ABC9_WIRE_PS, SPLIT_ASSERT, DepthError
from .synth import Resources, count_cells


def _port_name(path) -> str:
    return "__".join(str(p) for p in path)


class Blackbox(wiring.Component):
    """`unit`'s ports around an instance of the module `name` (no body)."""

    def __init__(self, unit: wiring.Component, name: str):
        self._unit, self._name = unit, name
        unit._MustUse__silence = True              # built for its signature and attributes only
        super().__init__(unit.signature)

    def __getattr__(self, attr):                   # the unit's attributes (ports are this component's own)
        if attr.startswith("_") or attr in self._unit.signature.members:
            raise AttributeError(attr)
        return getattr(self._unit, attr)

    def ports(self) -> list[tuple[str, str, int]]:
        """(direction 'input' | 'output', port name, width) of every port, in signature order."""
        return [("input" if member.flow == In else "output", _port_name(path), len(value.as_value()
                 if hasattr(value, "as_value") else value)) for path, member, value in self.signature.flatten(self)]

    def elaborate(self, platform):
        m = Module()
        conns = {}
        for path, member, value in self.signature.flatten(self):
            conns[("i_" if member.flow == In else "o_") + _port_name(path)] = value
        m.submodules.box = Instance(self._name, **conns)
        return m


def stub_verilog(boxes) -> str:
    """`(* blackbox *)` Verilog declarations of the boxes' modules (one per module name)."""
    out, seen = [], set()
    for b in boxes:
        if b._name in seen:
            continue
        seen.add(b._name)
        ports = ",\n".join(f"  {d} [{w - 1}:0] {n}" for d, n, w in b.ports())
        out.append(f"(* blackbox *)\nmodule {b._name} (\n{ports}\n);\nendmodule\n")
    return "\n".join(out)


@contextlib.contextmanager
def swap_units(module, names: tuple[str, ...]):
    """While the block runs, `module.<name>(...)` builds the unit and returns it boxed as `box_<name>_<k>`
    (one module name per distinct port list); yields the list of boxes made (for `stub_verilog`)."""
    made, saved, kinds = [], {n: getattr(module, n) for n in names}, {}

    def factory(name, cls):
        def make(*args, **kwargs):
            box = Blackbox(cls(*args, **kwargs), "")
            key = (name, tuple(box.ports()))          # units with the same ports share one module name
            box._name = kinds.setdefault(key, f"box_{name.lower()}_{len(kinds)}")
            made.append(box)
            return box
        return make
    try:
        for n, cls in saved.items():
            setattr(module, n, factory(n, cls))
        yield made
    finally:
        for n, cls in saved.items():
            setattr(module, n, cls)


CHILD = """
import sys
from pyosys import libyosys as ys
stub, src, top, out = sys.argv[1:5]
split, nomfs, netlist = "split" in sys.argv[5:], "nomfs" in sys.argv[5:], "json" in sys.argv[5:]
synth = f"synth_xilinx -family xcup -noiopad -flatten -top {top}"
d = ys.Design()
ys.run_pass(f"read_verilog -lib {stub}", d)
ys.run_pass(f"read_rtlil {src}", d)
if split or nomfs:
    ys.run_pass(f"{synth} -run :map_luts", d)
if split:                  # (see depth.SPLIT_ASSERT) the nets split to bits before the LUT mapping
    ys.run_pass("splitnets", d)
if nomfs:                  # map_luts as synth_xilinx runs it for xcup, ABC9's default script without &mfs, and
    #                        without the &verify ABC9 appends (its own equivalence check: tens of minutes here)
    ys.run_pass("scratchpad -set abc9.verify 0", d)
    for cmd in ("opt_expr -mux_undef -noclkinv", "abc9 -luts 2:2,3,6:5,10,20 -script " + NOMFS, "clean",
                "xilinx_srl -fixed -minlen 3", "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v "
                "-D LUT_WIDTH=6", "xilinx_dffopt", "opt_lut_ins -tech xilinx"):
        ys.run_pass(cmd, d)
    ys.run_pass(f"{synth} -run finalize:", d)
elif split:
    ys.run_pass(f"{synth} -run map_luts:", d)
else:
    ys.run_pass(synth, d)
if netlist:                # the mapped netlist, for the depth walk (`dfx.hw.depth.longest_paths`)
    ys.run_pass(f"write_json {out[:-len('.stat.json')]}.json", d)
ys.run_pass(f"tee -q -o {out} stat -json", d)
"""
# ABC9's default script (`help abc9`) without its last pass, &mfs (don't-care based resynthesis: area only), with
# the depth walk's wire delay (`dfx.hw.depth.ABC9_WIRE_PS`), and with `abc9.verify` off (the combinational
# equivalence check ABC9 appends; on the dfx preset's rest of the core the mapping took 2 minutes and &verify was
# still running 20 minutes later): a LUT count a little above the default's
NOMFS = f"+&scorr;&sweep;&dc2;&dch,-f,-r;&ps;&if,-W,{ABC9_WIRE_PS},-v"


def synth_boxed(make, name: str, boxed: dict, build: Path, mem_bytes: int = 8_000_000_000,
                mfs: bool = True, netlist: bool = False) -> Resources:
    """Build `make()` with the classes `boxed` ({module: (class names)}) boxed (`swap_units`), write its RTLIL
    and the boxes' stubs into `build`, map it with Yosys in a child process capped at `mem_bytes` of address
    space, and return the counts (the boxes count nothing). `mfs` False: ABC9 without its &mfs pass (`NOMFS`;
    counts kept apart, `name` + "_nomfs"). `netlist`: also write the mapped netlist (`write_json`) to
    `build`/`name`.json, for the depth walk. A build folder holding the same RTLIL and its counts (and the
    netlist when asked) is reused.
    Raises DepthError (one line) when Yosys fails."""
    name = name if mfs else f"{name}_nomfs"
    build = Path(build)
    build.mkdir(parents=True, exist_ok=True)
    print(f"synth_boxed: {name}: Amaranth -> RTLIL ...", file=sys.stderr, flush=True)
    with contextlib.ExitStack() as stack:
        made = [stack.enter_context(swap_units(mod, names)) for mod, names in boxed.items()]
        text = rtlil.convert(make(), name=name, emit_src=False)
    if not mfs:                 # (the mapping script belongs to the build: a changed one rebuilds)
        text += f"# abc9 script {NOMFS}\n"
    src, stub, stat = build / f"{name}.il", build / f"{name}.stub.v", build / f"{name}.stat.json"
    have = build / f"{name}.json" if netlist else stat
    if not (src.exists() and src.read_text() == text and stat.exists() and have.exists() and
            min(stat.stat().st_mtime, have.stat().st_mtime) >= src.stat().st_mtime):
        src.write_text(text)
        stub.write_text(stub_verilog([b for boxes in made for b in boxes]))
        stat.unlink(missing_ok=True)
        print(f"synth_boxed: {name}: Yosys synth_xilinx ...", file=sys.stderr, flush=True)
        t0 = time.time()
        for extra in ([], ["split"]):
            extra += ([] if mfs else ["nomfs"]) + (["json"] if netlist else [])
            r = subprocess.run([sys.executable, "-c", f"NOMFS = {NOMFS!r}\n" + CHILD, stub.name, src.name, name,
                                stat.name] + extra,
                               cwd=build, capture_output=True, text=True,
                               preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes)))
            if not (r.returncode and SPLIT_ASSERT in r.stdout + r.stderr):
                break
            print(f"synth_boxed: {name}: Yosys hit its ABC9 wire-name assert (yosys#4349); again with splitnets "
                  "before map_luts", file=sys.stderr, flush=True)
        if r.returncode or not stat.exists():
            lines = (r.stdout + r.stderr).splitlines()
            err = [ln for ln in lines if "ERROR" in ln or "Error" in ln] or lines[-1:] or ["no output"]
            raise DepthError(f"Yosys failed on {name} (exit {r.returncode}): {err[-1][:200]}")
        print(f"  {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    data = json.loads(stat.read_text())
    return count_cells((data.get("design") or next(iter(data["modules"].values()))).get("num_cells_by_type", {}))
