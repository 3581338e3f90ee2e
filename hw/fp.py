"""IEEE binary16/binary32 operators, bit-exact to `dfx.numerics` (docs/numerics.md), and their stream units.

Policy (the spec's): round to nearest even everywhere; binary16 operands pass DAZ (a subnormal reads as a zero
of its sign) and so do binary32 operands; a binary32 result that is subnormal after rounding becomes a zero of
its sign (FTZ, `numerics.ftz32`); a binary16 result is `numerics.to_fp16`'s (one rounding from binary32 with
gradual underflow, then subnormal -> signed zero); every NaN produced is the canonical quiet NaN (0x7E00 /
0x7FC00000); overflow gives inf of the sign.

Each operator is a function `op(p, a, b, stages=...) -> T` on timed values (`hw.pipe`): the same code is a
combinational block (stages=0), e.g. inside the MPU's accumulator loop, or a pipeline with registers at its
named cut points. The `*Unit` components wrap one operator with `i`/`o` streams for unit tests and reuse.

Latency (cycles) with the default stages; every unit accepts one operation per cycle:

| unit | default stages | cut points (by priority) |
|---|---|---|
| Fp16MulUnit  (binary16 x binary16 -> exact binary32) | 1 | output, product, significands (`MUL16_CUTS`) |
| Fp32AddUnit  (binary32 + binary32, RNE, FTZ)          | 2 | output, after alignment, after normalisation, then five more (`ADD_CUTS`) |
| Fp32MulUnit  (binary32 x binary32, RNE, FTZ)          | 2 | output, after the product, after the partial products, significands, before rounding (`MUL32_CUTS`) |
| Fp32ToFp16Unit (`to_fp16`)                            | 1 | output, before the increment |

The cuts past the defaults exist for the 300 MHz configurations (docs/rtl.md, "Logic depth"); the datapath
is written for depth (tree leading-zero count, 4:1-multiplexer shifters) with the same function.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

import numpy as np
from amaranth import C, Cat, ClockSignal, Const, Instance, Mux, Signal, Value
from amaranth.hdl import Array
from amaranth.lib import data

from dfx import numerics as nx

from .pipe import PipelinedUnit, Pipe, T, check_stages

Fp16 = data.StructLayout({"frac": 10, "exp": 5, "sign": 1})
Fp32 = data.StructLayout({"frac": 23, "exp": 8, "sign": 1})

NAN32 = int(nx.NAN32)
NAN16 = int(nx.NAN16)
INF32 = 0x7F800000
INF16 = 0x7C00


def f32(x) -> Const:
    """A binary32 constant (the value rounded to binary32 by numpy) as a 32-bit Const."""
    return Const(int(nx.fp32_bits(np.float32(x))), 32)


def lzc_tree(v: Value) -> Value:
    """Leading zeros of `v` (len(v) when v == 0) as a radix-4 tree: `v` on top of a one-then-zeros pad to the
    next power of two above len(v) (so an all-zero `v` counts len(v)), then per node of four (two where the
    width asks): the first nonzero part's index from the top and that part's count. About one LUT level per
    two bits of the count instead of a priority chain."""
    v = Value.cast(v)
    n = len(v)
    w = 1 << n.bit_length()                                    # > n: the pad holds a one
    padded = Cat(C(1 << (w - n - 1), w - n), v)

    def rec(x):                                                # (count, x == 0)
        if len(x) == 2:
            return ~x[1], x == 0
        if len(x) == 4:                                        # 0..3: one LUT per bit
            return Mux(x[3], 0, Mux(x[2], 1, Mux(x[1], 2, 3)))[:2], x == 0
        k = 4 if (len(x).bit_length() - 1) % 2 == 0 else 2     # parts: 4, or 2 at an odd power of two
        h = len(x) // k
        parts = [rec(x[i * h:(i + 1) * h]) for i in reversed(range(k))]   # top part first
        zs = [z for _, z in parts]
        cnt = parts[-1][0]
        idx = C(k - 1, k.bit_length() - 1)
        for i in reversed(range(k - 1)):                       # the first nonzero part from the top wins
            cnt = Mux(~zs[i], parts[i][0], cnt)
            idx = Mux(~zs[i], C(i, k.bit_length() - 1), idx)
        zero = zs[0]
        for z in zs[1:]:
            zero = zero & z
        return Cat(cnt, idx), zero
    return rec(padded)[0][:n.bit_length()]


def shift_right(p: Pipe, v, amt, name: str = "shr", left: bool = False, scale: int = 0) -> Value:
    """`(v >> (amt << scale))[:len(v)]` (or `<<` with `left`) as layers of 4:1 multiplexers, two bits of
    `amt` per layer (one LUT6 per bit and layer): the same function as Amaranth's shift in
    ceil(len(amt) / 2) LUT levels. `scale` lets a shift be split into layers on both sides of a register."""
    v, amt = Value.cast(v), Value.cast(amt)
    n = len(v)
    for k in range(0, len(amt), 2):
        digit = amt[k:k + 2]
        steps = [(j << (k + scale)) for j in range(1 << len(digit))]
        if left:
            shifted = [Cat(C(0, min(s, n)), v)[:n] if s < n else C(0, n) for s in steps]
        else:
            shifted = [Cat(v[s:], C(0, min(s, n)))[:n] if s < n else C(0, n) for s in steps]
        out = shifted[0]
        for j in range(1, len(shifted)):
            out = Mux(digit == j, shifted[j], out)
        v = p.comb(out, f"{name}{k}")
    return v


def _u32(x):
    """Fields of a binary32 operand after DAZ: sign, exponent, 24-bit significand (0 for zero), classes."""
    v = Fp32(Value.cast(x))
    zero = v.exp == 0
    special = v.exp == 0xFF
    nan = special & (v.frac != 0)
    inf = special & (v.frac == 0)
    mant = Mux(zero, 0, Cat(v.frac, C(1, 1)))
    return v.sign, v.exp, mant, zero, inf, nan


def _u16(x):
    v = Fp16(Value.cast(x))
    zero = v.exp == 0
    special = v.exp == 0x1F
    nan = special & (v.frac != 0)
    inf = special & (v.frac == 0)
    mant = Mux(zero, 0, Cat(v.frac, C(1, 1)))
    return v.sign, v.exp, mant, zero, inf, nan


def neg32(x) -> Value:
    """Flip the sign bit of a binary32 value (exact negation; what a - b = a + (-b) uses)."""
    x = Value.cast(x)
    return Cat(x[:31], ~x[31])


# ============================================================================================ combinational
def widen16(x) -> Value:
    """binary16 -> binary32, exact, after DAZ (`numerics.widen16`): subnormal -> signed zero, NaN -> canonical."""
    s, e, _, zero, inf, nan = _u16(x)
    f = Fp16(Value.cast(x)).frac
    normal = Cat(C(0, 13), f, (e + 112)[:8], s)
    return Mux(nan, NAN32, Mux(inf, Cat(C(INF32, 31), s), Mux(zero, Cat(C(0, 31), s), normal)))


def lt_const(v, k: int) -> Value:
    """Unsigned `v` < the constant `k`, as and/or logic (a few LUTs; Yosys makes a carry chain of `<`):
    some bit where k has a one and v a zero, with v equal to k above it."""
    n = len(v)
    if k >= 1 << n:
        return C(1, 1)
    terms = [~v[i] & Cat(C(1, 1), *[v[j] if (k >> j) & 1 else ~v[j] for j in range(i + 1, n)]).all()
             for i in range(n) if (k >> i) & 1]
    return Cat(*terms).any() if terms else C(0, 1)


def int_parts(p: Pipe, x, int_bits: int, stages: int = 0):
    """Split the magnitude of binary32 `x` (DAZ; a `T` or a value at stage 0) into integer part and
    fraction, both exact; `stages` (0..4) registers: output, after the fraction mask, after its
    leading-zero count, after the shift amount.

    Returns `T`s (ip, has_frac, r): ip = floor(|x|) as an unsigned `int_bits`-bit value (saturated to all
    ones when |x| >= 2^int_bits or x is inf/NaN), has_frac = |x| is not an integer, r = |x| - ip as a
    binary32 (+0 when |x| is an integer), exact because |x| - floor(|x|) always is.
    """
    assert 1 <= int_bits <= 23
    t, (x,) = p.sync(x)
    cut = p.stages(stages, (2, 0, 1, 3))
    v = Fp32(p.comb(Value.cast(x), "ip_x"))
    zero = v.exp == 0
    # compares with constants and functions of the exponent's five low bits written as logic (no carry
    # chain): each a LUT level or two
    below_one = lt_const(v.exp, 127) | zero
    too_big = ~lt_const(v.exp, 127 + int_bits)
    # the shift 23 - E = (150 - exp) mod 32 (valid when 0 <= E < int_bits), a table of exp's five low bits
    sh = p.comb(Array(C((22 - k) % 32, 5) for k in range(32))[v.exp[:5]], "ip_sh")
    frac, exp = v.frac, v.exp
    sh, frac, exp, zero, below_one, too_big = cut(3, sh, frac, exp, zero, below_one, too_big)

    m = Cat(frac, C(1, 1))                                     # 24 bits, 1.frac
    ip = shift_right(p, m, sh, "ip_ip")[:int_bits]
    fr = p.comb(m & Cat(*[sh > i for i in range(24)]), "ip_fr")   # m & ((1 << sh) - 1)
    ip, fr, frac, exp, zero, below_one, too_big = cut(0, ip, fr, frac, exp, zero, below_one, too_big)

    fr = p.comb(fr, "ip_fr2")
    lz = p.comb(lzc_tree(fr), "ip_lz")
    ip, fr, lz, frac, exp, zero, below_one, too_big = cut(1, ip, fr, lz, frac, exp, zero, below_one, too_big)

    fr, lz = p.comb(fr, "ip_fr3"), p.comb(lz, "ip_lz2")
    r_exp = (exp - lz)[:8]                                     # 127 + E - lz
    r_norm = Cat(shift_right(p, fr, lz, "ip_nl", True)[:23], r_exp, C(0, 1))
    r_frac = Mux(fr == 0, 0, r_norm)
    ip = Mux(too_big, (1 << int_bits) - 1, Mux(below_one, 0, ip))
    has_frac = Mux(too_big, 0, Mux(below_one, ~zero, fr != 0))
    r = Mux(too_big, 0, Mux(below_one, Mux(zero, 0, Cat(frac, exp, C(0, 1))), r_frac))
    ip, has_frac, r = cut(2, p.comb(ip, "ip_int"), p.comb(has_frac, "ip_hasfrac"), p.comb(r, "ip_frac"))
    t2 = t + cut.latency
    return T(ip, t2), T(has_frac, t2), T(r, t2)


def int_to_fp32(p: Pipe, v) -> Value:
    """A small signed integer as binary32 (exact for |v| < 2^24)."""
    v = p.comb(Value.cast(v), "i2f_v")
    w = len(v)
    neg = v[-1] if v.shape().signed else C(0, 1)
    mag = p.comb(Mux(neg, -v, v)[:w], "i2f_mag")
    lz = p.comb(lzc_tree(mag), "i2f_lz")
    shifted = shift_right(p, mag, lz, "i2f_sh", True)          # MSB at bit w-1
    frac = Cat(C(0, 23 - (w - 1)), shifted[:w - 1])
    exp = (127 + (w - 1) - lz)[:8]
    return p.comb(Mux(mag == 0, 0, Cat(frac, exp, neg)), "i2f")


# ============================================================================================ DSP48E2
# Two configurations of one DSP48E2 (UG579), each with the slice's own registers where the adder has a cut:
#   "mul":    P = A * B           OPMODE W=0 Z=0 Y=M X=M (0b00_000_01_01), ALUMODE 0000, USE_MULT MULTIPLY;
#                                 AREG/BREG (= ACASCREG/BCASCREG) on A and B, PREG on P, no MREG
#   "addsub": P = C +/- A:B       OPMODE W=0 Z=C Y=0 X=A:B (0b00_011_00_11), ALUMODE 0000 (Z + X) or
#                                 0011 (Z - X), USE_MULT NONE; CREG and ALUMODEREG on C and the operation
#                                 (A:B comes from the multiplier's P register), PREG on P
# Every register is clock-enabled by the pipeline's enable (the CE pins) and has no reset, as `Pipe.reg`.
# `dsp` = "model" builds the same function from Amaranth operators with the same registers (`Pipe.reg`;
# amaranth.sim, Icarus and Verilator run it; Yosys and Vivado infer a DSP48E2 for its multiply, Vivado one for
# its add from the `use_dsp` attribute, while Yosys maps the add to carry chains); "primitive" instantiates
# DSP48E2 with those registers (for Yosys / Vivado; no simulator here has its model).
DSP_MODES = (None, "model", "primitive")
_OPMODE = {"mul": 0b00_000_01_01, "addsub": 0b00_011_00_11}
_DSP_CE = ("CEA1", "CEA2", "CEB1", "CEB2", "CEC", "CED", "CEM", "CEP", "CEAD", "CEALUMODE", "CECTRL",
           "CECARRYIN", "CEINMODE")
_DSP_RST = ("RSTA", "RSTB", "RSTC", "RSTD", "RSTM", "RSTP", "RSTALLCARRYIN", "RSTALUMODE", "RSTCTRL",
            "RSTINMODE")


def dsp48e2(p: Pipe, kind: str, a=0, b=0, c=0, sub=0, mode: str = "model", name: str = "dsp",
            areg: bool = False, creg: bool = False, preg: bool = False, zero_low: int = 0):
    """P (48 bits) of one DSP48E2 in configuration `kind` ("mul": A (27-bit signed) * B (18-bit signed);
    "addsub": C - A:B when `sub`, else C + A:B), with A and B registered (`areg`: AREG = BREG = 1), C and
    the operation registered (`creg`: CREG = ALUMODEREG = 1) and P registered (`preg`): each is one cycle of
    the pipeline `p`, as a `Pipe.reg` in the model. `zero_low` > 0: (P, PATTERNDETECT), the slice's pattern
    detector on P's `zero_low` low bits == 0 (PATTERN 0, MASK set above them), registered with P."""
    a, b, c = Cat(a, C(0, 30))[:30], Cat(b, C(0, 18))[:18], Cat(c, C(0, 48))[:48]   # the ports' widths
    sub = Value.cast(sub)
    if mode == "model":
        if areg:
            a, b = p.reg(a, f"{name}_a"), p.reg(b, f"{name}_b")
        if creg:
            c, sub = p.reg(c, f"{name}_c"), p.reg(sub, f"{name}_alu")
        # use_dsp: Vivado builds the add in a DSP48E2 too (it infers the multiply without being asked)
        res = Signal(48, name=p._name(name), attrs={} if kind == "mul" else {"use_dsp": "yes"})
        if kind == "mul":
            p.m.d.comb += res.eq((a[:27].as_signed() * b.as_signed())[:48])
        else:
            p.m.d.comb += res.eq(Mux(sub, c - Cat(b, a), c + Cat(b, a))[:48])
        out = p.reg(res, f"{name}_p") if preg else res
        if not zero_low:
            return out
        det = res[:zero_low] == 0
        return out, (p.reg(det, f"{name}_pd") if preg else p.comb(det, f"{name}_pd"))
    out, det = Signal(48, name=p._name(name)), Signal(name=p._name(f"{name}_pd"))
    regs = {"AREG": areg, "BREG": areg, "ACASCREG": areg, "BCASCREG": areg, "CREG": creg, "ALUMODEREG": creg,
            "DREG": 0, "ADREG": 0, "MREG": 0, "PREG": preg, "INMODEREG": 0, "OPMODEREG": 0, "CARRYINREG": 0,
            "CARRYINSELREG": 0}
    params = {f"p_{r}": int(v) for r, v in regs.items()}
    params.update(p_USE_MULT="MULTIPLY" if kind == "mul" else "NONE", p_A_INPUT="DIRECT", p_B_INPUT="DIRECT",
                  p_AMULTSEL="A", p_BMULTSEL="B", p_PREADDINSEL="A", p_USE_SIMD="ONE48",
                  p_USE_PATTERN_DETECT="PATDET" if zero_low else "NO_PATDET", p_SEL_PATTERN="PATTERN",
                  p_SEL_MASK="MASK", p_PATTERN=C(0, 48), p_MASK=C(((1 << 48) - 1) ^ ((1 << zero_low) - 1), 48))
    ports = {f"i_{n}": p.ce for n in _DSP_CE}
    ports.update({f"i_{n}": 0 for n in _DSP_RST})
    ports.update(i_CLK=ClockSignal(p.domain), i_A=a, i_B=b, i_C=c, i_D=C(0, 27), i_OPMODE=C(_OPMODE[kind], 9),
                 i_ALUMODE=Cat(sub, sub, C(0, 2)), i_INMODE=C(0, 5),
                 i_CARRYIN=0, i_CARRYINSEL=C(0, 3), i_ACIN=C(0, 30), i_BCIN=C(0, 18), i_PCIN=C(0, 48),
                 i_CARRYCASCIN=0, i_MULTSIGNIN=0, o_P=out)
    if zero_low:
        ports["o_PATTERNDETECT"] = det
    p.m.submodules[p._name(name)] = Instance("DSP48E2", **params, **ports)
    return (out, det) if zero_low else out


def dsp_operands(dc) -> tuple[Value, Value]:
    """(hi, one-hot B operand) of the alignment multiply for a clamped shift dc <= 27: a multiply by
    2^(16 - dc), or for dc >= 16 (`hi`: the significand's 13 low bits dropped first) by 2^(13 - (dc - 16))."""
    dc = Value.cast(dc)
    hi = dc[4]
    return hi, Mux(hi, C(1 << 13, 17) >> dc[:4], C(1 << 16, 17) >> dc[:4])[:17]


def dsp_align(p: Pipe, m_sml, dc, mode: str) -> tuple[Value, Value]:
    """(`shift_right(Cat(C(0, 3), m_sml), dc)`, sticky) for dc <= 27, the shift in a DSP48E2 multiplier. The
    aligned value is floor(m_sml * 2^(3 - dc)), read from the product's bits 13..39 (P >> 13): for dc < 16
    the product is m_sml * 2^(16 - dc); for dc >= 16 a 2:1 multiplexer drops m_sml's 13 low bits first
    (they are below the result: floor(floor(m_sml / 2^13) * 2^(16 - dc)) is the same value) and the product
    is (m_sml >> 13) * 2^(13 - f), f = dc - 16 <= 11. B is a one-hot of at most 2^16 (an 18-bit signed
    operand), A at most 24 bits. The bits shifted out lie in the product's bits 0..12 (and, for dc >= 16,
    in the 13 dropped bits): the sticky bit is the slice's pattern detector (those 13 bits all zero) inverted,
    or'd with the dropped bits. (A combinational reference of what `fp32_add` builds across its cuts.)"""
    hi, onehot = dsp_operands(dc)
    prod, exact = dsp48e2(p, "mul", a=Mux(hi, m_sml[13:], m_sml), b=onehot, mode=mode, name="dsp_al", zero_low=13)
    sticky = ~exact | (hi & (m_sml[:13] != 0))
    return prod[13:40], sticky


# ============================================================================================ operators
# The adder's register cut points, by priority: output, after alignment, after normalisation (the first
# three: the defaults of every unit before the depth analysis), then after the add, after the magnitude
# compare, after the leading-zero count, after the rounding increment, after the shift-amount clamp.
ADD_CUTS = (2, 0, 1, 3, 4, 5, 6, 7)
ADD_MAX_STAGES = len(ADD_CUTS)


def fp32_add(p: Pipe, a, b, stages: int = 2, sub: bool = False, dsp: str | None = None) -> T:
    """a + b (or a - b) in binary32: RNE, DAZ operands, FTZ result, canonical NaN, IEEE signed zeros.

    Classic three-extra-bit (guard, round, sticky) adder: order the operands by magnitude, align the
    smaller one, add or subtract, normalise (carry right or leading-zero count left), round. A result in the
    subnormal range of two normal operands is exact, so flushing it needs no rounding step.

    `dsp` ("model" or "primitive"; None: LUTs and carry chains) moves the alignment and the wide add into two
    DSP48E2 slices, as DFX's floating-point adders (2 DSP each). The alignment is a multiply by a one-hot
    power of two (`dsp_operands`) whose A/B registers are the cut after the shift-amount clamp and whose P
    register is the cut after alignment; the add is the second slice's ALU (C +/- A:B) with C and ALUMODE
    registered at the cut after alignment and P at the cut after the add. The sticky bit (the multiplier's
    pattern detector on the product's 13 shifted-out bits, registered with P, or'd with the bits the 2:1
    multiplexer dropped: one LUT between the slices) enters the add as one more low bit of A:B (2 * aligned
    + sticky) and is folded back after it (`total[0] | total[1]`: the same 28-bit sum as big +/- (aligned |
    sticky)). The results and the latency are the LUT adder's.
    """
    if dsp not in DSP_MODES:
        raise ValueError(f"dsp must be one of {', '.join(map(repr, DSP_MODES))}, not {dsp!r}")
    t, (a, b) = p.sync(a, b)
    cut = p.stages(stages, ADD_CUTS)
    sa, ea, ma, za, ia, na = _u32(a)
    sb, eb, mb, zb, ib, nb = _u32(b)
    if sub:
        sb = ~sb
    # |b| > |a| on the DAZ'd magnitudes: a zero b never is; a zero a is below every nonzero b
    swap = p.comb(~zb & (za | (Value.cast(b)[:31] > Value.cast(a)[:31])), "add_swap")
    nan = na | nb | (ia & ib & (sa != sb))
    inf = ia | ib
    inf_sign = Mux(ia, sa, sb)
    zero_sign = sa & sb                                        # x + (-x) = +0; (-0) + (-0) = -0
    # for both orders, beside the compare: the exponent difference clamped to 27 (the alignment shift) and
    # the mask of the significand bits it shifts out, (1 << shift) - 1 above the guard, round, sticky bits
    d_ab, d_ba = p.comb((ea - eb)[:8], "add_dab"), p.comb((eb - ea)[:8], "add_dba")
    dc_ab, dc_ba = Mux(d_ab > 27, 27, d_ab)[:5], Mux(d_ba > 27, 27, d_ba)[:5]
    gt_ab, gt_ba = Cat(*[d_ab > i for i in range(3, 27)]), Cat(*[d_ba > i for i in range(3, 27)])
    swap, sa, ea, ma, sb, eb, mb, dc_ab, dc_ba, gt_ab, gt_ba, nan, inf, inf_sign, zero_sign = cut(
        4, swap, sa, ea, ma, sb, eb, mb, dc_ab, dc_ba, gt_ab, gt_ba, nan, inf, inf_sign, zero_sign)

    s_big, e_big, m_big = Mux(swap, sb, sa), Mux(swap, eb, ea), Mux(swap, mb, ma)
    s_sml, m_sml = Mux(swap, sa, sb), Mux(swap, ma, mb)
    dc = p.comb(Mux(swap, dc_ba, dc_ab), "add_shift")          # min(e_big - e_sml, 27)
    eff_sub = s_big ^ s_sml
    if dsp is None:
        # a bit shifted out (G, R, S are zero), for both orders beside the swap: one multiplexer after
        sticky = p.comb(Mux(swap, (ma & gt_ba) != 0, (mb & gt_ab) != 0), "add_sticky")
        al = shift_right(p, Cat(C(0, 3), m_sml), dc[:2], "add_al")   # the shift's first layer before the cut
        s_big, e_big, m_big, al, dc, sticky, eff_sub, nan, inf, inf_sign, zero_sign = cut(
            7, s_big, e_big, m_big, al, dc, sticky, eff_sub, nan, inf, inf_sign, zero_sign)
        aligned = p.comb(shift_right(p, al, dc[2:], "add_al", scale=2) | sticky, "add_aligned")
        s_big, e_big, m_big, aligned, eff_sub, nan, inf, inf_sign, zero_sign = cut(
            0, s_big, e_big, m_big, aligned, eff_sub, nan, inf, inf_sign, zero_sign)
        big = Cat(C(0, 3), m_big)
        total = p.comb(Mux(eff_sub, (big - aligned)[:28], (big + aligned)[:28]), "add_total")
        total, s_big, e_big, nan, inf, inf_sign, zero_sign = cut(3, total, s_big, e_big, nan, inf, inf_sign,
                                                                 zero_sign)
        total = p.comb(total, "add_sum")
    else:
        hi, onehot = dsp_operands(dc)
        m_al = Mux(hi, m_sml[13:], m_sml)
        dropped = p.comb(hi & (m_sml[:13] != 0), "add_drop")   # shifted out by the 2:1 multiplexer
        on = cut.enabled                                       # the slices' registers stand for these cuts
        s_big, e_big, m_big, dropped, eff_sub, nan, inf, inf_sign, zero_sign = cut(
            7, s_big, e_big, m_big, dropped, eff_sub, nan, inf, inf_sign, zero_sign)
        # the product's 13 low bits are shifted out: their OR is the pattern detector's "not all zero"
        prod, exact = dsp48e2(p, "mul", a=m_al, b=onehot, mode=dsp, name="dsp_al", areg=7 in on, preg=0 in on,
                              zero_low=13)
        s_big, e_big, dropped, nan, inf, inf_sign, zero_sign = cut(
            0, s_big, e_big, dropped, nan, inf, inf_sign, zero_sign)
        ab = Cat(~exact | dropped, prod[13:40])                # 2 * aligned + sticky, 28 bits
        wide = dsp48e2(p, "addsub", a=ab[18:], b=ab[:18], c=Cat(C(0, 4), m_big), sub=eff_sub, mode=dsp,
                       name="dsp_add", creg=0 in on, preg=3 in on)
        s_big, e_big, nan, inf, inf_sign, zero_sign = cut(3, s_big, e_big, nan, inf, inf_sign, zero_sign)
        total = p.comb(Cat(wide[0] | wide[1], wide[2:29]), "add_sum")

    lz = p.comb(lzc_tree(total[:27]), "add_lz")
    is_zero = total == 0
    total, lz, is_zero, s_big, e_big, nan, inf, inf_sign, zero_sign = cut(
        5, total, lz, is_zero, s_big, e_big, nan, inf, inf_sign, zero_sign)

    total, lz = p.comb(total, "add_sum2"), p.comb(lz, "add_lz2")
    carry = total[27]
    norm = p.comb(Mux(carry, Cat(total[0] | total[1], total[2:28]), shift_right(p, total[:27], lz, "add_nl", True)),
                  "add_norm")
    e_norm = p.comb(Mux(carry, e_big + 1, e_big - lz).as_signed(), "add_enorm")   # <= 0: flush; 255: inf
    s_big, norm, e_norm, is_zero, nan, inf, inf_sign, zero_sign = cut(
        1, s_big, norm, e_norm, is_zero, nan, inf, inf_sign, zero_sign)

    up = norm[2] & (norm[1] | norm[0] | norm[3])               # RNE on guard / round+sticky / lsb
    # the increments (significand, exponent) and the exponent's compares beside `up`; the selections they
    # feed (the rounded exponent, overflow, flush, the special value) after the cut
    mp1 = p.comb((norm[3:27] + 1)[:24], "add_mp1")
    mr = p.comb(Mux(up, mp1, norm[3:27]), "add_mr")
    c24 = p.comb(up & (norm[3:27] == 0xFFFFFF), "add_c24")     # the increment's carry out, beside its chain
    e0, e1 = e_norm[:8], (e_norm + 1)[:8]                      # e_r = e_norm + c24
    ge254, ge255, lem1, le0 = e_norm >= 254, e_norm >= 255, e_norm <= -1, e_norm <= 0
    mr, e0, e1, c24, ge254, ge255, lem1, le0, s_big, nan, inf, is_zero, inf_sign, zero_sign = cut(
        6, mr[:23], e0, e1, c24, ge254, ge255, lem1, le0, s_big, nan, inf, is_zero, inf_sign, zero_sign)

    e_r = Mux(c24, e1, e0)
    ovf = Mux(c24, ge254, ge255)                               # e_r >= 255: inf
    flush = Mux(c24, lem1, le0)                                # e_r <= 0: a zero of the sign
    special = nan | inf | is_zero | ovf | flush
    sval = Mux(nan, NAN32, Mux(inf, Cat(C(INF32, 31), inf_sign), Mux(is_zero, Cat(C(0, 31), zero_sign),
               Mux(ovf, Cat(C(INF32, 31), s_big), Cat(C(0, 31), s_big)))))
    res = Mux(special, sval, Cat(mr, e_r, s_big))
    return T(cut(2, res), t + cut.latency)


# The binary32 multiplier's cuts by priority: output, after the significand product (the first two: the
# defaults before the depth analysis), then after the two partial products, before the products, before
# the rounding increment.
MUL32_CUTS = (1, 0, 2, 3, 4)
MUL16_CUTS = (1, 0, 2)                   # binary16: output, after the product, before the product


def fp32_mul(p: Pipe, a, b, stages: int = 2, a_bits: int = 24) -> T:
    """a * b in binary32: RNE, DAZ operands, FTZ result (after IEEE rounding with gradual underflow: only a
    product in [2^-126 - 2^-150, 2^-126) survives, as 2^-126), canonical NaN.

    `a_bits` < 24 declares that `a`'s significand has only its top `a_bits` bits set (a widened binary16
    has 11), which narrows the multiplier.
    """
    t, (a, b) = p.sync(a, b)
    cut = p.stages(stages, MUL32_CUTS)
    sa, ea, _, za, ia, na = _u32(a)
    sb, eb, _, zb, ib, nb = _u32(b)
    sign = sa ^ sb
    nan = na | nb | (ia & zb) | (za & ib)
    inf = ia | ib
    zero = za | zb
    drop = 24 - a_bits
    # significands without the zero gating: a zero operand's product is never used (`zero` overrides it)
    ma, mb = Cat(Fp32(Value.cast(a)).frac, C(1, 1))[drop:], Cat(Fp32(Value.cast(b)).frac, C(1, 1))
    e = (ea + eb - 127).as_signed()
    sign, nan, inf, zero, ma, mb, e = cut(3, sign, nan, inf, zero, ma, mb, e)

    ma, mb = p.comb(ma, "mul_ma"), p.comb(mb, "mul_mb")
    lo = min(len(ma), 17)                                      # partial products of at most 24 x 17 bits:
    pl = p.comb(ma[:lo] * mb, "mul_pl")                        # one DSP48E2 (27 x 18) each
    ph = p.comb(ma[lo:] * mb, "mul_ph") if len(ma) > lo else C(0, 1)
    sign, nan, inf, zero, pl, ph, e = cut(2, sign, nan, inf, zero, pl, ph, e)

    prod = p.comb(Cat(C(0, drop), (pl + (ph << lo))[:48 - drop]), "mul_prod")      # 48 bits, exact
    sign, nan, inf, zero, prod, e = cut(0, sign, nan, inf, zero, prod, e)

    hi = prod[47]
    norm = p.comb(Mux(hi, prod, prod << 1)[:48], "mul_norm")
    top = norm[24:48]
    up = norm[23] & ((norm[:23] != 0) | top[0])
    all1 = top == 0xFFFFFF
    # e1 = e + hi (the exponent before rounding) and what the rounding stage needs of it, from e beside the
    # normalisation: e1 + 1 for a carry out of the increment, and the compares (no adder after the cut)
    e1 = p.comb((e + hi)[:8], "mul_e1")
    e1p1 = p.comb((e + hi + 1)[:8], "mul_e1p1")
    normal = Mux(hi, e >= 0, e >= 1)                           # e1 >= 1
    g254, g255 = Mux(hi, e >= 253, e >= 254), Mux(hi, e >= 254, e >= 255)   # e1 >= 254, e1 >= 255
    e1zero = Mux(hi, e == -1, e == 0)
    # the increment precomputed beside `up` (its carry chain before the cut): the rounding stage only selects
    topp1 = p.comb((top + 1)[:24], "mul_topp1")
    sign, nan, inf, zero, top, topp1, up, e1, e1p1, normal, g254, g255, e1zero, all1 = cut(
        4, sign, nan, inf, zero, top, topp1, up, e1, e1p1, normal, g254, g255, e1zero, all1)
    c24 = up & all1                                            # the increment carries out: e2 = e1 + 1 (after
    #                                                            the cut: before it, ABC shared `all1` with the
    #                                                            increment's carry chain)
    top = p.comb(top, "mul_top")
    mr = p.comb(Mux(up, topp1, top), "mul_mr")
    to_min = e1zero & all1                                     # rounds up to the smallest normal
    special = nan | inf | zero | ~normal | Mux(c24, g254, g255)
    sval = Mux(nan, NAN32,
           Mux(inf, Cat(C(INF32, 31), sign),
           Mux(zero, Cat(C(0, 31), sign),
           Mux(normal, Cat(C(INF32, 31), sign),                # (normal and special: e2 >= 255)
           Mux(to_min, Cat(C(0, 23), C(1, 8), sign), Cat(C(0, 31), sign))))))
    res = Mux(special, sval, Cat(mr[:23], Mux(c24, e1p1, e1), sign))
    return T(cut(1, res), t + cut.latency)


def fp16_mul(p: Pipe, a, b, stages: int = 1) -> T:
    """binary16 a * b -> the exact product in binary32 (DAZ operands; 11 x 11 significand bits fit in 24, and
    every product of normal binary16 values is a normal binary32)."""
    t, (a, b) = p.sync(a, b)
    cut = p.stages(stages, MUL16_CUTS)
    sa, ea, _, za, ia, na = _u16(a)
    sb, eb, _, zb, ib, nb = _u16(b)
    sign = sa ^ sb
    nan = na | nb | (ia & zb) | (za & ib)
    inf = ia | ib
    zero = za | zb
    ma, mb = Cat(Fp16(Value.cast(a)).frac, C(1, 1)), Cat(Fp16(Value.cast(b)).frac, C(1, 1))   # (zero: unused)
    esum = (ea + eb)[:6]
    sign, nan, inf, zero, ma, mb, esum = cut(2, sign, nan, inf, zero, ma, mb, esum)

    prod = (ma * mb)[:22]
    sign, nan, inf, zero, prod, esum = cut(0, sign, nan, inf, zero, prod, esum)

    hi = prod[21]
    frac = Mux(hi, Cat(C(0, 2), prod[:21]), Cat(C(0, 3), prod[:20]))
    exp = (esum + 97 + hi)[:8]                                 # (ea-15) + (eb-15) + hi + 127
    res = Mux(nan, NAN32, Mux(inf, Cat(C(INF32, 31), sign), Mux(zero, Cat(C(0, 31), sign),
                                                                Cat(frac, exp, sign))))
    return T(cut(1, res), t + cut.latency)


def fp32_to_fp16(p: Pipe, x, stages: int = 1) -> T:
    """`numerics.to_fp16` of a binary32: one RNE rounding with gradual underflow (so only values in
    [2^-14 - 2^-25, 2^-14) survive the flush, as 2^-14), overflow to inf, canonical NaN."""
    t, (x,) = p.sync(x)
    cut = p.stages(stages, (0, 1))
    v = Fp32(x)
    s, e, f = v.sign, v.exp, v.frac
    nan = (e == 0xFF) & (f != 0)
    e16 = (e - 112).as_signed()
    up = f[12] & ((f[:12] != 0) | f[13])
    s, f, nan, e16, up = cut(1, s, f, nan, e16, up)            # (a second cut: before the increment)
    e16 = p.comb(e16, "r16_e")
    body = p.comb((Cat(f[13:23], e16[:5]) + up)[:16], "r16_body")   # a carry moves into the exponent field
    res = Mux(nan, NAN16,
          Mux(e16 >= 31, Cat(C(INF16, 15), s),
          Mux(e16 >= 1, Cat(body[:15], s),                      # (e16 <= 30: body <= 0x7BFF + 1 = inf)
          Mux((e16 == 0) & (f[13:23] == 0x3FF), Cat(C(0x400, 15), s), Cat(C(0, 15), s)))))
    return T(cut(0, res), t + cut.latency)


# ============================================================================================ stream units
Operands16 = data.StructLayout({"a": 16, "b": 16})
Operands32 = data.StructLayout({"a": 32, "b": 32})


class Fp16MulUnit(PipelinedUnit):
    """`i`: {a, b} binary16 -> `o`: the exact binary32 product (the MPU's multiplier)."""

    def __init__(self, stages: int = 1):
        check_stages(self, stages=(stages, len(MUL16_CUTS)))
        self.stages = stages
        super().__init__(Operands16, 32)

    def datapath(self, p, x):
        v = x.v
        return fp16_mul(p, T(v.a, x.t), T(v.b, x.t), self.stages)


class Fp32AddUnit(PipelinedUnit):
    """`i`: {a, b} binary32 -> `o`: a + b (or a - b with `sub`); `dsp` as `fp32_add`'s."""

    def __init__(self, stages: int = 2, sub: bool = False, dsp: str | None = None):
        check_stages(self, stages=(stages, ADD_MAX_STAGES))
        if dsp not in DSP_MODES:
            self._MustUse__silence = True
            raise ValueError(f"dsp must be one of {', '.join(map(repr, DSP_MODES))}, not {dsp!r}")
        self.stages, self.sub, self.dsp = stages, sub, dsp
        super().__init__(Operands32, 32)

    def datapath(self, p, x):
        return fp32_add(p, T(x.v.a, x.t), T(x.v.b, x.t), self.stages, sub=self.sub, dsp=self.dsp)


class Fp32MulUnit(PipelinedUnit):
    """`i`: {a, b} binary32 -> `o`: a * b."""

    def __init__(self, stages: int = 2):
        check_stages(self, stages=(stages, len(MUL32_CUTS)))
        self.stages = stages
        super().__init__(Operands32, 32)

    def datapath(self, p, x):
        return fp32_mul(p, T(x.v.a, x.t), T(x.v.b, x.t), self.stages)


class Fp32ToFp16Unit(PipelinedUnit):
    """`i`: binary32 -> `o`: `to_fp16` of it."""

    def __init__(self, stages: int = 1):
        check_stages(self, stages=(stages, 2))
        self.stages = stages
        super().__init__(32, 16)

    def datapath(self, p, x):
        return fp32_to_fp16(p, x, self.stages)


class Widen16Unit(PipelinedUnit):
    """`i`: binary16 -> `o`: its exact binary32 value after DAZ (combinational; one output register)."""

    def __init__(self):
        super().__init__(16, 32)

    def datapath(self, p, x):
        return T(widen16(x.v), x.t)
