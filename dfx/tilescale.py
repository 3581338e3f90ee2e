"""Tile-scaled integer weights (`AccelConfig.tile_scale`; docs/numerics.md, "Tile-scaled weights").

A core built with `tile_scale` multiplies a quantized int3/int4 matrix as its codes: the MPU's weights are the
integer codes as binary16 (exact), v = float16(q), and each row tile's group sum is scaled by that tile's group
scale before the accumulation (`dfx.numerics.mpu_matvec(..., tile_scale=ts)`):

    g_i  = tree(x_r * v_rc over the tile's d rows)        (the MPU's pairwise tree, on v instead of w)
    g_i' = g_i * widen16(s_ic)                            (one binary32 RNE multiply)
    acc  = ((+0 + g_0') + g_1') + ...  then + bias

That needs one scale per output column and row tile: symmetric integer codes (int3, int4) with per-output-channel
groups of the whole column or of a multiple of d rows, starting at a multiple of d (`tile_scale_cannot_read`).
`tile_scale_weights` gives the codes' values and the per-tile scales of a `QuantWeight`.
"""
from __future__ import annotations

import numpy as np

from .formats import FormatError, QuantWeight, WeightFormat, parse

TILE_SCALE_BITS = (3, 4)           # code widths a tile-scaled core multiplies as codes


def tile_scale_cannot_read(fmt: str | WeightFormat, d: int, phase: int = 0) -> str | None:
    """None when a tile-scaled core with d-row tiles serves matrices of `fmt` at descriptor phase `phase` (FP16
    is always served: it is multiplied as today); otherwise one sentence saying what such a core reads and what
    `fmt` is."""
    fmt = parse(fmt)
    if fmt.kind == "fp16":
        return None
    why = None
    if fmt.kind != "int":
        why = f"has {fmt.kind} codes, not integers"
    elif fmt.bits not in TILE_SCALE_BITS:
        why = f"has {fmt.bits}-bit codes"
    elif fmt.asym:
        why = "has zero points (-asym)"
    elif fmt.axis != "oc":
        why = "has per-input-channel groups (ic): one scale per row, not per row tile"
    elif fmt.group is not None and fmt.group % d:
        why = f"has groups of {fmt.group} rows, not a multiple of d = {d}"
    elif phase % d:
        why = f"starts at row {phase} of its group (descriptor phase), not at a multiple of d = {d}"
    if why is None:
        return None
    return (f"a tile-scaled core (AccelConfig.tile_scale) reads symmetric int3/int4 codes with one scale per "
            f"output column and row tile of d = {d} rows (per-OC groups of the whole column or a multiple of d, "
            f"phase a multiple of d); {fmt.name} {why}")


def tile_scale_weights(qw: QuantWeight, d: int) -> tuple[np.ndarray, np.ndarray]:
    """(v16, ts) of a quantized matrix for a tile-scaled core with d-row tiles: v16 the (K, N) binary16 values of
    the codes (two's-complement integers, exact), ts the (ceil(K/d), N) binary16 scales, ts[i, c] the scale of
    the group holding row i*d (group (i*d + phase) // G; the single scale row when G is the whole column).
    dequant(qw) == to_fp16(f32(v16) * f32(the scale of each row)). A FormatError for a format or phase that
    `tile_scale_cannot_read` refuses."""
    why = tile_scale_cannot_read(qw.fmt, d, qw.phase)
    if why is None and qw.fmt.kind == "fp16":
        why = "fp16 matrices have no codes or scales (they are multiplied as they are)"
    if why is not None:
        raise FormatError(why)
    k, n = qw.shape
    v16 = np.asarray(qw.codes, np.int32).astype(np.float16)                 # |q| <= 8: exact
    kt = -(-k // d)
    g = qw.fmt.group
    rows = np.zeros(kt, np.intp) if g is None else (np.arange(kt) * d + qw.phase) // g
    ts = np.ascontiguousarray(np.asarray(qw.scales, np.float16)[rows])
    return v16, ts
