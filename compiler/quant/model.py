"""Quantize a whole GPT-2: every Conv1D weight to one format (or, for `mixed`, a format per layer).

    calib = collect_calibration(model, calibration_windows(32))      # needed by gptq, adadim, mixed
    qweights = quantize_model(model, "int4-oc-g128", method="gptq", calib=calib)
    golden = fake_quant(model, qweights)                              # dfx.models.quantized

Quantized: `h.{i}.attn.c_attn.weight`, `h.{i}.attn.c_proj.weight`, `h.{i}.mlp.c_fc.weight`,
`h.{i}.mlp.c_proj.weight`. The token/position embeddings (and so the tied LM head), biases and LayerNorms stay
FP16.

Methods (`METHODS`): rtn (int, fp8), bcq (bcq formats; `rtn` on a bcq format means bcq's greedy init),
gptq (int), adadim (int, fp8: per layer the lower-error of the format's per-OC and per-IC grouping),
mixed (a format per layer from `candidates` under a bit budget).
"""
from __future__ import annotations

import warnings

import numpy as np

from dfx import formats as F
from dfx.errors import UsageError

from .calib import MIN_CALIB_TOKENS, Calibration, collect_calibration, conv1d_weights  # noqa: F401  (re-exported)

METHODS = ("rtn", "bcq", "gptq", "adadim", "mixed")
NEEDS_CALIB = ("gptq", "adadim", "mixed")
METHOD_KINDS = {"rtn": ("fp16", "int", "fp8e4m3", "fp8e5m2", "bcq"), "bcq": ("bcq",), "gptq": ("int",),
                "adadim": ("int", "fp8e4m3", "fp8e5m2", "bcq"), "mixed": F.KINDS}


class QuantWarning(UserWarning):
    """Something the user should know about a quantization that still went ahead (a short last group)."""


def check_method(method: str, fmt: F.WeightFormat | None = None) -> str:
    m = str(method).strip().lower()
    if m not in METHODS:
        raise UsageError(f"unknown quantization method {method!r}; accepted: {', '.join(METHODS)}")
    if fmt is not None and fmt.kind not in METHOD_KINDS[m]:
        ok = ", ".join(k for k in METHOD_KINDS[m])
        raise UsageError(f"method {m} does not quantize {fmt.name} weights; it takes {ok} formats")
    return m


def parse_format(fmt) -> F.WeightFormat:
    """`formats.parse` with the error as a `UsageError` (one line, exit 2 at the CLI)."""
    try:
        return F.parse(fmt)
    except F.FormatError as e:
        raise UsageError(str(e)) from None


def warn_short_groups(name: str, shape: tuple[int, int], fmt: F.WeightFormat) -> str | None:
    """The warning line for a group size that does not divide the grouped dimension (the last group is shorter:
    formats.py pads it), or None."""
    if fmt.kind == "fp16" or fmt.group is None:
        return None
    k, n = shape
    dim, label = (k, "K (inputs)") if fmt.axis == "oc" else (n, "N (outputs)")
    if dim % fmt.group == 0:
        return None
    msg = (f"{name}: group size {fmt.group} does not divide {label} = {dim}; "
           f"the last group is shorter ({dim % fmt.group} weights)")
    warnings.warn(msg, QuantWarning, stacklevel=3)
    return msg


def quantize_weight(w: np.ndarray, fmt, method: str = "rtn", hessian: np.ndarray | None = None, **opts) -> F.QuantWeight:
    """One (K, N) float matrix. `hessian` (K, K) = X^T X of the layer's calibration inputs (gptq, adadim)."""
    fmt = parse_format(fmt)
    method = check_method(method, fmt)
    w = np.asarray(w, np.float32)
    if fmt.kind == "bcq" and method in ("rtn", "bcq"):
        from .bcq import bcq
        return bcq(w, fmt, als=(method == "bcq"), **opts)
    if method == "rtn":
        from .rtn import rtn
        return rtn(w, fmt)
    if hessian is None:
        raise UsageError(f"method {method} needs calibration data (the layer's input Hessian)")
    if method == "gptq":
        from .gptq import gptq
        return gptq(w, fmt, hessian, **opts)
    if method == "adadim":
        from .adadim import adadim
        return adadim(w, fmt, hessian, **opts)
    raise UsageError(f"method {method} works on a whole model: use quantize_model")


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
        from .mixed import mixed_precision
        return mixed_precision(model, _calibration(model, calib, method), **opts)
    fmt = parse_format(fmt)
    method = check_method(method, fmt)
    if method in NEEDS_CALIB:
        calib = _calibration(model, calib, method)
    out = {}
    for name, mod in conv1d_weights(model).items():
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
