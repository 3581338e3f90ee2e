"""The instruction decoder, generated from the one ISA definition (`dfx.isa`): no opcode literal is written here.

Each instruction format becomes an Amaranth `data.StructLayout` (opcode first, then the fields in the order
and widths of `dfx.isa.FORMATS`); the whole word is a `data.UnionLayout` of those views, so downstream units
read `word.matrix.k` or `word.dma.addr` instead of bit slices. The decoder adds what the controller needs: the
executing unit (one-hot), the format, and an `illegal` flag for opcodes the ISA does not define.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

import types

from amaranth import C, Module, Signal
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from dfx import isa

def _enum(name: str, members: dict[str, int], shape) -> type:
    """An Amaranth enum built from a table (the functional Enum API cannot take a shape)."""
    def body(ns):
        for k, v in members.items():
            ns[k] = v
    return types.new_class(name, (enum.Enum,), {"shape": shape}, body)


# One enum member per opcode, values from the ISA table.
Opcode = _enum("Opcode", {op.mnemonic: op.code for op in isa.OPS}, isa.OPCODE_BITS)
Unit = _enum("Unit", {"NONE": 0, **{u.name: 1 << i for i, u in enumerate(isa.Unit)}}, len(isa.Unit))
Format = _enum("Format", {f.name: i for i, f in enumerate(isa.FORMATS)}, range(len(isa.FORMATS)))


def format_layout(fmt: isa.Format) -> data.StructLayout:
    fields = {"opcode": Opcode}
    for f in fmt.fields:
        fields[f.name] = f.width            # f32 immediates stay raw bits; flags are 1-bit
    pad = isa.WORD_BITS - isa.OPCODE_BITS - sum(f.width for f in fmt.fields)
    if pad:
        fields["_reserved"] = pad
    return data.StructLayout(fields)


WordLayout = data.UnionLayout({fmt.name.lower(): format_layout(fmt) for fmt in isa.FORMATS})


def field_zero(word):
    """`zero(fmt, field)`: 1 when `field` of `word` (a `WordLayout` view) read through format `fmt` (a lower-case
    format name) is 0, as logic."""
    return lambda fmt, field: getattr(word, fmt)[field] == 0


def illegal_of(word, zero=None):
    """The decoder's `illegal` of `word` (a `WordLayout` view) as an expression: its opcode is not in the ISA, or
    reserved bits of its format are set. `zero`: the reserved fields' zero tests (`field_zero(word)`, or bits made
    earlier: hw/predecode.py's `zeros_of`)."""
    zero = zero or field_zero(word)
    known, bad = C(0, 1), C(0, 1)
    for op in isa.OPS:
        sel = word.control.opcode == Opcode[op.mnemonic]
        known = known | sel
        if "_reserved" in format_layout(op.fmt).members:
            bad = bad | (sel & ~zero(op.fmt.name.lower(), "_reserved"))
    return bad | ~known


class Decoder(wiring.Component):
    """Combinational decode of one 128-bit instruction word.

    Ports:
      word     the instruction (as `WordLayout`: view it through any format)
      unit     one-hot executing unit (`Unit`); 0 when illegal
      format   which format the opcode uses
      illegal  the opcode is not in the ISA, or reserved bits are set
    """
    word: In(WordLayout)
    unit: Out(Unit)
    format: Out(Format)
    illegal: Out(1)

    def elaborate(self, platform):
        m = Module()
        opcode = Signal(Opcode)
        m.d.comb += opcode.eq(self.word.control.opcode)
        with m.Switch(opcode):
            for op in isa.OPS:
                fmt_index = isa.FORMATS.index(op.fmt)
                with m.Case(Opcode[op.mnemonic]):
                    m.d.comb += [
                        self.unit.eq(Unit[op.unit.name]),
                        self.format.eq(Format(fmt_index)),
                    ]
        m.d.comb += self.illegal.eq(illegal_of(self.word))
        return m
