"""Intra-layer model parallelism across N devices in a ring, as DFX does it.

- Attention is split by heads: device k owns a contiguous range of heads (uneven when n_head % N != 0: GPT-2
  1.5B's 25 heads on 4 devices are 7, 6, 6, 6), computes their q, k, v (its columns of c_attn), keeps their
  KV cache, and the head outputs are all-gathered.
- The other linear layers (attn.c_proj, mlp.c_fc, mlp.c_proj) are split by output columns (whole VBUF entries)
  and their outputs all-gathered: with the attention gather, DFX's 4 syncs per decoder layer.
- The LM head is split by vocabulary columns; each device stores its slice of the logits, the host joins them.
- LayerNorm, residual adds and embeddings are replicated.

Every split cuts output columns only, never the reduction dimension, so each device computes exactly the
values the single-device program computes: logits are bit-identical for every N.

Overlap (`segments` > 1, beyond DFX): each gathered linear output is cut into `segments` parts, each split
among the devices and gathered on its own, so the ring moves part s while the MPU computes part s+1.
`segments` is one count for every gathered linear or a dict per role ({"attn.c_proj": 2, "mlp.c_fc": 1,
"mlp.c_proj": 4}, roles missing from it blocking): more segments hide more of the ring but add sync points
and shorten each MPU run, so the best count differs per layer shape (`dfx.perf.tune` chooses them).

This pass only annotates nodes (`attrs["pieces"]`, `attrs["gathers"]`, `attrs["heads"]`) per device; the
allocator, lowering and image builder read the annotations.
"""
from __future__ import annotations

from dfx.config import AccelConfig
from dfx.errors import CompileError
from dfx.isa import chunk_bounds

from .graph import Graph


def _merge(pieces):
    out = []
    for a, b in pieces:
        if b <= a:
            continue
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


ROLES = ("attn.c_proj", "mlp.c_fc", "mlp.c_proj")     # the gathered linears of a decoder layer (c_attn is split by heads)


def _segments(segments):
    """Validate `segments`: an int >= 1, or a dict {role: int >= 1} over ROLES."""
    def ok(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1
    if isinstance(segments, dict):
        bad = [k for k in segments if k not in ROLES]
        if bad:
            raise CompileError(f"overlap: unknown layer role {bad[0]!r}; accepted: {', '.join(ROLES)}")
        for k, v in segments.items():
            if not ok(v):
                raise CompileError(f"overlap segments for {k} must be an integer >= 1, not {v!r}")
        return dict(segments)
    if not ok(segments):
        raise CompileError(f"overlap segments must be an integer >= 1, not {segments!r}")
    return segments


def parse_overlap(text: str) -> int | str:
    """A command line's overlap: "auto" or a segment count >= 1 (CompileError otherwise)."""
    t = str(text).strip().lower()
    if t == "auto":
        return t
    try:
        v = int(t)
    except ValueError:
        v = 0
    if v < 1:
        raise CompileError(f"--overlap {text}: expected auto or a segment count >= 1 (1 = DFX's blocking sync)")
    return v


def partition(g: Graph, cfg: AccelConfig, devices: int = 1, segments: int = 1) -> Graph:
    if not isinstance(devices, int) or devices < 1:
        raise CompileError(f"devices must be a positive integer, not {devices!r}")
    if devices > cfg.devices:
        raise CompileError(f"--devices {devices}: config {cfg.name!r} is built for rings of at most "
                           f"{cfg.devices} devices")
    per_role = _segments(segments)
    d, N = cfg.d, devices
    g.model["devices"] = N
    for att in [n for n in g.nodes if n.op == "attention"]:
        H, hp = att.attrs["n_head"], att.attrs["head_pad"]
        if N > H:
            raise CompileError(f"node {att.name}: {N} devices but only {H} attention heads; attention is split "
                               f"by heads, so use at most {H} devices")
        heads = [range(a, b) for a, b in chunk_bounds(H, N, 1)]
        att.attrs["heads"] = heads
        att.attrs["gathers"] = [(0, H * hp, hp // d)] if N > 1 else []
        qkv = g.producer(att.inputs[0])
        qkv.attrs["pieces"] = [_merge([(j * H * hp + r.start * hp, j * H * hp + r.stop * hp) for j in range(3)])
                               for r in heads]
        qkv.attrs["gathers"] = []
    for n in g.nodes:
        if n.op == "linear" and "pieces" not in n.attrs:
            width = g.values[n.output]
            s_n = per_role.get(n.name.split(".", 2)[-1], 1) if isinstance(per_role, dict) else per_role
            segs = chunk_bounds(width, min(s_n, -(-width // d)), d) if N > 1 else [(0, width)]
            pieces = [[] for _ in range(N)]
            for s0, s1 in segs:
                for k, (a, b) in enumerate(chunk_bounds(s1 - s0, N, d)):
                    pieces[k].append((s0 + a, s0 + b))
            # keep one piece per segment (even if empty) so pieces and gathers line up
            n.attrs["pieces"] = [[p for p in ps if p[1] > p[0]] for ps in pieces]
            n.attrs["gathers"] = [(s0, s1 - s0, 1) for s0, s1 in segs] if N > 1 else []
        elif n.op == "lm_head":
            V = g.values[n.output]
            n.attrs["pieces"] = [[(a, b)] if b > a else [] for a, b in chunk_bounds(V, N, d)]
    return g
