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
from hw_helpers import random_instr
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
        ins = random_instr(rng, rng.choice(ops), near, [0, 1, CFG.d, 3 * CFG.d + 1, None])
        # POS at the edge of a dynamic operand (start * d + POS + 1 = VBUF's elements, +-1) half of the time
        starts = [ins.fields()[s.field] for s in ins.op.operands if s.dyn is not None]
        edge = [CFG.vbuf_elems - st * CFG.d - 1 + e for st in starts for e in (-1, 0, 1)]
        edge = [p for p in edge if p >= 0]
        yield ins, rng.choice(edge) if edge and rng.random() < 0.5 else rng.choice([0, 5, 8 * CFG.d, 70 * CFG.d])


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
