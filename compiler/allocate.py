"""Memory allocation: VBUF entries for every vector (liveness-based first fit), DDR for tables and small
parameters, HBM for tiled matrices and the KV cache. The result is a `Plan` that lowering and the image
builder both read.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dfx import formats as F
from dfx import isa
from dfx.config import AccelConfig
from dfx.errors import CompileError
from dfx.program import tile_grid

from .graph import Graph, shape_of

LMHEAD_CHUNK = 8192      # vocabulary columns per LMHEAD instruction (the MATRIX n field is 14 bits)


@dataclass
class Plan:
    cfg: AccelConfig
    max_seq: int
    device: int = 0
    vbuf: dict[str, int] = field(default_factory=dict)        # vector/temp name -> VBUF entry
    vbuf_entries_used: int = 0
    ddr: dict[str, int] = field(default_factory=dict)         # symbol -> byte address
    ddr_size: int = 0
    hbm: dict[str, int] = field(default_factory=dict)         # symbol -> address in 64-byte units
    hbm_size: int = 0                                          # bytes
    logits_chunk: int = 0

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
    """Scratch vectors a node needs in VBUF (name -> elements)."""
    if node.op == "embed":
        return {f"{node.name}.pos": g.values[node.output]}
    if node.op == "layernorm":
        return {f"{node.name}.gamma": g.values[node.output], f"{node.name}.beta": g.values[node.output]}
    if node.op == "linear" and "bias" in node.params:
        return {f"{node.name}.bias": g.values[node.output]}
    if node.op == "attention":
        return {f"{node.name}.s0": plan.max_seq, f"{node.name}.s1": plan.max_seq}
    return {}


def allocate(g: Graph, cfg: AccelConfig, max_seq: int | None = None, device: int = 0) -> Plan:
    """Place device `device`'s data (after `partition`, which says which pieces and heads it owns)."""
    m = g.model
    max_seq = max_seq or m["n_positions"]
    if max_seq > m["n_positions"]:
        raise CompileError(f"max_seq {max_seq} exceeds the model's n_positions {m['n_positions']}")
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
        plan.vbuf[n.output] = ff.alloc(size, n.name)
        live[n.output] = (plan.vbuf[n.output], size)
        temps = node_temps(g, n, plan)
        for t, length in temps.items():
            plan.vbuf[t] = ff.alloc(plan.entries(length), n.name)
        for t, length in temps.items():
            ff.release(plan.vbuf[t], plan.entries(length))
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
        plan.ddr[name] = addr
        addr += -(-nbytes // 64) * 64

    for n in g.nodes:
        if n.op == "embed":
            ddr(f"{n.name}.wte", 2 * int(np.prod(shape_of(n.params["wte"]))))
            ddr(f"{n.name}.wpe", 2 * int(np.prod(shape_of(n.params["wpe"]))))
        elif n.op == "layernorm":
            ddr(f"{n.name}.gamma", 2 * g.values[n.output])
            ddr(f"{n.name}.beta", 2 * g.values[n.output])
        elif n.op == "linear" and "bias" in n.params:
            ddr(f"{n.name}.bias", 2 * g.values[n.output])
    ddr("logits", 2 * m["vocab_size"])
    plan.ddr_size = addr
    if addr > cfg.ddr_bytes:
        raise CompileError(f"DDR image needs {addr} bytes, the config has {cfg.ddr_bytes}")

    # ---- HBM: tiled weight matrices, then the KV cache (zero-initialised).
    unit = isa.HBM_UNIT
    tile_units = cfg.tile_bytes // unit
    top = 0

    def hbm(name: str, tiles: int):
        nonlocal top
        plan.hbm[name] = top
        top += tiles * tile_units

    for n in g.nodes:
        if n.op in ("linear", "lm_head"):
            k = shape_of(n.params["weight"])[0]
            fmt = n.attrs.get("wformat", F.FP16)
            for p, (a, b) in enumerate(n.attrs["pieces"][device]):
                if fmt.kind == "fp16":
                    kt, nt = tile_grid(k, b - a, cfg.d, cfg.l)
                    hbm(f"{n.name}.w{p}", kt * nt)
                else:                 # a quantized region (dfx.formats.RegionLayout), in 64-byte units
                    plan.hbm[f"{n.name}.w{p}"] = top
                    top += piece_bytes(n, a, b, cfg) // unit
    for n in g.nodes:
        if n.op == "attention":
            hp = n.attrs["head_pad"]
            for h in n.attrs["heads"][device]:
                kt, nt = tile_grid(hp, max_seq, cfg.d, cfg.l)          # K cache: head_pad x max_seq, column-major
                hbm(f"{n.name}.k{h}", kt * nt)
                kt, nt = tile_grid(max_seq, hp, cfg.d, cfg.l)          # V cache: max_seq x head_pad, row-major
                hbm(f"{n.name}.v{h}", kt * nt)
    plan.hbm_size = top * unit
    if plan.hbm_size > cfg.hbm_bytes:
        raise CompileError(f"HBM image needs {plan.hbm_size} bytes, the config has {cfg.hbm_bytes}")
    if top >= 1 << 28:
        raise CompileError("HBM image exceeds the 28-bit MATRIX w field")
    return plan
