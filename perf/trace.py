"""Stream pre-decode: what the scheduler runs on, derived once per stream.

Each instruction becomes a `Static` record (its kind, unit, mnemonic, the VBUF ranges and scalar registers it
reads and writes as `Operand`s, a FENCE's unit mask) and, per POS class, a `Resolved` record (ranges as entry
spans, its `Cost`, its layer bin) that `schedule.DeviceScheduler` consumes. Instructions are decoded once per
(instruction, `Context`) and shared between streams and devices.

A stream with BATCH, CHUNK or SLOT (a batched prefill, docs/isa.md "Batched prefill") is pre-decoded along the
path one run takes for a token count (`run_path`), with every BATCH fused into the LINEAR or ALLGATHER it
prefixes. The ISA's rules are dfx.isa's: the operands an instruction reads and writes (`isa.operand_ranges`,
as scoreboard entries in `vbuf_operands`), the batched-run checks (`isa.check_batch`, `check_chunk`,
`check_slot`), the units a FENCE drains (`isa.fence_units`) and every instruction's static validity
(`isa_check.check_instr`, when it is first decoded).

Layer breakdown: a manifest entry `node_pcs` = {stream: [per device: [[start_pc, node_name], ...]]} (node names
as the compiler's graph: "embed", "h.3.ln_1", ..., "ln_f", "lm_head") makes it exact; without it a layer is
found by its first LayerNorm (`layer_bins`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from dfx import isa, isa_check
from dfx.errors import PerfError, RuleError

from .timing import PLAIN, Context, Timing, cdiv

U_MPU, U_VPU, U_DMA, U_ROUTER, U_CTRL = range(5)
UNIT_NAMES = ("mpu", "vpu", "dma", "router")
UNIT_OF = {isa.Unit.MPU: U_MPU, isa.Unit.VPU: U_VPU, isa.Unit.DMA: U_DMA, isa.Unit.ROUTER: U_ROUTER,
           isa.Unit.CTRL: U_CTRL}
K_NORMAL, K_FENCE, K_HALT, K_NOP, K_GATHER, K_SEND, K_RECV, K_BLOCK = range(8)
RING_KINDS = (K_GATHER, K_SEND, K_RECV)
# K_BLOCK: a controller instruction that holds dispatch (CHUNK's token-table read, SLOT's fetch redirect);
# BATCH is fused with the instruction it prefixes (serial issue: a control word fetched and decoded on its own)
KINDS = {"FENCE": K_FENCE, "HALT": K_HALT, "NOP": K_NOP, "ALLGATHER": K_GATHER, "SEND": K_SEND, "RECV": K_RECV,
         "CHUNK": K_BLOCK, "SLOT": K_BLOCK, "BATCH": K_NOP}
MNEMONICS = tuple(op.mnemonic for op in isa.OPS)
MN_INDEX = {m: i for i, m in enumerate(MNEMONICS)}
CLASSES = {
    "matrix": ("LINEAR", "QK", "SV", "LMHEAD"),
    "vector": ("VADD", "VSUB", "VMUL", "VMOV", "VADDS", "VSUBS", "VMULS", "VEXP", "VGELU", "VSUM", "VMAX", "VDOT"),
    "scalar": ("SMOVI", "SADDI", "SMULI", "SRECIP", "SRSQRT"),
    "dma": ("LOAD", "STORE", "STORE_K", "STORE_VT"),
    "ring": ("ALLGATHER", "SEND", "RECV"),
    "control": ("NOP", "FENCE", "HALT", "BATCH", "CHUNK", "SLOT"),
}
CLASS_OF = {m: c for c, ms in CLASSES.items() for m in ms}
SCOREBOARD_EXTRA = 16              # scalar registers tracked after the VBUF entries
# Builds a NamedTuple from a plain tuple of all its fields, without the generated __new__'s argument handling:
# the records below are made hundreds of thousands of times per model (pre-decode, resolution), and are
# interned (`Records`): the garbage collector never untracks a tuple subclass, so every copy left alive would
# be traversed by each full collection.
_record = tuple.__new__
ADDRESS_FIELDS = ("w", "addr", "stride", "index")      # never change a cost (addresses, row pitch)


# ================================================================================================ operands
class Operand(NamedTuple):
    """A VBUF range or a scalar register one instruction reads or writes."""
    entry: int                  # first VBUF entry; a scalar register r is entry vbuf_entries + r
    elems: int | None           # elements from `entry` on; None: POS + 1 (a dynamic length)
    scalar: bool = False        # a scalar register: exactly one entry


def vbuf_operands(op: isa.Op, f: dict, batch: isa.Batch | None, vbuf_entries: int,
                  d: int) -> tuple[list[Operand], list[Operand]]:
    """(reads, writes) of an instruction with fields `f` as scoreboard operands: the ISA's `isa.operand_ranges`
    (a BATCH-fused instruction's strided operands m times, contiguous copies merged), with the scalar registers
    after the VBUF entries and a dynamic length (POS + 1) left open."""
    reads, writes = [], []
    for r in isa.operand_ranges(op, f, d, batch=batch):
        o = (_record(Operand, (vbuf_entries + r.start, 1, True)) if r.scalar
             else _record(Operand, (r.start, r.elems, False)))
        (writes if r.write else reads).append(o)
    return reads, writes


# ================================================================================================ layer bins
def layer_bins(instrs: list[isa.Instr], n_layer: int, node_pcs=None) -> tuple[list[int], list[str]]:
    """Map each pc to a bin: 0 'embed', 1..L 'layer i', L+1 'final' (ln_f, LM head, HALT).

    With `node_pcs` (a manifest list of [start_pc, node_name]) the map is exact; otherwise a layer starts with
    the LOADs of its first LayerNorm's parameters (VDOT appears once per LayerNorm: 2 per layer, 1 for ln_f).
    """
    names = ["embed"] + [f"layer {i}" for i in range(n_layer)] + ["final"]
    starts: list[tuple[int, int]] = []
    if node_pcs:
        for pc, node in node_pcs:
            parts = str(node).split(".")
            if len(parts) >= 2 and parts[0] == "h" and parts[1].isdigit():
                b = int(parts[1]) + 1
            elif node == "embed":
                b = 0
            else:
                b = n_layer + 1
            starts.append((int(pc), b))
    else:
        ln = 0
        for pc, ins in enumerate(instrs):
            if ins.op.mnemonic != "VDOT":
                continue
            s = pc
            while s > 0 and instrs[s - 1].op.mnemonic != "VSUM" and pc - s < 4:
                s -= 1
            s -= 1                                               # the VSUM
            while s > 0 and instrs[s - 1].op.mnemonic == "LOAD" and not instrs[s - 1].fields()["index"]:
                s -= 1
            if ln % 2 == 0:
                starts.append((max(s, 0), min(ln // 2 + 1, n_layer + 1)))
            ln += 1
    out = [0] * len(instrs)
    starts.sort()
    j, cur = 0, 0
    for pc in range(len(instrs)):
        while j < len(starts) and starts[j][0] <= pc:
            cur = starts[j][1]
            j += 1
        out[pc] = cur
    return out, names


# ================================================================================================ batched runs
def needs_count(instrs: list[isa.Instr]) -> bool:
    """Whether a stream is a batched prefill: its run depends on COUNT (CHUNK, SLOT, BATCH +dyn_m)."""
    return any(ins.op.mnemonic in ("CHUNK", "SLOT") or (ins.op.mnemonic == "BATCH" and ins.dyn_m)
               for ins in instrs)


class RunPath(NamedTuple):
    """The instructions one run executes, in order (entries), and what the run adds to them."""
    pcs: list[int]                  # entry -> pc
    slots: list[int]                # entry -> POS - the host's POS when it runs (SLOT i sets POS = POS0 + i)
    batch: dict[int, isa.Batch]     # entry -> the BATCH prefix fused into it
    skips: set[int]                 # entries that are SLOTs whose token does not exist (they jump `skip` ahead)

    @classmethod
    def straight(cls, n: int) -> "RunPath":
        """A stream without batched-run instructions: every instruction once, in order."""
        return cls(list(range(n)), [0] * n, {}, set())


def run_path(instrs: list[isa.Instr], count: int | None, serial: bool) -> RunPath:
    """What one run executes (docs/isa.md, "Batched prefill") with COUNT = `count`. A BATCH word is an entry of
    its own only in serial issue (where it is fetched and decoded); otherwise it is fused into the instruction
    it prefixes (ISA rule 5)."""
    path = RunPath([], [], {}, set())
    pcs, slots = path.pcs, path.slots
    n = len(instrs)
    pc, slot, pos0, prefix, counted = 0, 0, 0, None, False
    while pc < n:
        ins = instrs[pc]
        mn = ins.op.mnemonic
        skips = False
        try:
            if mn == "BATCH":
                prefix = isa.check_batch(ins, instrs[pc + 1] if pc + 1 < n else None, count if counted else 0)
                if serial:
                    pcs.append(pc)
                    slots.append(slot)
                pc += 1
                continue
            if mn == "CHUNK":
                if count is None:
                    raise RuleError("a batched prefill stream: give the run's token count")
                isa.check_chunk(ins, count, slot)
                counted, pos0 = True, slot
            elif mn == "SLOT":
                if isa.check_slot(ins, count if counted else 0, n - pc - 1):
                    slot = pos0 + ins.i
                else:
                    skips = True
                    path.skips.add(len(pcs))
        except RuleError as e:
            raise PerfError(f"pc {pc} `{isa.disassemble(ins)}`: {e}") from None
        if prefix is not None:
            path.batch[len(pcs)] = prefix
            prefix = None
        pcs.append(pc)
        slots.append(slot)
        if mn == "HALT":
            break
        pc += ins.skip + 1 if skips else 1
    return path


# ================================================================================================ the trace
class Static(NamedTuple):
    """What an instruction is, whatever POS it runs at."""
    kind: int                       # K_NORMAL, K_FENCE, ...
    unit: int                       # U_MPU, ...
    op: int                         # index into MNEMONICS
    reads: tuple[Operand, ...]
    writes: tuple[Operand, ...]
    fence: int                      # FENCE: the units it waits for (bit u = unit u)


class Decoded(NamedTuple):
    """An instruction decoded in its `Context` (shared by every stream and device that runs it)."""
    static: Static
    csig: tuple                     # cost signature: mnemonic, context, every field that can change the cost
    skey: tuple                     # (static's number, csig): equal keys => equal `Resolved` records at every POS
    fields: dict
    op: isa.Op
    ctx: Context
    dynamic: bool                   # its cost or ranges depend on POS


class Resolved(NamedTuple):
    """An instruction at one POS, as the scheduler runs it."""
    kind: int
    unit: int
    op: int                         # index into MNEMONICS
    bin: int                        # layer bin
    reads: tuple[tuple[int, int], ...]   # scoreboard entries [start, end)
    writes: tuple[tuple[int, int], ...]
    occupancy: int
    latency: int
    fence: int                      # FENCE: its unit mask; a batched instruction on the RTL's engines: the cycles
    #                                 from its start until its last vector is dispatched (`Timing.batch_hold`)
    hbm_bytes: int
    ddr_bytes: int


@dataclass(slots=True)
class Records:
    """What the traces of one model share: every instruction decoded once per `Context`, and one copy of each
    distinct `Operand`, `Static` and `Resolved` record (keyed by their fields as plain tuples)."""
    decoded: dict = field(default_factory=dict)      # (Instr, Context) -> Decoded
    operands: dict = field(default_factory=dict)
    statics: dict = field(default_factory=dict)      # fields -> (Static, its number)
    resolved: dict = field(default_factory=dict)

    def intern(self, table: dict, cls, fields: tuple):
        """The one `cls` record with these fields."""
        r = table.get(fields)
        if r is None:
            r = table[fields] = _record(cls, fields)
        return r

    def static(self, fields: tuple) -> tuple[Static, int]:
        """The one `Static` record with these fields, and its number (statics are numbered as first seen)."""
        st = self.statics.get(fields)
        if st is None:
            st = self.statics[fields] = (_record(Static, fields), len(self.statics))
        return st


class Trace:
    """One device's stream, pre-decoded: a `Decoded` record per entry, and per POS class the `Resolved`
    records the scheduler runs on (resolved lazily, as the scheduler reaches them).

    A stream with BATCH, CHUNK or SLOT is pre-decoded along the path one run takes (`run_path`) for a token
    count `count`: entries are the instructions executed, in order; a dynamic instruction of token slot i runs
    at POS + i (`offset`)."""

    def __init__(self, instrs: list[isa.Instr], timing: Timing, n_layer: int, devices: int, node_pcs=None,
                 records: Records | None = None, regions: dict[int, int] | None = None, count: int | None = None,
                 bins: tuple | None = None):
        self.timing = timing
        if not instrs or instrs[-1].op.mnemonic != "HALT":
            raise PerfError("stream does not end with HALT")
        pc_bins, self.bin_names = bins or layer_bins(instrs, n_layer, node_pcs)
        if any(ins.op.mnemonic in isa.BATCHED_OPS for ins in instrs):
            path = run_path(instrs, count, timing.serial)
        else:
            path = RunPath.straight(len(instrs))
        self.src = instrs
        self.pcs = path.pcs                    # entry -> pc
        self.n = len(path.pcs)
        self.bins = [pc_bins[pc] for pc in self.pcs]
        self.bins_np = np.asarray(self.bins, np.int64)
        self.decoded: list[Decoded] = []
        self.skey: list[tuple] = []            # per entry: equal keys => equal resolved records (but the bin)
        self.dyn: set[int] = set()             # entries whose cost or ranges depend on POS
        self.offset: dict[int, int] = {}       # dynamic entry -> its token slot's POS offset (batched prefill)
        self.records = records = Records() if records is None else records
        cache = records.decoded
        regions = regions or {}
        batches, skipping = path.batch, path.skips
        for e, (pc, slot) in enumerate(zip(path.pcs, path.slots)):
            ins = instrs[pc]
            wbytes = None
            if ins.op.fmt is isa.MATRIX and ins.wfmt != 0:
                wbytes = regions.get(ins.w)
                if wbytes is None:
                    raise PerfError(f"pc {pc} `{isa.disassemble(ins)}`: quantized weights at HBM address {ins.w} "
                                    "have no region in the manifest (quantization.regions); recompile the program")
            if wbytes is None and e not in batches and e not in skipping:
                ctx = PLAIN
            else:
                ctx = Context(batches.get(e), e in skipping, wbytes)
            key = (ins, ctx)
            dec = cache.get(key)
            if dec is None:
                dec = cache[key] = self._decode(ins, ctx, pc, devices)
            self.decoded.append(dec)
            skey = dec.skey
            if dec.dynamic:
                self.dyn.add(e)
                if slot:
                    self.offset[e] = slot
                    skey = skey + (slot,)
            self.skey.append(skey)
        self.has_p2p = any(dec.static.kind in (K_SEND, K_RECV) for dec in self.decoded)
        self._base: list = [None] * self.n     # POS-independent entries once resolved, shared by every n_dyn
        self._resolved: dict[int, list] = {}

    def _decode(self, ins: isa.Instr, ctx: Context, pc: int, devices: int) -> Decoded:
        t = self.timing
        cfg = t.cfg
        op, f = ins.op, ins.fields()
        try:
            isa_check.check_instr(ins, cfg, devices)
        except RuleError as e:
            raise PerfError(f"pc {pc} `{isa.disassemble(ins)}`: {e}") from None
        kind = KINDS.get(op.mnemonic, K_NORMAL)
        reads, writes = vbuf_operands(op, f, ctx.batch, cfg.vbuf_entries, cfg.d)
        rec = self.records
        ops = rec.operands
        reads = tuple(ops.setdefault(o, o) for o in reads)
        writes = tuple(ops.setdefault(o, o) for o in writes)
        mask = isa.fence_units(f["units"]) if kind == K_FENCE else 0    # bit u: unit u (U_MPU ... U_ROUTER)
        st, number = rec.static((kind, UNIT_OF[op.unit], MN_INDEX[op.mnemonic], reads, writes, mask))
        plain_ctx = (tuple(ctx.batch) if ctx.batch else None, ctx.skips, ctx.wbytes)
        csig = (op.mnemonic, plain_ctx) + tuple(v for k, v in f.items() if k not in ADDRESS_FIELDS)
        if t.rtl and op.unit is isa.Unit.DMA:      # pieces depend on the address's alignment
            csig += (t.dma_base(f) % max(t.rtl.hbm_beat, t.rtl.ddr_beat),)
        return _record(Decoded, (st, csig, (number, csig), f, op, ctx, bool(f.get("dyn_n") or f.get("dyn_k"))))

    def where(self, e: int) -> str:
        """Entry `e` for a message: its pc and text."""
        return f"pc {self.pcs[e]} `{isa.disassemble(self.src[self.pcs[e]])}`"

    def _resolve_one(self, e: int, n_dyn: int) -> Resolved:
        """Entry `e` at a run with POS + 1 = n_dyn (token slot i of a batched run: n_dyn + i)."""
        t = self.timing
        st, csig, _, fields, op, ctx, dynamic = self.decoded[e]
        kind, unit, mn, reads, writes, fence = st
        if dynamic:
            n_dyn += self.offset.get(e, 0)
        d = t.cfg.d
        E = t.cfg.vbuf_entries
        e_dyn = cdiv(n_dyn, d)

        def ranges(spec: tuple[Operand, ...]) -> tuple[tuple[int, int], ...]:
            out = []
            for a, ln, scalar in spec:
                if scalar:
                    out.append((a, a + 1))
                elif ln is None:
                    out.append((a, a + e_dyn))
                elif ln > 0:
                    out.append((a, a + cdiv(ln, d)))
            return tuple(out)

        rr, ww = ranges(reads), ranges(writes)
        for a, b in rr + ww:
            if b > E + SCOREBOARD_EXTRA or (a < E and b > E):
                raise PerfError(f"{self.where(e)}: VBUF entries {a}..{b} exceed the {E}-entry buffer")
        key = (csig, n_dyn if dynamic else 0)
        c = t.cost_cache.get(key)
        if c is None:
            c = t.cost_cache[key] = t.cost(op, fields, n_dyn, ctx)
        occ, lat, hbm, ddr = c
        if kind == K_NORMAL and ctx.batch is not None and t.rtl and not t.serial:
            fence = t.batch_hold(ctx.rows, occ)       # K_NORMAL: the dispatch hold of a batched instruction
        rec = self.records
        return rec.intern(rec.resolved, Resolved, (kind, unit, mn, self.bins[e], rr, ww, occ, lat, fence, hbm, ddr))

    def resolved(self, n_dyn: int) -> list:
        """Per-entry `Resolved` records for POS + 1 = n_dyn (memoised per n_dyn); an entry stays None until
        the scheduler first reaches it and resolves it (`resolver`): with the periodicity shortcut most never
        are."""
        r = self._resolved.get(n_dyn)
        if r is None:
            r = self._resolved[n_dyn] = list(self._base)
        return r

    def resolver(self, n_dyn: int):
        """entry -> its `Resolved` record at POS + 1 = n_dyn (POS-independent ones resolved once for every
        n_dyn)."""
        base, dyn, one = self._base, self.dyn, self._resolve_one

        def resolve(e: int) -> Resolved:
            if e in dyn:
                return one(e, n_dyn)
            x = base[e]
            if x is None:
                x = base[e] = one(e, 1)
            return x
        return resolve
