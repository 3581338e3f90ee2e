"""Quantization methods: their names, which weight formats each takes, and the argument checks every quantizer
shares (one-line `UsageError`s; a `QuantWarning` for a short last group)."""
from __future__ import annotations

import warnings

from dfx import formats as F
from dfx.errors import UsageError

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
