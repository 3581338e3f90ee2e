"""Named passes over the graph IR: `def pass_name(graph, cfg) -> graph` (tinygrad/VTA style).

    pad_heads   pad every attention head to a multiple of d so each head's q/k/v slice starts on a VBUF entry
    quantize    round parameters to the storage format (FP16, subnormals flushed)
"""
from __future__ import annotations

import numpy as np

from dfx import numerics
from dfx.config import AccelConfig

from .graph import Graph, Shape, shape_of


def _pad_cols(w, groups: int, width: int, pad: int):
    """Pad each of `groups` consecutive column groups of `width` to `pad` columns (weights or biases)."""
    if isinstance(w, Shape):
        return Shape(w.shape[:-1] + (groups * pad,))
    parts = np.split(w, groups, axis=-1)
    padw = [(0, 0)] * (w.ndim - 1) + [(0, pad - width)]
    return np.concatenate([np.pad(x, padw) for x in parts], axis=-1)


def _pad_rows(w, groups: int, width: int, pad: int):
    if isinstance(w, Shape):
        return Shape((groups * pad,) + w.shape[1:])
    parts = np.split(w, groups, axis=0)
    return np.concatenate([np.pad(x, [(0, pad - width)] + [(0, 0)] * (w.ndim - 1)) for x in parts], axis=0)


def pad_heads(g: Graph, cfg: AccelConfig) -> Graph:
    """Give every head head_pad = ceil(head_dim/d)*d elements: zero weight columns in c_attn (per q/k/v head)
    and zero rows in the following c_proj. Zero products add exact zeros, so results are unchanged."""
    for att in [n for n in g.nodes if n.op == "attention"]:
        H, hd = att.attrs["n_head"], att.attrs["head_dim"]
        hp = -(-hd // cfg.d) * cfg.d
        if hp == att.attrs["head_pad"]:
            continue
        qkv = g.producer(att.inputs[0])
        qkv.params["weight"] = _pad_cols(qkv.params["weight"], 3 * H, hd, hp)
        qkv.params["bias"] = _pad_cols(qkv.params["bias"], 3 * H, hd, hp)
        g.values[qkv.output] = 3 * H * hp
        for proj in g.consumers(att.output):
            proj.params["weight"] = _pad_rows(proj.params["weight"], H, hd, hp)
        g.values[att.output] = H * hp
        att.attrs["head_pad"] = hp
    return g


def quantize(g: Graph, cfg: AccelConfig, fmt: str = "fp16") -> Graph:
    """Round every parameter to the storage format. FP16 is what DFX stores; other formats come later."""
    if fmt != "fp16":
        from dfx.errors import CompileError
        raise CompileError(f"weight format {fmt!r} is not supported yet; accepted: fp16")
    if not g.has_weights:
        return g
    for n in g.nodes:
        for k, p in n.params.items():
            if isinstance(p, np.ndarray) and p.dtype != np.float16:
                n.params[k] = numerics.to_fp16(p)
    return g


def param_bytes(g: Graph) -> int:
    return sum(2 * int(np.prod(shape_of(p))) for n in g.nodes for p in n.params.values())
