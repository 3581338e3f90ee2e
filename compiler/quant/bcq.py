"""Binary-coding quantization (BCQ): W ~ sum_i alpha_i * b_i, b_i in {-1, +1}, Q planes, one alpha per group
and plane (Xu et al. 2018 "Alternating multi-bit quantization"; the format of nuQmm/LUT-GEMM arXiv 2206.09557
and AlphaTuning arXiv 2210.03858).

Per group (the format's `oc`/`ic` groups, `rtn.group_view`):
1. greedy: r = w; for i = 1..Q: b_i = sign(r) (0 -> +1), alpha_i = mean |r|, r -= alpha_i b_i;
2. alternating least squares (`iters` rounds): alphas = argmin ||w - B alpha|| for the fixed bits (a Q x Q
   solve per group), then bits = the nearest of the 2^Q values sum_i +-alpha_i for each weight.
Alphas are rounded to binary16 and the bits re-chosen against the rounded alphas under the exact hardware
dequantisation (`formats.dequant`: a binary32 running sum over planes, then binary16). Each group keeps
whichever of greedy / ALS has the lower squared error, so ALS is never worse than greedy.
Padding of a short last group does not enter the fit.
"""
from __future__ import annotations

import itertools

import numpy as np

from dfx import formats as F
from dfx import numerics as nx

from .rtn import group_view, scale16


def ungroup(blocks: np.ndarray, fmt: F.WeightFormat, k: int, n: int) -> np.ndarray:
    """Inverse of `group_view` (leading axes kept): (..., groups, G) blocks -> (..., K, N)."""
    lead = blocks.shape[:-3]
    if fmt.axis == "oc":
        kg, nn_, g = blocks.shape[-3:]
        return np.swapaxes(blocks, -1, -2).reshape(*lead, kg * g, nn_)[..., :k, :]
    kk, ng, g = blocks.shape[-3:]
    return blocks.reshape(*lead, kk, ng * g)[..., :, :n]


def _patterns(q: int) -> np.ndarray:
    """All 2^Q bit patterns (P, Q), 1 = +alpha."""
    return np.array(list(itertools.product((0, 1), repeat=q)), np.uint8)


def _values_exact(alpha16: np.ndarray, pats: np.ndarray) -> np.ndarray:
    """The binary16 weight value of every bit pattern under the hardware's dequantisation.
    alpha16: (..., Q) float16 -> (..., P) float32 (exactly representable in binary16)."""
    a = nx.widen16(nx.daz16(alpha16))                                     # (..., Q) binary32
    acc = np.zeros(a.shape[:-1] + (len(pats),), np.float32)               # (..., P)
    for i in range(a.shape[-1]):
        sgn = np.where(pats[:, i] == 1, 1.0, -1.0).astype(np.float32)     # (P,)
        acc = (acc + a[..., i:i + 1] * sgn).astype(np.float32)
    return nx.widen16(nx.to_fp16(acc))


def _nearest(w: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the nearest value for each weight: w (M, G), values (M, P) -> (M, G) (ties: the lower value).
    Counts the midpoints between sorted values below each weight."""
    order = np.argsort(values, -1, kind="stable")                       # (M, P)
    v = np.take_along_axis(values, order, -1)
    mids = 0.5 * (v[:, 1:] + v[:, :-1])                                   # (M, P-1)
    rank = (w[:, :, None] > mids[:, None, :]).sum(-1)                     # (M, G)
    return np.take_along_axis(order, rank, -1)


def _greedy(w: np.ndarray, q: int, mask: np.ndarray):
    """w (M, G) groups, mask (M, G) of real entries -> bits (M, G, Q) in {0,1}, alphas (M, Q)."""
    r = w.astype(np.float64).copy()
    cnt = np.maximum(mask.sum(-1), 1)
    bits = np.zeros(w.shape + (q,), np.uint8)
    alphas = np.zeros((w.shape[0], q))
    for i in range(q):
        b = np.where(r >= 0, 1.0, -1.0)
        a = (np.abs(r) * mask).sum(-1) / cnt
        bits[..., i] = b > 0
        alphas[:, i] = a
        r -= a[:, None] * b
    return bits, alphas


def _lstsq_alphas(w: np.ndarray, bits: np.ndarray, mask: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """Least-squares alphas for fixed bits: (B^T B) alpha = B^T w per group, masked; keeps `prev` where the
    system is singular (repeated planes)."""
    b = np.where(bits > 0, 1.0, -1.0) * mask[..., None]                  # (M, G, Q)
    btb = np.swapaxes(b, 1, 2) @ b                                        # (M, Q, Q)
    btw = (np.swapaxes(b, 1, 2) @ (w * mask)[..., None])[..., 0]          # (M, Q)
    out = prev.copy()
    det_ok = np.abs(np.linalg.det(btb)) > 1e-9
    if det_ok.any():
        out[det_ok] = np.linalg.solve(btb[det_ok], btw[det_ok][..., None])[..., 0]
    return out


def _finish(w: np.ndarray, alphas: np.ndarray, mask: np.ndarray, pats: np.ndarray):
    """Round alphas to binary16 (largest |alpha| first), choose each weight's nearest exact value.
    Returns alphas16 (M, Q), bits (M, G, Q), squared error per group (M,)."""
    order = np.argsort(-np.abs(alphas), axis=-1)
    a16 = scale16(np.take_along_axis(alphas, order, -1))
    vals = _values_exact(a16, pats)                                       # (M, P)
    idx = _nearest(w, vals)                                               # (M, G)
    err = (((np.take_along_axis(vals, idx, -1) - w) ** 2) * mask).sum(-1)
    return a16, pats[idx], err


def bcq(w: np.ndarray, fmt: str | F.WeightFormat, iters: int = 15, als: bool = True) -> F.QuantWeight:
    """Quantize a float (K, N) matrix to a `bcq{Q}-{oc,ic}[-gG]` format. `als=False` gives the greedy codes."""
    fmt = F.parse(fmt)
    if fmt.kind != "bcq":
        raise F.FormatError(f"the bcq quantizer takes bcq formats, not {fmt.name}")
    w = np.asarray(w, np.float32)
    k, n = w.shape
    q = fmt.bits
    blocks, g = group_view(w, fmt)                                        # (g0, g1, G)
    mblocks, _ = group_view(np.ones_like(w), fmt)
    gshape = blocks.shape[:2]
    x = blocks.reshape(-1, g).astype(np.float64)                          # (M, G)
    mask = mblocks.reshape(-1, g).astype(np.float64)
    pats = _patterns(q)

    bits, alphas = _greedy(x, q, mask)
    best_a, best_b, best_e = _finish(x, alphas, mask, pats)
    if als:
        for _ in range(iters):
            alphas = _lstsq_alphas(x, bits, mask, alphas)
            new = pats[_nearest(x, _values_float(alphas, pats))]         # nearest pattern: (M, G, Q)
            if np.array_equal(new, bits):
                break                                                     # converged
            bits = new
        a16, b16, e16 = _finish(x, alphas, mask, pats)
        better = e16 < best_e
        best_a[better], best_b[better], best_e[better] = a16[better], b16[better], e16[better]

    codes = ungroup(np.moveaxis(best_b, -1, 0).reshape(q, *gshape, g), fmt, k, n).astype(np.uint8)   # (Q, K, N)
    scales = np.moveaxis(best_a, -1, 0).reshape(q, *gshape).astype(np.float16)                      # (Q, *ss)
    meta = {"method": "bcq-als" if als else "bcq-greedy", "iters": iters if als else 0}
    return F.QuantWeight(fmt, codes, scales, meta=meta).check()


def _values_float(alphas: np.ndarray, pats: np.ndarray) -> np.ndarray:
    """sum_i +-alpha_i for every pattern, in float64: (M, Q) -> (M, P)."""
    return alphas @ np.where(pats > 0, 1.0, -1.0).T
