"""GPTQ (Frantar et al., ICLR 2023, arXiv 2210.17323) for the integer formats, in the format's own groups.

Minimises the layer's output error ||X W - X W_q||_F^2 = tr(D^T H D), H = X^T X, one input row at a time:
quantize row k of W (K, N) (all N outputs at once), then spread its error over the rows not yet quantized
with the inverse Hessian, so they compensate:

    e = (w_k - q_k) / U[k, k];  W[j, :] -= U[k, j] * e   for j after k        (U = chol(H^-1), upper)

- damping: H += damp * mean(diag H) * I; inputs never active (H[k, k] = 0) get H[k, k] = 1 and W[k] = 0;
- lazy batch updates: rows are processed in blocks of `block`; inside a block updates stay local, the block's
  accumulated update reaches the later rows as one matrix product;
- column (here: input-row) order: `act_order=True` (the default) visits rows by decreasing H[k, k] (largest
  activations first); False keeps the natural order;
- groups: `oc` groups (G consecutive rows of one output column share a scale) get their scales from the
  current, already-updated rows when the group's first row is reached (with act_order: from the original
  weights, "static groups", since a group's rows are visited out of order); `ic` groups lie inside one row,
  so their scales come from that row when it is quantized. Scales are computed as RTN does (sym/asym) and
  the error fed back is the exact binary16 dequantised value.
"""
from __future__ import annotations

import numpy as np
import torch

from dfx import formats as F
from dfx import numerics as nx

from .rtn import rtn


def _inv_chol_upper(h: np.ndarray) -> np.ndarray:
    """U upper-triangular with H^-1 = U^T U (GPTQ's `Hinv`)."""
    ht = torch.from_numpy(h)
    lower = torch.linalg.cholesky(ht)
    hinv = torch.cholesky_inverse(lower)
    return torch.linalg.cholesky(hinv, upper=True).numpy()


def _quant_rows(w: np.ndarray, fmt: F.WeightFormat, s: np.ndarray, z: np.ndarray | None):
    """Quantize rows w (R, N) with per-element scales s (R, N) (binary32 values of binary16) and zero points
    z (R, N) or None, as RTN rounds. Returns (codes, dequantised binary16 values as float64)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if fmt.asym:
            qmax = (1 << fmt.bits) - 1
            u = np.where(s > 0, np.clip(np.rint(w / s) + z, 0, qmax), z)
            deq = nx.to_fp16((u - z).astype(np.float32) * s.astype(np.float32))
            return u, deq.astype(np.float64)
        qmax = (1 << (fmt.bits - 1)) - 1
        q = np.where(s > 0, np.clip(np.rint(w / s), -qmax, qmax), 0)
        deq = nx.to_fp16(q.astype(np.float32) * s.astype(np.float32))
        return q, deq.astype(np.float64)


def gptq(w: np.ndarray, fmt: str | F.WeightFormat, hessian: np.ndarray, damp: float = 0.01, block: int = 128,
         act_order: bool = True) -> F.QuantWeight:
    """Quantize a float (K, N) matrix to an int format with GPTQ, given H = X^T X (K, K)."""
    fmt = F.parse(fmt)
    if fmt.kind != "int":
        raise F.FormatError(f"GPTQ quantizes int formats, not {fmt.name}")
    W = np.asarray(w, np.float64).copy()
    k, n = W.shape
    H = np.asarray(hessian, np.float64).copy()
    if H.shape != (k, k):
        raise ValueError(f"hessian must be ({k}, {k}) for a ({k}, {n}) weight, not {H.shape}")
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    W[dead, :] = 0.0
    H[np.diag_indices(k)] += damp * float(np.mean(np.diag(H)))

    perm = np.argsort(-np.diag(H), kind="stable") if act_order else np.arange(k)
    U = _inv_chol_upper(H[np.ix_(perm, perm)])

    g = fmt.group or k
    scales = np.zeros(fmt.scale_shape(k, n), np.float16)
    zeros = np.zeros(fmt.scale_shape(k, n), np.uint8) if fmt.asym else None
    row_fmt = F.WeightFormat(fmt.kind, fmt.bits, "oc", None, fmt.asym)       # one scale per column of a row block
    if fmt.axis == "oc" and act_order:                                        # static groups from the original W
        static = rtn(W.astype(np.float32), fmt)
        scales[:] = static.scales
        if fmt.asym:
            zeros[:] = static.zeros

    codes = np.zeros((k, n), np.int32)
    Wp = W[perm]                                                              # rows in visiting order
    for b0 in range(0, k, block):
        b1 = min(b0 + block, k)
        Wb = Wp[b0:b1].copy()                                                 # (B, N)
        Err = np.zeros_like(Wb)
        for i in range(b1 - b0):
            r = perm[b0 + i]                                                  # original row index
            wrow = Wb[i:i + 1]                                                # (1, N)
            if fmt.axis == "oc":
                gi = r // g
                if not act_order and r % g == 0:                              # first row of a group: scales now
                    m = min(g, k - r)                                         # rows r .. r+m-1, as updated
                    later = max(0, m - (b1 - b0 - i))                         # of which beyond this block:
                    tail = Wp[b1:b1 + later] - U[b0:b0 + i, b1:b1 + later].T @ Err[:i]   # + pending update
                    cur = np.concatenate([Wb[i:i + m], tail])
                    qg = rtn(cur.astype(np.float32), row_fmt)
                    scales[gi] = qg.scales[0]
                    if fmt.asym:
                        zeros[gi] = qg.zeros[0]
                s = nx.widen16(scales[gi])[None, :]                           # (1, N)
                z = zeros[gi].astype(np.float64)[None, :] if fmt.asym else None
            else:
                qr = rtn(wrow.astype(np.float32), fmt)                        # ic: the row's own groups
                scales[r] = qr.scales[0]
                if fmt.asym:
                    zeros[r] = qr.zeros[0]
                s = F.expand_groups(nx.widen16(qr.scales), fmt, 1, n)
                z = F.expand_groups(qr.zeros, fmt, 1, n).astype(np.float64) if fmt.asym else None
            q, deq = _quant_rows(wrow, fmt, s, z)
            codes[r] = q[0]
            e = (wrow[0] - deq[0]) / U[b0 + i, b0 + i]                        # (N,)
            Wb[i:] -= np.outer(U[b0 + i, b0 + i:b1], e)
            Err[i] = e
        Wp[b1:] -= U[b0:b1, b1:].T @ Err                                     # lazy batch update
    dt = np.uint8 if fmt.asym else np.int8
    meta = {"method": "gptq", "damp": damp, "block": block, "act_order": act_order}
    return F.QuantWeight(fmt, codes.astype(dt), scales, zeros, meta=meta).check()
