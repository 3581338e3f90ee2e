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
    # ISA version 2 (batched prefill): BATCH m [23:8] src_stride [39:24] dst_stride [55:40] dyn_m [56];
    # CHUNK/SLOT addr [43:8] cap [59:44] i [75:60] skip [91:76]
    ("BATCH src_stride=5 dst_stride=18 +dyn_m", 0x100120005000003),
    ("BATCH m=3 src_stride=1 dst_stride=1", 0x10001000303),
    ("CHUNK addr=0x2500 cap=4", 0x400000250004),
    ("SLOT i=1 skip=41", 0x290001000000000000005),
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


def test_batched_prefill_ops_are_controller_ops_of_version_2():
    assert isa.ISA_VERSION == 2
    for mn in isa.BATCHED_OPS:
        op = isa.BY_MNEMONIC[mn]
        assert op.unit is isa.Unit.CTRL and not op.reads and not op.writes
    assert set(isa.BATCHABLE) <= set(isa.BY_MNEMONIC)
    with pytest.raises(EncodeError, match=r"SLOT\.skip=65536 does not fit in 16 bits"):
        Instr("SLOT", skip=1 << 16)
    with pytest.raises(EncodeError, match=r"BATCH has no field\(s\) n"):
        Instr("BATCH", n=4)
