"""The core's decode-stage operand check (hw/core.py `operands_ok`) is `dfx.isa.check_operands` as comparators:
the same verdict on random instructions near the VBUF and scalar-register bounds, POS-dependent lengths included."""
import random

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from dfx import isa
from dfx.config import PRESETS
from dfx.errors import RuleError
from dfx.hw.predecode import operands_ok
from dfx.hw.decoder import WordLayout

CFG = PRESETS["tiny"].replace(vbuf_entries=64, sregs=8)     # small: the bounds are easy to hit


class Probe(wiring.Component):
    word: In(WordLayout)
    pos: In(32)
    ok: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.ok.eq(operands_ok(self.word, self.pos, CFG))
        return m


def _cases(n, seed=0):
    rng = random.Random(seed)
    ops = [op for op in isa.OPS if op.operands]
    near = [0, 1, CFG.vbuf_entries - 3, CFG.vbuf_entries - 1, CFG.vbuf_entries, CFG.vbuf_entries + 1]
    for _ in range(n):
        op = rng.choice(ops)
        vals = {}
        for f in op.fmt.fields:
            if f.kind == "flag":
                vals[f.name] = rng.randrange(2)
            elif f.name in {s.field for s in op.operands if s.scalar}:
                vals[f.name] = rng.randrange(1 << f.width)
            elif f.name in {s.field for s in op.operands}:
                vals[f.name] = rng.choice(near)
            elif f.name in {s.length for s in op.operands}:
                vals[f.name] = rng.choice([0, 1, CFG.d, 3 * CFG.d + 1, rng.randrange(1 << f.width)])
            else:
                vals[f.name] = rng.randrange(1 << f.width)
        yield isa.Instr(op, _raw=True, **vals), rng.choice([0, 5, 8 * CFG.d, 70 * CFG.d])


def _isa_ok(ins, pos) -> bool:
    try:
        isa.check_operands(isa.operand_ranges(ins.op, ins.fields(), CFG.d, pos), CFG.vbuf_entries, CFG.sregs)
    except RuleError:
        return False
    return True


def test_operands_ok_is_the_isa_rule():
    dut = Probe()
    cases = list(_cases(400))
    got = []

    async def bench(ctx):
        for ins, pos in cases:
            ctx.set(dut.word.as_value(), ins.encode())
            ctx.set(dut.pos, pos)
            got.append(ctx.get(dut.ok))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    want = [int(_isa_ok(ins, pos)) for ins, pos in cases]
    assert 50 < sum(want) < len(want) - 50                  # both verdicts are exercised
    bad = [(isa.disassemble(ins), pos, g) for (ins, pos), g, w in zip(cases, got, want) if g != w]
    assert not bad, bad[:5]
