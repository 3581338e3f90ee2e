"""Memory allocation: VBUF entries for every vector (liveness-based first fit), DDR for tables and small
parameters, HBM for tiled matrices and the KV cache. The result is a `Plan` that lowering and the image
builder both read.

With `prefill_batch` M (matrix-matrix prefill, docs/isa.md "Batched prefill") the plan also holds
`plan.batch`: the same DDR/HBM placement with a VBUF layout for the `prefill_batch` stream, in which every vector
has M copies (one per token slot, `vstride` entries apart), and DDR gets the chunk's token table.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dfx import formats as F
from dfx import isa
from dfx.config import AccelConfig
from dfx.errors import CompileError
from dfx.program import tile_grid
from dfx.symbols import LOGITS, PREFILL_TOKENS, Kind, Space, SymbolTable, sym_name

from .graph import Graph, shape_of

LMHEAD_CHUNK = 8192      # vocabulary columns per LMHEAD instruction (the MATRIX n field is 14 bits)


@dataclass
class Plan:
    cfg: AccelConfig
    max_seq: int
    device: int = 0
    vbuf: SymbolTable = field(default_factory=lambda: SymbolTable(Space.VBUF))   # values and node temps
    vbuf_entries_used: int = 0
    ddr: SymbolTable = field(default_factory=lambda: SymbolTable(Space.DDR))     # byte addresses
    ddr_size: int = 0
    hbm: SymbolTable = field(default_factory=lambda: SymbolTable(Space.HBM))     # addresses in 64-byte units
    hbm_size: int = 0                                          # bytes
    logits_chunk: int = 0
    prefill_batch: int = 0                                     # M: tokens per batched prefill run (0: none)
    vstride: dict[str, int] = field(default_factory=dict)     # batched layout: value -> entries between slots
    batch: "Plan | None" = None                                # the prefill_batch stream's plan (same DDR/HBM)

    def entries(self, n: int) -> int:
        return -(-n // self.cfg.d)


class _FirstFit:
    def __init__(self, capacity: int):
        self.capacity, self.free = capacity, [(0, capacity)]
        self.high = 0

    def alloc(self, size: int, what: str) -> int:
        for i, (start, length) in enumerate(self.free):
            if length >= size:
                self.free[i] = (start + size, length - size)
                self.high = max(self.high, start + size)
                return start
        raise CompileError(f"node {what}: VBUF is full: {size} more entries needed, {self.capacity} in all; "
                           "use a config with more vbuf_entries")

    def release(self, start: int, size: int):
        self.free.append((start, size))
        self.free.sort()
        merged = []
        for s, n in self.free:
            if merged and merged[-1][0] + merged[-1][1] == s:
                merged[-1] = (merged[-1][0], merged[-1][1] + n)
            else:
                merged.append((s, n))
        self.free = [m for m in merged if m[1]]


def piece_bytes(n, a: int, b: int, cfg: AccelConfig) -> int:
    """HBM bytes of columns a:b of a linear/lm_head node's weight, as stored (FP16 tiles or a quantized region)."""
    k = shape_of(n.params["weight"])[0]
    fmt = n.attrs.get("wformat", F.FP16)
    w = n.params["weight"]
    phase = w.cols(a, b).phase if isinstance(w, F.QuantWeight) else F.piece_phase(fmt, a)
    return F.matrix_bytes(fmt, k, b - a, cfg.d, cfg.l, phase)


def node_temps(g: Graph, node, plan: Plan) -> dict[str, int]:
    """Scratch vectors a node needs in VBUF (symbol name -> elements)."""
    name, e = node.name, g.values[node.output]
    if node.op == "embed":
        return {sym_name(name, Kind.POS): e}
    if node.op == "layernorm":
        return {sym_name(name, Kind.GAMMA): e, sym_name(name, Kind.BETA): e}
    if node.op == "linear" and "bias" in node.params:
        return {sym_name(name, Kind.BIAS): e}
    if node.op == "attention":
        return {sym_name(name, Kind.SCORE, i): plan.max_seq for i in range(2)}
    return {}


def prefill_nodes(g: Graph) -> list:
    """The nodes a prefill needs: those whose output reaches an attention node (the K/V cache append). The last
    layer's attention projection, MLP and residuals, ln_f and the LM head feed only the logits, which a prefill
    does not produce."""
    need, keep = set(), []
    for n in reversed(g.nodes):
        if n.op == "attention" or n.output in need:
            keep.append(n)
            need.update(n.inputs)
    return keep[::-1]


def batch_steps(g: Graph) -> list[list]:
    """The prefill_batch stream's steps, in order: each linear alone (one batched matrix instruction per piece),
    and each run of consecutive other nodes as one group (one section per token slot)."""
    steps: list[list] = []
    for n in prefill_nodes(g):
        if n.op == "linear" or not steps or steps[-1][0].op == "linear":
            steps.append([n])
        else:
            steps[-1].append(n)
    return steps


def _batch_vbuf(g: Graph, plan: Plan, m: int, capacity: int | None = None):
    """VBUF for a chunk of m tokens: (entry, stride, entries used), or None when it does not fit `capacity`
    (default: the config's VBUF).

    Values live for whole steps: a group's per-token sections interleave its nodes (token 1's first node runs
    after token 0's last), so every output of a group is placed before the group runs and every input it reads
    stays until the group ends; temps (LayerNorm parameters, loaded once before the sections, the score and
    position buffers, a bias) live for their step."""
    steps = batch_steps(g)
    last = {}
    for i, step in enumerate(steps):
        for n in step:
            for v in n.inputs:
                last[v] = i
    ff = _FirstFit(capacity or plan.cfg.vbuf_entries)
    vbuf, stride, live = SymbolTable(Space.VBUF), {}, {}
    try:
        for i, step in enumerate(steps):
            for n in step:
                stride[n.output] = plan.entries(g.values[n.output])
                s = vbuf.place(n.output, ff.alloc(m * stride[n.output], n.name), m * stride[n.output])
                live[n.output] = (s.address, s.length)
            temps = [(t, plan.entries(ln)) for n in step for t, ln in node_temps(g, n, plan).items()]
            for t, size in temps:
                vbuf.place(t, ff.alloc(size, step[0].name), size)
            for t, size in temps:
                ff.release(vbuf.address(t), size)
            for v in [v for v in live if last.get(v, -1) <= i]:
                ff.release(*live.pop(v))
    except CompileError:
        return None
    return vbuf, stride, ff.high


def check_prefill_batch(m, max_seq: int) -> None:
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= min(max_seq, (1 << 16) - 1):
        raise CompileError(f"--prefill-batch {m!r}: give the tokens per batched prefill run, an integer in "
                           f"1..{min(max_seq, (1 << 16) - 1)} (at most the context of {max_seq} positions)")


def plan_batch(g: Graph, plan: Plan, m: int) -> Plan:
    """`plan.batch` for chunks of m tokens; CompileError naming the largest m that fits VBUF."""
    check_prefill_batch(m, plan.max_seq)
    got = _batch_vbuf(g, plan, m)
    if got is None:
        need = _batch_vbuf(g, plan, m, 1 << 40)[2]
        lo, hi = 0, m - 1                    # the largest chunk that fits (the layout grows with m)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if _batch_vbuf(g, plan, mid) is None:
                hi = mid - 1
            else:
                lo = mid
        raise CompileError(f"--prefill-batch {m}: a chunk of {m} tokens needs {need} VBUF entries (every vector of "
                           f"a layer is held once per token), config {plan.cfg.name!r} has {plan.cfg.vbuf_entries}; "
                           + (f"the largest chunk that fits is {lo}: use --prefill-batch {lo}" if lo else
                              "not even one token fits"))
    vbuf, stride, used = got
    return Plan(plan.cfg, plan.max_seq, plan.device, vbuf, used, plan.ddr, plan.ddr_size, plan.hbm, plan.hbm_size,
                plan.logits_chunk, m, stride)


def allocate(g: Graph, cfg: AccelConfig, max_seq: int | None = None, device: int = 0,
             prefill_batch: int | None = None) -> Plan:
    """Place device `device`'s data (after `partition`, which says which pieces and heads it owns); with
    prefill_batch M, also the batched prefill's VBUF layout and token table (`plan.batch`)."""
    m = g.model
    max_seq = max_seq or m["n_positions"]
    if max_seq > m["n_positions"]:
        raise CompileError(f"max_seq {max_seq} exceeds the model's n_positions {m['n_positions']}")
    if prefill_batch is not None:
        check_prefill_batch(prefill_batch, max_seq)
    plan = Plan(cfg, max_seq, device)
    plan.logits_chunk = min(m["vocab_size"], LMHEAD_CHUNK)
    for n in g.nodes:
        for v in (g.values[n.output],):
            if v >= 1 << 14 and n.op != "lm_head":
                raise CompileError(f"node {n.name}: output length {v} exceeds the MATRIX n field (16383)")

    # ---- VBUF: values live from their producer to their last consumer; temps live for their node only.
    last_use = {}
    for i, n in enumerate(g.nodes):
        for v in n.inputs:
            last_use[v] = i
    ff = _FirstFit(cfg.vbuf_entries)
    live: dict[str, tuple[int, int]] = {}
    for i, n in enumerate(g.nodes):
        length = plan.logits_chunk if n.op == "lm_head" else g.values[n.output]
        size = plan.entries(length)
        live[n.output] = (plan.vbuf.place(n.output, ff.alloc(size, n.name), size).address, size)
        temps = {t: plan.entries(length) for t, length in node_temps(g, n, plan).items()}
        for t, size in temps.items():
            plan.vbuf.place(t, ff.alloc(size, n.name), size)
        for t, size in temps.items():
            ff.release(plan.vbuf.address(t), size)
        for v in n.inputs:
            if last_use.get(v) == i and v in live:
                ff.release(*live.pop(v))
        if n.output not in last_use and n.op != "lm_head":
            ff.release(*live.pop(n.output))
    plan.vbuf_entries_used = ff.high

    # ---- DDR: embedding tables, vector parameters, logits output (64-byte aligned).
    addr = 0

    def ddr(name: str, nbytes: int):
        nonlocal addr
        plan.ddr.place(name, addr, nbytes)
        addr += -(-nbytes // 64) * 64

    for n in g.nodes:
        if n.op == "embed":
            ddr(sym_name(n.name, Kind.WTE), 2 * int(np.prod(shape_of(n.params["wte"]))))
            ddr(sym_name(n.name, Kind.WPE), 2 * int(np.prod(shape_of(n.params["wpe"]))))
        elif n.op == "layernorm":
            ddr(sym_name(n.name, Kind.GAMMA), 2 * g.values[n.output])
            ddr(sym_name(n.name, Kind.BETA), 2 * g.values[n.output])
        elif n.op == "linear" and "bias" in n.params:
            ddr(sym_name(n.name, Kind.BIAS), 2 * g.values[n.output])
    ddr(LOGITS, 2 * m["vocab_size"])
    if prefill_batch is not None:       # the chunk's token table: u32 COUNT, then up to M u32 tokens
        ddr(PREFILL_TOKENS, isa.TOKEN_TABLE_HEADER + 4 * prefill_batch)
    plan.ddr_size = addr
    if addr > cfg.ddr_bytes:
        raise CompileError(f"DDR image needs {addr} bytes, the config has {cfg.ddr_bytes}")

    # ---- HBM: tiled weight matrices, then the KV cache (zero-initialised).
    unit = isa.HBM_UNIT
    tile_units = cfg.tile_bytes // unit
    top = 0

    beat_units = max(cfg.beat_bytes // unit, 1)

    def hbm(name: str, nbytes: int):
        nonlocal top
        top = -(-top // beat_units) * beat_units     # every matrix starts on a beat (the core's FP16 tile stream)
        plan.hbm.place(name, top, nbytes)
        top += nbytes // unit

    for n in g.nodes:
        if n.op in ("linear", "lm_head"):
            k = shape_of(n.params["weight"])[0]
            fmt = n.attrs.get("wformat", F.FP16)
            for p, (a, b) in enumerate(n.attrs["pieces"][device]):
                if fmt.kind == "fp16":
                    kt, nt = tile_grid(k, b - a, cfg.d, cfg.l)
                    hbm(sym_name(n.name, Kind.WEIGHT, p), kt * nt * tile_units * unit)
                else:                 # a quantized region (dfx.formats.RegionLayout), whole 64-byte units
                    hbm(sym_name(n.name, Kind.WEIGHT, p), piece_bytes(n, a, b, cfg))
    for n in g.nodes:
        if n.op == "attention":
            hp = n.attrs["head_pad"]
            for h in n.attrs["heads"][device]:
                kt, nt = tile_grid(hp, max_seq, cfg.d, cfg.l)          # K cache: head_pad x max_seq, column-major
                hbm(sym_name(n.name, Kind.KCACHE, h), kt * nt * tile_units * unit)
                kt, nt = tile_grid(max_seq, hp, cfg.d, cfg.l)          # V cache: max_seq x head_pad, row-major
                hbm(sym_name(n.name, Kind.VCACHE, h), kt * nt * tile_units * unit)
    plan.hbm_size = top * unit
    if plan.hbm_size > cfg.hbm_bytes:
        raise CompileError(f"HBM image needs {plan.hbm_size} bytes, the config has {cfg.hbm_bytes}")
    if top >= 1 << 28:
        raise CompileError("HBM image exceeds the 28-bit MATRIX w field")
    if prefill_batch is not None:
        plan.prefill_batch = prefill_batch
        plan.batch = plan_batch(g, plan, prefill_batch)
    return plan
