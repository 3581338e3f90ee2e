"""dfx.numerics, the bit-exact reference: against independent slow implementations of the same spec (pure
Python rounding, scalar loops in the documented operation order), corner cases of every policy (signed zeros,
subnormal flushing, inf/NaN, ties), and the error bounds docs/numerics.md states."""
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dfx import numerics as nx

F16, F32, F64 = np.float16, np.float32, np.float64
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")   # inf/NaN inputs are data here
ALL_BITS16 = np.arange(1 << 16, dtype=np.uint16)
ALL16 = ALL_BITS16.view(F16)
DOC = Path(__file__).resolve().parents[2] / "docs" / "numerics.md"


def b16(x):
    return np.atleast_1d(nx.fp16_bits(x)).tolist()


def b32(x):
    return np.atleast_1d(nx.fp32_bits(x)).tolist()


def f32(bits):
    return nx.from_fp32_bits(np.uint32(bits))[()]


# ------------------------------------------------------------------ independent rounding (pure Python, exact)
def ref_round_bits(v: float, frac_bits: int, emin: int, emax: int) -> int:
    """IEEE binary{16,32} RNE of v (exact arithmetic with Fractions), a subnormal result flushed to a signed zero,
    NaN canonical. Returns the bit pattern."""
    ebits = {10: 5, 23: 8}[frac_bits]
    bias = (1 << (ebits - 1)) - 1
    sign = 1 << (frac_bits + ebits)
    inf = ((1 << ebits) - 1) << frac_bits
    if v != v:
        return inf | (1 << (frac_bits - 1))
    s = sign if math.copysign(1.0, v) < 0 else 0
    a = abs(v)
    if a == math.inf:
        return s | inf
    if a == 0:
        return s
    e = max(math.frexp(a)[1] - 1, emin)
    n = round(Fraction(a) / Fraction(2) ** (e - frac_bits))        # Fraction rounds half to even
    if n == 2 << frac_bits:
        n, e = 1 << frac_bits, e + 1
    if e > emax:
        return s | inf
    if n < 1 << frac_bits:                                         # subnormal (or zero) result: flushed
        return s
    return s | ((e + bias) << frac_bits) | (n - (1 << frac_bits))


def ref16(v: float) -> int:
    return ref_round_bits(v, 10, -14, 15)


def ref32(v: float) -> int:
    return ref_round_bits(v, 23, -126, 127)


# ============================================================================== formats, rounding, DAZ/FTZ
def test_bit_helpers_round_trip():
    np.testing.assert_array_equal(nx.fp16_bits(nx.from_fp16_bits(ALL_BITS16)), ALL_BITS16)
    u = np.random.default_rng(0).integers(0, 1 << 32, 10000, dtype=np.uint64).astype(np.uint32)
    np.testing.assert_array_equal(nx.fp32_bits(nx.from_fp32_bits(u)), u)
    assert b16(np.array([1.0, -2.0], F16)) == [0x3C00, 0xC000]
    assert b32(np.array([1.0], F32)) == [0x3F800000]


TO_FP16_CASES = [
    (0.0, 0x0000), (-0.0, 0x8000), (1.0, 0x3C00), (65504.0, 0x7BFF),
    (65519.0, 0x7BFF),                           # below the overflow threshold
    (65520.0, 0x7C00), (-65520.0, 0xFC00),       # halfway to 2^16: ties to even -> inf (RNE overflow rule)
    (1e6, 0x7C00), (2.0 ** -14, 0x0400), (-(2.0 ** -14), 0x8400),
    (2.0 ** -14 - 2.0 ** -25, 0x0400),           # tie between the largest subnormal and 2^-14: even -> 2^-14
    (2.0 ** -14 - 2.0 ** -24, 0x0000),           # the largest subnormal: flushed
    (-(2.0 ** -24), 0x8000), (2.0 ** -25, 0x0000), (-(2.0 ** -30), 0x8000),
    (1.0 + 2.0 ** -11, 0x3C00),                  # tie: down to even
    (1.0 + 3 * 2.0 ** -11, 0x3C02),              # tie: up to even
    (-(1.0 + 2.0 ** -11), 0xBC00), (2049.0, 0x6800), (2051.0, 0x6802), (2.0 ** 15 + 16, 0x7800),
    (float("inf"), 0x7C00), (float("-inf"), 0xFC00), (float("nan"), 0x7E00),
]


@pytest.mark.parametrize("dtype", [F32, F64])
def test_to_fp16_corner_cases(dtype):
    for v, want in TO_FP16_CASES:
        assert b16(nx.to_fp16(np.array([v], dtype))) == [want], v
        assert ref16(v) == want, v                                  # the slow reference agrees too


def test_to_fp16_nan_payloads_and_signs_are_canonical():
    nans = nx.from_fp32_bits(np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF, 0x7FA00000], np.uint32))
    assert b16(nx.to_fp16(nans)) == [0x7E00] * 5
    assert b16(nx.to_fp16(nans.astype(F64))) == [0x7E00] * 5
    inf_minus_inf = np.array([np.inf], F32) - np.array([np.inf], F32)   # x86's default NaN is negative
    assert b16(nx.to_fp16(inf_minus_inf)) == [0x7E00]


def test_to_fp16_from_float64_rounds_once():
    """1 + 2^-11 + 2^-40: one rounding goes up; via binary32 it would tie and go down to 1.0."""
    v = 1.0 + 2.0 ** -11 + 2.0 ** -40
    assert b16(nx.to_fp16(np.array([v], F64))) == [0x3C01] == [ref16(v)]
    assert b16(nx.to_fp16(np.array([v], F64).astype(F32))) == [0x3C00]


@settings(max_examples=400, deadline=None)
@given(st.floats(width=32, allow_nan=False))
def test_to_fp16_matches_exact_reference_binary32(v):
    assert b16(nx.to_fp16(np.array([v], F32))) == [ref16(v)]


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=-7e4, max_value=7e4))
def test_to_fp16_matches_exact_reference_binary64(v):
    assert b16(nx.to_fp16(np.array([v], F64))) == [ref16(v)]


def test_daz16_every_bit_pattern():
    out = nx.fp16_bits(nx.daz16(ALL16)).astype(np.int64)
    u = ALL_BITS16.astype(np.int64)
    exp, man = u & 0x7C00, u & 0x3FF
    sub = (exp == 0) & (man != 0)
    nan = (exp == 0x7C00) & (man != 0)
    assert sub.sum() == 2 * 1023 and nan.sum() == 2 * 1023
    np.testing.assert_array_equal(out[sub], u[sub] & 0x8000)      # subnormal -> zero of the same sign
    assert (out[nan] == 0x7E00).all()
    keep = ~sub & ~nan
    np.testing.assert_array_equal(out[keep], u[keep])
    # the binary32 widening table is the same DAZ, exactly
    w = nx.widen16(ALL16)
    fin = keep & (exp != 0x7C00)
    np.testing.assert_array_equal(w[fin].astype(F64), ALL16[fin].astype(F64))
    assert (w[sub] == 0).all() and (np.signbit(w[sub]) == (u[sub] >= 0x8000)).all()
    assert (nx.fp32_bits(w[nan]) == 0x7FC00000).all()


def test_to_fp16_of_binary16_input_is_daz():
    np.testing.assert_array_equal(nx.fp16_bits(nx.to_fp16(ALL16)), nx.fp16_bits(nx.daz16(ALL16)))


def test_ftz32_flushes_subnormals_and_canonicalises_nan():
    cases = [(0x00000001, 0x00000000), (0x807FFFFF, 0x80000000), (0x00800000, 0x00800000),   # min normal kept
             (0x80800000, 0x80800000), (0x7F800000, 0x7F800000), (0xFF800001, 0x7FC00000),
             (0x3F800000, 0x3F800000), (0x80000000, 0x80000000)]
    x = nx.from_fp32_bits(np.array([c for c, _ in cases], np.uint32))
    assert b32(nx.ftz32(x)) == [w for _, w in cases]
    for c, want in cases:                                           # scalar path, same bits
        assert b32(nx.ftz32(f32(c))) == [want]


@pytest.mark.parametrize("v", [1.0 + 2.0 ** -24, 1.0 + 3 * 2.0 ** -24, 2.0 ** -126 - 2.0 ** -150,
                               -(2.0 ** -126 - 2.0 ** -149), 2.0 ** -130, 3.4028235677973366e38, 1e39, -1e-50,
                               0.1, -7.000000476837158])
def test_ftz32_from_float64_matches_exact_reference(v):
    assert b32(nx.ftz32(np.array([v], F64))) == [ref32(v)]
    assert b32(nx.ftz32(v)) == [ref32(v)]


# ============================================================================== the MPU's reduction order
def slow_group_tree(vals, d):
    """The spec with one numpy float32 scalar operation at a time: zero-pad to a multiple of d, pairwise tree per
    group (level 1 adds 2i and 2i+1), groups accumulated in order from +0."""
    vals = [F32(v) for v in vals] + [F32(0.0)] * ((-len(vals) % d) or (d if not vals else 0))
    acc = F32(0.0)
    for g in range(0, len(vals), d):
        level = vals[g:g + d]
        while len(level) > 1:
            level = [level[i] + level[i + 1] for i in range(0, len(level), 2)]
        acc = acc + level[0]
    return acc


def slow_matvec(x, w, bias, d):
    x, w = nx.daz16(x), nx.daz16(w)
    m, k = x.shape
    out = np.zeros((m, w.shape[1]), F32)
    for i in range(m):
        for n in range(w.shape[1]):
            acc = slow_group_tree([F32(x[i, j]) * F32(w[j, n]) for j in range(k)], d)
            out[i, n] = acc if bias is None else acc + F32(nx.daz16(bias)[n])
    return out


def wide_range(rng, shape):
    """binary16 data whose magnitudes span 2^-14 .. 2^12, so the summation order shows in binary32."""
    v = rng.standard_normal(shape) * np.exp2(rng.integers(-14, 12, shape))
    return v.astype(F16)


@pytest.mark.parametrize("d,k", [(1, 5), (2, 7), (8, 8), (8, 29), (64, 200), (16, 0)])
def test_mpu_matvec_matches_slow_reference(d, k):
    rng = np.random.default_rng(d * 1000 + k)
    x, w, b = wide_range(rng, (2, k)), wide_range(rng, (k, 5)), wide_range(rng, 5)
    got = nx.mpu_matvec(x, w, b, d=d)
    np.testing.assert_array_equal(nx.fp32_bits(got), nx.fp32_bits(slow_matvec(x, w, b, d)))
    np.testing.assert_array_equal(nx.fp32_bits(nx.mpu_matvec(x, nx.weights32(w), b, d=d)), nx.fp32_bits(got))


def test_mpu_order_is_visible_on_random_data():
    """The reference's order matters on this data: a float64 sum, rounded once, differs in many entries."""
    rng = np.random.default_rng(11)
    x, w = wide_range(rng, (1, 256)), wide_range(rng, (256, 64))
    got = nx.mpu_matvec(x, w, d=8)
    f64 = (nx.widen16(x).astype(F64) @ nx.widen16(w).astype(F64)).astype(F32)
    assert (got != f64).sum() >= 5
    np.testing.assert_array_equal(got, slow_matvec(x, w, None, 8))
    prod = nx.widen16(x)[:, :, None] * nx.widen16(w)[None]            # tree_sum: the same order on axis -2
    np.testing.assert_array_equal(nx.tree_sum(prod, 8), got)
    with pytest.raises(ValueError, match="multiple"):
        nx.tree_sum(prod[:, :255], 8)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 3), st.integers(0, 70), st.integers(1, 9), st.sampled_from([2, 4, 8, 16]),
       st.booleans(), st.integers(0, 2 ** 32 - 1))
def test_mpu_matvec_random_shapes(m_log, k, n, d, with_bias, seed):
    rng = np.random.default_rng(seed)
    m = 1 << m_log >> 1 or 1
    x, w = wide_range(rng, (m, k)), wide_range(rng, (k, n))
    b = wide_range(rng, n) if with_bias else None
    np.testing.assert_array_equal(nx.fp32_bits(nx.mpu_matvec(x, w, b, d=d)),
                                  nx.fp32_bits(slow_matvec(x, w, b, d)))


def _col(values):
    return np.array(values, F16)[:, None]


def test_tree_pairs_adjacent_elements_within_a_group():
    """d=8, products [2048, 2^-14, -2048, 2^-14, 0...]: level 1 rounds 2048 + 2^-14 to 2048, so the tree gives
    exactly 0; a sequential sum gives 2^-14 and an exact sum 2^-13."""
    x = np.ones((1, 8), F16)
    w = _col([2048.0, 2.0 ** -14, -2048.0, 2.0 ** -14, 0, 0, 0, 0])
    assert nx.mpu_matvec(x, w, d=8)[0, 0] == F32(0.0)
    seq = F32(0.0)
    for v in w[:, 0].astype(F32):
        seq = seq + v
    assert seq == F32(2.0 ** -14)


def test_tree_level1_pairs_2i_with_2i_plus_1():
    """Products [2^24, 1, -2^24, 1] (d=4): (2^24 + 1) + (-2^24 + 1) = 2^24 + (1 - 2^24) = 1 in binary32, where
    pairing i with i + d/2 would give (2^24 - 2^24) + (1 + 1) = 2."""
    x = np.array([[4096.0, 1.0, 4096.0, 1.0]], F16)
    w = _col([4096.0, 1.0, -4096.0, 1.0])
    assert nx.mpu_matvec(x, w, d=4)[0, 0] == F32(1.0)
    assert (F32(2 ** 24) + F32(-(2 ** 24))) + (F32(1) + F32(1)) == F32(2.0)


def test_groups_accumulate_sequentially():
    """d=2, group sums [2^24, 1, 1, 1]: ((2^24 + 1) + 1) + 1 = 2^24 (every step ties to even), where a tree
    over the groups would give (2^24 + 1) + (1 + 1) = 2^24 + 2, and an exact sum 2^24 + 3."""
    x = np.array([[4096.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]], F16)
    w = _col([4096.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    assert nx.mpu_matvec(x, w, d=2)[0, 0] == F32(2 ** 24)
    assert (F32(2 ** 24) + F32(1)) + (F32(1) + F32(1)) == F32(2 ** 24 + 2)
    # the same data with d=8 is one group: ((2^24 + 0) + (1 + 0)) + ((1 + 0) + (1 + 0)) = 2^24 + 2
    assert nx.mpu_matvec(x, w, d=8)[0, 0] == F32(2 ** 24 + 2)


def test_bias_is_added_after_the_groups_and_zero_padding_is_neutral():
    x = np.array([[4096.0, 1.0, 1.0]], F16)                           # K=3, padded to 4 with a +0 product
    w = _col([4096.0, 1.0, 1.0])
    b = np.array([1.0], F16)
    # tree: (2^24 + 1) + (1 + 0) = 2^24 + 1 -> 2^24 (tie to even); then + bias 1 -> 2^24 again
    assert nx.mpu_matvec(x, w, b, d=4)[0, 0] == F32(2 ** 24)
    assert nx.mpu_matvec(x, w, None, d=4)[0, 0] == F32(2 ** 24)
    # the accumulator starts at +0: all products -0 give +0 (and no bias keeps it)
    z = nx.mpu_matvec(np.array([[-1.0, 1.0]], F16), _col([0.0, -0.0]), d=2)[0, 0]
    assert z == 0 and not np.signbit(z)


def test_mpu_matvec_accepts_batch_shapes_and_checks_shapes():
    rng = np.random.default_rng(5)
    x, w = wide_range(rng, (2, 3, 40)), wide_range(rng, (40, 6))
    got = nx.mpu_matvec(x, w, d=8)
    assert got.shape == (2, 3, 6) and got.dtype == F32
    np.testing.assert_array_equal(got.reshape(6, 6), nx.mpu_matvec(x.reshape(6, 40), w, d=8))
    np.testing.assert_array_equal(nx.mpu_matvec(x[0, 0], w, d=8), got[0, 0])
    with pytest.raises(ValueError, match="K=40"):
        nx.mpu_matvec(x, w[:39], d=8)
    with pytest.raises(ValueError, match="power of two"):
        nx.mpu_matvec(x, w, d=6)


def test_no_subnormals_can_arise_in_the_mpu_accumulation():
    """Products of binary16 values (normal, after DAZ) are multiples of 2^-48 (2^-24 * 2^-24), so are all their
    partial sums; the smallest nonzero one is >= 2^-48, far above binary32's smallest normal 2^-126. Checked on
    adversarial data: the smallest binary16 normals, with cancellations, every intermediate recorded."""
    rng = np.random.default_rng(7)
    tiny = np.array([2.0 ** -14 * (1 + j / 1024) for j in range(0, 1024, 37)], F64)
    x = (rng.choice(tiny, 256) * rng.choice([-1, 1], 256)).astype(F16)
    w = (rng.choice(tiny, 256) * rng.choice([-1, 1], 256)).astype(F16)
    inter = []
    vals = [F32(a) * F32(b) for a, b in zip(x, w)]
    acc = F32(0.0)
    for g in range(0, 256, 8):
        level = vals[g:g + 8]
        inter += level
        while len(level) > 1:
            level = [level[i] + level[i + 1] for i in range(0, len(level), 2)]
            inter += level
        acc = acc + level[0]
        inter.append(acc)
    inter = np.array(inter, F64)
    nz = np.abs(inter[inter != 0])
    assert nz.size > 100 and nz.min() >= 2.0 ** -48
    assert (np.ldexp(inter, 48) == np.round(np.ldexp(inter, 48))).all()   # integer multiples of 2^-48
    assert nx.mpu_matvec(x[None], w[:, None], d=8)[0, 0] == acc
    # and the accumulators the vectorised MPU returns are never subnormal
    y = nx.mpu_matvec(x.reshape(4, 64), np.tile(w[:64, None], (1, 9)), d=8)
    assert (nx.fp32_bits(nx.ftz32(y)) == nx.fp32_bits(y)).all()


def test_mpu_finish_scale_round_gelu_mask():
    acc = np.array([[-0.340087890625, 1.0, 3.0, 100000.0]], F32)
    s = f32(0x3FF91BC0)
    y = nx.mpu_finish(acc, scale=s)
    # the binary32 product is rounded first, then to binary16: -0.662109375, not the once-rounded -0.66162109375
    assert float(y[0, 0]) == -0.662109375
    assert nx.fp16_bits(nx.to_fp16(acc.astype(F64) * F64(s)))[0, 0] != nx.fp16_bits(y)[0, 0]
    assert y[0, 3] == np.inf
    g = nx.mpu_finish(acc, act="gelu")
    np.testing.assert_array_equal(nx.fp16_bits(g), nx.fp16_bits(nx.gelu16(nx.to_fp16(acc))))
    m = nx.mpu_finish(acc, mask_limit=1)
    assert b16(m[0, 2:]) == [0xFC00, 0xFC00] and b16(m[0, :2]) == b16(nx.to_fp16(acc[0, :2]))
    assert b16(nx.mask16(np.zeros((2, 3), F16), 0)[1]) == [0, 0xFC00, 0xFC00]
    np.testing.assert_array_equal(nx.fp16_bits(nx.mpu(np.ones((1, 4), F16), np.ones((4, 3), F16), d=2,
                                                      scale=0.5, mask_limit=1)), [[0x4000, 0x4000, 0xFC00]])
    with pytest.raises(ValueError, match="act"):
        nx.mpu_finish(acc, act="relu")


# ============================================================================== reductions
@pytest.mark.parametrize("n,d", [(77, 8), (64, 64), (1, 4), (300, 64), (5, 1)])
def test_reductions_equal_the_mpu_with_one_column(n, d):
    rng = np.random.default_rng(n + d)
    a, b = wide_range(rng, n), wide_range(rng, n)
    assert b32(nx.reduce_dot(a, b, d=d)) == b32(nx.mpu_matvec(a[None], b[:, None], d=d)[0, 0])
    assert b32(nx.reduce_sum(a, d=d)) == b32(nx.mpu_matvec(a[None], np.ones((n, 1), F16), d=d)[0, 0])
    assert b32(nx.reduce_sumsq(a, d=d)) == b32(nx.reduce_dot(a, a, d=d))
    assert b32(nx.reduce_sum(a, d=d)) == b32(slow_group_tree(list(nx.widen16(a)), d))


def test_reductions_batch_along_the_last_axis():
    rng = np.random.default_rng(3)
    a, b = wide_range(rng, (3, 4, 50)), wide_range(rng, (3, 4, 50))
    for fn, args in ((nx.reduce_sum, (a,)), (nx.reduce_dot, (a, b)), (nx.reduce_sumsq, (a,)), (nx.reduce_max, (a,))):
        kw = {} if fn is nx.reduce_max else {"d": 8}
        out = fn(*args, **kw)
        assert out.shape == (3, 4) and out.dtype == F32
        for i in range(3):
            for j in range(4):
                assert b32(out[i, j]) == b32(fn(*(v[i, j] for v in args), **kw))


def test_reduction_edge_cases():
    empty = np.zeros(0, F16)
    s = nx.reduce_sum(empty, d=8)
    assert s == 0 and not np.signbit(s)
    assert nx.reduce_max(empty) == -np.inf
    s = nx.reduce_sum(np.array([-0.0, -0.0], F16), d=2)
    assert s == 0 and not np.signbit(s)                              # +0 + (-0 + -0) = +0
    assert nx.reduce_sum(np.array([60000, 60000], F16), d=2) == F32(120000)   # binary32: no overflow
    assert b32(nx.reduce_sum(np.array([np.inf, -np.inf], F16), d=2)) == [0x7FC00000]
    assert nx.reduce_sum(np.array([1e-7], F16).view(np.uint16).view(F16), d=2) == 0   # subnormal input: DAZ


def test_reduce_max_policy():
    def mx(v):
        return nx.reduce_max(np.array(v, F16))
    assert b32(mx([-0.0, 0.0])) == [0] and b32(mx([0.0, -0.0])) == [0]           # -0 < +0
    assert b32(mx([-0.0, -0.0])) == [0x80000000] and b32(mx([-1.0, -0.0])) == [0x80000000]
    assert b32(mx([-np.inf, -np.inf])) == [0xFF800000]                            # all masked
    assert b32(mx([1.0, np.nan, 2.0])) == [0x7FC00000]                            # NaN wins, canonical
    assert b32(mx([-1.0, np.inf])) == [0x7F800000]
    sub = nx.from_fp16_bits(np.array([0x8001, 0xBC00], np.uint16))                 # -subnormal, -1
    assert b32(nx.reduce_max(sub)) == [0x80000000]                                # the subnormal reads as -0
    rng = np.random.default_rng(1)
    a = nx.daz16(rng.standard_normal((50, 33)).astype(F16))
    np.testing.assert_array_equal(nx.reduce_max(a), a.astype(F32).max(axis=-1))


# ============================================================================== VPU element-wise ops
def test_vector_ops_are_correctly_rounded_on_random_bit_patterns():
    """binary16 a (op) b is exact in binary64, so to_fp16 of it is the correctly rounded (FTZ) result."""
    rng = np.random.default_rng(5)
    a = rng.integers(0, 1 << 16, 100000, dtype=np.uint64).astype(np.uint16).view(F16)
    b = rng.integers(0, 1 << 16, 100000, dtype=np.uint64).astype(np.uint16).view(F16)
    a64, b64 = nx.widen16(a).astype(F64), nx.widen16(b).astype(F64)
    for op, ref in ((nx.vadd, np.add), (nx.vsub, np.subtract), (nx.vmul, np.multiply)):
        np.testing.assert_array_equal(nx.fp16_bits(op(a, b)), nx.fp16_bits(nx.to_fp16(ref(a64, b64))))


def test_vector_op_corner_cases():
    def v(*x):
        return np.array(x, F16)
    assert b16(nx.vadd(v(1.0), v(2.0 ** -11))) == [0x3C00]                       # tie to even (down)
    assert b16(nx.vadd(v(1.0 + 2.0 ** -10), v(2.0 ** -11))) == [0x3C02]          # tie to even (up)
    assert b16(nx.vmul(v(300.0), v(300.0))) == [0x7C00]                          # overflow -> inf
    assert b16(nx.vmul(v(-300.0), v(300.0))) == [0xFC00]
    assert b16(nx.vsub(v(np.inf), v(np.inf))) == [0x7E00]                        # invalid -> canonical NaN
    assert b16(nx.vmul(v(0.0), v(np.inf))) == [0x7E00]
    assert b16(nx.vmul(v(2.0 ** -7), v(2.0 ** -8))) == [0x0000]                  # 2^-15: subnormal -> +0
    assert b16(nx.vmul(v(-(2.0 ** -7)), v(2.0 ** -8))) == [0x8000]               # ... -> -0
    assert b16(nx.vadd(v(-0.0), v(-0.0))) == [0x8000] and b16(nx.vadd(v(-0.0), v(0.0))) == [0x0000]
    assert b16(nx.vsub(v(1.0), v(1.0))) == [0x0000]
    sub = nx.from_fp16_bits(np.array([0x0200], np.uint16))                       # a subnormal input is 0
    assert b16(nx.vadd(sub, v(-0.0))) == [0x0000] and b16(nx.vmul(sub, v(65504))) == [0x0000]


def test_vector_scalar_ops_round_twice():
    """One binary32 operation, then one rounding to binary16: pinned where single rounding differs."""
    x = nx.from_fp16_bits(np.array([0xB571], np.uint16))
    s = f32(0x3FF91BC0)
    assert float(nx.vmul_scalar(x, s)[0]) == -0.662109375
    assert float(nx.to_fp16(x.astype(F64) * F64(s))[0]) == -0.66162109375
    x = nx.from_fp16_bits(np.array([0xBE9A], np.uint16))
    s = f32(0xBA0002FD)
    assert float(nx.vsub_scalar(x, s)[0]) == -1.650390625
    assert float(nx.to_fp16(x.astype(F64) - F64(s))[0]) == -1.6494140625
    assert b16(nx.vadd_scalar(x, -s)) == b16(nx.vsub_scalar(x, s))


def test_vector_scalar_ops_match_their_definition_and_daz_the_scalar():
    rng = np.random.default_rng(9)
    x = wide_range(rng, 5000)
    for s in (F32(0.1), F32(-3.7e4), F32(1e-30), F32(7.0)):
        x32 = nx.widen16(x)
        for fn, op in ((nx.vadd_scalar, np.add), (nx.vsub_scalar, np.subtract), (nx.vmul_scalar, np.multiply)):
            np.testing.assert_array_equal(nx.fp16_bits(fn(x, s)), nx.fp16_bits(nx.to_fp16(op(x32, s))))
    one = np.array([1.0], F16)
    assert b16(nx.vmul_scalar(one, f32(0x00000001))) == [0x0000]                  # subnormal scalar is 0
    assert b16(nx.vadd_scalar(one, f32(0x80400000))) == [0x3C00]
    assert b16(nx.vmul_scalar(one, f32(0xFFC00001))) == [0x7E00]


# ============================================================================== scalar unit
SPECIAL32 = [0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x00800000, 0x80800000, 0x7F7FFFFF, 0xFF7FFFFF,
             0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x3F800000, 0xBF800000, 0x7E800000, 0x7F000000,
             0x7E7FFFFF, 0x3F800001, 0x3FFFFFFF, 0x40000000, 0x00FFFFFF]


def _random32(n, seed):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    return nx.from_fp32_bits(np.concatenate([np.array(SPECIAL32, np.uint32), u]))


def test_sadd_smul_are_binary32_rne_with_daz_ftz():
    a, b = _random32(1500, 1), _random32(1500, 2)
    fa = [float(v) for v in nx.ftz32(a)]                             # DAZ'd operands as Python floats
    fb = [float(v) for v in nx.ftz32(b)]
    for fn, op in ((nx.sadd, lambda u, v: u + v), (nx.smul, lambda u, v: u * v)):
        want = [ref32(op(u, v)) for u, v in zip(fa, fb)]              # exact reference (53 >= 2*24 + 2)
        assert nx.fp32_bits(fn(a, b)).tolist() == want                # array path
        assert [b32(fn(u, v))[0] for u, v in zip(a[:600], b[:600])] == want[:600]   # scalar path
    assert b32(nx.smul(F32(-(2.0 ** -100)), F32(2.0 ** -30))) == [0x80000000]              # FTZ, sign kept
    assert b32(nx.sadd(F32(3e38), F32(3e38))) == [0x7F800000]
    assert b32(nx.sadd(F32(np.inf), F32(-np.inf))) == [0x7FC00000]
    assert b32(nx.sadd(F32(1.0), 2.0 ** -24)) == [0x3F800000]                             # tie to even
    assert b32(nx.smul(f32(0x00400000), F32(2.0 ** 30))) == [0]                          # DAZ input


def test_recip_rsqrt_scalar_and_array_paths_agree():
    x = _random32(20000, 3)
    r = nx.recip(x)
    q = nx.rsqrt(x)
    for i in range(0, x.size, 7):
        assert b32(nx.recip(x[i])) == b32(r[i]), hex(int(nx.fp32_bits(x[i])))
        assert b32(nx.rsqrt(x[i])) == b32(q[i]), hex(int(nx.fp32_bits(x[i])))
    assert b32(nx.recip(float(x[5]))) == b32(r[5])


def slow_recip(x: F32) -> F32:
    """The documented operation order, numpy float32 scalars, exponent by float64 ldexp (exact)."""
    m, e = math.frexp(float(x))                        # x = m * 2^e, m in [0.5, 1)
    m, e = F32(2 * m), e - 1
    r = nx.RECIP_SEED[int(round((float(m) - 1) * 2 ** 23)) >> 16]
    for _ in range(2):
        t = m * r
        u = F32(1) - t
        v = r * u
        r = r + v
    y = math.ldexp(float(r), -e)
    return F32(0.0) if y < 2.0 ** -126 else F32(y)


def slow_rsqrt(x: F32) -> F32:
    m, e = math.frexp(float(x))
    m, e = 2 * m, e - 1
    odd = e % 2
    h = F32(m * 2 ** odd / 2)
    y = nx.RSQRT_SEED[odd * 128 + (int(round((m - 1) * 2 ** 23)) >> 16)]
    for _ in range(2):
        s = y * y
        t = h * s
        u = F32(0.5) - t
        v = y * u
        y = y + v
    return F32(math.ldexp(float(y), -(e - odd) // 2))


def test_recip_rsqrt_follow_the_documented_order():
    rng = np.random.default_rng(4)
    x = np.ldexp(rng.uniform(1, 2, 400), rng.integers(-126, 128, 400)).astype(F32)
    x = np.concatenate([x, np.array([2.0 ** -126, 2.0 ** 126, 1.5 * 2.0 ** 126, 2.0 ** 127, 1.0], F32)])
    for v in x:
        assert b32(nx.recip(v)) == b32(slow_recip(v)), float(v)
        assert b32(nx.recip(-v)) == b32(-slow_recip(v)), float(v)
        assert b32(nx.rsqrt(v)) == b32(slow_rsqrt(v)), float(v)


def test_recip_rsqrt_special_values():
    inf, nan = np.inf, np.nan
    r = nx.recip(np.array([0.0, -0.0, inf, -inf, nan, 1e-40, -1e-40, 2.0 ** 127, -(2.0 ** 127), 2.0 ** 126,
                           4.0, -0.25], F32))
    assert b32(r) == [0x7F800000, 0xFF800000, 0, 0x80000000, 0x7FC00000, 0x7F800000, 0xFF800000,
                      0, 0x80000000, 0x00800000, 0x3E800000, 0xC0800000]
    q = nx.rsqrt(np.array([0.0, -0.0, inf, -inf, -1.0, nan, 1e-40, 4.0, 2.0 ** -126, 2.0 ** 126, 0.25], F32))
    assert b32(q) == [0x7F800000, 0xFF800000, 0, 0x7FC00000, 0x7FC00000, 0x7FC00000, 0x7F800000,
                      0x3F000000, 0x5F000000, 0x20000000, 0x40000000]
    assert abs(float(nx.rsqrt(F32(2.0))) - 2 ** -0.5) <= 1.2 * 2.0 ** -24


def test_seed_roms_are_the_documented_formulas_and_read_only():
    i = np.arange(128)
    mid = 1 + (i + 0.5) / 128
    np.testing.assert_array_equal(nx.RECIP_SEED, (1 / mid).astype(F32))
    np.testing.assert_array_equal(nx.RSQRT_SEED[:128], (1 / np.sqrt(mid)).astype(F32))
    np.testing.assert_array_equal(nx.RSQRT_SEED[128:], (1 / np.sqrt(2 * mid)).astype(F32))
    np.testing.assert_array_equal(nx.EXP_TABLE, np.exp2(np.arange(257) / 256).astype(F32))
    assert nx.EXP_TABLE[0] == 1 and nx.EXP_TABLE[256] == 2
    for t in (nx.RECIP_SEED, nx.RSQRT_SEED, nx.EXP_TABLE, nx.GELU_TABLE, nx.GELU_X, nx.DAZ16_TABLE,
              nx.F16_TO_F32):
        with pytest.raises(ValueError):
            t[0] = 0


# ============================================================================== exp
def slow_exp16(x16) -> int:
    """The documented exp algorithm, one numpy float32 scalar operation at a time; returns binary16 bits."""
    x = F32(nx.widen16(np.array([x16], F16))[0])
    if x != x:
        return 0x7E00
    t = x * nx.LOG2E
    t = min(max(t, F32(-64)), F32(64))
    n = math.floor(t)
    f = t - F32(n)
    p = f * F32(256)
    i = math.floor(p)
    r = p - F32(i)
    lo, hi = nx.EXP_TABLE[i], nx.EXP_TABLE[i + 1]
    y = lo + (hi - lo) * r
    return ref16(math.ldexp(float(y), n))


def test_exp16_follows_the_documented_algorithm():
    rng = np.random.default_rng(8)
    xs = np.concatenate([rng.uniform(-18, 12, 600), [0, -0.0, 1, -1, 11.09, 11.1, -17.3, -9.7, 1e-3]]).astype(F16)
    for v in xs:
        assert b16(nx.exp16(np.array([v], F16))) == [slow_exp16(v)], float(v)


def test_exp16_table_equals_the_arithmetic_on_every_input():
    np.testing.assert_array_equal(nx.fp16_bits(nx.exp16(ALL16)), nx.fp16_bits(nx.exp16_arith(ALL16)))
    np.testing.assert_array_equal(nx.fp16_bits(nx.gelu16(ALL16)), nx.fp16_bits(nx.gelu16_arith(ALL16)))


def test_exp16_special_values_and_monotonicity():
    e = nx.exp16(np.array([-np.inf, np.inf, 0.0, -0.0, -20.0, 12.0, np.nan, 65504, -65504], F16))
    assert b16(e) == [0, 0x7C00, 0x3C00, 0x3C00, 0, 0x7C00, 0x7E00, 0x7C00, 0]
    assert b16(nx.exp16(nx.from_fp16_bits(np.array([0x0001, 0x83FF], np.uint16)))) == [0x3C00, 0x3C00]
    x = np.sort(nx.daz16(ALL16)[np.isfinite(nx.daz16(ALL16))].astype(F32)).astype(F16)
    y = nx.exp16(x).astype(F32)
    assert (y[1:] >= y[:-1]).all()
    assert (y >= 0).all() and not np.signbit(y).any()


# ============================================================================== GELU
def slow_gelu16(x16) -> int:
    x = F32(nx.widen16(np.array([x16], F16))[0])
    if x != x:
        return 0x7E00
    if x >= 8:
        return ref16(float(x))
    if x <= -8:
        return 0x8000
    p = (x + F32(8)) * F32(2047 / 16)
    i = math.floor(p)
    r = p - F32(i)
    lo, hi = nx.GELU_TABLE[i], nx.GELU_TABLE[i + 1]
    return ref16(float(lo + (hi - lo) * r))


def test_gelu16_follows_the_documented_algorithm():
    rng = np.random.default_rng(12)
    xs = np.concatenate([rng.uniform(-9, 9, 600), [0, -0.0, 7.996, -7.996, 8, -8, 3.0, -0.5]]).astype(F16)
    for v in xs:
        assert b16(nx.gelu16(np.array([v], F16))) == [slow_gelu16(v)], float(v)


def test_gelu_table_is_the_documented_samples():
    assert nx.GELU_TABLE.size == 2048 and nx.GELU_TABLE.dtype == F32
    i = np.arange(2048)
    np.testing.assert_array_equal(nx.GELU_X, -8 + 16 * i / 2047)
    np.testing.assert_array_equal(nx.GELU_TABLE, nx.gelu_tanh_f64(-8 + 16 * i / 2047).astype(F32))
    assert nx.GELU_TABLE[-1] == F32(8.0) and nx.GELU_STEP_INV == F32(127.9375)


def test_gelu16_special_values():
    g = nx.gelu16(np.array([8.0, 100.0, 65504, np.inf, -8.0, -100.0, -np.inf, np.nan, 0.0, -0.0, 1.0], F16))
    assert b16(g)[:10] == [0x4800, 0x5640, 0x7BFF, 0x7C00, 0x8000, 0x8000, 0x8000, 0x7E00, 0x0000, 0x0000]
    assert abs(float(g[10]) - 0.8411920071) < 2.0 ** -11
    # just inside the ends, the table's first and last intervals
    assert float(nx.gelu16(np.array([7.99609375], F16))[0]) == 7.99609375
    assert b16(nx.gelu16(np.array([-7.99609375], F16))) == [0x8000]
