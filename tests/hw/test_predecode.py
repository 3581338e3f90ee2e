"""The prefetcher's predecode (hw/predecode.py) keeps what the front end and the batch unit decided from the word:
the batch unit's strided-operand rule as rooms compared with the last vector's offsets, the decoder's verdict and
unit, FENCE's units, and a CHUNK table's room in DDR, on random words near the VBUF and DDR bounds."""
import random

import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from dfx import isa
from dfx.config import PRESETS
from dfx.hw.decoder import Unit
from dfx.hw.predecode import DYN_SLOTS, Predecode, static_ranges
from hw_helpers import random_instr

CFG = PRESETS["tiny"].replace(vbuf_entries=64)
UNITS = (isa.Unit.MPU, isa.Unit.VPU, isa.Unit.DMA, isa.Unit.ROUTER)


def _words(n, seed=1):
    rng = random.Random(seed)
    ops = [isa.BY_MNEMONIC[m] for m in ("LINEAR", "ALLGATHER", "VADD", "FENCE", "HALT", "BATCH", "CHUNK")]
    near = [0, 1, CFG.vbuf_entries - 3, CFG.vbuf_entries - 1, CFG.vbuf_entries, CFG.vbuf_entries + 1]
    lengths = [1, CFG.d, 3 * CFG.d + 1, CFG.vbuf_elems - CFG.d, CFG.vbuf_elems + 1]
    for _ in range(n):
        ins = random_instr(rng, rng.choice(ops), near, lengths)
        if ins.op.mnemonic == "CHUNK":          # its table near DDR's end
            ddr = CFG.ddr_bytes
            ins = isa.Instr(ins.op, _raw=True, **{**ins.fields(), "addr": rng.choice([0, ddr - 8, ddr - 4, ddr - 3])})
        yield ins, rng.choice([0, 1, 2, 5, 40, 70]), rng.choice([0, 1, 3, 61])


def _strided_ok(ins, lasts, lastd) -> bool:
    """The batch unit's rule as the ISA sums it: the last vector's operands inside VBUF."""
    f, e, d = ins.fields(), CFG.vbuf_elems, CFG.d
    if ins.op.mnemonic == "LINEAR":
        return (f["src"] + lasts) * d + f["k"] <= e and (f["dst"] + lastd) * d + f["n"] <= e
    return (f["vaddr"] + lastd) * d + f["n"] <= e


@pytest.mark.parametrize("staged", [False, True])
def test_predecode_keeps_the_rules(staged):
    """Whole, and staged (its early part made from the word apart, as the prefetcher registers it)."""
    dut = Predecode(CFG, UNITS, staged=staged)
    top = Module()
    top.submodules.dut = dut
    if staged:
        top.d.comb += dut.early.eq(dut.early_of(dut.word))
    cases = list(_words(800))
    got = []

    async def bench(ctx):
        for ins, lasts, lastd in cases:
            ctx.set(dut.word.as_value(), ins.encode())
            pd = dut.pd
            got.append(tuple(ctx.get(x) for x in (pd.b_never, pd.sroom, pd.droom, pd.illegal, pd.unit.as_value(),
                                                     pd.fence_on, pd.halt, pd.lin, pd.ag, pd.past, pd.t_room)))

    sim = Simulator(top)
    sim.add_testbench(bench)
    sim.run()
    checked = fits = 0
    chunks = 0
    for (ins, lasts, lastd), (never, sroom, droom, illegal, unit, fence_on, halt, lin, ag, past, t_room) in zip(cases,
                                                                                                         got):
        mn = ins.op.mnemonic
        assert (lin, ag, halt) == (mn == "LINEAR", mn == "ALLGATHER", mn == "HALT"), mn
        assert unit == Unit[ins.op.unit.name].value
        reserved = ins.fields().get("_reserved", 0)
        assert illegal == (reserved != 0), isa.disassemble(ins)
        if mn == "FENCE":
            mask = ins.fields()["units"]
            want = [bool(mask & isa.ALL_UNITS) or bool(mask & isa.UNIT_BITS[u]) for u in UNITS]
            assert [bool(fence_on >> i & 1) for i in range(len(UNITS))] == want
        if mn == "CHUNK":      # the table's header past DDR; else 4 * COUNT more bytes fit iff 4 * COUNT <= t_room
            end = ins.fields()["addr"] + isa.TOKEN_TABLE_HEADER
            assert past == (end > CFG.ddr_bytes)
            if not past:
                assert t_room == CFG.ddr_bytes - end
                chunks += 1
        if mn in ("LINEAR", "ALLGATHER"):
            ok = not never and lastd <= droom and (mn != "LINEAR" or lasts <= sroom)
            assert ok == _strided_ok(ins, lasts, lastd), (isa.disassemble(ins), lasts, lastd)
            checked += 1
            fits += ok
    assert checked > 150 and 30 < fits < checked - 30          # both verdicts are exercised
    assert chunks > 5


def test_staged_predecode_is_the_whole():
    """The staged predecode (its early part made apart, as the prefetcher registers it) gives every field of `pd`,
    the scoreboard's footprint included, as the whole one does; and its static range verdict (made from the early
    part's entry counts) is `static_ranges` made from the word alone."""
    whole, staged = Predecode(CFG, UNITS), Predecode(CFG, UNITS, staged=True)
    top = Module()
    top.submodules.whole, top.submodules.staged = whole, staged
    top.d.comb += [staged.word.eq(whole.word), staged.early.eq(staged.early_of(whole.word))]
    ref_out, ref_need, _ = static_ranges(whole.word, CFG)
    out, need = Signal(), Signal(DYN_SLOTS)
    top.d.comb += [out.eq(ref_out), need.eq(ref_need)]
    diffs = []
    outs = 0

    async def bench(ctx):
        for ins, _, _ in _words(800, seed=2):
            ctx.set(whole.word.as_value(), ins.encode())
            a, b = ctx.get(whole.pd.as_value()), ctx.get(staged.pd.as_value())
            if a != b or (ctx.get(out), ctx.get(need)) != (ctx.get(staged.pd.out), ctx.get(staged.pd.need)):
                diffs.append(isa.disassemble(ins))
            nonlocal outs
            outs += ctx.get(out)

    sim = Simulator(top)
    sim.add_testbench(bench)
    sim.run()
    assert not diffs, diffs[:5]
    assert 50 < outs < 750                      # both verdicts
