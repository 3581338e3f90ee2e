"""Special-function units: GELU and exp (binary16 -> binary16), reciprocal and rsqrt (binary32 -> binary32).

Each is the operation sequence that `dfx.numerics` specifies (docs/numerics.md), one pipelined binary32
operator per step, with ROMs generated from the numerics tables (`GELU_TABLE`, `EXP_TABLE`, `RECIP_SEED`,
`RSQRT_SEED`); only exponent and fraction bookkeeping that the spec calls exact is done with integer logic.
All are fully pipelined (one input per cycle); latency depends on the operator stages (`add_stages`,
`mul_stages`) and is the component's `latency` attribute (docs/rtl.md tabulates the defaults).

The interpolating units read T[i] and T[i+1] in the same cycle: GELU from one ROM with two read ports (a
true-dual-port block RAM in read-only use), exp (257 entries, in LUTs) from two 256-entry ROMs, T[0..255] and
T[1..256], at the same address (in the deep configurations each read as four 64-entry banks, the bank picked
after the read).
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

from amaranth import C, Cat, Mux, Value
from amaranth.hdl import Array

from dfx import numerics as nx

from .fp import (ADD_MAX_STAGES, INF32, MUL32_CUTS, NAN16, NAN32, Fp16, Fp32, f32, fp32_add, fp32_mul, fp32_to_fp16,
                 int_parts, neg32, widen16)
from .pipe import PipelinedUnit, Pipe, T, check_stages


def _bits32(table) -> list[int]:
    return [int(v) for v in nx.fp32_bits(table)]


def _glue(add_stages: int) -> bool:
    """Whether the logic between the operators gets registers too: in the deep configurations (binary32
    adders with more than the three cuts of the defaults), which aim at 300 MHz. Then the widened input, the
    ROM address (both T[i] and T[i+1]'s, computed before the register), the ROM's output, the glue before a
    rounding and the result are registered, `int_parts` has all four of its cuts, exp's ROMs are read in
    64-entry banks, and the rounding to binary16 has both its cuts."""
    return add_stages > 3


def _reg(p: Pipe, x: T, on: bool) -> T:
    """`x` one stage later through a register when `on`."""
    return T(p.reg(x.v, "glue"), x.t + 1) if on else x


def _table_read(p: Pipe, name: str, table, ip: T, top: int, g: bool, split: bool = False) -> tuple[T, T]:
    """(T[i], T[i+1]) for i = min(ip, top), the ROM's outputs registered before the adder (`g`). One ROM with
    two read ports, both addresses computed before the (glue) register so that the ROM reads straight from
    registers; or (`split`, for a table of 2^b + 1 entries held in LUTs) two ROMs of 2^b entries, T[0..2^b-1]
    and T[1..2^b], both read at i: b address bits instead of b + 1 and no increment."""
    i = p.comb(Mux(ip.v > top, top, ip.v), f"{name}_i")
    if split and g:
        # banks of 64 entries (one LUT6 per bit) read at the low six address bits, the bank picked by the
        # registered high bits after the read (one 4:1 multiplexer level before the output register)
        b = (top + 1).bit_length() - 1
        a = _reg(p, T(i[:b], ip.t), g)
        outs = []
        for nm, tab in ((name, table[:-1]), (name + "_next", table[1:])):
            banks = [p.rom(f"{nm}_b{k}", _bits32(tab[64 * k:64 * k + 64]), 32, [T(a.v[:6], a.t)])[0]
                     for k in range(len(tab) // 64)]
            t, vs = p.sync(*banks)
            outs.append(T(Array(vs)[p.at(T(a.v[6:], a.t), t)], t))
        lo, hi = outs
    elif split:
        a = _reg(p, T(i[:(top + 1).bit_length() - 1], ip.t), g)
        (lo,) = p.rom(name, _bits32(table[:-1]), 32, [a])
        (hi,) = p.rom(name + "_next", _bits32(table[1:]), 32, [a])
    else:
        i1 = p.comb(Mux(ip.v > top, top + 1, ip.v + 1), f"{name}_i1")
        lo, hi = p.rom(name, _bits32(table), 32, [_reg(p, T(i, ip.t), g), _reg(p, T(i1, ip.t), g)])
    return _reg(p, lo, g), _reg(p, hi, g)


def gelu16(p: Pipe, x: T, add_stages: int = 2, mul_stages: int = 2, round_stages: int | None = None) -> T:
    """`numerics.gelu16_arith` on binary16 bits."""
    g = _glue(add_stages)
    rs = (2 if g else 1) if round_stages is None else round_stages
    x32 = _reg(p, T(widen16(x.v), x.t), g)
    s = fp32_add(p, x32, f32(-nx.GELU_LO), add_stages)                       # x + 8
    q = fp32_mul(p, s, f32(nx.GELU_STEP_INV), mul_stages)                     # p = (x + 8) * 2047/16
    ip, _, r = int_parts(p, q, 11, 4 if g else 0)
    lo, hi = _table_read(p, "gelu_rom", nx.GELU_TABLE, ip, nx.GELU_SAMPLES - 2, g)  # (out of range: overridden)
    y = _lerp(p, lo, hi, r, add_stages, mul_stages)
    y16 = fp32_to_fp16(p, y, rs)
    t, (x16, y16v) = p.sync(x, y16)
    v = Fp16(x16)
    mag = Value.cast(x16)[:15]
    nan = mag > 0x7C00
    big = mag >= 0x4800                                                        # |x| >= 8 (incl. inf)
    res = Mux(nan, NAN16, Mux(big & ~v.sign, x16, Mux(big & v.sign, 0x8000, y16v)))
    return _reg(p, T(res, t), g)


def _lerp(p, lo, hi, r, add_stages, mul_stages) -> T:
    """lo + (hi - lo) * r: three binary32 RNE operations in that order."""
    dlt = fp32_add(p, hi, lo, add_stages, sub=True)
    prod = fp32_mul(p, dlt, r, mul_stages)
    return fp32_add(p, lo, prod, add_stages)


def exp16(p: Pipe, x: T, add_stages: int = 2, mul_stages: int = 2, round_stages: int | None = None) -> T:
    """`numerics.exp16_arith` on binary16 bits.

    f = t - n with n = floor(t) is computed without converting n to binary32: |t| = ti + r (`int_parts`, both
    exact), so for t >= 0 (and for integer t) t - n is r itself, exactly, and for t < 0 with a fraction
    t - n = 1 - r, one binary32 subtraction with the spec's single rounding. Both are the same real number
    as t - n, so the rounded f is the spec's. n itself only scales the result (y * 2^n: exponent arithmetic).
    """
    g = _glue(add_stages)
    rs = (2 if g else 1) if round_stages is None else round_stages
    x32 = _reg(p, T(widen16(x.v), x.t), g)
    tt = fp32_mul(p, x32, f32(nx.LOG2E), mul_stages, a_bits=11)             # t = x * log2(e)
    limit = f32(nx.EXP_T_CLAMP)
    tv = Fp32(p.comb(tt.v, "exp_t"))
    over = (Value.cast(tv)[:31] > Value.cast(limit)[:31])                      # |t| > 64 or NaN
    t_cl = Mux(over, Cat(Value.cast(limit)[:31], tv.sign), tv)
    t_cl = Mux((tv.exp == 0xFF) & (tv.frac != 0), neg32(limit), t_cl)        # NaN -> -64 (fmax)
    t_cl = _reg(p, T(p.comb(t_cl, "exp_tcl"), tt.t), g)
    ti, has_frac, r = int_parts(p, t_cl, 7, 4 if g else 0)                   # |t| = ti + r, |t| <= 64
    sgn = p.at(T(Fp32(t_cl.v).sign, t_cl.t), ti.t)
    wrap = T(p.comb(sgn & has_frac.v, "exp_wrap"), ti.t)                      # t < 0, not an integer
    n = p.comb(Mux(sgn, -(ti.v + has_frac.v), ti.v).as_signed()[:8].as_signed(), "exp_n")  # floor(t)
    n = _reg(p, T(n, ti.t), g)
    u = fp32_add(p, f32(1.0), r, add_stages, sub=True)                       # 1 - r (one rounding)
    t, (uv, rv, wv) = p.sync(u, r, wrap)
    fv = Fp32(p.comb(Mux(wv, uv, rv), "exp_f"))                               # f = t - n
    p256 = Mux(fv.exp == 0, 0, Cat(fv.frac, (fv.exp + nx.EXP_TABLE_BITS)[:8], C(0, 1)))  # f * 256, exact
    ip, _, r = int_parts(p, _reg(p, T(p256, t), g), nx.EXP_TABLE_BITS + 1, 4 if g else 0)
    lo, hi = _table_read(p, "exp_rom", nx.EXP_TABLE, ip, 2 ** nx.EXP_TABLE_BITS - 1, g, split=True)
    y = _lerp(p, lo, hi, r, add_stages, mul_stages)
    t, (yv, nv) = p.sync(y, n)
    yf = Fp32(yv)
    z = _reg(p, T(Cat(yf.frac, (yf.exp + nv)[:8], yf.sign), t), g)          # y * 2^n, exact (stays normal)
    z16 = fp32_to_fp16(p, z, rs)
    t, (x16, z16v) = p.sync(x, z16)
    nan = Value.cast(x16)[:15] > 0x7C00
    return _reg(p, T(Mux(nan, NAN16, z16v), t), g)


def recip(p: Pipe, x: T, add_stages: int = 2, mul_stages: int = 2, steps: int = 2) -> T:
    """`numerics.recip_array` on binary32 bits: seed ROM, two Newton steps r += r*(1 - m*r), exponent by
    integer arithmetic. The special cases and 127 - e are decided from the input, beside the Newton steps,
    so only one exponent add and the range check follow the last adder."""
    g = _glue(add_stages)
    v = Fp32(x.v)
    m = T(Cat(v.frac, C(127, 8), C(0, 1)), x.t)                               # 1.frac
    (r,) = p.rom("recip_seed", _bits32(nx.RECIP_SEED), 32,
                 [T(v.frac[23 - nx.SEED_BITS:], x.t)])
    k = T(p.comb((127 - v.exp).as_signed(), "rcp_k"), x.t)                   # -e + 127, 9 bits signed
    special = T(p.comb(Mux(v.exp == 0, Cat(C(INF32, 31), v.sign),            # +-0 (and subnormal) -> +-inf
                           Mux(v.frac != 0, NAN32, Cat(C(0, 31), v.sign))), "rcp_special"), x.t)
    is_special = T(p.comb((v.exp == 0) | (v.exp == 0xFF), "rcp_isspecial"), x.t)
    sign = T(v.sign, x.t)
    for _ in range(steps):
        tt = fp32_mul(p, m, r, mul_stages)
        u = fp32_add(p, f32(1.0), tt, add_stages, sub=True)
        w = fp32_mul(p, r, u, mul_stages)
        r = fp32_add(p, r, w, add_stages)
    t, (rv, kv) = p.sync(r, k)
    eo = _reg(p, T(p.comb((Fp32(rv).exp + kv).as_signed(), "rcp_eo"), t), g)   # the add, then the range check
    t, (eov, rv, sp, isp, sg) = p.sync(eo, r, special, is_special, sign)
    scaled = Mux(eov >= 1, Cat(Fp32(rv).frac, eov[:8], sg), Cat(C(0, 31), sg))
    return _reg(p, T(Mux(isp, sp, scaled), t), g)


def rsqrt(p: Pipe, x: T, add_stages: int = 2, mul_stages: int = 2, steps: int = 2) -> T:
    """`numerics.rsqrt_array` on binary32 bits: seed ROM by exponent parity and top fraction bits, two
    Newton steps y += y*(0.5 - h*(y*y)), exponent by integer arithmetic (the halved exponent and the
    special cases decided from the input, beside the Newton steps)."""
    g = _glue(add_stages)
    v = Fp32(x.v)
    odd = ~v.exp[0]                                                           # unbiased exponent is odd
    h = T(Cat(v.frac, (126 + odd)[:8], C(0, 1)), x.t)                         # m' / 2, exact
    (y,) = p.rom("rsqrt_seed", _bits32(nx.RSQRT_SEED), 32,
                 [T(Cat(v.frac[23 - nx.SEED_BITS:], odd), x.t)])
    half_e = T(p.comb(((v.exp - 127 - odd).as_signed() >> 1), "rsq_half"), x.t)  # (e - e mod 2) / 2, exact
    special = Mux(v.exp == 0, Cat(C(INF32, 31), v.sign),                     # +-0 -> +-inf
              Mux(v.exp == 0xFF, Mux((v.frac != 0) | v.sign, NAN32, 0), NAN32))   # +inf -> +0; NaN; x < 0
    special = T(p.comb(special, "rsq_special"), x.t)
    is_special = T(p.comb((v.exp == 0) | (v.exp == 0xFF) | v.sign, "rsq_isspecial"), x.t)
    for _ in range(steps):
        s = fp32_mul(p, y, y, mul_stages)
        tt = fp32_mul(p, h, s, mul_stages)
        u = fp32_add(p, f32(0.5), tt, add_stages, sub=True)
        w = fp32_mul(p, y, u, mul_stages)
        y = fp32_add(p, y, w, add_stages)
    t, (yv, he) = p.sync(y, half_e)
    eo = _reg(p, T(p.comb((Fp32(yv).exp - he).as_signed(), "rsq_eo"), t), g)    # the add, then the clamp
    t, (eov, yv, sp, isp) = p.sync(eo, y, special, is_special)
    eov = Mux(eov < 1, 1, Mux(eov > 254, 254, eov))
    return _reg(p, T(Mux(isp, sp, Cat(Fp32(yv).frac, eov[:8], C(0, 1))), t), g)


class _SfuUnit(PipelinedUnit):
    _fn = None
    _width = 16

    def __init__(self, add_stages: int = 2, mul_stages: int = 2):
        check_stages(self, add_stages=(add_stages, ADD_MAX_STAGES), mul_stages=(mul_stages, len(MUL32_CUTS)))
        self.add_stages, self.mul_stages = add_stages, mul_stages
        super().__init__(self._width, self._width)

    def datapath(self, p, x):
        return type(self)._fn(p, x, self.add_stages, self.mul_stages)


class Gelu16Unit(_SfuUnit):
    """`i`: binary16 x -> `o`: gelu16(x) (`numerics.gelu16_arith`)."""
    _fn, _width = gelu16, 16


class Exp16Unit(_SfuUnit):
    """`i`: binary16 x -> `o`: exp16(x) (`numerics.exp16_arith`)."""
    _fn, _width = exp16, 16


class RecipUnit(_SfuUnit):
    """`i`: binary32 x -> `o`: recip(x) (`numerics.recip_array`)."""
    _fn, _width = recip, 32


class RsqrtUnit(_SfuUnit):
    """`i`: binary32 x -> `o`: rsqrt(x) (`numerics.rsqrt_array`)."""
    _fn, _width = rsqrt, 32
