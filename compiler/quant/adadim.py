"""AdaDim (Heo et al., arXiv 2309.15531): per layer, choose the grouping dimension.

Per-OC groups (a scale per output column and run of inputs) are the usual choice; per-IC groups (a scale per
input row and run of outputs) isolate input channels whose activations are outliers, since those rows then
get scales of their own. Which one is better depends on the layer, so AdaDim quantizes each layer both ways
with a base quantizer (RTN, or GPTQ) and keeps the one with the lower reconstruction error on calibration
activations, ||X W - X W_q||_F^2 = tr(D^T H D).

The format's axis is not binding: `int4-oc-g128` and `int4-ic-g128` both mean "int4 g128, axis chosen per
layer"; the returned QuantWeight carries the chosen format.
"""
from __future__ import annotations

import numpy as np

from dfx import formats as F

from .bcq import bcq
from .calib import output_error
from .gptq import gptq
from .methods import check_method
from .rtn import rtn

BASES = ("rtn", "gptq")


def both_axes(fmt: F.WeightFormat) -> tuple[F.WeightFormat, F.WeightFormat]:
    return tuple(F.WeightFormat(fmt.kind, fmt.bits, ax, fmt.group, fmt.asym) for ax in ("oc", "ic"))


def adadim(w: np.ndarray, fmt: str | F.WeightFormat, hessian: np.ndarray, base: str = "rtn", **opts) -> F.QuantWeight:
    """Quantize (K, N) `w` per-OC and per-IC with `base` and keep the lower output error on H = X^T X."""
    fmt = F.parse(fmt)
    if base not in BASES:
        raise ValueError(f"adadim base must be one of {', '.join(BASES)}, not {base!r}")
    if fmt.kind == "fp16":
        raise F.FormatError("adadim needs a grouped format, not fp16")
    cands = {}
    for f in both_axes(fmt):
        qw = _base(w, f, base, hessian, **opts)
        cands[f.axis] = (output_error(w, qw.dequant(), hessian), qw)
    axis = min(cands, key=lambda a: (cands[a][0], a != fmt.axis))           # ties: the format's own axis
    qw = cands[axis][1]
    qw.meta.update({"method": f"adadim-{base}", "axis": axis,
                    "output_error": {a: float(e) for a, (e, _) in cands.items()}})
    return qw


def _base(w: np.ndarray, fmt: F.WeightFormat, base: str, hessian: np.ndarray, **opts) -> F.QuantWeight:
    """One axis's candidate: BCQ (alternating fit) for a bcq format, else the base quantizer."""
    w = np.asarray(w, np.float32)
    if fmt.kind == "bcq":
        return bcq(w, fmt, als=True, **opts)
    check_method(base, fmt)
    return gptq(w, fmt, hessian, **opts) if base == "gptq" else rtn(w, fmt)
