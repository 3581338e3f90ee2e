"""Named passes over the graph IR: `def pass_name(graph, cfg) -> graph` (tinygrad/VTA style).

    pad_heads   pad every attention head to a multiple of d so each head's q/k/v slice starts on a VBUF entry
    quantize    store parameters in their formats: FP16 (subnormals flushed), linear weights quantized
                (dfx.formats) in the padded coordinates
"""
from __future__ import annotations

import numpy as np

from dfx import formats as F
from dfx import numerics
from dfx.config import AccelConfig
from dfx.errors import CompileError
from dfx.tilescale import tile_scale_cannot_read

from .graph import Graph, Shape, shape_of
from .quant.rtn import rtn
from .quant.weight import quantize_weight


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


def head_maps(g: Graph) -> dict[str, tuple[str, np.ndarray]]:
    """Where `pad_heads` moved the rows/columns: linear node name -> (axis "cols"|"rows", src) with src[i] = the
    model index of padded index i, or -1 for a padding zero. Only padded matrices are listed."""
    out = {}
    for att in [n for n in g.nodes if n.op == "attention"]:
        H, hd, hp = att.attrs["n_head"], att.attrs["head_dim"], att.attrs["head_pad"]
        if hp == hd:
            continue
        src = np.full((H, hp), -1)
        src[:, :hd] = np.arange(H * hd).reshape(H, hd)
        qkv = g.producer(att.inputs[0])
        out[qkv.name] = ("cols", np.concatenate([src.reshape(-1) + (j * H * hd) * (src.reshape(-1) >= 0)
                                                 for j in range(3)]))
        for proj in g.consumers(att.output):
            out[proj.name] = ("rows", src.reshape(-1))
    return out


def pad_quant(qw: F.QuantWeight, axis: str, src: np.ndarray, node: str, zero_pad: bool) -> F.QuantWeight:
    """Insert padding rows/columns (src[i] = model index or -1) into a model-coordinate QuantWeight, so that
    dequant(padded) has the model's values where src >= 0 and zeros (or, with zero_pad False, any values, the
    caller promising zero inputs there) elsewhere. Groups along the padded axis must survive: every padded group
    may hold real indices of one model group only; CompileError otherwise."""
    f, (k, n) = qw.fmt, qw.shape
    ax = -1 if axis == "cols" else -2
    real = src >= 0
    take = np.where(real, src, 0)

    def gather(a, fill):
        out = np.take(a, take, axis=ax)
        mask = real if ax == -1 else real[:, None]
        return np.where(mask, out, np.asarray(fill, a.dtype))

    codes = gather(qw.codes, 0)
    grouped = (f.axis == "oc") == (axis == "rows")
    if f.kind == "fp16":
        return F.QuantWeight(f, codes, meta=qw.meta)
    if not grouped:                                   # scales follow the padded axis one for one: zero scales pad
        zeros = None if qw.zeros is None else gather(qw.zeros, 0)
        return F.QuantWeight(f, codes, gather(qw.scales, 0), zeros, dict(qw.meta)).check()
    extent = k if axis == "rows" else n
    g_model = f.group or extent
    g_pad = f.group or len(src)
    gid = np.where(real, (take + qw.phase) // g_model, -1)      # model group of every padded index
    ngroups = -(-len(src) // g_pad)
    pick = np.zeros(ngroups, np.int64)
    has = np.zeros(ngroups, bool)
    for p in range(ngroups):
        ids = np.unique(gid[p * g_pad:(p + 1) * g_pad])
        ids = ids[ids >= 0]
        if len(ids) > 1:
            raise CompileError(
                f"node {node}: {f.name} groups do not survive head padding: padded {axis[:-1]} group {p} "
                f"(indices {p * g_pad}..{min(len(src), (p + 1) * g_pad) - 1}) would mix model groups "
                f"{', '.join(map(str, ids))}; quantize by format name (the compiler then quantizes in the padded "
                f"coordinates), or use a group axis or size that head_dim allows")
        mixed = len(ids) == 1 and not real[p * g_pad:(p + 1) * g_pad].all()
        if mixed and f.kind == "bcq" and zero_pad:
            raise CompileError(
                f"node {node}: {f.name}: padded {axis[:-1]} group {p} holds real and padding weights, and BCQ has "
                f"no zero code (padding must be exactly 0 here); use an oc grouping or quantize by format name")
        pick[p], has[p] = (ids[0], True) if len(ids) else (0, False)
    hmask = has if ax == -1 else has[:, None]
    sc = np.where(hmask, np.take(qw.scales, pick, axis=ax), np.float16(0)).astype(np.float16)
    zeros = None
    if f.asym:
        zeros = np.where(hmask, np.take(qw.zeros, pick, axis=ax), 0).astype(np.uint8)
        zpe = F.expand_groups(zeros, f, *codes.shape[-2:])
        mask = real if ax == -1 else real[:, None]
        codes = np.where(mask, codes, zpe).astype(codes.dtype)            # padding = its group's zero point
    return F.QuantWeight(f, codes, sc, zeros, dict(qw.meta)).check()


def _canon(name: str) -> str:
    name = name[len("transformer."):] if name.startswith("transformer.") else name
    return name[:-len(".weight")] if name.endswith(".weight") else name


def _quantize_matrix(w: np.ndarray, fmt: F.WeightFormat, method: str) -> F.QuantWeight:
    if method == "rtn" and fmt.kind != "bcq":
        return rtn(w, fmt)
    return quantize_weight(w, fmt, method)


def quantize(g: Graph, cfg: AccelConfig, fmt="fp16", method: str | None = None) -> Graph:
    """Store every parameter in its format. Biases, LayerNorm parameters, embeddings and the (tied) LM head are
    FP16, rounded with FTZ. Linear (Conv1D) weights take `fmt`:

    - a format name or WeightFormat: each linear weight is quantized in the padded coordinates (after
      `pad_heads`) by `method` (rtn; bcq formats: bcq's alternating least squares) — padding columns of c_attn
      come out exactly zero (checked);
    - a dict {param name: QuantWeight} (model coordinates, e.g. `compiler.quant.model.quantize_model`): the codes
      and scales are padded to the padded coordinates where the group boundaries survive (`pad_quant`);
      linear weights missing from the dict stay FP16.

    Every format must be one of the config's `weight_formats` families, and one a tile-scaled core reads under
    `cfg.tile_scale` (`dfx.tilescale.tile_scale_cannot_read`). Records `attrs["wformat"]`."""
    qdict = None
    if isinstance(fmt, dict):
        qdict = {_canon(k): v for k, v in fmt.items()}
        default = F.FP16
    else:
        try:
            default = F.parse(fmt)
        except F.FormatError as e:
            raise CompileError(str(e)) from None
    linears = {n.name: n for n in g.nodes if n.op == "linear"}
    if qdict is not None:
        unknown = sorted(set(qdict) - set(linears))
        if unknown:
            raise CompileError(f"quantized weights for {', '.join(unknown)}: not linear (Conv1D) weights of this "
                               f"model; accepted: {', '.join(f'{x}.weight' for x in list(linears)[:4])}, ...")
        if not g.has_weights:
            raise CompileError("quantized weights were given for a model without weights (a shapes-only compile)")
    maps = head_maps(g)
    for n in g.nodes:
        if n.op == "linear":
            qw = qdict.get(n.name) if qdict is not None else None
            if qw is not None and not isinstance(qw, F.QuantWeight):
                raise CompileError(f"node {n.name}: quantized weight must be a dfx.formats.QuantWeight, "
                                   f"not {type(qw).__name__}")
            f = qw.fmt if qw is not None else default
            if f.family not in cfg.weight_formats:
                raise CompileError(f"node {n.name}: weight format {f.name} needs the {f.family} dequantiser, which "
                                   f"config {cfg.name!r} does not have (its weight_formats: "
                                   f"{', '.join(cfg.weight_formats)})")
            why = tile_scale_cannot_read(f, cfg.d, qw.phase if qw is not None else 0) if cfg.tile_scale else None
            if why is not None:
                raise CompileError(f"node {n.name}: weight format {f.name} cannot run on config {cfg.name!r}: {why}")
            n.attrs["wformat"] = f
            if not g.has_weights:
                continue
            if qw is not None:
                if tuple(qw.shape) != tuple(shape_of(n.params["weight"])) and n.name not in maps:
                    raise CompileError(f"node {n.name}: quantized weight is {qw.shape}, the model's is "
                                       f"{shape_of(n.params['weight'])}")
                try:
                    qw.check()
                except F.FormatError as e:
                    raise CompileError(f"node {n.name}: {e}") from None
                if n.name in maps:
                    axis, src = maps[n.name]
                    want = (int(src.max()) + 1) if axis == "rows" else None
                    k, m = qw.shape
                    if (axis == "rows" and k != want) or (axis == "cols" and m != int(src.max()) + 1):
                        raise CompileError(f"node {n.name}: quantized weight is {qw.shape}, which does not match "
                                           f"the model before head padding")
                    qw = pad_quant(qw, axis, src, n.name, zero_pad=axis == "cols")
                n.params["weight"] = qw.codes if f.kind == "fp16" else qw
                if f.kind == "fp16":
                    n.params["weight"] = numerics.to_fp16(qw.codes)
            elif f.kind != "fp16":
                qw = _quantize_matrix(np.asarray(n.params["weight"], np.float32), f,    # exact if binary16
                                      method or ("bcq" if f.kind == "bcq" else "rtn"))
                if n.name in maps and maps[n.name][0] == "cols":
                    pad = maps[n.name][1] < 0
                    if qw.dequant()[:, pad].any():
                        raise CompileError(f"node {n.name}: {f.name} does not keep the head-padding columns zero "
                                           f"(BCQ has no zero code); use an oc grouping")
                n.params["weight"] = qw
        for k, p in n.params.items():
            if isinstance(p, np.ndarray):            # binary16 from the checkpoint too: DAZ (to_fp16 is daz16)
                n.params[k] = store_fp16(p, in_place=g.own_weights)
    return g


ROWS_BYTES = 1 << 20     # store_fp16 converts this many bytes of rows at a time


def store_fp16(p: np.ndarray, in_place: bool = False) -> np.ndarray:
    """`numerics.to_fp16(p)`, rows at a time (no temporary of the whole array). A binary16 array that it leaves
    unchanged is returned as is (no copy); with `in_place` (an array the compiler owns), one it changes is
    changed in place."""
    if p.ndim == 0:
        return numerics.to_fp16(p)
    rows = max(1, ROWS_BYTES // max(1, p[:1].nbytes))
    if p.dtype != np.float16:
        out = np.empty(p.shape, np.float16)
        for i in range(0, len(p), rows):
            out[i:i + rows] = numerics.to_fp16(p[i:i + rows])
        return out
    out = p if in_place and p.flags.writeable else None
    for i in range(0, len(p), rows):
        block = numerics.to_fp16(p[i:i + rows])
        if out is None:
            if np.array_equal(block.view(np.uint16), p[i:i + rows].view(np.uint16)):
                continue
            out = p.copy()
        out[i:i + rows] = block
    return p if out is None else out


def weight_piece(n, c0: int, c1: int):
    """A linear/lm_head node's weight columns c0:c1 as stored: a float16 array or a QuantWeight piece."""
    w = n.params["weight"]
    return w.cols(c0, c1) if isinstance(w, F.QuantWeight) else w[:, c0:c1]


def param_bytes(g: Graph) -> int:
    """Parameter bytes as stored (quantized weights at `WeightFormat.ideal_bytes`)."""
    total = 0
    for n in g.nodes:
        for p in n.params.values():
            if isinstance(p, F.QuantWeight):
                total += int(np.ceil(p.fmt.ideal_bytes(*p.shape)))
            else:
                total += 2 * int(np.prod(shape_of(p)))
    return total


def model_weights(g: Graph) -> dict[str, F.QuantWeight]:
    """What the compiled program multiplies with, in the model's coordinates: {param name: fp16 QuantWeight} of
    every linear weight's exact dequantisation with the head padding taken out. `models.quantized.fake_quant`
    of this is the golden for a program quantized by format name (quantized in the padded coordinates)."""
    maps = head_maps(g)
    out = {}
    for n in g.nodes:
        if n.op != "linear":
            continue
        w = n.params["weight"]
        w = w.dequant() if isinstance(w, F.QuantWeight) else np.asarray(w, np.float16)
        if n.name in maps:
            axis, src = maps[n.name]
            keep = np.nonzero(src >= 0)[0]
            order = keep[np.argsort(src[keep])]
            w = w[:, order] if axis == "cols" else w[order]
        out[f"{n.name}.weight"] = F.QuantWeight(F.FP16, np.ascontiguousarray(w))
    return out
