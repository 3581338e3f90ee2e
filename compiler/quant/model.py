"""Quantize a whole GPT-2: every Conv1D weight to one format (or, for `mixed`, a format per layer).

    calib = collect_calibration(model, calibration_windows(32))      # needed by gptq, adadim, mixed
    qweights = quantize_model(model, "int4-oc-g128", method="gptq", calib=calib)
    golden = fake_quant(model, qweights)                              # dfx.models.quantized

Quantized: `h.{i}.attn.c_attn.weight`, `h.{i}.attn.c_proj.weight`, `h.{i}.mlp.c_fc.weight`,
`h.{i}.mlp.c_proj.weight`. The token/position embeddings (and so the tied LM head), biases and LayerNorms stay
FP16.

Methods (`methods.METHODS`): rtn (int, fp8), bcq (bcq formats; `rtn` on a bcq format means bcq's greedy init),
gptq (int), adadim (int, fp8: per layer the lower-error of the format's per-OC and per-IC grouping),
mixed (a format per layer from `candidates` under a bit budget).
"""
from __future__ import annotations

import numpy as np

from dfx import formats as F
from dfx import progress
from dfx.errors import UsageError

from .calib import MIN_CALIB_TOKENS, Calibration, collect_calibration, conv1d_weights
from .methods import NEEDS_CALIB, check_method, parse_format, warn_short_groups
from .mixed import mixed_precision
from .weight import quantize_weight


def quantize_model(model, fmt, method: str = "rtn", calib: Calibration | None = None, **opts) -> dict[str, F.QuantWeight]:
    """Quantize every Conv1D weight of `model` (a dfx GPT2). Returns {param name: QuantWeight}.

    fmt: a format name or `WeightFormat` (None for `mixed`, which takes `candidates=[...]` and
    `budget_bits=...`). calib: `collect_calibration`
    output, or calibration tokens (then collected here); required by gptq, adadim and mixed. Extra options go
    to the method (gptq: damp, block, act_order; bcq: iters; adadim: base; mixed: candidates, budget_bits,
    importance)."""
    method = str(method).strip().lower()
    if method == "mixed":
        if fmt is not None:
            raise UsageError("method mixed chooses a format per layer: pass fmt=None with candidates=[...] and "
                             "budget_bits=..., not one format")
        return mixed_precision(model, _calibration(model, calib, method), **opts)
    fmt = parse_format(fmt)
    method = check_method(method, fmt)
    if method in NEEDS_CALIB:
        calib = _calibration(model, calib, method)
    out = {}
    layers = conv1d_weights(model)
    for name, mod in progress.track(layers.items(), f"quantize {method} {fmt.name}", len(layers), "layer"):
        w = mod.weight.detach().float().numpy()                               # (K, N)
        warn_short_groups(name, w.shape, fmt)
        if method == "adadim":
            warn_short_groups(name, w.shape, _other_axis(fmt))
        qw = quantize_weight(w, fmt, method, calib[name].hessian if method in NEEDS_CALIB else None, **opts)
        qw.meta.setdefault("layer", name)
        out[name] = qw
    return out


def _other_axis(fmt: F.WeightFormat) -> F.WeightFormat:
    return F.WeightFormat(fmt.kind, fmt.bits, "ic" if fmt.axis == "oc" else "oc", fmt.group, fmt.asym)


def _calibration(model, calib, method: str) -> Calibration:
    if calib is None:
        raise UsageError(f"method {method} needs calibration text: pass calib=collect_calibration(model, tokens) "
                         f"(at least {MIN_CALIB_TOKENS} tokens)")
    if isinstance(calib, Calibration):
        return calib
    return collect_calibration(model, calib)


def model_bytes(model, qweights: dict[str, F.QuantWeight]) -> dict:
    """Storage of the model: quantized Conv1D weights at `WeightFormat.ideal_bytes` (codes + scales + zero
    points, no layout padding), every other parameter FP16. Returns bytes split into parts."""
    cfg = model.config
    quant = sum(qw.fmt.ideal_bytes(*qw.shape) for qw in qweights.values())
    qnames = set(qweights)
    other = sum(2 * p.numel() for name, p in model.named_parameters() if name not in qnames)
    n_quant = sum(int(np.prod(qw.shape)) for qw in qweights.values())
    return {"quantized_bytes": float(quant), "fp16_bytes": float(other), "total_bytes": float(quant + other),
            "quantized_params": n_quant, "params": int(sum(p.numel() for p in model.parameters())),
            "n_layer": cfg.n_layer}
