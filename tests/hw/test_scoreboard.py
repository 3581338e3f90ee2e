"""The core's issue logic (hw/scoreboard.py) against the ISA's rules: footprints are `dfx.isa.operand_ranges`, the
hazard test is dependency rule 1 over those ranges, and the decode-stage validation together with the engines'
own checks refuses exactly what `dfx.isa_check.check_instr` refuses. Random instructions near the edges, on the
Amaranth simulator (combinational, a few seconds)."""
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
from dfx.hw.scoreboard import FOOTPRINT, conflict, footprint, invalid
from dfx.isa_check import check_instr

CFG = PRESETS["tiny"].replace(vbuf_entries=64, sregs=8)


class Probe(wiring.Component):
    a: In(WordLayout)
    b: In(WordLayout)
    pos: In(32)
    fa: Out(FOOTPRINT)
    fb: Out(FOOTPRINT)
    hazard: Out(1)
    bad: Out(1)
    ok: Out(1)

    def elaborate(self, platform):
        m = Module()
        footprint(m, self.a, self.pos, CFG, self.fa)
        footprint(m, self.b, self.pos, CFG, self.fb)
        m.d.comb += [self.hazard.eq(conflict(self.fa, self.fb)), self.bad.eq(invalid(self.a)),
                     self.ok.eq(operands_ok(self.a, self.pos, CFG))]
        return m


def _instr(rng):
    op = rng.choice(isa.OPS)
    vals = {}
    for f in op.fmt.fields:
        if f.kind == "flag":
            vals[f.name] = rng.randrange(2)
        elif f.name in {s.field for s in op.operands if s.scalar}:
            vals[f.name] = rng.randrange(CFG.sregs)
        elif f.name in {s.field for s in op.operands}:
            vals[f.name] = rng.randrange(6)                       # small entries: ranges often overlap
        elif f.name in {s.length for s in op.operands} or f.name in ("gran", "devices", "wfmt"):
            vals[f.name] = rng.choice([0, 1, CFG.d - 1, CFG.d, 2 * CFG.d + 1, rng.randrange(6 * CFG.d)]) \
                % (1 << f.width)
        elif f.name == "index":
            vals[f.name] = rng.randrange(4)
        else:
            vals[f.name] = rng.randrange(1 << min(f.width, 8))
    return isa.Instr(op, _raw=True, **vals)


def _ranges(ins, pos):
    rs = isa.operand_ranges(ins.op, ins.fields(), CFG.d, pos)
    v = {(r.start, r.start + r.entries) for r in rs if not r.scalar and not r.write and r.entries}
    w = {(r.start, r.start + r.entries) for r in rs if not r.scalar and r.write and r.entries}
    sr = {r.start for r in rs if r.scalar and not r.write}
    sw = {r.start for r in rs if r.scalar and r.write}
    return v, w, sr, sw


def _overlap(xs, ys):
    return any(a < d and c < b for a, b in xs for c, d in ys)


def _rule1(new, old, pos) -> bool:
    nr, nw, nsr, nsw = _ranges(new, pos)
    orr, ow, osr, osw = _ranges(old, pos)
    return (_overlap(nr, ow) or _overlap(nw, orr) or _overlap(nw, ow)
            or bool(nsr & osw) or bool(nsw & osr) or bool(nsw & osw))


def _engine_checked(ins) -> bool:
    """Rules the engines check when they start (STATUS.illegal_opcode / ring), not the front end."""
    f, mn = ins.fields(), ins.op.mnemonic
    if ins.op.fmt is isa.DMA:
        return f["index"] not in isa.INDEX_REGS or (mn in ("STORE_K", "STORE_VT") and not f["hbm"])
    return mn == "ALLGATHER" and f["devices"] > CFG.devices


def test_footprint_hazard_and_validation_are_the_isa_rules():
    rng = random.Random(3)
    cases = [(_instr(rng), _instr(rng), rng.choice([0, 5, CFG.d, 3 * CFG.d + 2])) for _ in range(600)]
    got = []
    dut = Probe()

    async def bench(ctx):
        for a, b, pos in cases:
            ctx.set(dut.a.as_value(), a.encode())
            ctx.set(dut.b.as_value(), b.encode())
            ctx.set(dut.pos, pos)
            fa = ctx.get(dut.fa)
            got.append((ctx.get(dut.hazard), ctx.get(dut.bad), ctx.get(dut.ok),
                        {(r.lo, r.hi) for r in (fa.r0, fa.r1) if r.v}, {(fa.w.lo, fa.w.hi)} if fa.w.v else set(),
                        fa.sr, fa.sw))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    hazards = refused = 0
    for (a, b, pos), (hz, bad, ok, rr, ww, sr, sw) in zip(cases, got):
        want_r, want_w, want_sr, want_sw = _ranges(a, pos)
        assert (rr, ww) == (want_r, want_w), isa.disassemble(a)
        assert (sr, sw) == (sum(1 << s for s in want_sr), sum(1 << s for s in want_sw)), isa.disassemble(a)
        assert hz == _rule1(a, b, pos), (isa.disassemble(a), isa.disassemble(b), pos)
        hazards += hz
        try:
            check_instr(a, CFG)
            legal = True
        except RuleError:
            legal = False
        front = not bad and ok and a.op.mnemonic not in isa.BATCHED_OPS    # (the core stops at ISA v2's ops)
        if legal:
            assert front or a.op.mnemonic in isa.BATCHED_OPS, f"refused a legal instruction: {isa.disassemble(a)}"
        else:
            refused += 1
            assert not front or _engine_checked(a), f"accepted an illegal one: {isa.disassemble(a)}"
    assert 100 < hazards < len(cases) - 100 and refused > 100                  # both verdicts exercised
