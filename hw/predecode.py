"""Predecode: the checks and classes of an instruction word that depend on the word alone, made as it enters the
prefetcher's output buffer (hw/fetch.py, its `annotate` stage), so that the front end (hw/core.py) and the batch
unit (hw/core_batch.py) only compare them with their state: the 300 MHz depth (docs/rtl.md, "Depth of the core
around the MPU and VPU").

`Predecode(cfg, units, staged=False)` is a component: `word` in, `pd` out (a `predecode_layout(cfg, units)` struct,
comb). With `staged=True` it also takes `early` (an `early_layout(cfg)` struct): `early_of(word)` made a stage
before, from the same word (hw/fetch.py makes it in two stages, `pre_of` then `early_from`, and registers it
beside the word): every sum and comparison of a field with a length or a constant (each operand's static range
verdict, its room, the strided operands' rooms), so that `pd` is selections and flat logic from registers (the
300 MHz depth). `pd` holds:

- `illegal`, `unit` (one-hot, `hw.decoder.Unit`), the decoder's; `invalid`: `hw.scoreboard.invalid`;
- the ISA's operand ranges (`dfx.isa` `Op.operands`, `dfx.isa.check_operands` as comparators): `out`, an operand
  outside VBUF or the scalar register file whatever POS is, and for each dynamic operand (length POS + 1) that the
  word uses, `need[j]` with `room[j]` = VBUF's elements - start * d: it lies inside when POS + 1 <= room[j]
  (`outside(pd, pos1)` puts the two together);
- the front end's classes: `ctrl`, `halt`, `fence`, and FENCE's units (`fence_on`, in the order of `units`);
- the batch unit's: `c_batch`, `c_chunk`, `c_slot`, `lin`, `ag`; `pair`, a word a BATCH may not prefix whatever
  its strides (anything but LINEAR or ALLGATHER, or a LINEAR with dyn_k / dyn_n); `m_zero` (BATCH's m = 0);
  `past` (CHUNK's table header past DDR) and `t_room` (the bytes of DDR after it: a COUNT of u32 tokens fits
  when 4 * COUNT <= t_room); and the strided operands' room in VBUF entries for the last vector's
  offset: `sroom` (LINEAR src: (elements - k) // d - src), `droom` (LINEAR dst, ALLGATHER vaddr), with
  `b_never` when no offset fits;
- the scoreboard's footprint as far as it does not depend on POS (`fp`, `fdyn`: hw/scoreboard.py
  `static_footprint`).

Each room is a rewrite of the ISA's sum, exact for unsigned fields: start * d + POS + 1 <= E iff POS + 1 <= E -
start * d, and (start + off) * d + len <= E iff len <= E and off <= (E - len) // d - start.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

import functools

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from dfx import isa
from dfx.config import AccelConfig

from .decoder import Decoder, Opcode, Unit, WordLayout, field_zero, illegal_of
from .dma import log2
from .scoreboard import FOOTPRINT, entries_of, invalid, is_op, length_fields, static_footprint

DYN_SLOTS = 3       # dynamic-length operands an opcode can have (MATRIX: src, bias, dst; VECTOR: a, b, dst)


def _room_bits(cfg: AccelConfig) -> int:
    return cfg.vbuf_elems.bit_length()


def ent1_bits(cfg: AccelConfig) -> int:
    """Bits of ceil((POS + 1) / d) for a POS whose dynamic operands lie inside VBUF (POS + 1 <= its elements):
    `hw.scoreboard.finish_footprint`'s `ent1`, kept beside POS by the batch unit; exact for such a POS, and only
    such a one is dispatched."""
    return _room_bits(cfg) + 1 - log2(cfg.d)


def predecode_layout(cfg: AccelConfig, units) -> data.StructLayout:
    rb = _room_bits(cfg)
    return data.StructLayout({
        "illegal": 1, "invalid": 1, "unit": Unit, "out": 1, "need": DYN_SLOTS,
        **{f"room{j}": rb for j in range(DYN_SLOTS)},
        "ctrl": 1, "halt": 1, "fence": 1, "fence_on": len(units),
        "c_batch": 1, "c_chunk": 1, "c_slot": 1, "lin": 1, "ag": 1, "pair": 1, "m_zero": 1, "past": 1,
        "b_never": 1, "sroom": rb, "droom": rb, "t_room": cfg.ddr_bytes.bit_length(), "fp": FOOTPRINT, "fdyn": 3,
    })


STRIDED = (("s", "matrix", "k"), ("d", "matrix", "n"), ("a", "route", "n"))   # the strided operands' lengths


def _ent_bits(cfg: AccelConfig) -> int:
    """Bits of ceil(length / d) for a LEN_BITS length."""
    return isa.LEN_BITS + 1 - log2(cfg.d)


def _ent_name(fmt: str, field: str) -> str:
    return f"ent_{fmt}_{field}"


def _specs(cfg: AccelConfig):
    """(format, start field, length field, dynamic) of every VBUF operand the range checks read, each once (its
    length may be POS + 1 in some opcode: dynamic)."""
    found: dict = {}
    for op in isa.OPS:
        for s in op.operands:
            if not s.scalar:
                key = (op.fmt.name.lower(), s.field)
                ln, dyn = found.get(key, (s.length, False))
                assert ln == s.length, (key, ln, s.length)
                found[key] = (ln, dyn or s.dyn is not None)
    return sorted((f, st, ln, dyn) for (f, st), (ln, dyn) in found.items())


def pre_layout(cfg: AccelConfig) -> data.StructLayout:
    """The early part's first half (`pre_of`), from a length or a start alone: per strided operand (`STRIDED`)
    `<x>_rest` = (E - length) // d and `<x>_ok` = length <= E; per VBUF operand length field
    (`hw.scoreboard.length_fields`) `ent_<format>_<field>`, the entries it spans, `left_<format>_<field>` = (E -
    length) // d and `over_<format>_<field>` = length > E; per operand whose length may be POS + 1 (`_specs`)
    `past_<format>_<start>` (start >= VBUF entries) and `dyn_<format>_<start>` (E - start * d, the room for POS
    + 1); the decoder's `illegal` and `hw.scoreboard.invalid`."""
    rb, ent_bits, nb = _room_bits(cfg), _ent_bits(cfg), (cfg.vbuf_elems // cfg.d).bit_length()
    return data.StructLayout({**{f: w for x, _, _ in STRIDED for f, w in ((f"{x}_rest", rb), (f"{x}_ok", 1))},
                              **{_ent_name(f, ln): ent_bits for f, ln in length_fields()},
                              **{f"{k}_{f}_{ln}": (nb if k == "left" else 1) for f, ln in length_fields()
                                 for k in ("left", "over")},
                              **_dyn_fields(cfg)})


def _dyn_fields(cfg: AccelConfig) -> dict:
    """`pre_layout`'s fields that `early_layout` copies: the decoder's `illegal`, `hw.scoreboard.invalid`, and
    the dynamic operands' `past_*` and `dyn_*`."""
    return {"illegal": 1, "invalid": 1,
            **{f"{k}_{f}_{st}": (1 if k == "past" else _room_bits(cfg)) for f, st, _, dyn in _specs(cfg) if dyn
               for k in ("past", "dyn")}}


def early_layout(cfg: AccelConfig) -> data.StructLayout:
    """The early part (`early_of`): per strided operand `<x>_fits` (some offset fits: its length fits and its
    start is at most (E - length) // d) and `<x>_room` ((E - length) // d - start, in entries); `ent_<format>_<field>`
    as `pre_layout`'s; per operand (`_specs`) `bad_<format>_<start>` (start * d + length > E: outside VBUF at its
    static length), and `pre_layout`'s `past_*` and `dyn_*`."""
    rb, ent_bits = _room_bits(cfg), _ent_bits(cfg)
    return data.StructLayout({**{f: w for x, _, _ in STRIDED for f, w in ((f"{x}_fits", 1), (f"{x}_room", rb))},
                              **{_ent_name(f, ln): ent_bits for f, ln in length_fields()},
                              **{f"bad_{f}_{st}": 1 for f, st, _, _ in _specs(cfg)},
                              **_dyn_fields(cfg)})


def _operand(view, start, length, cfg: AccelConfig):
    """(bad, past, room) of an operand at entry `start` (a field of `view`) with length field `length`."""
    e, sh, rb = cfg.vbuf_elems, log2(cfg.d), _room_bits(cfg)
    st = getattr(view, start)
    return (((st << sh) + getattr(view, length)) > e, st >= e >> sh, (C(e, rb + 1) - (st << sh))[:rb])


STARTS = {"s": "src", "d": "dst", "a": "vaddr"}         # the strided operands' start fields


@functools.cache
def zero_fields() -> tuple[tuple[str, str], ...]:
    """(format, field) of every field whose zero test the decoder's `illegal` and `hw.scoreboard.invalid` read,
    in a fixed order (`zeros_of`)."""
    seen = []

    def record(fmt, field):
        if (fmt, field) not in seen:
            seen.append((fmt, field))
        return C(0, 1)
    word = data.View(WordLayout, C(0, isa.WORD_BITS))
    illegal_of(word, record)
    invalid(word, record)
    return tuple(seen)


def zeros_of(word):
    """The zero tests of `zero_fields()` on `word` (a WordLayout view), one bit each, comb (the prefetcher
    registers them beside the word's beat, a stage before `pre_of`: the 300 MHz depth)."""
    z = field_zero(word)
    return Cat(*[z(f, n) for f, n in zero_fields()])


def pre_of(word, cfg: AccelConfig, zeros=None):
    """The `pre_layout` value of `word` (a WordLayout view), comb: each field one carry chain from a field, and
    the decoder's `illegal` and `hw.scoreboard.invalid` from the fields' zero tests `zeros` (`zeros_of(word)`,
    made here when None)."""
    e, sh, rb = cfg.vbuf_elems, log2(cfg.d), _room_bits(cfg)
    nb = (e >> sh).bit_length()
    parts = []
    for x, fmt, field in STRIDED:
        length = getattr(getattr(word, fmt), field)
        parts += [((C(e, rb + 1) - length) >> sh)[:rb], length <= e]   # (wraps when length > E: not `ok`)
    parts += [entries_of(word, cfg, f, ln)[:_ent_bits(cfg)] for f, ln in length_fields()]
    for f, ln in length_fields():
        length = getattr(getattr(word, f), ln)
        parts += [((C(e, rb + 1) - length) >> sh)[:nb], length > e]     # (`left` is read only when not `over`)
    if zeros is None:
        zeros = zeros_of(word)
    def zero(fmt, field):
        return zeros[zero_fields().index((fmt, field))]
    parts += [illegal_of(word, zero), invalid(word, zero)]
    for f, st, ln, dyn in _specs(cfg):
        if dyn:
            parts += list(_operand(getattr(word, f), st, ln, cfg)[1:])
    return Cat(*parts)


def early_from(word, pre, cfg: AccelConfig):
    """The `early_layout` value of `word` from its `pre_layout` value `pre` (a view), comb: one comparison or
    subtraction of a start field with a `pre` field each (start * d + length > E iff start > (E - length) // d,
    for length <= E)."""
    rb = _room_bits(cfg)
    parts = []
    for x, fmt, _ in STRIDED:
        rest, start = pre[f"{x}_rest"], getattr(getattr(word, fmt), STARTS[x])
        parts += [pre[f"{x}_ok"] & (rest >= start), (rest - start)[:rb]]
    parts += [pre[_ent_name(f, ln)] for f, ln in length_fields()]
    parts += [pre[f"over_{f}_{ln}"] | (getattr(getattr(word, f), st) > pre[f"left_{f}_{ln}"])
              for f, st, ln, _ in _specs(cfg)]
    parts += [pre[k] for k in _dyn_fields(cfg)]
    return Cat(*parts)


def early_of(word, cfg: AccelConfig):
    """The `early_layout` value of `word` (a WordLayout view), comb: `early_from` its `pre_of`. Each field is one
    or two carry chains from the word (the 300 MHz depth), so that the predecode from it and the word is
    comparisons and selections only; the prefetcher makes the two halves in two stages (hw/fetch.py)."""
    return early_from(word, data.View(pre_layout(cfg), pre_of(word, cfg)), cfg)


def static_ranges(word, cfg: AccelConfig, early=None):
    """(out, need, rooms) of `word`'s on-chip operands (see the module docstring), comb. `early`: the word's
    `early_layout` value made before (registers: `early_of`), or None to make its parts here."""
    e, sh, rb = cfg.vbuf_elems, log2(cfg.d), _room_bits(cfg)
    assert e % cfg.d == 0, e
    out = C(0, 1)
    need = [C(0, 1)] * DYN_SLOTS
    rooms: list[dict] = [{} for _ in range(DYN_SLOTS)]          # per slot: (format, field) -> [room, selects]
    for op in isa.OPS:
        specs = [s for s in op.operands if not s.scalar or cfg.sregs < isa.SREG_COUNT]
        if not specs:
            continue
        sel = is_op(word, op.mnemonic)
        view = getattr(word, op.fmt.name.lower())
        fail, j = C(0, 1), 0
        for spec in specs:
            on = C(1, 1) if spec.when is None else getattr(view, spec.when)
            start = getattr(view, spec.field)
            if spec.scalar:
                fail = fail | (on & (start >= cfg.sregs))
                continue
            fmt = op.fmt.name.lower()
            if early is None:
                static_bad, past, dyn_room = _operand(view, spec.field, spec.length, cfg)
            else:
                static_bad = early[f"bad_{fmt}_{spec.field}"]
                if spec.dyn is not None:
                    past, dyn_room = early[f"past_{fmt}_{spec.field}"], early[f"dyn_{fmt}_{spec.field}"]
            if spec.dyn is None:
                fail = fail | (on & static_bad)
                continue
            dyn = getattr(view, spec.dyn)
            fail = fail | (on & ~dyn & static_bad) | (on & dyn & past)
            need[j] = need[j] | (sel & on & dyn)
            slot = rooms[j].setdefault((op.fmt.name, spec.field), [dyn_room, C(0, 1)])
            slot[1] = slot[1] | sel
            j += 1
        assert j <= DYN_SLOTS, op.mnemonic
        out = out | (sel & fail)
    room = []
    for j in range(DYN_SLOTS):
        r = C(0, rb)
        for val, sel in rooms[j].values():
            r = r | Mux(sel, val, 0)
        room.append(r)
    return out, Cat(*need), room


def outside(out, need, rooms, pos1):
    """1 when an operand lies outside VBUF / the scalar file at POS + 1 = `pos1` (a register), from the static
    ranges: one comparator per dynamic operand."""
    return out | Cat(*[need[j] & (pos1 > rooms[j]) for j in range(DYN_SLOTS)]).any()


def operands_ok(word, pos, cfg: AccelConfig, pos1=None):
    """1 when every on-chip operand of the instruction (`dfx.isa` `Op.operands`) lies inside VBUF and, for a
    config with fewer scalar registers than the ISA can name, names one that exists: `dfx.isa.check_operands`
    as comparators, the two halves the core uses (`static_ranges`, `outside`) put together. `pos1`: POS + 1."""
    out, need, rooms = static_ranges(word, cfg)
    return ~outside(out, need, rooms, pos + 1 if pos1 is None else pos1)


class Predecode(wiring.Component):
    """See the module docstring. `units`: the core's engines' `dfx.isa.Unit`s, in its queue order."""

    def __init__(self, cfg: AccelConfig, units, staged: bool = False):
        self.cfg, self.units, self.staged = cfg, tuple(units), staged
        ports = {"word": In(WordLayout), "pd": Out(predecode_layout(cfg, self.units))}
        if staged:
            ports["early"] = In(early_layout(cfg))
        super().__init__(ports)

    def early_of(self, word):
        return early_of(word, self.cfg)

    # the early part in two halves, for a stage apart each (hw/fetch.py)
    def pre_layout(self):
        return pre_layout(self.cfg)

    def zeros_of(self, word):
        return zeros_of(word)

    def pre_of(self, word, zeros=None):
        return pre_of(word, self.cfg, zeros)

    def early_from(self, word, pre):
        return early_from(word, pre, self.cfg)

    def elaborate(self, platform):
        m = Module()
        cfg, w, pd = self.cfg, self.word, self.pd
        m.submodules.decoder = dec = Decoder()
        m.d.comb += dec.word.eq(w)
        ea = self.early if self.staged else None
        if not self.staged:
            ea = Signal(early_layout(cfg))
            m.d.comb += ea.eq(early_of(w, cfg))
        static_footprint(m, w, cfg, pd.fp, pd.fdyn, {(f, ln): ea[_ent_name(f, ln)] for f, ln in length_fields()})
        out, need, rooms = static_ranges(w, cfg, ea)
        units, opc = w.control.units, w.control.opcode
        every = (units & isa.ALL_UNITS) != 0
        ctrl = dec.unit == Unit.CTRL
        m.d.comb += [pd.illegal.eq(ea.illegal), pd.invalid.eq(ea.invalid), pd.unit.eq(dec.unit),
                     pd.out.eq(out), pd.need.eq(need), *[pd[f"room{j}"].eq(rooms[j]) for j in range(DYN_SLOTS)],
                     pd.ctrl.eq(ctrl), pd.halt.eq(ctrl & (opc == Opcode.HALT)),
                     pd.fence.eq(ctrl & (opc == Opcode.FENCE)),
                     pd.fence_on.eq(Cat(*[every | ((units & isa.UNIT_BITS[u]) != 0) for u in self.units]))]
        # the batch unit's
        lin, ag = is_op(w, "LINEAR"), is_op(w, "ALLGATHER")
        mx, rt = w.matrix, w.route
        s_fits, s_room = ea.s_fits, ea.s_room
        d_fits, d_room = ea.d_fits, ea.d_room
        a_fits, a_room = ea.a_fits, ea.a_room
        m.d.comb += [
            pd.c_batch.eq(is_op(w, "BATCH")), pd.c_chunk.eq(is_op(w, "CHUNK")), pd.c_slot.eq(is_op(w, "SLOT")),
            pd.lin.eq(lin), pd.ag.eq(ag),
            pd.pair.eq(~(lin | ag) | (lin & (mx.dyn_k | mx.dyn_n))),
            pd.m_zero.eq(w.batch.m == 0),
            pd.past.eq(w.slot.addr > cfg.ddr_bytes - isa.TOKEN_TABLE_HEADER),
            pd.t_room.eq(cfg.ddr_bytes - isa.TOKEN_TABLE_HEADER - w.slot.addr),
            pd.b_never.eq((lin & ~(s_fits & d_fits)) | (ag & ~a_fits)),
            pd.sroom.eq(s_room), pd.droom.eq(Mux(ag, a_room, d_room)),
        ]
        return m


__all__ = ["DYN_SLOTS", "Predecode", "early_layout", "early_of", "ent1_bits", "operands_ok", "outside",
           "predecode_layout", "static_ranges"]
