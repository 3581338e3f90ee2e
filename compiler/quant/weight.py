"""`quantize_weight`: one (K, N) matrix in one format by one per-matrix method (rtn, bcq, gptq, adadim).

The dispatch sits above the methods: none of them imports this module (adadim runs its base quantizers
directly), so the imports of compiler/quant/ are acyclic."""
from __future__ import annotations

import numpy as np

from dfx import formats as F
from dfx.errors import UsageError

from .adadim import adadim
from .bcq import bcq
from .gptq import gptq
from .methods import check_method, parse_format
from .rtn import rtn


def quantize_weight(w: np.ndarray, fmt, method: str = "rtn", hessian: np.ndarray | None = None, **opts) -> F.QuantWeight:
    """One (K, N) float matrix. `hessian` (K, K) = X^T X of the layer's calibration inputs (gptq, adadim)."""
    fmt = parse_format(fmt)
    method = check_method(method, fmt)
    w = np.asarray(w, np.float32)
    if fmt.kind == "bcq" and method in ("rtn", "bcq"):
        return bcq(w, fmt, als=(method == "bcq"), **opts)
    if method == "rtn":
        return rtn(w, fmt)
    if hessian is None:
        raise UsageError(f"method {method} needs calibration data (the layer's input Hessian)")
    if method == "gptq":
        return gptq(w, fmt, hessian, **opts)
    if method == "adadim":
        return adadim(w, fmt, hessian, **opts)
    raise UsageError(f"method {method} works on a whole model: use quantize_model")
