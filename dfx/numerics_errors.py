"""The measured error of each approximation in `dfx.numerics` against float64 (docs/numerics.md's error
table): ``python -m dfx.numerics_errors --error-table`` prints it."""
from __future__ import annotations

import argparse
import functools

import numpy as np

from .numerics import (F16_MAX, F16_MIN_NORMAL, F32, _U16, _U32, daz16, exp16_arith, fp16_bits, from_fp16_bits,
                       gelu16_arith, gelu_tanh_f64, recip_array, rsqrt_array, to_fp16)


def ulp_err(got: np.ndarray, ref: np.ndarray, mant_bits: int) -> np.ndarray:
    """|got - ref| in units of the last place of `ref` (normal range) with `mant_bits` fraction bits."""
    _, e = np.frexp(ref)
    return np.abs(got - ref) / np.ldexp(1.0, e - 1 - mant_bits)


def _all_finite16() -> tuple[np.ndarray, np.ndarray]:
    x = from_fp16_bits(np.arange(1 << 16, dtype=_U16))
    x = np.unique(daz16(x))
    x = x[np.isfinite(x)]
    return x, x.astype(np.float64)


@functools.lru_cache(maxsize=None)
def error_table() -> tuple[tuple[str, str, float, str], ...]:
    """Measured error of each approximation against float64: (function, inputs, max error, unit) rows.
    Exhaustive: every binary16 input for exp16/gelu16; every significand (and exponent parity) for recip/rsqrt,
    whose error does not depend on the exponent otherwise. Rerun: ``python -m dfx.numerics_errors --error-table``."""
    rows = []
    with np.errstate(all="ignore"):
        x16, x = _all_finite16()
        # exp: results that are normal binary16 (others are 0, inf or flushed, and exact by policy)
        ref = np.exp(x)
        got = exp16_arith(x16).astype(np.float64)
        ok = (ref >= F16_MIN_NORMAL) & (ref <= F16_MAX)
        rows.append(("exp16", "every binary16 x with exp(x) a normal binary16",
                     float(ulp_err(got[ok], ref[ok], 10).max()), "binary16 ulp"))
        cr = to_fp16(ref)
        rows.append(("exp16", "every finite binary16 x", float(np.mean(fp16_bits(exp16_arith(x16)) != fp16_bits(cr))),
                     "share not correctly rounded"))
        # GELU
        ref = gelu_tanh_f64(x)
        g16 = gelu16_arith(x16)
        got = g16.astype(np.float64)
        rows.append(("gelu16", "every finite binary16 x", float(np.abs(got - ref).max()), "absolute"))
        big = np.abs(ref) >= 2.0 ** -4
        rows.append(("gelu16", "every finite binary16 x with abs(gelu(x)) >= 1/16",
                     float(ulp_err(got[big], ref[big], 10).max()), "binary16 ulp"))
        rows.append(("gelu16", "every finite binary16 x",
                     float(np.mean(fp16_bits(g16) != fp16_bits(to_fp16(ref)))), "share not correctly rounded"))
        # recip / rsqrt: all significands (x in [1, 2)), and [2, 4) too for rsqrt's odd exponents
        frac = np.arange(1 << 23, dtype=_U32)
        for name, fn, ref_fn, lows in (("recip", recip_array, lambda v: 1.0 / v, (127,)),
                                       ("rsqrt", rsqrt_array, lambda v: 1.0 / np.sqrt(v), (127, 128))):
            worst = 0.0
            for eb in lows:
                for c in range(0, 1 << 23, 1 << 21):
                    s = ((_U32(eb) << _U32(23)) | frac[c:c + (1 << 21)]).view(F32)
                    worst = max(worst, float(ulp_err(fn(s).astype(np.float64), ref_fn(s.astype(np.float64)),
                                                      23).max()))
            what = ("every normal binary32 x with a normal 1/x (all 2^23 significands)" if name == "recip" else
                    "every positive normal binary32 x (all 2^23 significands, both exponent parities)")
            rows.append((name, what, worst, "binary32 ulp"))
    return tuple(rows)


def error_table_markdown() -> str:
    """`error_table` as the markdown table docs/numerics.md embeds."""
    def fmt(v: float) -> str:
        return f"{v:.3g}" if v >= 1e-3 or v == 0 else f"{v:.2e}"
    return "\n".join(["| function | inputs | max error vs float64 | unit |", "|---|---|---|---|"]
                     + [f"| {name} | {inputs} | {fmt(err)} | {unit} |" for name, inputs, err, unit in error_table()])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dfx.numerics_errors",
                                 description="The DFX numerics reference (docs/numerics.md).")
    ap.add_argument("--error-table", action="store_true", help="print the measured error table (markdown)")
    args = ap.parse_args(argv)
    if not args.error_table:
        ap.print_help()
        return 0
    print(error_table_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
