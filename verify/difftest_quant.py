"""Quantized weight matrices for the random programs of the differential test (`dfx.verify.difftest_gen`): the
formats a core's tile fetchers read (`dfx.hw.qfetch`) and random matrices in them."""
from __future__ import annotations

import numpy as np

from dfx import formats


def quant_formats(families) -> list:
    """The weight formats of `families` (`dfx.hw.qfetch.CORE_FAMILIES` keys) that the core's fetcher reads at
    phase 0: every axis, group size and (int) zero-point choice."""
    out = []
    for fam in families:
        kind, bits = (("bcq", int(fam[3:])) if fam.startswith("bcq") else
                      ("int", int(fam[3:])) if fam.startswith("int") else (fam, 8))
        for axis in ("oc", "ic"):
            for g in (None, *formats.GROUP_SIZES):
                for asym in ((False, True) if kind == "int" else (False,)):
                    out.append(formats.WeightFormat(kind, bits, axis, g, asym))
    return out


def random_quant(fmt, k: int, n: int, rng: np.random.Generator):
    """A random (k, n) `QuantWeight` of `fmt`: legal codes (no FP8 NaN codes), scales (some negative, some 0 or
    subnormal: DAZ) and zero points."""
    ss = fmt.scale_shape(k, n)
    shape = (fmt.bits, *ss) if fmt.kind == "bcq" else ss
    scales = (rng.standard_normal(shape) * np.exp2(rng.integers(-8, 2, shape))).astype(np.float16)
    scales[rng.random(shape) < 0.02] = np.float16(0.0)
    scales[rng.random(shape) < 0.02] = np.float16(3e-6)
    zeros = None
    if fmt.kind == "int":
        lo, hi = (0, (1 << fmt.bits) - 1) if fmt.asym else (-(1 << (fmt.bits - 1)), (1 << (fmt.bits - 1)) - 1)
        codes = rng.integers(lo, hi + 1, (k, n)).astype(np.uint8 if fmt.asym else np.int8)
        if fmt.asym:
            zeros = rng.integers(0, hi + 1, ss).astype(np.uint8)
    elif fmt.kind == "bcq":
        codes = rng.integers(0, 2, (fmt.bits, k, n)).astype(np.uint8)
    else:
        ok = np.flatnonzero(~np.isnan(formats.FP8_TABLES[fmt.kind]))
        codes = rng.choice(ok, (k, n)).astype(np.uint8)
    return formats.QuantWeight(fmt, codes, scales, zeros).check()


__all__ = ["quant_formats", "random_quant"]
