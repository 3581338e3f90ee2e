"""The RTL decoder against the Python ISA: every opcode, random field values, reserved bits, unknown opcodes."""
import random

from amaranth.back import verilog
from amaranth.sim import Simulator

from dfx import isa
from dfx.hw.decoder import Decoder, Format, Unit


def _random_instr(rng, op):
    return isa.Instr(op, _raw=True, **{f.name: rng.getrandbits(f.width) for f in op.fmt.fields})


def test_decoder_matches_isa():
    rng = random.Random(1)
    dut = Decoder()
    cases = [(_random_instr(rng, op), False) for op in isa.OPS for _ in range(20)]
    unknown = [c for c in range(256) if c not in isa.BY_CODE]
    words = [(ins.encode(), ins) for ins, _ in cases]
    words += [(code | (rng.getrandbits(120) << 8), None) for code in unknown[:20]]
    words += [(isa.Instr("HALT").encode() | 1 << 127, None)]

    async def bench(ctx):
        for word, ins in words:
            ctx.set(dut.word.as_value(), word)
            if ins is None:
                assert ctx.get(dut.illegal) == 1, hex(word)
                continue
            assert ctx.get(dut.illegal) == 0
            assert ctx.get(dut.unit) == Unit[ins.op.unit.name]
            assert ctx.get(dut.format) == Format(isa.FORMATS.index(ins.op.fmt))
            view = getattr(dut.word, ins.op.fmt.name.lower())
            for name, value in ins.fields().items():
                assert ctx.get(getattr(view, name)) == value, (ins, name)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


def test_decoder_emits_verilog():
    text = verilog.convert(Decoder(), name="dfx_decoder")
    assert "module dfx_decoder" in text and "illegal" in text
