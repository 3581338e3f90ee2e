"""Dequantisers: one quantized weight code and its binary16 group scale(s) in, the binary16 weight out, exactly
`dfx.formats.dequant` (its module docstring is the spec):

- int (symmetric): w = to_fp16(f32(q) * f32(s)), q a signed b-bit code;
- int (asymmetric): w = to_fp16(f32(u - z) * f32(s)), u - z exact as a (b+1)-bit integer;
- fp8 (E4M3, E5M2): the code's exact value from a 256-entry ROM of binary32 words (`formats.FP8_TABLES`; E5M2's
  subnormal codes stay, no DAZ on the code), then the same multiply and rounding;
- bcq (Q planes): acc = +0; acc = RNE32(acc + (alpha_i if bit_i else -alpha_i)) for i = 0 .. Q-1; to_fp16(acc).

Scales and alphas are read with DAZ (`fp.widen16`); `fp32_to_fp16` flushes subnormal results, as the spec
says. The int and fp8 products are exact in binary32 (at most 11 x 11 significand bits), so one multiplier
narrowed to an 11-bit first operand serves both.

One element per beat, throughput 1/cycle, latency `latency`. In front of the MPU, d*l of them (one per
multiplier) turn a tile of codes into the binary16 tile the MPU takes; the group-scale bookkeeping (which
scale belongs to which element, `formats.RegionLayout`) is the tile fetcher's job and is not here.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

import numpy as np
from amaranth import C, Mux, Value
from amaranth.lib import data

from dfx import formats

from .fp import fp32_add, fp32_mul, fp32_to_fp16, int_to_fp32, widen16
from .pipe import PipelinedUnit, T, check_stages


def dequant_layout(fmt: formats.WeightFormat) -> data.StructLayout:
    """The input payload for format `fmt`: `code` (bcq: one bit per plane, plane i in bit i), `scale`
    (binary16; bcq: Q alphas), and `zero` (asym int: the uint8 zero point)."""
    if fmt.kind == "bcq":
        return data.StructLayout({"code": fmt.bits, "scale": data.ArrayLayout(16, fmt.bits)})
    fields = {"code": fmt.bits, "scale": 16}
    if fmt.asym:
        fields["zero"] = 8
    return data.StructLayout(fields)


class Dequantizer(PipelinedUnit):
    """`i`: one code with its scale(s) (`dequant_layout(fmt)`) -> `o`: the binary16 weight.

    fmt: a `dfx.formats` name or `WeightFormat` (not fp16). add_stages (0..3), mul_stages (0..2): the
    pipelined binary32 operators' depths.
    """

    def __init__(self, fmt, *, add_stages: int = 2, mul_stages: int = 2):
        try:
            fmt = formats.parse(fmt)
        except formats.FormatError:
            self._MustUse__silence = True
            raise
        if fmt.kind == "fp16":
            self._MustUse__silence = True
            raise ValueError("fmt must be a quantized weight format (int, fp8, bcq), not fp16: fp16 weights go "
                             "to the MPU as they are")
        check_stages(self, add_stages=(add_stages, 3), mul_stages=(mul_stages, 2))
        self.fmt, self.add_stages, self.mul_stages = fmt, add_stages, mul_stages
        super().__init__(dequant_layout(fmt), 16)

    def datapath(self, p, x):
        f, v = self.fmt, x.v
        if f.kind == "bcq":
            acc = T(C(0, 32), x.t)                                  # +0
            for i in range(f.bits):
                a = p.comb(widen16(v.scale[i]), f"alpha{i}")
                term = T(Mux(Value.cast(v.code)[i], a, a ^ 0x8000_0000), x.t)     # bit 1: +alpha, 0: -alpha
                acc = fp32_add(p, acc, term, self.add_stages)
            return fp32_to_fp16(p, acc)
        if f.kind == "int":
            code = Value.cast(v.code)
            q = code.as_unsigned() - v.zero if f.asym else code.as_signed()
            val = T(int_to_fp32(p, q), x.t)
        else:                      # fp8: the code's exact value as binary32 (E5M2's subnormals are binary16
            #                        subnormals: widened with DAZ they would be lost, and the spec keeps them)
            exact = formats.FP8_TABLES[f.kind].astype(np.float32).view(np.uint32)
            (val,) = p.rom(f"fp8_{f.kind}", exact, 32, [T(v.code, x.t)])
        s = T(widen16(v.scale), x.t)
        return fp32_to_fp16(p, fp32_mul(p, val, s, self.mul_stages, a_bits=11))
