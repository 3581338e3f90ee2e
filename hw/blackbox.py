"""A unit as a black box, for measuring what surrounds it: `Blackbox(unit, name)` has the unit's signature and
attributes (its latency, parameters: read through to the unit) but elaborates to one `Instance` of a module
`name` with the unit's ports, whose body is not given (`stub_verilog`: a `(* blackbox *)` declaration that
`read_verilog -lib` takes). Yosys then keeps every cell that drives the box's inputs or reads its outputs
(nothing is folded to a constant, as it would be behind an empty module) and maps nothing of the unit itself,
so a synthesis of the design around it counts the rest exactly; the unit is measured on its own.

`swap_units(module, names, build)` replaces, while the `with` block runs, the classes `names` of `module` (the
constructors the design calls, e.g. `dfx.hw.core_mpu.MPU`) by ones that build the unit and wrap it, so a
design that makes its units inside `elaborate` (the core makes its engines there) gets boxes without a change.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

import contextlib

from amaranth import Instance, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In


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
