"""The core's issue logic, generated from the ISA tables (`dfx.isa`): what an instruction touches on chip (the
scoreboard's view of it), the dependency test between two instructions (ISA dependency rule 1), and the decode-stage
validation (`dfx.isa_check`'s static rules as comparators).

`footprint(word, pos, cfg)` -> a `FOOTPRINT` struct: up to two VBUF ranges the instruction reads (`r0`, `r1`) and one it
writes (`w`), each `[lo, hi)` in VBUF entries (lo = the operand's entry field, hi = lo + ceil(length / d), the length
POS + 1 for a dynamic one; an optional operand whose flag is clear, or a length of 0, is no range), the scalar
registers it reads and writes as 16-bit masks (`sr`, `sw`), and `hbm`: whether it uses the HBM ports (every matrix
instruction streams weights; a DMA instruction with +hbm). The fields come from each opcode's `Op.operands`, so no
operand is named here. `conflict(a, b)`: a RAW, WAR or WAW hazard between two footprints (rule 1).

`invalid(word)`: 1 when the instruction breaks a rule of `dfx.isa_check.check_instr` that the range comparators of
hw/core.py (`operands_ok`) and the engines' own checks do not cover: a static length of 0, an ALLGATHER granule or
device count of 0, quantized-weight flags on a matrix instruction (wfmt on an opcode other than LINEAR, or with
dyn_k / dyn_n / rowmajor). The core stops with STATUS.invalid before the instruction runs. (A device count other
than RING_SIZE stays the router's STATUS.ring; an undefined index register or a K/V store to DDR the DMA's
STATUS.illegal_opcode.)
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

from amaranth import C, Cat, Mux, Signal
from amaranth.lib import data

from dfx import isa
from dfx.config import AccelConfig

from .decoder import Opcode, field_zero

HI_BITS = isa.VADDR_BITS + 18          # lo + ceil((POS + 1) / d) with a 32-bit POS, d >= 16

RANGE = data.StructLayout({"v": 1, "lo": isa.VADDR_BITS, "hi": HI_BITS})
FOOTPRINT = data.StructLayout({"r0": RANGE, "r1": RANGE, "w": RANGE, "sr": isa.SREG_COUNT, "sw": isa.SREG_COUNT,
                               "hbm": 1})


def is_op(word, mnemonic):
    """1 when `word`'s opcode is `mnemonic`'s."""
    return word.control.opcode == Opcode[mnemonic]


def _ranges(op: isa.Op, write: bool) -> list[isa.OperandSpec]:
    return [s for s in op.operands if not s.scalar and s.write == write]


def footprint(m, word, pos, cfg: AccelConfig, out, pos1=None) -> None:
    """Drive `out` (a FOOTPRINT signal) with the footprint of `word` run with POS = `pos` (comb); `pos1`: POS + 1
    where the caller has it in a register (the length of a dynamic operand). The two halves the core uses put
    together: `static_footprint` (made in the prefetcher) and `finish_footprint`."""
    fp, dyn = Signal(FOOTPRINT), Signal(3)
    static_footprint(m, word, cfg, fp, dyn)
    p1 = pos + 1 if pos1 is None else pos1
    finish_footprint(m, fp, dyn, (p1 + cfg.d - 1) >> (cfg.d.bit_length() - 1), out)


def length_fields() -> list[tuple[str, str]]:
    """(format, length field) of every VBUF operand of the ISA (`dfx.isa` `Op.operands`)."""
    return sorted({(op.fmt.name.lower(), s.length) for op in isa.OPS for s in op.operands if not s.scalar})


def entries_of(word, cfg: AccelConfig, fmt: str, field: str):
    """ceil(length / d) of `word`'s length field `field` read as format `fmt`: the entries it spans."""
    shift = cfg.d.bit_length() - 1
    return (getattr(getattr(word, fmt), field) + (1 << shift) - 1) >> shift


def static_footprint(m, word, cfg: AccelConfig, out, dyn, ents=None) -> None:
    """Drive `out` (a FOOTPRINT signal) with the footprint of `word` as far as it does not depend on POS, and `dyn`
    (3 bits: r0, r1, w) with the ranges whose length is POS + 1 (their `hi` in `out` is their `lo`): comb.
    `ents`: {(format, length field): `entries_of` it} made before (registers), or None to make them here."""
    shift = cfg.d.bit_length() - 1
    if ents is None:
        ents = {(f, ln): entries_of(word, cfg, f, ln) for f, ln in length_fields()}
    slots = {"r0": [], "r1": [], "w": []}          # (select, dynamic, valid, lo, hi) per opcode
    sr, sw = C(0, isa.SREG_COUNT), C(0, isa.SREG_COUNT)
    hbm = C(0, 1)
    for op in isa.OPS:
        sel = is_op(word, op.mnemonic)
        view = getattr(word, op.fmt.name.lower())
        reads, writes = _ranges(op, False), _ranges(op, True)
        assert len(reads) <= 2 and len(writes) <= 1, op.mnemonic      # the FOOTPRINT layout's slots
        for name, spec in zip(("r0", "r1"), reads) if reads else ():
            slots[name].append((sel, *_range(view, spec, ents[(op.fmt.name.lower(), spec.length)])))
        for spec in writes:
            slots["w"].append((sel, *_range(view, spec, ents[(op.fmt.name.lower(), spec.length)])))
        for spec in op.operands:
            if not spec.scalar:
                continue
            bit = (C(1, isa.SREG_COUNT) << getattr(view, spec.field))[:isa.SREG_COUNT]
            on = sel if spec.when is None else sel & getattr(view, spec.when)
            if spec.write:
                sw = sw | Mux(on, bit, 0)
            else:
                sr = sr | Mux(on, bit, 0)
        if op.unit is isa.Unit.MPU:
            hbm = hbm | sel
        elif op.fmt is isa.DMA:
            hbm = hbm | (sel & view.hbm)
    dyns = []
    for name, cases in slots.items():
        r = getattr(out, name)
        # (the selects are exclusive: an OR of the selected cases)
        dy, v, lo, hi = C(0, 1), C(0, 1), C(0, isa.VADDR_BITS), C(0, HI_BITS)
        for sel, cd, cv, clo, chi in cases:
            dy, v = dy | (sel & cd), v | (sel & cv)
            lo, hi = lo | Mux(sel, clo, 0), hi | Mux(sel, chi, 0)
        m.d.comb += [r.v.eq(v), r.lo.eq(lo), r.hi.eq(hi)]
        dyns.append(dy)
    m.d.comb += [out.sr.eq(sr), out.sw.eq(sw), out.hbm.eq(hbm), dyn.eq(Cat(*dyns))]


def finish_footprint(m, fp, dyn, ent1, out, off=None) -> None:
    """Drive `out` with the footprint `fp` (`static_footprint`'s, registers) at ceil((POS + 1) / d) = `ent1` (a
    register): hi = lo + ent1 for the ranges in `dyn`. `off`: entries to add to the ranges r0, r1, w (a batched
    instruction's vector: its operands moved by the strides; such a word has no dynamic range, and a vector that
    is dispatched lies inside VBUF, so the sums do not wrap)."""
    for i, name in enumerate(("r0", "r1", "w")):
        a, r = getattr(fp, name), getattr(out, name)
        o = C(0, 1) if off is None else off[i]
        m.d.comb += [r.v.eq(a.v), r.lo.eq(a.lo + o), r.hi.eq(Mux(dyn[i], a.lo + ent1, a.hi + o))]
    m.d.comb += [out.sr.eq(fp.sr), out.sw.eq(fp.sw), out.hbm.eq(fp.hbm)]


def _range(view, spec: isa.OperandSpec, ent):
    """(dynamic, valid, lo, hi) of one VBUF operand whose length spans `ent` entries; `hi` is `lo` for a dynamic
    one (POS + 1 long: never empty)."""
    lo = getattr(view, spec.field)
    dyn = C(0, 1) if spec.dyn is None else getattr(view, spec.dyn)
    v = dyn | (ent != 0)
    if spec.when is not None:
        v = v & getattr(view, spec.when)
    return dyn, v, lo, Mux(dyn, lo, lo + ent)


def _overlap(a, b):
    return a.v & b.v & (a.lo < b.hi) & (b.lo < a.hi)


def conflict(new, old):
    """1 when `new` may not start while `old` (an older instruction) is in flight: `new` reads what `old` writes
    (RAW), writes what `old` reads (WAR) or writes what `old` writes (WAW), in VBUF or the scalar registers."""
    raw = _overlap(new.r0, old.w) | _overlap(new.r1, old.w) | (new.sr & old.sw).any()
    war = _overlap(new.w, old.r0) | _overlap(new.w, old.r1) | (new.sw & old.sr).any()
    waw = _overlap(new.w, old.w) | (new.sw & old.sw).any()
    return raw | war | waw


def invalid(word, zero=None):
    """1 when `word` breaks a static rule of `dfx.isa_check.check_instr` not covered by the range check (see the
    module docstring). Opcodes the ISA lacks are the decoder's `illegal`. `zero`: the fields' zero tests
    (`hw.decoder.field_zero(word)`, or bits made earlier: hw/predecode.py's `zeros_of`)."""
    zero = zero or field_zero(word)
    bad = C(0, 1)
    for op in isa.OPS:
        fmt = op.fmt.name.lower()
        view = getattr(word, fmt)
        cond = C(0, 1)
        for spec in op.operands:                                 # zero static lengths
            if spec.scalar:
                continue
            is_zero = zero(fmt, spec.length)
            if spec.dyn is not None:
                is_zero = is_zero & ~getattr(view, spec.dyn)
            if spec.when is not None:
                is_zero = is_zero & getattr(view, spec.when)
            cond = cond | is_zero
        if op.fmt is isa.MATRIX:
            quant = ~zero(fmt, "wfmt")
            if op.mnemonic == "LINEAR":
                cond = cond | (quant & (view.dyn_k | view.dyn_n | view.rowmajor))
            else:
                cond = cond | quant
        if op.mnemonic == "ALLGATHER":
            cond = cond | zero(fmt, "gran") | zero(fmt, "devices")
        bad = bad | (is_op(word, op.mnemonic) & cond)
    return bad


def any_of(bits) -> "Value":
    return Cat(*bits).any() if bits else C(0, 1)
