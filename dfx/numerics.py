"""The bit-exact arithmetic reference of the DFX datapath (docs/design.md, contract 3; the prose is docs/numerics.md).

Every function here is a fixed sequence of IEEE-754 operations (numpy float16/float32, round to nearest even,
no fused multiply-add) or integer/bit operations, so the RTL can match it bit for bit. It is vectorised (arrays
of any shape), so the functional simulator calls it once per instruction.

Policies (docs/numerics.md has the reasoning):
- Storage is binary16. `to_fp16` rounds (RNE with gradual underflow, as numpy's cast), then flushes a subnormal
  result to a zero of the same sign. Values read as binary16 pass `daz16`: a subnormal input is a signed zero.
- Scalar registers are binary32, flushed the same way (`ftz32`).
- inf follows IEEE; every NaN that is stored (binary16) or lands in a scalar register (binary32) is the
  canonical quiet NaN 0x7E00 / 0x7FC00000. Overflow when rounding to binary16 gives inf of the sign.
- Overflow and invalid operations are data, not errors: callers that want numpy quiet run under
  ``np.errstate(all="ignore")`` (the simulator does, once per run; an errstate per call costs ~10 us).
"""
from __future__ import annotations

import ctypes
import functools
import math
import struct

import numpy as np

F16, F32 = np.float16, np.float32
NAN16 = np.uint16(0x7E00)                         # canonical quiet NaN, binary16 bits
NAN32 = np.uint32(0x7FC00000)                     # canonical quiet NaN, binary32 bits
F16_MAX = 65504.0
F16_MIN_NORMAL = 2.0 ** -14
F32_MIN_NORMAL = np.float32(2.0 ** -126)

_U16, _U32 = np.uint16, np.uint32


def _ro(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


# =============================================================================================== tables (ROMs)
# Every table the hardware holds is a module-level read-only array defined by the formula next to it; the RTL
# generates its ROMs from these arrays.

# exp: 2^f for f in [0, 1) by linear interpolation in a (2^EXP_TABLE_BITS + 1)-entry table of 2^(i/256).
EXP_TABLE_BITS = 8
EXP_TABLE = _ro(np.exp2(np.arange(2 ** EXP_TABLE_BITS + 1, dtype=np.float64) / 2 ** EXP_TABLE_BITS).astype(F32))
EXP_T_CLAMP = 64.0                                # t = x*log2(e) is clamped to [-64, 64]
LOG2E = F32(1.4426950408889634)                   # log2(e) rounded to binary32 (0x3FB8AA3B)

# GELU: DFX's 2048-sample LUT on [-8, 8]: sample i at x_i = -8 + 16*i/2047 (both ends included).
GELU_SAMPLES = 2048
GELU_LO, GELU_HI = -8.0, 8.0
GELU_STEP_INV = F32((GELU_SAMPLES - 1) / (GELU_HI - GELU_LO))      # 2047/16 = 127.9375, exact in binary32


def gelu_tanh_f64(x):
    """GPT-2's GELU (Hugging Face "gelu_new"), 0.5x(1 + tanh(u)) with u = sqrt(2/pi)(x + 0.044715x^3), in
    float64: the function the LUT samples. Evaluated as the identical x / (1 + exp(-2u)), which keeps the
    negative tail (1 + tanh(u) cancels to 0 in float64 for x < -5.6; this form does not)."""
    x = np.asarray(x, np.float64)
    u = np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)
    with np.errstate(over="ignore"):
        return x / (1.0 + np.exp(-2.0 * u))


GELU_X = _ro(GELU_LO + (GELU_HI - GELU_LO) * np.arange(GELU_SAMPLES, dtype=np.float64) / (GELU_SAMPLES - 1))
GELU_TABLE = _ro(gelu_tanh_f64(GELU_X).astype(F32))

# reciprocal / rsqrt seeds, indexed by the top SEED_BITS bits of the 23-bit significand field (and, for rsqrt,
# the parity of the unbiased exponent): the exact function at the interval's midpoint, rounded to binary32.
SEED_BITS = 7
_mid = 1.0 + (np.arange(2 ** SEED_BITS, dtype=np.float64) + 0.5) / 2 ** SEED_BITS
RECIP_SEED = _ro((1.0 / _mid).astype(F32))                                          # 1/m, m in [1, 2)
RSQRT_SEED = _ro(np.concatenate([1.0 / np.sqrt(_mid), 1.0 / np.sqrt(2.0 * _mid)]).astype(F32))  # [even e | odd e]
del _mid


# =============================================================================================== bits
def fp16_bits(x) -> np.ndarray:
    """The binary16 bit patterns (uint16) of x (x converted by a plain numpy cast if it is not binary16)."""
    return np.asarray(x, F16).view(_U16)


def from_fp16_bits(u) -> np.ndarray:
    return np.asarray(u, _U16).view(F16)


def fp32_bits(x) -> np.ndarray:
    """The binary32 bit patterns (uint32) of x (x converted by a plain numpy cast if it is not binary32)."""
    return np.asarray(x, F32).view(_U32)


def from_fp32_bits(u) -> np.ndarray:
    return np.asarray(u, _U32).view(F32)


# =============================================================================================== rounding, DAZ/FTZ
_ABS16, _INF16, _SUB16, _SIGN16 = _U16(0x7FFF), _U16(0x7C00), _U16(0x3FF), _U16(0x8000)
_ABS32, _INF32, _ONE32, _SUB32, _SIGN32 = (_U32(0x7FFFFFFF), _U32(0x7F800000), _U32(1), _U32(0x7FFFFF),
                                           _U32(0x80000000))


def _daz_table() -> np.ndarray:
    """binary16 bits -> bits after DAZ: subnormal -> zero of the same sign, NaN -> 0x7E00, others unchanged."""
    b = np.arange(1 << 16, dtype=_U16)
    t = b & _ABS16
    out = b.copy()
    sub = (t > 0) & (t <= _SUB16)
    out[sub] &= _SIGN16
    out[t > _INF16] = NAN16
    return _ro(out)


DAZ16_TABLE = _daz_table()


def daz16(x) -> np.ndarray:
    """binary16 operand: subnormals become zeros of the same sign, NaNs the canonical NaN 0x7E00 (a lookup in
    `DAZ16_TABLE`). A non-binary16 input is first cast to binary16 by numpy, then cleaned: that is `to_fp16`."""
    x = np.asarray(x, F16)
    return DAZ16_TABLE.take(x.view(_U16)).view(F16)


def to_fp16(x) -> np.ndarray:
    """Round to binary16: one RNE rounding from binary32 or binary64 (gradual underflow, overflow to inf of the
    sign, exactly numpy's cast), then a subnormal result becomes a zero of the same sign and NaN is canonical.
    binary16 input is only cleaned (`daz16`); other dtypes are converted through binary64."""
    x = np.asarray(x)
    if x.dtype == F16:
        return daz16(x)
    if x.dtype != F32 and x.dtype != np.float64:
        x = x.astype(np.float64)
    return daz16(x.astype(F16))


def ftz32(x) -> np.ndarray:
    """Round to binary32 (RNE, gradual underflow; a no-op for binary32 input), then a subnormal result becomes
    a zero of the same sign and NaN is canonical (0x7FC00000). Scalars in, numpy float32 scalar out."""
    if np.ndim(x) == 0:
        return F32(r32(float(x)))
    x = np.asarray(x)
    if x.dtype != F32:
        if x.dtype != np.float64:
            x = x.astype(np.float64)
        x = x.astype(F32)
    t = x.view(_U32) & _ABS32
    if t.size == 0 or (((t - _ONE32) >= _SUB32).all() and t.max() <= _INF32):
        return x
    b = x.view(_U32).copy()
    b[(t > 0) & (t <= _SUB32)] &= _SIGN32
    b[t > _INF32] = NAN32
    return b.view(F32)


def _widen_table() -> np.ndarray:
    """binary32 value of every binary16 bit pattern after DAZ (subnormal -> signed 0, NaN -> 0x7FC00000)."""
    return _ro(DAZ16_TABLE.view(F16).astype(F32))


F16_TO_F32 = _widen_table()


def widen16(x) -> np.ndarray:
    """binary16 operand as binary32, exactly, after DAZ (a table lookup: 4-5x faster than numpy's cast).
    Input that is not binary16 is rounded by `to_fp16` first."""
    x = np.asarray(x)
    if x.dtype != F16:
        x = to_fp16(x)
    return F16_TO_F32.take(x.view(_U16))


def _s32(s) -> np.float32:
    """A binary32 scalar operand (register or immediate) as it enters a unit: DAZ, canonical NaN."""
    return F32(r32(float(s)))


# =============================================================================================== adder trees
def _check_d(d: int) -> int:
    if not isinstance(d, (int, np.integer)) or d < 1 or d & (d - 1):
        raise ValueError(f"d (adder-tree width) must be a power of two >= 1, not {d!r}")
    return int(d)


def _accumulate_groups(g: np.ndarray, axis: int) -> np.ndarray:
    """acc = ((+0 + g0) + g1) + ... along `axis` of binary32 group sums (g is a temporary: modified)."""
    if g.ndim == 1:                                          # one vector (the simulator's reductions)
        g[0] += F32(0.0)
        return np.add.accumulate(g)[-1] if g.shape[0] > 1 else g[0]
    if axis != 0:
        g = np.moveaxis(g, axis, 0)
    g[0] += F32(0.0)                                         # +0 + g0: -0 becomes +0, as the accumulator does
    if g.shape[0] == 1:
        return g[0]
    return np.add.accumulate(g, axis=0)[-1]                  # accumulate is strictly sequential in numpy


def tree_sum(p: np.ndarray, d: int) -> np.ndarray:
    """Sum binary32 `p` along axis -2 (length a multiple of d) in the MPU's order.

    Groups of d consecutive elements are reduced by a balanced pairwise tree (level 1 adds elements 2i and
    2i+1, level 2 adds adjacent level-1 sums, ...); the group sums are accumulated in order starting from +0:
    acc = ((+0 + g0) + g1) + ... . Every addition is binary32 RNE.
    """
    d = _check_d(d)
    p = np.asarray(p, F32)
    *lead, k, n = p.shape
    if k % d or k == 0:
        raise ValueError(f"tree_sum: axis -2 has length {k}, not a positive multiple of d={d}")
    g = p.reshape(*lead, k // d, d, n)
    while g.shape[-2] > 1:
        g = g[..., 0::2, :] + g[..., 1::2, :]
    g = np.array(g[..., 0, :], F32)                          # (..., groups, n), own copy
    return _accumulate_groups(g, -2)


def _tree_last(p: np.ndarray, d: int) -> np.ndarray:
    """`tree_sum` along the last axis of binary32 `p`, zero-padding it to a positive multiple of d."""
    k = p.shape[-1]
    kp = max(-(-k // d), 1) * d
    if kp != k:
        p = np.concatenate([p, np.zeros(p.shape[:-1] + (kp - k,), F32)], axis=-1)
    g = p.reshape(p.shape[:-1] + (kp // d, d))
    while g.shape[-1] > 1:
        g = g[..., 0::2] + g[..., 1::2]
    g = np.array(g[..., 0], F32)
    return _accumulate_groups(g, -1)


# =============================================================================================== MPU
def weights32(w) -> np.ndarray:
    """A binary16 weight matrix as the binary32 array `mpu_matvec` accepts directly (convert once, cache it)."""
    return widen16(w)


def mpu_matvec(x, w, bias=None, d: int = 64, tile_scale=None) -> np.ndarray:
    """x (..., K) binary16 times w (K, N) binary16, plus bias (N,) binary16 -> (..., N) binary32 accumulators,
    before any rounding to binary16 (`mpu_finish` does the rest).

    Products are exact in binary32 (11 x 11 significand bits fit in 24). K is zero-padded to a multiple of d
    (the tree width) and split into groups of d; each group is summed by the pairwise tree of `tree_sum`, the
    group sums are accumulated in order from +0, then the bias (widened exactly) is added: all binary32 RNE.
    `w` may be given as binary32 holding DAZ-clean binary16 values (`weights32`), which saves the conversion
    on every call; that is the caller's promise, not checked. No FTZ is needed: see docs/numerics.md.

    tile_scale (`dfx.tilescale`): None, or (ceil(K/d), N) binary16 (or binary32 as `w`), K >= 1: group sum i
    of column c times widen16(tile_scale[i, c]), one binary32 RNE multiply, before the accumulation. With
    integer codes in `w` (|q| <= 8), |g| is 0 or >= 2^-24 and |s| 0 or >= 2^-14: never subnormal, no overflow.
    """
    d = _check_d(d)
    x32 = widen16(x)
    lead, k = x32.shape[:-1], x32.shape[-1]
    x32 = x32.reshape(math.prod(lead), k)
    w = np.asarray(w)
    w32 = w if w.dtype == F32 else widen16(w)
    if w32.ndim != 2 or w32.shape[0] != k:
        raise ValueError(f"mpu_matvec: x has K={k} but w has shape {w32.shape}; w must be (K, N)")
    n = w32.shape[1]
    full = (k // d) * d
    parts = []
    if full:
        parts.append(_group_sums(x32[:, :full], w32[:full], d))
    if full != k or k == 0:                                  # the last, zero-padded group
        xt = np.zeros((x32.shape[0], d), F32)
        wt = np.zeros((d, n), F32)
        xt[:, :k - full] = x32[:, full:]
        wt[:k - full] = w32[full:]
        parts.append(_group_sums(xt, wt, d))
    g = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)   # (M, groups, N)
    if tile_scale is not None:
        ts = tile_scale if getattr(tile_scale, "dtype", None) == F32 else widen16(tile_scale)
        if k == 0 or ts.shape != g.shape[1:]:
            raise ValueError(f"mpu_matvec: tile_scale must be (ceil(K/d), N) = {g.shape[1:]}, K >= 1, not {ts.shape}")
        g = g * ts                                           # g_i' = g_i * s_i: one binary32 RNE multiply
    acc = _accumulate_groups(g, 1)
    if bias is not None:
        acc = acc + widen16(bias)
    return acc.reshape(*lead, n)


def _group_sums(x32: np.ndarray, w32: np.ndarray, d: int) -> np.ndarray:
    """(M, C*d) x (C*d, N) -> (M, C, N) binary32 group sums; tree level 1 is fused with the products."""
    m, k = x32.shape
    c, n = k // d, w32.shape[1]
    xc = x32.reshape(m, c, d, 1)
    wc = w32.reshape(c, d, n)
    if d == 1:
        g = xc * wc
    else:
        g = xc[:, :, 0::2] * wc[:, 0::2]                     # exact products p_2i ...
        g += xc[:, :, 1::2] * wc[:, 1::2]                    # ... + p_2i+1: tree level 1, one rounding
        while g.shape[2] > 1:
            g = g[:, :, 0::2] + g[:, :, 1::2]
    return g[:, :, 0]


def mask16(y, limit: int) -> np.ndarray:
    """The causal mask: binary16 outputs in columns j > limit (last axis) become -inf."""
    y = np.array(y, F16)
    y[..., int(limit) + 1:] = -np.inf
    return y


def mpu_finish(acc, scale=None, act: str | None = None, mask_limit: int | None = None) -> np.ndarray:
    """SFU_M on binary32 accumulators: optional scale (one binary32 RNE multiply by a binary32 constant), one
    rounding to binary16 (`to_fp16`), optional GELU (`gelu16`) on the rounded value, optional causal mask
    (`mask16`: columns j > mask_limit become -inf)."""
    y = np.asarray(acc, F32)
    if scale is not None:
        y = y * _s32(scale)
    y = to_fp16(y)
    if act == "gelu":
        y = gelu16(y)
    elif act is not None:
        raise ValueError(f"act must be None or 'gelu', not {act!r}")
    if mask_limit is not None:
        y = mask16(y, mask_limit)
    return y


def mpu(x, w, bias=None, d: int = 64, scale=None, act: str | None = None, mask_limit: int | None = None,
        tile_scale=None) -> np.ndarray:
    """One matrix instruction end to end: `mpu_finish(mpu_matvec(x, w, bias, d, tile_scale), scale, act,
    mask_limit)`."""
    return mpu_finish(mpu_matvec(x, w, bias, d, tile_scale), scale, act, mask_limit)


# =============================================================================================== VPU
def vadd(a, b) -> np.ndarray:
    """Element-wise binary16 a + b, correctly rounded (binary32 add, then `to_fp16`; 24 >= 2*11 + 2)."""
    return to_fp16(widen16(a) + widen16(b))


def vsub(a, b) -> np.ndarray:
    """Element-wise binary16 a - b, correctly rounded."""
    return to_fp16(widen16(a) - widen16(b))


def vmul(a, b) -> np.ndarray:
    """Element-wise binary16 a * b, correctly rounded (the binary32 product is exact)."""
    return to_fp16(widen16(a) * widen16(b))


def vadd_scalar(a, s) -> np.ndarray:
    """binary16 vector + binary32 scalar: one binary32 RNE add, then `to_fp16` (double rounding: the spec)."""
    return to_fp16(widen16(a) + _s32(s))


def vsub_scalar(a, s) -> np.ndarray:
    """binary16 vector - binary32 scalar: one binary32 RNE subtract, then `to_fp16`."""
    return to_fp16(widen16(a) - _s32(s))


def vmul_scalar(a, s) -> np.ndarray:
    """binary16 vector * binary32 scalar: one binary32 RNE multiply, then `to_fp16`."""
    return to_fp16(widen16(a) * _s32(s))


def reduce_sum(a, d: int = 64):
    """Sum along the last axis -> binary32: zero-padded to a multiple of d, the MPU's tree per group of d,
    groups accumulated in order from +0. Leading axes are a batch."""
    return ftz32(_tree_last(widen16(a), _check_d(d)))


def reduce_dot(a, b, d: int = 64):
    """sum(a*b) along the last axis -> binary32: exact binary32 products, then `reduce_sum`'s order. Equal to
    `mpu_matvec` with one column."""
    return ftz32(_tree_last(widen16(a) * widen16(b), _check_d(d)))


def reduce_sumsq(a, d: int = 64):
    """sum(a*a) along the last axis -> binary32 (`reduce_dot(a, a)`)."""
    a32 = widen16(a)
    return ftz32(_tree_last(a32 * a32, _check_d(d)))


def reduce_max(a):
    """Maximum along the last axis -> binary32, exact. Order: IEEE's, with -0 < +0 (what an integer comparator
    on sign-magnitude keys gives). NaN if any element is NaN; -inf for an empty or all -inf vector."""
    a32 = widen16(a)
    if a32.shape[-1] == 0:
        out = np.full(a32.shape[:-1], -np.inf, F32)
        return out[()] if out.ndim == 0 else out
    m = np.max(a32, axis=-1)                                 # NaN-propagating; the sign of a zero max is fixed below
    zero = m == 0
    if np.any(zero):
        pos = (a32.view(_U32) == 0).any(axis=-1)             # some element is +0
        m = np.where(zero, np.where(pos, F32(0.0), F32(-0.0)), m)
    return ftz32(m)                                          # canonical NaN


# =============================================================================================== scalar unit
# Scalar paths (one value, as the scalar unit sees it) run on Python floats: a binary64 operation on binary32
# operands followed by one rounding to binary32 is the correctly rounded binary32 operation, because
# 53 >= 2*24 + 2, so they give the same bits as the array paths (tests check that), several times faster.
_NAN = float("nan")                                          # bits 0x7FF8..., converts to 0x7FC00000


def r32(v: float) -> float:
    """Round a Python float to binary32 (RNE, gradual underflow, overflow to inf), then flush a subnormal result
    to a signed zero; NaN becomes the canonical NaN."""
    y = ctypes.c_float(v).value
    if y != y:
        return _NAN
    if y != 0.0 and -1.1754943508222875e-38 < y < 1.1754943508222875e-38:
        return math.copysign(0.0, y)
    return y


_PACK_F = struct.Struct("<f")
_PACK_I = struct.Struct("<I")


def _bits(v: float) -> int:
    return _PACK_I.unpack(_PACK_F.pack(v))[0]


def _float(b: int) -> float:
    return _PACK_F.unpack(_PACK_I.pack(b))[0]


def _in32(v) -> float:
    """A scalar operand as a Python float holding its DAZ'd binary32 value."""
    return r32(float(np.float32(v)))


def sadd(a, b):
    """binary32 a + b (RNE, DAZ inputs, FTZ result)."""
    if np.ndim(a) == 0 and np.ndim(b) == 0:
        return F32(r32(_in32(a) + _in32(b)))
    return ftz32(ftz32(np.asarray(a, F32)) + ftz32(np.asarray(b, F32)))


def smul(a, b):
    """binary32 a * b (RNE, DAZ inputs, FTZ result)."""
    if np.ndim(a) == 0 and np.ndim(b) == 0:
        return F32(r32(_in32(a) * _in32(b)))
    return ftz32(ftz32(np.asarray(a, F32)) * ftz32(np.asarray(b, F32)))


def recip(x):
    """1/x in binary32. |x| = m * 2^e, m in [1, 2): r = RECIP_SEED[top 7 bits of m's fraction]; twice
    {t = m*r; u = 1 - t; v = r*u; r = r + v} (binary32 RNE each); result = r * 2^-e by exponent arithmetic (exact;
    a result below 2^-126 is a signed zero), sign of x. recip(+-0) = +-inf, recip(+-inf) = +-0, NaN -> NaN."""
    if np.ndim(x) == 0:
        return _recip_scalar(_in32(x))
    return recip_array(x)


def rsqrt(x):
    """1/sqrt(x) in binary32. x = m * 2^e; m' = m * 2^(e mod 2) in [1, 4), h = m'/2; y = RSQRT_SEED[e mod 2,
    top 7 bits of m's fraction]; twice {s = y*y; t = h*s; u = 0.5 - t; v = y*u; y = y + v}; result =
    y * 2^-((e - e mod 2)/2) by exponent arithmetic (exact). rsqrt(+0) = +inf, rsqrt(-0) = -inf,
    rsqrt(x < 0) = NaN, rsqrt(+inf) = +0, NaN -> NaN."""
    if np.ndim(x) == 0:
        return _rsqrt_scalar(_in32(x))
    return rsqrt_array(x)


def _recip_scalar(x: float) -> np.float32:
    """`recip_array` for one DAZ'd binary32 value (same operations, same order)."""
    b = _bits(x)
    sign, e_b, frac = b & 0x80000000, (b >> 23) & 0xFF, b & 0x7FFFFF
    if e_b == 0:
        return F32(math.copysign(math.inf, x))
    if e_b == 0xFF:
        return F32(_NAN) if frac else F32(math.copysign(0.0, x))
    m = _float(0x3F800000 | frac)
    r = float(RECIP_SEED[frac >> (23 - SEED_BITS)])
    for _ in range(2):
        u = r32(1.0 - r32(m * r))
        r = r32(r + r32(r * u))
    rb = _bits(r)
    eo = ((rb >> 23) & 0xFF) + 127 - e_b
    if eo < 1:
        return F32(math.copysign(0.0, x))
    return F32(_float(sign | (eo << 23) | (rb & 0x7FFFFF)))


def _rsqrt_scalar(x: float) -> np.float32:
    """`rsqrt_array` for one DAZ'd binary32 value (same operations, same order)."""
    b = _bits(x)
    e_b, frac = (b >> 23) & 0xFF, b & 0x7FFFFF
    if e_b == 0:
        return F32(math.copysign(math.inf, x))
    if x != x or x < 0:
        return F32(_NAN)
    if e_b == 0xFF:
        return F32(0.0)
    odd = 1 - (e_b & 1)                                      # unbiased exponent e = e_b - 127 is odd iff e_b is even
    h = _float(((126 + odd) << 23) | frac)                   # m'/2, exact
    y = float(RSQRT_SEED[(odd << SEED_BITS) | (frac >> (23 - SEED_BITS))])
    for _ in range(2):
        u = r32(0.5 - r32(h * r32(y * y)))
        y = r32(y + r32(y * u))
    yb = _bits(y)
    eo = ((yb >> 23) & 0xFF) - (e_b - 127 - odd) // 2
    return F32(_float((eo << 23) | (yb & 0x7FFFFF)))


def _fields(x: np.ndarray):
    b = x.view(_U32)
    return b & _SIGN32, ((b >> _U32(23)) & _U32(0xFF)).astype(np.int32), b & _SUB32


def recip_array(x) -> np.ndarray:
    """`recip` on an array (element-wise)."""
    x = np.atleast_1d(ftz32(np.asarray(x, F32)))
    sign, e_b, frac = _fields(x)
    m = (frac | _U32(0x3F800000)).view(F32)
    r = RECIP_SEED[frac >> _U32(23 - SEED_BITS)]
    one = F32(1.0)
    with np.errstate(all="ignore"):
        for _ in range(2):
            u = one - m * r
            r = r + r * u
    rb = r.view(_U32)
    eo = ((rb >> _U32(23)) & _U32(0xFF)).astype(np.int32) + 127 - e_b
    out = np.where(eo >= 1, (np.maximum(eo, 0).astype(_U32) << _U32(23)) | (rb & _SUB32), _U32(0)) | sign
    out = np.where(e_b == 0, sign | _INF32, out)                                  # +-0 -> +-inf
    out = np.where(e_b == 0xFF, np.where(frac != 0, NAN32, sign), out)           # +-inf -> +-0, NaN
    return out.astype(_U32).view(F32)


def rsqrt_array(x) -> np.ndarray:
    """`rsqrt` on an array (element-wise)."""
    x = np.atleast_1d(ftz32(np.asarray(x, F32)))
    sign, e_b, frac = _fields(x)
    odd = 1 - (e_b & 1)
    h = ((((126 + odd).astype(_U32)) << _U32(23)) | frac).view(F32)
    y = RSQRT_SEED[(odd << SEED_BITS) | (frac >> _U32(23 - SEED_BITS)).astype(np.int32)]
    half = F32(0.5)
    with np.errstate(all="ignore"):
        for _ in range(2):
            u = half - h * (y * y)
            y = y + y * u
    yb = y.view(_U32)
    eo = ((yb >> _U32(23)) & _U32(0xFF)).astype(np.int32) - (e_b - 127 - odd) // 2
    out = (np.clip(eo, 1, 254).astype(_U32) << _U32(23)) | (yb & _SUB32)
    out = np.where(e_b == 0, sign | _INF32, out)                                  # +-0 -> +-inf
    out = np.where((sign != 0) & (e_b != 0), NAN32, out)                          # x < 0, -inf -> NaN
    out = np.where(e_b == 0xFF, np.where((frac != 0) | (sign != 0), NAN32, _U32(0)), out)
    return out.astype(_U32).view(F32)


# =============================================================================================== SFUs: exp, GELU
def exp16_arith(x) -> np.ndarray:
    """exp(x), binary16 -> binary16, as the hardware computes it (`exp16` serves it from a table).

    x32 = widen(x); t = x32 * LOG2E (binary32 RNE), clamped to [-64, 64]; n = floor(t); f = t - n (exact);
    p = f * 256 (exact); i = floor(p); r = p - i (exact); y = T[i] + (T[i+1] - T[i]) * r (three binary32 RNE
    operations in that order, T = EXP_TABLE); z = y * 2^n (exact: exponent arithmetic); result = to_fp16(z).
    NaN in, NaN out.
    """
    x32 = np.atleast_1d(widen16(x))
    with np.errstate(all="ignore"):
        t = x32 * LOG2E
        t = np.fmin(np.fmax(t, F32(-EXP_T_CLAMP)), F32(EXP_T_CLAMP))          # fmax/fmin: NaN -> -64
        n = np.floor(t)
        f = t - n
        p = f * F32(2 ** EXP_TABLE_BITS)
        ip = np.floor(p)
        r = p - ip
        i = ip.astype(np.intp)
        lo = EXP_TABLE[i]
        y = lo + (EXP_TABLE[i + 1] - lo) * r
        z = y * ((n.astype(np.int32) + 127).astype(_U32) << _U32(23)).view(F32)  # 2^n, |n| <= 64: normal
    z = np.where(np.isnan(x32), from_fp32_bits(NAN32), z)
    return to_fp16(z).reshape(np.shape(x))


def gelu16_arith(x) -> np.ndarray:
    """GELU (GPT-2's tanh form), binary16 -> binary16, as the hardware computes it (`gelu16` serves it from a
    table).

    x32 = widen(x). x >= 8: x. x <= -8: -0. NaN: NaN. Otherwise p = (x32 + 8) * (2047/16) (two binary32 RNE
    operations; 0 < p < 2047 for binary16 x in (-8, 8)); i = floor(p); r = p - i (exact);
    y = L[i] + (L[i+1] - L[i]) * r (three binary32 RNE operations, L = GELU_TABLE); result = to_fp16(y).
    """
    x32 = np.atleast_1d(widen16(x))
    with np.errstate(all="ignore"):
        p = (x32 + F32(-GELU_LO)) * GELU_STEP_INV
        p = np.fmin(np.fmax(p, F32(0.0)), F32(GELU_SAMPLES - 1))             # only outside (-8, 8) and NaN
        ip = np.minimum(np.floor(p), F32(GELU_SAMPLES - 2))
        r = p - ip
        i = ip.astype(np.intp)
        lo = GELU_TABLE[i]
        y = lo + (GELU_TABLE[i + 1] - lo) * r
    y = np.where(x32 >= F32(GELU_HI), x32, y)
    y = np.where(x32 <= F32(GELU_LO), F32(-0.0), y)
    y = np.where(np.isnan(x32), from_fp32_bits(NAN32), y)
    return to_fp16(y).reshape(np.shape(x))


@functools.lru_cache(maxsize=None)
def _table16(name: str) -> np.ndarray:
    """65536-entry table of a binary16 -> binary16 function, indexed by the input's bits, built on first use."""
    fn = {"exp16": exp16_arith, "gelu16": gelu16_arith}[name]
    with np.errstate(all="ignore"):
        return _ro(fp16_bits(fn(from_fp16_bits(np.arange(1 << 16, dtype=_U16)))).copy())


def exp16(x) -> np.ndarray:
    """`exp16_arith`, served from a table over all 65536 inputs (identical by construction; tests check)."""
    x = np.asarray(x)
    if x.dtype != F16:
        x = to_fp16(x)
    return _table16("exp16").take(x.view(_U16)).view(F16)


def gelu16(x) -> np.ndarray:
    """`gelu16_arith`, served from a table over all 65536 inputs (identical by construction; tests check)."""
    x = np.asarray(x)
    if x.dtype != F16:
        x = to_fp16(x)
    return _table16("gelu16").take(x.view(_U16)).view(F16)
