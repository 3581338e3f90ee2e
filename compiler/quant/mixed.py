"""Layer-wise mixed precision: a per-layer importance score and a bit budget choose each layer's format.

1. Every layer is quantized to every candidate format (RTN for int/fp8, BCQ for bcq; `method="gptq"` uses
   GPTQ for the int candidates).
2. Damage of (layer, candidate), the importance score, measured on the calibration windows:
   - "kl" (default): mean KL(p_fp16 || p_q) of the next-token distributions when only that layer is quantized
     (one forward per layer and candidate: sensitivity at the network output);
   - "output": the layer's relative output error tr(D^T H D) / tr(W^T H W) (no network run).
3. Choice: minimise the summed damage subject to sum of bits <= budget_bits * (quantized weights), bits from
   `WeightFormat.ideal_bytes` (codes + scales + zero points). This is a multiple-choice knapsack, solved
   exactly by dynamic programming over bits rounded *up* to 1/2000 of the budget, so the budget holds.
   Damage is assumed additive over layers (first-order).
"""
from __future__ import annotations

import numpy as np
import torch

from dfx import formats as F
from dfx import numerics as nx
from dfx import progress
from dfx.errors import UsageError
from dfx.models.quantized import fake_quant

from .calib import Calibration, conv1d_weights, output_error
from .methods import check_method, parse_format
from .weight import quantize_weight

DEFAULT_CANDIDATES = ("int3-oc-g128", "int4-oc-g128", "int8-oc-g128")
IMPORTANCE = ("kl", "output")
KL_WINDOWS = 4                  # calibration windows the KL score runs on


def _kl_damage(model, qs: dict[str, dict[str, F.QuantWeight]], tokens) -> dict:
    """{(layer, format name): mean KL(p_fp16 || p_q)} with only that layer quantized."""
    ref_model = fake_quant(model, {})                                         # FP16 everywhere
    x = tokens[:KL_WINDOWS]
    params = dict(ref_model.named_parameters())
    out = {}
    with torch.no_grad():
        ref = torch.log_softmax(ref_model(x)[0].float(), -1)                  # (B, T, V)
        for name, per_fmt in progress.track(qs.items(), "mixed precision: layer damage (KL)", len(qs), "layer"):
            p = params[name]
            keep = p.detach().clone()
            for fname, qw in per_fmt.items():
                p.copy_(torch.from_numpy(qw.dequant().astype(np.float32)))
                lq = torch.log_softmax(ref_model(x)[0].float(), -1)
                out[name, fname] = float((ref.exp() * (ref - lq)).sum(-1).mean())
            p.copy_(keep)
    return out


def choose(damage: np.ndarray, cost: np.ndarray, budget: float, units: int = 2000) -> np.ndarray:
    """Multiple-choice knapsack: damage, cost (L, C); pick one candidate per layer with sum(cost) <= budget,
    minimising sum(damage). Exact over costs rounded up to budget/units. Returns (L,) indices."""
    L, C = damage.shape
    unit = budget / units
    c = np.ceil(cost / unit - 1e-9).astype(np.int64)                         # rounded up: the budget holds
    INF = np.inf
    best = np.full(units + 1, INF)
    best[0] = 0.0
    back = np.zeros((L, units + 1), np.int64)
    for l in range(L):
        nxt = np.full(units + 1, INF)
        arg = np.full(units + 1, -1, np.int64)
        for j in range(C):
            if c[l, j] > units:
                continue
            cand = np.full(units + 1, INF)
            cand[c[l, j]:] = best[:units + 1 - c[l, j]] + damage[l, j]
            better = cand < nxt
            nxt[better], arg[better] = cand[better], j
        best, back[l] = nxt, arg
    if not np.isfinite(best).any():
        raise UsageError("bit budget too small")                             # checked by the caller first
    used = int(np.argmin(best))
    pick = np.zeros(L, np.int64)
    for l in range(L - 1, -1, -1):
        pick[l] = back[l, used]
        used -= c[l, pick[l]]
    return pick


def mixed_precision(model, calib: Calibration, candidates=DEFAULT_CANDIDATES, budget_bits: float = 4.5,
                    importance: str = "kl", method: str = "rtn", **opts) -> dict[str, F.QuantWeight]:
    """A format per Conv1D layer from `candidates`, average bits per weight (with scales) <= budget_bits."""
    cands = [parse_format(c) for c in candidates]
    if not cands:
        raise UsageError("mixed precision needs at least one candidate format")
    if importance not in IMPORTANCE:
        raise UsageError(f"unknown importance score {importance!r}; accepted: {', '.join(IMPORTANCE)}")
    check_method(method)
    layers = conv1d_weights(model)
    weights = {name: m.weight.detach().float().numpy() for name, m in layers.items()}
    n_weights = sum(w.size for w in weights.values())
    cost = np.array([[f.ideal_bytes(*w.shape) * 8 for f in cands] for w in weights.values()])   # (L, C) bits
    budget = float(budget_bits) * n_weights
    if cost.min(1).sum() > budget:
        raise UsageError(f"bit budget {budget_bits} bits/weight is below the cheapest candidate mix "
                         f"({cost.min(1).sum() / n_weights:.3f} bits/weight with scales); raise it or add a "
                         f"smaller format")

    qs = {}
    for name, w in progress.track(weights.items(), "mixed precision: candidates", len(weights), "layer"):
        h = calib[name].hessian
        per = {}
        for f in cands:
            m = "bcq" if f.kind == "bcq" else ("gptq" if method == "gptq" and f.kind == "int" else "rtn")
            per[f.name] = quantize_weight(w, f, m, h if m == "gptq" else None, **opts)
        qs[name] = per
    if importance == "kl":
        dmg = _kl_damage(model, qs, calib.tokens)
    else:
        dmg = {}
        for name, w in weights.items():
            h = calib[name].hessian
            w16 = nx.widen16(nx.to_fp16(w)).astype(np.float64)
            denom = output_error(w16, np.zeros_like(w16), h) or 1.0
            for f in cands:
                dmg[name, f.name] = output_error(w16, qs[name][f.name].dequant(), h) / denom
    damage = np.array([[dmg[name, f.name] for f in cands] for name in weights])
    pick = choose(damage, cost, budget)
    out = {}
    for li, name in enumerate(weights):
        f = cands[pick[li]]
        qw = qs[name][f.name]
        qw.meta.update({"mixed": True, "importance": importance, "damage": {c.name: float(damage[li, j])
                                                                           for j, c in enumerate(cands)},
                        "layer": name})
        out[name] = qw
    avg = cost[np.arange(len(pick)), pick].sum() / n_weights
    for qw in out.values():
        qw.meta["avg_bits"] = float(avg)
        qw.meta["budget_bits"] = float(budget_bits)
    return out
