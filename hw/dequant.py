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

`TableDequantizer` (int formats of at most 4 bits) serves `n` elements that share one group's scale and
zero point (a lane's d rows of a tile for per-output-channel groups of G >= d): it computes the 2^b possible
weights of the group once, with the same operators as `Dequantizer` (so bit-exact to it and to the spec),
and each element is a 2^b:1 multiplexer of binary16 values (16:1 for INT4: four LUT6 and the slice's MUXF7/8
per bit, no multiplier). 2^b multipliers serve n elements instead of n (INT4, n = 64: 16 instead of 64).
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

import numpy as np
from amaranth import C, Cat, Const, Mux, Value, signed
from amaranth.hdl import Array
from amaranth.lib import data

from dfx import formats

from .fp import MUL32_CUTS, fp32_add, fp32_mul, fp32_to_fp16, int_to_fp32, widen16
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


def code_value(u: int, bits: int) -> int:
    """The value of the `bits`-bit symmetric (two's complement) code u."""
    return u - (1 << bits) * (u >> (bits - 1))


class Dequantizer(PipelinedUnit):
    """`i`: one code with its scale(s) (`dequant_layout(fmt)`) -> `o`: the binary16 weight.

    fmt: a `dfx.formats` name or `WeightFormat` (not fp16). add_stages (0..3), mul_stages (0..len(MUL32_CUTS)),
    round_stages (0..2): the pipelined binary32 operators' and the binary16 rounding's depths; code_stages
    (0..1): a register between the code's binary32 value (`int_to_fp32`, or the fp8 ROM's output) and the
    multiplier. The defaults are the depths the core instantiates; the 300 MHz depths are
    mul_stages=len(MUL32_CUTS), round_stages=2, code_stages=1 (`STAGES_300MHZ`).
    """

    def __init__(self, fmt, *, add_stages: int = 2, mul_stages: int = 2, round_stages: int = 1,
                 code_stages: int = 0):
        try:
            fmt = formats.parse(fmt)
        except formats.FormatError:
            self._MustUse__silence = True
            raise
        if fmt.kind == "fp16":
            self._MustUse__silence = True
            raise ValueError("fmt must be a quantized weight format (int, fp8, bcq), not fp16: fp16 weights go "
                             "to the MPU as they are")
        check_stages(self, add_stages=(add_stages, 3), mul_stages=(mul_stages, len(MUL32_CUTS)),
                     round_stages=(round_stages, 2), code_stages=(code_stages, 1))
        self.fmt, self.add_stages, self.mul_stages = fmt, add_stages, mul_stages
        self.round_stages, self.code_stages = round_stages, code_stages
        super().__init__(dequant_layout(fmt), 16)

    def datapath(self, p, x):
        f, v = self.fmt, x.v
        if f.kind == "bcq":
            acc = T(C(0, 32), x.t)                                  # +0
            for i in range(f.bits):
                a = p.comb(widen16(v.scale[i]), f"alpha{i}")
                term = T(Mux(Value.cast(v.code)[i], a, a ^ 0x8000_0000), x.t)     # bit 1: +alpha, 0: -alpha
                acc = fp32_add(p, acc, term, self.add_stages)
            return fp32_to_fp16(p, acc, self.round_stages)
        if f.kind == "int" and self.code_stages and not f.asym:
            # the code's binary32 value from a table of the 2^b codes (a function of b bits: one LUT level at
            # b <= 6), registered
            vals = [int(np.float32(code_value(u, f.bits)).view(np.uint32))
                    for u in range(1 << f.bits)]
            val = T(Array(C(w, 32) for w in vals)[Value.cast(v.code)], x.t)
        elif f.kind == "int":
            code = Value.cast(v.code)
            q = code.as_unsigned() - v.zero if f.asym else code.as_signed()
            val = T(int_to_fp32(p, q), x.t)
        else:                      # fp8: the code's exact value as binary32 (E5M2's subnormals are binary16
            #                        subnormals: widened with DAZ they would be lost, and the spec keeps them)
            exact = formats.FP8_TABLES[f.kind].astype(np.float32).view(np.uint32)
            (val,) = p.rom(f"fp8_{f.kind}", exact, 32, [T(v.code, x.t)])
        if self.code_stages:
            val = T(p.reg(val.v, "code"), val.t + 1)
        s = T(widen16(v.scale), x.t)
        return fp32_to_fp16(p, fp32_mul(p, val, s, self.mul_stages, a_bits=11), self.round_stages)


# The 300 MHz depths of `Dequantizer` (docs/rtl.md "Logic depth and Fmax"): every multiplier cut, both rounding
# cuts, the code's binary32 value registered before the multiplier.
STAGES_300MHZ = dict(mul_stages=len(MUL32_CUTS), round_stages=2, code_stages=1)


TABLE_MAX_BITS = 4          # a 2^b-entry table per group: INT3 and INT4


def _small_int(unit, fmt, n, what: str, symmetric: bool) -> formats.WeightFormat:
    """`fmt` parsed and checked for a unit serving `n` elements of one group (`TableDequantizer`, `CodeTile`): an
    int format of at most `TABLE_MAX_BITS` bits (symmetric: no zero points); a ValueError (one line) otherwise."""
    try:
        fmt = formats.parse(fmt)
        if fmt.kind != "int" or fmt.bits > TABLE_MAX_BITS or (symmetric and fmt.asym):
            raise ValueError(f"{what} of at most {TABLE_MAX_BITS} bits (int3, int4), not {fmt.name}")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n (elements per group) must be a positive integer, not {n!r}")
    except (ValueError, formats.FormatError):
        unit._MustUse__silence = True
        raise
    return fmt


def table_layout(fmt: formats.WeightFormat, n: int, masked: bool = False) -> data.StructLayout:
    """The input payload of a `TableDequantizer`: `n` codes of one group, its `scale` (binary16) and, for
    asymmetric formats, its uint8 `zero`; `masked`: `clear`, n bits, element e dequantised to +0 where set
    (padding rows and columns of a tile)."""
    fields = {"code": data.ArrayLayout(fmt.bits, n), "scale": 16}
    if fmt.asym:
        fields["zero"] = 8
    if masked:
        fields["clear"] = n
    return data.StructLayout(fields)


class TableDequantizer(PipelinedUnit):
    """`i`: n codes with their group's scale (and zero) (`table_layout(fmt, n)`) -> `o`: n binary16 weights
    (element e at bits [16e, 16e + 16)), each exactly `Dequantizer(fmt)`'s.

    fmt: an int format of at most `TABLE_MAX_BITS` bits. The 2^b entries to_fp16(f32(u - z) * f32(s)) (asym;
    symmetric: the code's two's-complement value) are built by 2^b copies of the dequantiser's datapath with
    the code a constant (a register after `int_to_fp32`, or for asymmetric formats f32(u - z) read from ROM
    banks, then `fp32_mul` with `mul_stages` cuts and the binary16 rounding with `round_stages`), then one
    multiplexer per element picks its entry (registered). masked: the input has `clear` bits (`table_layout`);
    an element whose bit is set comes out +0 (a synchronous reset of the pick register).
    """

    def __init__(self, fmt, n: int, *, mul_stages: int = len(MUL32_CUTS), round_stages: int = 2,
                 masked: bool = False):
        fmt = _small_int(self, fmt, n, "a table dequantiser takes int formats", symmetric=False)
        check_stages(self, mul_stages=(mul_stages, len(MUL32_CUTS)), round_stages=(round_stages, 2))
        self.fmt, self.n, self.mul_stages, self.round_stages = fmt, n, mul_stages, round_stages
        self.masked = bool(masked)
        super().__init__(table_layout(fmt, n, self.masked), data.ArrayLayout(16, n))

    def entries(self, p, x) -> list[T]:
        """The group's 2^b binary16 weights, entry u for the b-bit code u."""
        f, v = self.fmt, x.v
        b = f.bits
        s = T(widen16(v.scale), x.t)
        out = []
        zw = len(v.zero) if f.asym else 0
        z = T(v.zero, x.t) if f.asym else None
        for u in range(1 << b):
            if f.asym:         # f32(u - z) for every zero point z: 64-entry ROM banks (one LUT6 per bit) read at
                #                z's low six bits, the bank picked by its registered high bits into `tab_i2f`
                #                (as logic, u - z and int_to_fp32 were 9 LUT levels; one 256:1 multiplexer of
                #                constant words, 7)
                words = (u - np.arange(1 << zw)).astype(np.float32).view(np.uint32)
                banks = [p.rom(f"tab{u}_b{k}", words[64 * k:64 * k + 64], 32, [T(z.v[:6], z.t)])[0]
                         for k in range(len(words) // 64)]
                t, vs = p.sync(*banks)
                val = T(p.reg(Array(vs)[p.at(T(z.v[6:], z.t), t)], f"tab{u}_i2f"), t + 1)
            else:
                i2f = int_to_fp32(p, Const(code_value(u, b), signed(b + 1)))
                val = T(p.reg(i2f, f"tab{u}_i2f"), x.t + 1)
            out.append(fp32_to_fp16(p, fp32_mul(p, val, s, self.mul_stages, a_bits=11), self.round_stages))
        return out

    def datapath(self, p, x):
        ents = self.entries(p, x)
        t, ents = p.sync(*ents)
        table = p.comb(Cat(*ents), "table")                  # entry u at bits [16u, 16u + 16)
        codes = p.at(T(Value.cast(x.v.code), x.t), t)
        b = self.fmt.bits
        picked = [table.word_select(codes[b * e:b * e + b], 16) for e in range(self.n)]
        if self.masked:
            clear = p.at(T(Value.cast(x.v.clear), x.t), t)
            picked = [Mux(clear[e], 0, v) for e, v in enumerate(picked)]
        out = p.reg(Cat(*picked), "pick")
        return T(out, t + 1)


def code_tile_layout(fmt: formats.WeightFormat, n: int) -> data.StructLayout:
    """The input payload of a `CodeTile`: `n` symmetric codes of one group, its `scale` (binary16) and `clear`
    (n bits: element e is +0 where set, padding rows and columns of a tile)."""
    return data.StructLayout({"code": data.ArrayLayout(fmt.bits, n), "scale": 16, "clear": n})


class CodeTile(PipelinedUnit):
    """`i`: n symmetric int codes of one group with its scale (`code_tile_layout`) -> `o`: `w`, the n codes'
    integer values as binary16 (exact: at most 4 bits), and the group's `scale`, one register later. The
    tile-scaled core's lane input (`AccelConfig.tile_scale`: the MPU multiplies the codes and scales the lane's
    tree sum, `hw.mpu.MPU(tile_scale=True)`): no multiplier, each output bit a function of the element's b code
    bits (a LUT each), where a dequantiser (`Dequantizer`, `TableDequantizer`) forms and rounds s * q.

    fmt: a symmetric int format of at most `TABLE_MAX_BITS` bits (int3, int4; the codes two's complement)."""

    def __init__(self, fmt, n: int):
        fmt = _small_int(self, fmt, n, "a code tile takes symmetric int formats", symmetric=True)
        self.fmt, self.n = fmt, n
        super().__init__(code_tile_layout(fmt, n),
                         data.StructLayout({"w": data.ArrayLayout(16, n), "scale": 16}))

    def datapath(self, p, x):
        b = self.fmt.bits
        vals = [int(np.float16(code_value(u, b)).view(np.uint16)) for u in range(1 << b)]
        rom = Array(C(v, 16) for v in vals)
        ws = [Mux(x.v.clear[e], 0, rom[Value.cast(x.v.code[e])]) for e in range(self.n)]
        return T(p.reg(Cat(*ws, x.v.scale), "codes"), x.t + 1)
