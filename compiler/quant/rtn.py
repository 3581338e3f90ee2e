"""Round-to-nearest (RTN) with group scales: the baseline every other quantizer is compared with.

int, symmetric: s = absmax / (2^(b-1) - 1) per group, rounded to binary16; q = clip(rint(w / s)).
int, asymmetric: s = (max' - min') / (2^b - 1) with min' = min(min, 0), max' = max(max, 0) (the range holds 0,
so z is a valid code and zero weights stay exact), z = rint(-min' / s); u = clip(rint(w / s) + z).
fp8: s = absmax / (the format's largest finite value); codes = nearest FP8 value of w / s (ties to even).
Scales are rounded to binary16 first and codes are computed with the rounded scale, so `dequant` reproduces
exactly what was optimised. A scale below binary16's smallest normal 2^-14 (the dequantiser reads subnormal
scales as zero) is raised to 2^-14: without that, FP8 E5M2 (s = absmax / 57344) would zero every group with
absmax < 3.5, i.e. nearly all GPT-2 weights. An all-zero group gets scale 0 and codes 0.
"""
from __future__ import annotations

import numpy as np

from dfx import formats as F
from dfx import numerics as nx


def group_view(w: np.ndarray, fmt: F.WeightFormat) -> tuple[np.ndarray, int]:
    """w (K, N) -> (groups..., G) blocks along the format's group axis, zero-padded; and the padded length.
    oc: (ceil(K/G), N, G); ic: (K, ceil(N/G), G)."""
    k, n = w.shape
    if fmt.axis == "oc":
        g = fmt.group or k
        kp = -(-k // g) * g
        wp = np.zeros((kp, n), w.dtype)
        wp[:k] = w
        return wp.reshape(kp // g, g, n).transpose(0, 2, 1), g
    g = fmt.group or n
    np_ = -(-n // g) * g
    wp = np.zeros((k, np_), w.dtype)
    wp[:, :n] = w
    return wp.reshape(k, np_ // g, g), g


def scale16(x: np.ndarray) -> np.ndarray:
    """Scales as binary16 values the hardware reads: rounded; a positive scale below 2^-14 (a subnormal, which
    DAZ would read as zero) becomes 2^-14; zero stays zero (an all-zero group)."""
    s = nx.daz16(nx.to_fp16(np.asarray(x, np.float32)))
    return np.where((np.asarray(x) > 0) & (s < nx.F16_MIN_NORMAL), np.float16(nx.F16_MIN_NORMAL), s).astype(np.float16)


def rtn(w: np.ndarray, fmt: str | F.WeightFormat) -> F.QuantWeight:
    """Quantize a float (K, N) matrix with round-to-nearest. fp16: plain rounding."""
    fmt = F.parse(fmt)
    w = np.asarray(w, np.float32)
    k, n = w.shape
    if fmt.kind == "fp16":
        return F.QuantWeight(fmt, nx.to_fp16(w), meta={"method": "rtn"})
    if fmt.kind == "bcq":
        raise F.FormatError("bcq formats are quantized by compiler.quant.bcq, not RTN")
    blocks, _ = group_view(w, fmt)
    if fmt.kind == "int":
        if fmt.asym:
            hi, lo = np.maximum(blocks.max(-1), 0), np.minimum(blocks.min(-1), 0)
            qmax = (1 << fmt.bits) - 1
            s = scale16((hi - lo) / qmax)
            s32 = nx.widen16(s)
            with np.errstate(divide="ignore", invalid="ignore"):
                z = np.where(s32 > 0, np.clip(np.rint(-lo / s32), 0, qmax), 0).astype(np.uint8)
                zs = F.expand_groups(z, fmt, k, n).astype(np.float32)
                se = F.expand_groups(s32, fmt, k, n)
                u = np.where(se > 0, np.clip(np.rint(w / se) + zs, 0, qmax), zs)
            return F.QuantWeight(fmt, u.astype(np.uint8), s, z, meta={"method": "rtn"}).check()
        qmax = (1 << (fmt.bits - 1)) - 1
        s = scale16(np.abs(blocks).max(-1) / qmax)
        se = F.expand_groups(nx.widen16(s), fmt, k, n)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(se > 0, np.clip(np.rint(w / se), -qmax, qmax), 0)
        return F.QuantWeight(fmt, q.astype(np.int8), s, meta={"method": "rtn"}).check()
    fmax = float(np.nanmax(F.FP8_TABLES[fmt.kind].astype(np.float64)))
    s = scale16(np.abs(blocks).max(-1) / fmax)
    se = F.expand_groups(nx.widen16(s), fmt, k, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(se > 0, w / se, 0)
    return F.QuantWeight(fmt, F.fp8_encode(r, fmt.kind), s, meta={"method": "rtn"}).check()
