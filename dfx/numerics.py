"""The bit-exact arithmetic reference of the DFX datapath (DESIGN.md, contract 3; prose in docs/numerics.md).

Every function here is a fixed sequence of IEEE-754 operations (numpy float16/float32, round-to-nearest-even)
or integer/bit operations, so the RTL can match it bit for bit, and it is vectorised so the functional
simulator can call it once per instruction.

Policies:
- Storage is binary16. A value is rounded to binary16 by `to_fp16`: RNE with gradual underflow (numpy's
  conversion), then any subnormal result becomes a zero of the same sign (flush-to-zero). Values read from
  memory pass `daz16` (subnormal inputs are zeros). NaN results are the canonical quiet NaN 0x7E00.
- The MPU multiplies binary16 pairs exactly in binary32 (11 x 11 significand bits fit in 24), sums each group
  of d products with a pairwise adder tree in binary32, accumulates the groups in order in binary32, adds the
  bias, optionally scales, and rounds once to binary16.
- Overflow to inf and invalid operations are part of the spec, not errors: callers that want numpy quiet
  run under `np.errstate(all="ignore")` (the simulator does, once per run; per-call errstate costs ~10 us).
- VPU element-wise ops are correctly rounded binary16 ops (computed in binary32 and rounded once: 24 >= 2*11+2
  makes that exact). Scalars (reductions, reciprocal, rsqrt) are binary32, FTZ.
"""
from __future__ import annotations

import numpy as np

F16, F32 = np.float16, np.float32
NAN16 = np.uint16(0x7E00)
NAN32 = np.uint32(0x7FC00000)
F32_MIN_NORMAL = np.float32(2.0 ** -126)

# ---------------------------------------------------------------------------------------------- tables
EXP_TABLE_BITS = 8
EXP_TABLE = np.array([2.0 ** (i / 2 ** EXP_TABLE_BITS) for i in range(2 ** EXP_TABLE_BITS + 1)], F32)
EXP_T_CLAMP = 64.0                                # |x*log2(e)| beyond this over/underflows binary16 anyway
LOG2E = F32(1.4426950408889634)

GELU_SAMPLES = 2048
GELU_LO, GELU_HI = -8.0, 8.0
GELU_STEP_INV = F32((GELU_SAMPLES - 1) / (GELU_HI - GELU_LO))     # samples per unit, fp32


def gelu_tanh_f64(x):
    """GPT-2's GELU (Hugging Face "gelu_new"), in float64: the function the LUT samples."""
    x = np.asarray(x, np.float64)
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


GELU_TABLE = gelu_tanh_f64(GELU_LO + (GELU_HI - GELU_LO) * np.arange(GELU_SAMPLES) / (GELU_SAMPLES - 1)).astype(F32)

SEED_BITS = 7                                     # mantissa bits indexing the reciprocal / rsqrt seed ROMs
_mid = 1.0 + (np.arange(2 ** SEED_BITS) + 0.5) / 2 ** SEED_BITS
RECIP_SEED = (1.0 / _mid).astype(F32)                                   # for m in [1, 2)
RSQRT_SEED = np.concatenate([1.0 / np.sqrt(_mid), 1.0 / np.sqrt(2.0 * _mid)]).astype(F32)  # [even e | odd e]
for _t in (EXP_TABLE, GELU_TABLE, RECIP_SEED, RSQRT_SEED):
    _t.setflags(write=False)


# ---------------------------------------------------------------------------------------------- bits and rounding
def fp16_bits(x) -> np.ndarray:
    return np.asarray(x, F16).view(np.uint16)


def from_fp16_bits(u) -> np.ndarray:
    return np.asarray(u, np.uint16).view(F16)


def fp32_bits(x) -> np.ndarray:
    return np.asarray(x, F32).view(np.uint32)


def from_fp32_bits(u) -> np.ndarray:
    return np.asarray(u, np.uint32).view(F32)


_ABS16, _EXP16, _ONE16, _SUB16 = np.uint16(0x7FFF), np.uint16(0x7C00), np.uint16(1), np.uint16(0x3FF)


def daz16(x) -> np.ndarray:
    """binary16 input: subnormals become signed zeros, NaNs become the canonical NaN."""
    x = np.asarray(x, F16)
    t = x.view(np.uint16) & _ABS16
    # fast path (most calls): no magnitude in 1..0x3FF (subnormal) and none above 0x7C00 (NaN)
    if t.size == 0 or (((t - _ONE16) >= _SUB16).all() and t.max() <= _EXP16):
        return x
    b = x.copy().view(np.uint16)
    b[(t > 0) & (t <= _SUB16)] &= np.uint16(0x8000)
    b[t > _EXP16] = NAN16
    return b.view(F16)


# |x| below this rounds (RNE, gradual underflow) to a binary16 subnormal or zero: halfway between the largest
# subnormal (2^-14 - 2^-24) and 2^-14, where the tie goes to 2^-14 (even significand).
_F16_FLUSH_BELOW = 2.0 ** -14 - 2.0 ** -25


def to_fp16(x) -> np.ndarray:
    """Round to binary16 (RNE, overflow to inf; one rounding from binary32 or binary64), then flush results
    that are subnormal to signed zeros and canonicalise NaN."""
    x = np.asarray(x)
    if x.dtype == F16:
        return daz16(x)
    if x.dtype != np.float64:
        x = x.astype(F32, copy=False)
    with np.errstate(over="ignore", invalid="ignore"):
        y = np.asarray(x.astype(F16))
    a = np.abs(x)
    if a.size == 0 or a.min() >= _F16_FLUSH_BELOW:      # fast path: nothing tiny, no NaN (NaN fails >=)
        return y
    tiny = a < _F16_FLUSH_BELOW
    if tiny.any():
        y[tiny] = np.copysign(np.float64(0.0), x[tiny])
    nan = np.isnan(x)
    if nan.any():
        y.view(np.uint16)[nan] = NAN16
    return y


def ftz32(x) -> np.ndarray:
    """binary32: subnormals become signed zeros, NaNs the canonical NaN."""
    x = np.asarray(x, F32)
    a = np.abs(x)
    if a.size == 0 or a.min() >= F32_MIN_NORMAL:
        return x
    tiny, nan = a < F32_MIN_NORMAL, np.isnan(x)
    if not (tiny.any() or nan.any()):
        return x
    b = np.array(x, F32, copy=True).view(np.uint32)
    b[tiny] &= np.uint32(0x80000000)
    b[nan] = NAN32
    return b.view(F32)


# ---------------------------------------------------------------------------------------------- adder trees
def tree_sum(p: np.ndarray, d: int) -> np.ndarray:
    """Sum binary32 `p` along axis -2 (length a multiple of d) in the MPU's order.

    Groups of d consecutive elements are reduced by a balanced pairwise tree (level 1 adds elements 2i and
    2i+1, level 2 adds adjacent level-1 sums, ...); the group sums are accumulated in order starting from +0:
    acc = ((+0 + g0) + g1) + ... . Every addition is binary32 RNE.
    """
    *lead, k, n = p.shape
    g = p.reshape(*lead, k // d, d, n)
    while g.shape[-2] > 1:
        g = g[..., 0::2, :] + g[..., 1::2, :]
    g = g[..., 0, :]                                     # (..., groups, n)
    first = g[..., :1, :] + F32(0.0)                     # +0 + g0 (turns -0 into +0, as the hardware does)
    if g.shape[-2] == 1:
        return first[..., 0, :]
    return np.add.accumulate(np.concatenate([first, g[..., 1:, :]], axis=-2), axis=-2)[..., -1, :]


def _pad_to(x: np.ndarray, axis: int, d: int) -> np.ndarray:
    k = x.shape[axis]
    if k % d == 0 and k:
        return x
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, (-k % d) or d)
    return np.pad(x, pad)


# ---------------------------------------------------------------------------------------------- MPU
def mpu_matvec(x, w, bias=None, d: int = 64) -> np.ndarray:
    """x (M, K) binary16 times w (K, N) binary16 (+ bias (N,)) -> (M, N) binary32 accumulators.

    K is zero-padded to a multiple of d (the tree width). Products are exact in binary32. `w` may also be
    given as binary32 holding binary16 values (already DAZ), which saves the conversion on every call.
    """
    x = _pad_to(daz16(x), 1, d).astype(F32)             # (M, Kp)
    w = np.asarray(w)
    if w.dtype != F32:
        w = daz16(w).astype(F32)
    w = _pad_to(w, 0, d)                                 # (Kp, N)
    prod = x[:, :, None] * w[None, :, :]             # (M, Kp, N) exact
    acc = tree_sum(prod, d)                          # (M, N)
    if bias is not None:
        acc = acc + daz16(bias).astype(F32)[None, :]
    return ftz32(acc)


def mpu_finish(acc, scale=None, act: str | None = None) -> np.ndarray:
    """SFU_M: optional binary32 scale, one rounding to binary16, optional GELU on the rounded value."""
    y = np.asarray(acc, F32)
    if scale is not None:
        y = ftz32(y * F32(scale))
    y = to_fp16(y)
    if act == "gelu":
        y = gelu16(y)
    elif act is not None:
        raise ValueError(f"act must be None or 'gelu', not {act!r}")
    return y


# ---------------------------------------------------------------------------------------------- VPU
def _binop16(a, b, op) -> np.ndarray:
    return to_fp16(op(daz16(a).astype(F32), daz16(b).astype(F32)))


def vadd(a, b):
    return _binop16(a, b, np.add)


def vsub(a, b):
    return _binop16(a, b, np.subtract)


def vmul(a, b):
    return _binop16(a, b, np.multiply)


def _scalar_op16(a, s, op) -> np.ndarray:
    """binary16 vector op binary32 scalar: one binary32 RNE op, then one rounding to binary16."""
    return to_fp16(op(daz16(a).astype(F32), F32(s)))


def vadd_scalar(a, s):
    return _scalar_op16(a, s, np.add)


def vsub_scalar(a, s):
    return _scalar_op16(a, s, np.subtract)


def vmul_scalar(a, s):
    return _scalar_op16(a, s, np.multiply)


def reduce_sum(a, d: int = 64) -> np.ndarray:
    """Sum along the last axis in binary32 with the MPU's tree order (groups of d, zero-padded)."""
    a = daz16(a).astype(F32)
    return ftz32(tree_sum(_pad_to(a, -1, d)[..., None], d)[..., 0])


def reduce_dot(a, b, d: int = 64) -> np.ndarray:
    """sum(a*b) along the last axis: exact binary32 products, then `reduce_sum`'s order."""
    p = daz16(a).astype(F32) * daz16(b).astype(F32)
    return ftz32(tree_sum(_pad_to(p, -1, d)[..., None], d)[..., 0])


def reduce_max(a) -> np.ndarray:
    """Maximum along the last axis, exact, as binary32; NaN if any element is NaN; -inf when empty."""
    a = daz16(a).astype(F32)
    if a.shape[-1] == 0:
        return np.full(a.shape[:-1], -np.inf, F32)
    return ftz32(np.max(a, axis=-1))


# ---------------------------------------------------------------------------------------------- scalar unit
def sadd(a, b):
    return ftz32(F32(a) + F32(b))


def smul(a, b):
    return ftz32(F32(a) * F32(b))


def _split(x):
    """|x| = m * 2^e with m in [1, 2): (m as binary32, e as int64, sign bit, mantissa ROM index)."""
    b = fp32_bits(x).astype(np.int64)
    sign = b >> 31
    e = ((b >> 23) & 0xFF) - 127
    m = from_fp32_bits(((b & 0x7FFFFF) | (127 << 23)).astype(np.uint32))
    idx = (b >> (23 - SEED_BITS)) & ((1 << SEED_BITS) - 1)
    return m, e, sign, idx


def recip(x) -> np.ndarray:
    """1/x in binary32: seed ROM[top 7 mantissa bits], two Newton steps r = r*(2 - m*r), exponent by ldexp."""
    shape = np.shape(x)
    x = ftz32(np.atleast_1d(np.asarray(x, F32)))
    m, e, sign, idx = _split(x)
    r = RECIP_SEED[idx]
    two = F32(2.0)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        for _ in range(2):
            r = r * (two - m * r)
        y = np.ldexp(r, -e).astype(F32)
        y = np.where(sign == 1, -y, y)
        y = np.where(x == 0, np.copysign(np.inf, x), y)
        y = np.where(np.isinf(x), np.copysign(F32(0.0), x), y)
        y = np.where(np.isnan(x), np.nan, y)
    return ftz32(y.astype(F32)).reshape(shape)


def rsqrt(x) -> np.ndarray:
    """1/sqrt(x) in binary32: seed ROM[exponent parity, top 7 mantissa bits], two Newton steps
    y = y*(1.5 - (0.5*m')*y*y) with m' = m * 2^(e mod 2), exponent by ldexp(y, -(e - e mod 2)/2)."""
    shape = np.shape(x)
    x = ftz32(np.atleast_1d(np.asarray(x, F32)))
    m, e, sign, idx = _split(x)
    odd = e & 1
    mm = np.where(odd == 1, m * F32(2.0), m).astype(F32)          # [1, 4), exact
    y = RSQRT_SEED[idx + odd * (1 << SEED_BITS)]
    half_m = (mm * F32(0.5)).astype(F32)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        for _ in range(2):
            y = y * (F32(1.5) - half_m * (y * y))
        out = np.ldexp(y, -((e - odd) // 2)).astype(F32)
        out = np.where(x == 0, np.copysign(np.inf, x), out)
        out = np.where(np.isposinf(x), F32(0.0), out)
        out = np.where((sign == 1) & (x != 0), np.nan, out)
        out = np.where(np.isnan(x), np.nan, out)
    return ftz32(out.astype(F32)).reshape(shape)


# ---------------------------------------------------------------------------------------------- SFUs
def exp16(x) -> np.ndarray:
    """exp(x) for binary16 x -> binary16, via 2^t with t = x*log2(e) (binary32), t clamped to [-64, 64],
    n = floor(t), f = t - n; 2^f = T[i] + (T[i+1] - T[i]) * r with i = floor(f*256), r = f*256 - i
    (T: 257-entry table of 2^(i/256) in binary32); result = ldexp(2^f, n), rounded to binary16."""
    x = daz16(x).astype(F32)
    with np.errstate(over="ignore", invalid="ignore"):
        t = np.clip(x * LOG2E, F32(-EXP_T_CLAMP), F32(EXP_T_CLAMP)).astype(F32)
        t[np.isnan(t)] = 0                                 # NaN inputs: any table index; the result is NaN below
        n = np.floor(t)
        f = (t - n).astype(F32)
        p = (f * F32(2 ** EXP_TABLE_BITS)).astype(F32)
        i = np.floor(p).astype(np.int64)
        r = (p - i).astype(F32)
        lo = EXP_TABLE[i]
        y = lo + (EXP_TABLE[i + 1] - lo) * r
        y = np.ldexp(y.astype(F32), n.astype(np.int64)).astype(F32)
        y = np.where(np.isnan(x), np.nan, y)
    return to_fp16(y)


def gelu16(x) -> np.ndarray:
    """GELU for binary16 x -> binary16: linear interpolation in a 2048-sample table of gelu_tanh on [-8, 8]
    (sample i at -8 + 16*i/2047). p = (x + 8) * (2047/16) in binary32, i = min(floor(p), 2046), r = p - i,
    y = L[i] + (L[i+1] - L[i]) * r. x >= 8 gives x; x <= -8 gives +0."""
    x = daz16(x).astype(F32)
    with np.errstate(over="ignore", invalid="ignore"):
        p = ((x - F32(GELU_LO)) * GELU_STEP_INV).astype(F32)
        pc = np.clip(np.nan_to_num(p), 0, GELU_SAMPLES - 1)
        i = np.minimum(np.floor(pc).astype(np.int64), GELU_SAMPLES - 2)
        r = (pc - i).astype(F32)
        lo = GELU_TABLE[i]
        y = (lo + (GELU_TABLE[i + 1] - lo) * r).astype(F32)
        y = np.where(x >= F32(GELU_HI), x, y)
        y = np.where(x <= F32(GELU_LO), F32(0.0), y)
        y = np.where(np.isnan(x), np.nan, y)
    return to_fp16(y)


# ---------------------------------------------------------------------------------------------- error table
def error_table() -> list[tuple[str, str, float, str]]:
    """Measured error of each approximation against float64 (rerun: python -m dfx.numerics --error-table)."""
    all16 = from_fp16_bits(np.arange(1 << 16, dtype=np.uint16))
    fin = daz16(all16)
    fin = fin[np.isfinite(fin)]
    rows = []
    x = fin.astype(np.float64)
    # exp over inputs whose result is a normal binary16
    with np.errstate(over="ignore"):
        ref = np.exp(x)
    ok = (ref >= 2.0 ** -14) & (ref <= 65504)
    got = exp16(fin).astype(np.float64)
    ulp = 2.0 ** (np.floor(np.log2(ref[ok])) - 10)
    rows.append(("exp16", "all binary16 x with a normal result", float(np.max(np.abs(got[ok] - ref[ok]) / ulp)),
                 "binary16 ulp"))
    g = gelu16(fin).astype(np.float64)
    gr = gelu_tanh_f64(x)
    inside = np.abs(x) < 8
    rows.append(("gelu16", "all binary16 abs(x) < 8", float(np.max(np.abs(g[inside] - gr[inside]))), "absolute"))
    big = inside & (np.abs(gr) >= 2.0 ** -4)
    ulp = 2.0 ** (np.floor(np.log2(np.abs(gr[big]))) - 10)
    rows.append(("gelu16", "binary16 abs(x) < 8, abs(gelu(x)) >= 1/16", float(np.max(np.abs(g[big] - gr[big]) / ulp)),
                 "binary16 ulp"))
    rng = np.random.default_rng(0)
    s = np.ldexp(rng.uniform(1, 2, 200000), rng.integers(-120, 120, 200000)).astype(F32)
    for name, fn, ref_fn in (("recip", recip, lambda v: 1.0 / v), ("rsqrt", rsqrt, lambda v: 1.0 / np.sqrt(v))):
        r = ref_fn(s.astype(np.float64))
        got = fn(s).astype(np.float64)
        ulp = 2.0 ** (np.floor(np.log2(r)) - 23)
        rows.append((name, "200k random binary32 in [2^-120, 2^120]", float(np.max(np.abs(got - r) / ulp)),
                     "binary32 ulp"))
    return rows


def _main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(prog="python -m dfx.numerics", description="The DFX numerics reference.")
    ap.add_argument("--error-table", action="store_true", help="print the measured error table (markdown)")
    args = ap.parse_args(argv)
    if not args.error_table:
        ap.print_help()
        return
    print(error_table_markdown())


def error_table_markdown() -> str:
    with np.errstate(all="ignore"):
        rows = error_table()
    return "\n".join(["| function | inputs | max error vs float64 | unit |", "|---|---|---|---|"]
                     + [f"| {name} | {inputs} | {err:.3g} | {unit} |" for name, inputs, err, unit in rows])


if __name__ == "__main__":
    _main()
