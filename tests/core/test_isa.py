from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from dfx import isa
from dfx.errors import EncodeError
from dfx.isa import Instr, assemble, decode, disassemble

ROOT = Path(__file__).resolve().parents[2]


# Golden encodings (computed by hand from the field table: opcode [7:0], then fields LSB-first).
# Change one and every program, the RTL decoder and the docs change with it.
GOLDEN = [
    ("HALT", 0x1),
    ("LINEAR dst=3 src=1 w=0x40 k=256 n=768 +has_bias", 0x10c00100000004000000001000310),
    ("QK dst=300 src=64 w=0x800 k=64 +scale +dyn_n s=2", 0xa80000040000080000000040012c11),
    ("SMOVI sd=2 imm=0.125", 0x3e0000000238),
    ("LOAD vaddr=5 addr=0x100 n=256 index=1 stride=512", 0x10020100000000100000540),
    ("STORE_VT vaddr=7 addr=0x20 n=64 +hbm index=2", 0x50040000000020000743),
]


@pytest.mark.parametrize("text,word", GOLDEN)
def test_golden_encodings(text, word):
    ins = assemble(text)[0]
    assert ins.encode() == word, hex(ins.encode())
    assert decode(word) == ins
    assert disassemble(ins) == text


def test_opcodes_unique_and_fit():
    codes = [op.code for op in isa.OPS]
    assert len(set(codes)) == len(codes)
    assert all(0 <= c < 1 << isa.OPCODE_BITS for c in codes)
    for fmt in isa.FORMATS:
        assert isa.OPCODE_BITS + sum(f.width for f in fmt.fields) <= isa.WORD_BITS


def test_encoder_names_the_field():
    with pytest.raises(EncodeError, match=r"LINEAR\.k=16384 does not fit in 14 bits"):
        Instr("LINEAR", k=1 << 14)
    with pytest.raises(EncodeError, match=r"VADD\.n must be an integer"):
        Instr("VADD", n=1.5)
    with pytest.raises(EncodeError, match=r"VADD\.dyn_n is a flag"):
        Instr("VADD", dyn_n=2)
    with pytest.raises(EncodeError, match=r"VADD has no field\(s\) w"):
        Instr("VADD", w=1)
    with pytest.raises(EncodeError, match=r"LOAD\.vaddr=-1 does not fit"):
        Instr("LOAD", vaddr=-1)
    with pytest.raises(EncodeError, match="unknown mnemonic 'FOO'"):
        Instr("FOO")


def test_decoder_rejects_unknown_opcode_and_reserved_bits():
    with pytest.raises(EncodeError, match=r"unknown opcode 0xff at pc 7"):
        decode(0xFF, pc=7)
    with pytest.raises(EncodeError, match="reserved bits"):
        decode(Instr("HALT").encode() | (1 << 127))
    with pytest.raises(EncodeError, match="not a multiple of 16-byte words"):
        isa.decode_stream(b"\x01" * 17)


def test_assembler_errors_name_the_line():
    with pytest.raises(EncodeError, match=r"line 2: VADD has no field 'q'"):
        assemble("HALT\nVADD q=1\n")
    with pytest.raises(EncodeError, match=r"line 1: cannot parse"):
        assemble("VADD n:3")
    assert assemble("# comment\n\n  HALT  # end\n") == [Instr("HALT")]


@st.composite
def instructions(draw):
    op = draw(st.sampled_from(isa.OPS))
    vals = {}
    for f in op.fmt.fields:
        vals[f.name] = draw(st.integers(0, (1 << f.width) - 1))
    return Instr(op, _raw=True, **vals)


@settings(max_examples=500, deadline=None)
@given(instructions())
def test_roundtrip_text_and_binary(ins):
    assert decode(ins.encode()) == ins
    assert assemble(disassemble(ins)) == [ins]
    assert isa.decode_stream(isa.encode_stream([ins, ins])) == [ins, ins]


def test_docs_are_current():
    doc = (ROOT / "docs" / "isa.md").read_text()
    assert doc == isa.doc_markdown(), "docs/isa.md is stale: run `python -m dfx.isa --doc > docs/isa.md`"
