import pytest
from hypothesis import given, settings, strategies as st

from dfx import isa
from dfx.errors import EncodeError, RuleError
from dfx.isa import Instr, assemble, decode, disassemble


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


# ------------------------------------------------------------------------------------------------ operands
def _ranges(text, d=8, pos=None, batch=None):
    ins = assemble(text)[0]
    return isa.operand_ranges(ins.op, ins.fields(), d, pos, batch)


def test_operand_specs_parse_the_tables():
    """Every reads/writes/sreads/swrites entry becomes one OperandSpec naming real fields of the format."""
    for op in isa.OPS:
        assert len(op.operands) == len(op.reads) + len(op.writes) + len(op.sreads) + len(op.swrites)
        names = {f.name for f in op.fmt.fields}
        for s in op.operands:
            assert s.field in names and {s.length, s.dyn, s.when} - {None} <= names
    lin = isa.BY_MNEMONIC["LINEAR"].operands
    assert lin[1] == isa.OperandSpec("bias", "n", "dyn_n", "has_bias", False)
    assert lin[3] == isa.OperandSpec("s", None, None, "scale", False) and lin[3].scalar
    assert isa.BY_MNEMONIC["LOAD"].operands == (isa.OperandSpec("vaddr", "n", None, None, True),)


def test_operand_ranges():
    R = isa.OperandRange
    assert _ranges("VADD dst=3 a=1 b=2 n=9") == [R("a", 1, 9, 2, False, False), R("b", 2, 9, 2, False, False),
                                                 R("dst", 3, 9, 2, True, False)]
    # optional operands: the bias only with has_bias, S[s] only with scale
    assert [r.field for r in _ranges("LINEAR dst=3 src=1 bias=9 k=8 n=4 s=2")] == ["src", "dst"]
    assert _ranges("LINEAR dst=3 src=1 bias=9 k=8 n=4 s=2 +has_bias +scale")[1:] == [
        R("bias", 9, 4, 1, False, False), R("dst", 3, 4, 1, True, False), R("s", 2, 1, 1, False, True)]
    # dyn_n: POS + 1 elements, unknown without POS
    assert _ranges("VMAX a=5 sd=1 +dyn_n") == [R("a", 5, None, None, False, False), R("sd", 1, 1, 1, True, True)]
    assert _ranges("VMAX a=5 sd=1 +dyn_n", pos=16)[0] == R("a", 5, 17, 3, False, False)
    assert _ranges("SV dst=0 src=4 k=3 n=8 +dyn_k", pos=9)[0] == R("src", 4, 10, 2, False, False)
    assert _ranges("ALLGATHER vaddr=2 n=8 devices=2 gran=1") == [R("vaddr", 2, 8, 1, False, False),
                                                                 R("vaddr", 2, 8, 1, True, False)]


def test_operand_ranges_of_a_batch():
    """Under a BATCH prefix the strided operands count m times, touching copies merged; the bias once."""
    R = isa.OperandRange
    lin = "LINEAR dst=100 src=0 bias=50 k=16 n=8 +has_bias"
    got = _ranges(lin, batch=isa.Batch(3, 2, 5))
    assert got == [R("src", 0, 48, 6, False, False), R("bias", 50, 8, 1, False, False),
                   R("dst", 100, 8, 1, True, False), R("dst", 105, 8, 1, True, False), R("dst", 110, 8, 1, True, False)]
    assert _ranges("ALLGATHER vaddr=4 n=8 devices=2 gran=1", batch=isa.Batch(2, 3, 3)) == [
        R("vaddr", 4, 8, 1, False, False), R("vaddr", 7, 8, 1, False, False),
        R("vaddr", 4, 8, 1, True, False), R("vaddr", 7, 8, 1, True, False)]
    assert _ranges("LINEAR dst=0 src=0 k=8 n=8", batch=isa.Batch(1, 0, 0)) == _ranges("LINEAR dst=0 src=0 k=8 n=8")


@pytest.mark.parametrize("text,entries,sregs,msg", [
    ("VADD dst=0 a=15 b=0 n=16", 16, 16, r"^a: VBUF entries 15\.\.17 exceed the 16-entry buffer$"),
    ("LOAD vaddr=17 n=0", 16, 16, r"^vaddr: VBUF entries 17\.\.17 exceed"),
    ("LINEAR dst=0 src=0 bias=16 k=8 n=8 +has_bias", 16, 16, r"^bias: VBUF entries 16\.\.17 exceed"),
    ("SADDI sd=2 sa=12", 16, 8, r"^sa: scalar register S12 does not exist; accepted: S0\.\.S7$"),
    ("LINEAR dst=0 src=0 k=8 n=8 s=9 +scale", 16, 8, r"^s: scalar register S9 does not exist"),
])
def test_check_operands_names_the_operand(text, entries, sregs, msg):
    with pytest.raises(RuleError, match=msg):
        isa.check_operands(_ranges(text), entries, sregs)


@pytest.mark.parametrize("text", ["VADD dst=0 a=14 b=0 n=16", "LOAD vaddr=16 n=0", "LINEAR dst=0 src=0 bias=16 "
                                  "k=8 n=8", "LINEAR dst=0 src=0 k=8 n=8 s=9", "VMAX a=15 sd=1 +dyn_n"])
def test_check_operands_accepts(text):
    isa.check_operands(_ranges(text), 16, 8)


# ------------------------------------------------------------------------------------------------ batched run
def _i(text):
    return assemble(text)[0] if text else None


@pytest.mark.parametrize("prefix,nxt,count,msg", [
    ("BATCH m=2", "VADD n=8", 0, "^BATCH must be followed by LINEAR or ALLGATHER, not VADD$"),
    ("BATCH m=2", None, 0, "^BATCH must be followed by LINEAR or ALLGATHER, not the end of the stream$"),
    ("BATCH +dyn_m", "LINEAR k=8 n=8", 0, r"^BATCH \+dyn_m before CHUNK: COUNT is 0$"),
    ("BATCH", "LINEAR k=8 n=8", 3, "^BATCH m=0: m must be >= 1$"),
    ("BATCH m=2", "LINEAR k=8 +dyn_n", 0, r"^a batched LINEAR has static k and n \(dyn_k and dyn_n must be 0\)$"),
    ("BATCH m=2", "LINEAR n=8 +dyn_k", 0, "^a batched LINEAR has static k and n"),
    ("BATCH m=2 src_stride=1 dst_stride=2", "ALLGATHER n=8", 0,
     "^a batched ALLGATHER is in place: src_stride must equal dst_stride$"),
])
def test_check_batch_errors(prefix, nxt, count, msg):
    with pytest.raises(RuleError, match=msg):
        isa.check_batch(_i(prefix), _i(nxt), count)


def test_check_batch():
    assert isa.check_batch(_i("BATCH m=3 src_stride=1 dst_stride=2"), _i("LINEAR k=8 n=8"), 0) == isa.Batch(3, 1, 2)
    assert isa.check_batch(_i("BATCH m=3 src_stride=4 dst_stride=4 +dyn_m"), _i("ALLGATHER n=8"), 5) == \
        isa.Batch(5, 4, 4)


def test_check_chunk():
    assert isa.check_chunk(_i("CHUNK addr=0x40 cap=4"), 4, 7) == isa.ChunkRegs(4, 0x40 + isa.TOKEN_TABLE_HEADER, 7)
    for text, count, msg in (("CHUNK addr=0x42 cap=4", 1, "^the token table at DDR byte 66 is not 4-byte aligned$"),
                             ("CHUNK addr=0x40 cap=4", 0, "^the token table at DDR byte 64 holds COUNT 0; accepted: "
                                                          r"1\.\.4$"),
                             ("CHUNK addr=0x40 cap=4", 5, "holds COUNT 5; accepted: 1..4")):
        with pytest.raises(RuleError, match=msg):
            isa.check_chunk(_i(text), count, 0)


def test_check_slot():
    assert isa.check_slot(_i("SLOT i=1 skip=2"), 2, 2) is True
    assert isa.check_slot(_i("SLOT i=2 skip=2"), 2, 2) is False          # no token 2: skip the next 2
    with pytest.raises(RuleError, match="^SLOT before CHUNK: COUNT is 0$"):
        isa.check_slot(_i("SLOT i=0 skip=0"), 0, 5)
    with pytest.raises(RuleError, match=r"^skip=3 runs past the end of the stream \(2 instructions follow\)$"):
        isa.check_slot(_i("SLOT i=0 skip=3"), 1, 2)


def test_field_limits_come_from_the_tables():
    assert isa.VBUF_ENTRIES_MAX == 1 << isa.MATRIX.field("dst").width == 1 << isa.DMA.field("vaddr").width
    assert isa.SREG_COUNT == 1 << isa.VECTOR.field("sa").width == 1 << isa.SCALAR.field("sd").width
    assert isa.MAX_DEVICES == (1 << isa.ROUTE.field("devices").width) - 1
    assert isa.INDEX_CODE == {"TOKEN": 1, "POS": 2} and set(isa.INDEX_REGS) == {0, *isa.INDEX_CODE.values()}
    Instr("ALLGATHER", devices=isa.MAX_DEVICES)
    with pytest.raises(EncodeError):
        Instr("ALLGATHER", devices=isa.MAX_DEVICES + 1)


def test_fence_units():
    B = isa.UNIT_BITS
    assert isa.fence_units(B[isa.Unit.DMA]) == B[isa.Unit.DMA]
    assert isa.fence_units(B[isa.Unit.MPU] | B[isa.Unit.ROUTER]) == B[isa.Unit.MPU] | B[isa.Unit.ROUTER]
    assert isa.fence_units(isa.ALL_UNITS) == isa.fence_units(isa.ALL_UNITS | B[isa.Unit.VPU]) == sum(B.values())
    assert isa.fence_units(0) == 0
