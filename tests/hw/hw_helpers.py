"""Shared amaranth.sim helpers for the hw tests: stream drivers with backpressure, and a runner that feeds a
stream-in/stream-out unit and collects its results in order; `unit_bank` for one cocotb run of several units
(`dfx.verify.units`)."""
import random

from amaranth.lib import data
from amaranth.sim import Simulator

from dfx import isa


def built_only(unit):
    """A unit built only to read its attributes (latency): not an unused elaboratable worth a warning."""
    unit._MustUse__silence = True
    return unit


def raw(v):
    """The plain Value behind a layout view (so testbenches can read and write whole payloads as ints)."""
    return v.as_value() if isinstance(v, data.View) else v


async def stream_put(ctx, stream, payload: int):
    ctx.set(raw(stream.payload), payload)
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream) -> int:
    ctx.set(stream.ready, 1)
    (payload,) = await ctx.tick().sample(raw(stream.payload)).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


def run_streams(dut, sources: dict, sinks: dict, *, seed=0, stall=0.2, vcd=None, max_cycles=None) -> dict:
    """Feed each `sources[name]` (ints) into stream `dut.<name>` and collect `sinks[name]` payloads from
    stream `dut.<name>`, all concurrently. With `stall` > 0 producers idle and consumers withhold ready at
    random (that share of cycles), so units are also checked under backpressure. Returns {sink: [ints]}."""
    rng = random.Random(seed)
    out = {name: [] for name in sinks}

    def producer(name, words):
        async def run(ctx):
            s = getattr(dut, name)
            for w in words:
                while stall and rng.random() < stall:
                    await ctx.tick()
                await stream_put(ctx, s, int(w))
        return run

    def consumer(name, n):
        async def run(ctx):
            s = getattr(dut, name)
            while len(out[name]) < n:
                while stall and rng.random() < stall:
                    await ctx.tick()
                out[name].append(await stream_get(ctx, s))
        return run

    sim = Simulator(dut)
    sim.add_clock(5e-9)
    for name, words in sources.items():
        sim.add_testbench(producer(name, words))
    for name, n in sinks.items():
        sim.add_testbench(consumer(name, n))
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return out


def run_stream(dut, words, *, n_out=None, seed=0, stall=0.2, vcd=None) -> list[int]:
    """`run_streams` for a unit with one input stream `i` and one output stream `o`."""
    n_out = len(words) if n_out is None else n_out
    return run_streams(dut, {"i": words}, {"o": n_out}, seed=seed, stall=stall, vcd=vcd)["o"]


# ============================================================================================ cocotb
def unit_bank(units: dict):
    """One component holding several stream units side by side (ports `<name>_i`, `<name>_o`), so a single
    cocotb build and run checks them all concurrently."""
    from amaranth import Module
    from amaranth.lib import stream, wiring
    from amaranth.lib.wiring import In, Out

    class UnitBank(wiring.Component):
        def __init__(self):
            self.units = units
            members = {}
            for name, u in units.items():
                members[f"{name}_i"] = In(stream.Signature(u._in_shape))
                members[f"{name}_o"] = Out(stream.Signature(u._out_shape))
            super().__init__(members)

        def elaborate(self, platform):
            m = Module()
            for name, u in self.units.items():
                m.submodules[name] = u
                wiring.connect(m, wiring.flipped(getattr(self, f"{name}_i")), u.i)
                wiring.connect(m, u.o, wiring.flipped(getattr(self, f"{name}_o")))
            return m

    return UnitBank()


def random_instr(rng: random.Random, op, starts, lengths):
    """A raw `dfx.isa.Instr` of `op` with random fields: its VBUF operands' start entries drawn from `starts`, its
    length fields from `lengths` (None: any value of the field's width), flags 0 or 1, every other field any value
    (no rule applied: for the hardware checks' tests)."""
    operand = {s.field for s in op.operands if not s.scalar}
    length = {s.length for s in op.operands if s.length}
    vals = {}
    for f in op.fmt.fields:
        pick = rng.choice(lengths) if f.name in length else None
        if f.kind == "flag":
            vals[f.name] = rng.randrange(2)
        elif f.name in operand:
            vals[f.name] = rng.choice(starts)
        elif pick is not None:
            vals[f.name] = pick
        else:
            vals[f.name] = rng.randrange(1 << f.width)
    return isa.Instr(op, _raw=True, **vals)
