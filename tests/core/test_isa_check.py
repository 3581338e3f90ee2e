"""Static validation against the ISA (`dfx.isa_check`): every rule names what is wrong, compiled programs pass,
and no decodable word makes the check itself fail with anything but RuleError."""
import pytest
from hypothesis import given, settings, strategies as st

from dfx import isa, isa_check
from dfx.compiler import compile_model
from dfx.config import PRESETS
from dfx.errors import RuleError
from dfx.isa import Instr, assemble
from dfx.models.checkpoint import load_default

TINY = PRESETS["tiny"]          # d 8, 4096 VBUF entries, 16 scalar registers, rings of up to 8


def _i(text):
    return assemble(text)[0]


@pytest.mark.parametrize("text,devices,msg", [
    ("LINEAR dst=0 src=0 k=0 n=8", None, r"^k=0: a length must be >= 1 \(or \+dyn_k: POS \+ 1\)$"),
    ("QK dst=0 src=0 k=0 +dyn_n", None, "^k=0: a length must be >= 1"),
    ("SV dst=0 src=0 k=3 n=0 +dyn_k", None, "^n=0: a length must be >= 1"),
    ("LMHEAD dst=0 src=0 k=8 n=0", None, "^n=0: a length must be >= 1"),
    ("VADD dst=0 a=0 b=0 n=0", None, r"^n=0: a length must be >= 1 \(or \+dyn_n: POS \+ 1\)$"),
    ("VMAX a=0 sd=0 n=0", None, "^n=0: a length must be >= 1"),
    ("LOAD vaddr=0 n=0", None, "^n=0: a length must be >= 1$"),
    ("SEND vaddr=0 n=0", None, "^n=0: a length must be >= 1$"),
    ("ALLGATHER vaddr=0 n=8 devices=2 gran=0", None, "^ALLGATHER gran=0: the split granule must be >= 1"),
    ("ALLGATHER vaddr=0 n=8 devices=0 gran=1", None, r"^ALLGATHER devices=0: accepted 1\.\.8 "),
    ("ALLGATHER vaddr=0 n=8 devices=9 gran=1", None, r"^ALLGATHER devices=9: accepted 1\.\.8 "),
    ("ALLGATHER vaddr=0 n=8 devices=3 gran=1", 2, "^ALLGATHER over 3 devices, but the program has 2$"),
    ("BATCH src_stride=1 dst_stride=1", None, r"^BATCH m=0: m must be >= 1 \(or \+dyn_m: m = COUNT\)$"),
    ("CHUNK addr=0x42 cap=4", None, "^the token table at DDR byte 66 is not 4-byte aligned$"),
    ("CHUNK addr=0x40", None, "^CHUNK cap=0: the token table must hold >= 1 token$"),
    ("LOAD vaddr=0 n=8 index=3", None, r"^index=3: no such row index register; accepted: 0 none, 1 TOKEN, 2 POS$"),
    ("STORE_VT vaddr=0 n=8", None, r"^STORE_VT appends to a K/V cache in HBM: \+hbm is required$"),
    ("QK dst=0 src=0 k=8 n=8 wfmt=2", None, "^wfmt=2: quantized weights are for LINEAR only"),
    ("LINEAR dst=0 src=0 k=8 n=8 wfmt=2 +rowmajor", None, "^quantized weights .* are static matrices"),
    ("VADD dst=4095 a=0 b=0 n=16", None, r"^dst: VBUF entries 4095\.\.4097 exceed the 4096-entry buffer$"),
    ("LINEAR dst=0 src=0 k=8 n=8 s=3 +scale", None, None),
])
def test_check_instr(text, devices, msg):
    cfg = TINY.replace(sregs=2) if "+scale" in text else TINY
    if msg is None:
        with pytest.raises(RuleError, match=r"^s: scalar register S3 does not exist; accepted: S0\.\.S1$"):
            isa_check.check_instr(_i(text), cfg, devices)
        return
    with pytest.raises(RuleError, match=msg):
        isa_check.check_instr(_i(text), cfg, devices)


@pytest.mark.parametrize("text", [
    "HALT", "NOP units=3", "FENCE units=16", "QK dst=0 src=0 k=8 +dyn_n +mask", "SV dst=0 src=0 n=8 +dyn_k",
    "VMAX a=0 sd=1 +dyn_n", "ALLGATHER vaddr=0 n=8 devices=2 gran=1", "SEND vaddr=0 n=8", "BATCH +dyn_m",
    "CHUNK addr=0x40 cap=1", "SLOT i=3 skip=9", "STORE_K vaddr=0 n=8 +hbm index=2", "LINEAR k=8 n=8 wfmt=2",
])
def test_check_instr_accepts(text):
    isa_check.check_instr(_i(text), TINY, 2)


@pytest.mark.parametrize("text,msg", [
    ("NOP\nVADD n=8", "^the stream of 2 instructions has no HALT: a run would fall off its end$"),
    ("", "^the stream of 0 instructions has no HALT"),
    ("NOP\nLINEAR k=0 n=8\nHALT", r"^pc 1 `LINEAR n=8`: k=0: a length must be >= 1"),
    ("BATCH m=2\nVADD n=8\nHALT", r"^pc 0 `BATCH m=2`: BATCH must be followed by LINEAR or ALLGATHER, not VADD$"),
    ("CHUNK addr=0x40 cap=2\nSLOT i=1 skip=1\nHALT\nNOP", r"^pc 1 `SLOT i=1 skip=1`: skip=1 jumps over the HALT at "
                                                         "pc 2: the run would fall off the end of the stream$"),
])
def test_check_stream(text, msg):
    with pytest.raises(RuleError, match=msg):
        isa_check.check_stream(assemble(text), TINY)


def test_check_stream_checks_every_word():
    """Words after the last HALT are never run, but a stream is checked whole."""
    isa_check.check_stream(assemble("CHUNK addr=0x40 cap=2\nSLOT i=1 skip=1\nNOP\nHALT\nNOP"), TINY)
    with pytest.raises(RuleError, match=r"^pc 2 `VADD`: n=0"):
        isa_check.check_stream(assemble("NOP\nHALT\nVADD"), TINY)


def test_compiled_programs_pass():
    for kw in ({}, {"devices": 2, "prefill_batch": 4}, {"devices": 4, "overlap": 2, "weights": "int4-oc-g128"}):
        prog = compile_model(load_default(), "tiny", max_seq=16, **kw)
        for img in prog.devices:
            for instrs in img.streams.values():
                isa_check.check_stream(instrs, prog.config, prog.n_devices)


def test_run_budget():
    assert isa_check.run_budget(assemble("NOP\nHALT")) == 2
    assert isa_check.run_budget(assemble("BATCH m=5\nLINEAR k=8 n=8\nHALT")) == 3 + 4
    # +dyn_m: COUNT is at most the largest CHUNK cap
    assert isa_check.run_budget(assemble("CHUNK addr=0x40 cap=3\nBATCH +dyn_m\nLINEAR k=8 n=8\nHALT")) == 4 + 2
    assert isa_check.run_budget(assemble("BATCH\nLINEAR k=8 n=8\nHALT")) == 3          # m=0 (refused elsewhere)


@st.composite
def words(draw):
    """A random 128-bit word with a known opcode and no reserved bits set: every decodable instruction."""
    op = draw(st.sampled_from(isa.OPS))
    vals = {f.name: draw(st.one_of(st.just(0), st.just((1 << f.width) - 1), st.integers(0, (1 << f.width) - 1)))
            for f in op.fmt.fields}
    return Instr(op, _raw=True, **vals)


@settings(max_examples=400, deadline=None)
@given(words(), st.sampled_from([None, 1, 2]))
def test_any_decodable_word_is_accepted_or_refused_in_one_line(ins, devices):
    try:
        isa_check.check_instr(ins, TINY, devices)
    except RuleError as e:
        assert "\n" not in str(e) and str(e)
