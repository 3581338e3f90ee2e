"""dfx.numerics against slow, obviously-correct implementations of the same spec, corner cases, error bounds."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dfx import numerics as nx

F16, F32 = np.float16, np.float32
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")   # inf/NaN inputs are data here
ALL16 = nx.from_fp16_bits(np.arange(1 << 16, dtype=np.uint16))


def bits16(x):
    return nx.fp16_bits(x).tolist()


# ------------------------------------------------------------------------------------ rounding and flushing
def test_to_fp16_corner_cases():
    cases = [
        (0.0, 0x0000), (-0.0, 0x8000), (65504.0, 0x7BFF), (65520.0, 0x7C00),  # 65520 ties to even -> inf
        (-70000.0, 0xFC00), (2.0 ** -14, 0x0400), (2.0 ** -15, 0x0000),        # subnormal result -> +0
        (-(2.0 ** -20), 0x8000), (2.0 ** -14 - 2.0 ** -25, 0x0400),            # tie: max subnormal vs 2^-14
        (2.0 ** -14 - 2.0 ** -24, 0x0000), (1.0 + 2.0 ** -11, 0x3C00),         # tie to even (down)
        (1.0 + 3 * 2.0 ** -11, 0x3C02), (float("inf"), 0x7C00), (float("nan"), 0x7E00),
    ]
    for x, want in cases:
        assert bits16(nx.to_fp16(np.array([x], F32))) == [want], x
        assert bits16(nx.to_fp16(np.array([x], np.float64))) == [want], x


def test_daz16_flushes_every_subnormal_and_canonicalises_nan():
    u = np.arange(1 << 16, dtype=np.uint16)
    out = nx.fp16_bits(nx.daz16(ALL16))
    exp, man = u & 0x7C00, u & 0x3FF
    sub = (exp == 0) & (man != 0)
    nan = (exp == 0x7C00) & (man != 0)
    np.testing.assert_array_equal(out[sub], u[sub] & 0x8000)
    assert (out[nan] == 0x7E00).all()
    keep = ~sub & ~nan
    np.testing.assert_array_equal(out[keep], u[keep])


@settings(max_examples=300, deadline=None)
@given(st.floats(width=32, allow_nan=False))
def test_to_fp16_matches_ieee_then_flush(x):
    y = nx.to_fp16(np.array([x], F32))[0]
    ref = np.array([x], F32).astype(F16)[0]          # IEEE RNE with gradual underflow
    if ref != 0 and abs(ref) < 2.0 ** -14:
        assert y == 0 and np.signbit(y) == np.signbit(ref)
    else:
        assert nx.fp16_bits(y) == nx.fp16_bits(ref)


# ------------------------------------------------------------------------------------ the MPU's order
def slow_tree(values, d):
    """The spec, one scalar binary32 operation at a time (numpy float32 scalars: one IEEE rounding each;
    Python floats would double-round when the exponents are far apart)."""
    vals = [F32(v) for v in values] + [F32(0.0)] * (-len(values) % d)
    acc = F32(0.0)
    for g in range(0, len(vals), d):
        level = vals[g:g + d]
        while len(level) > 1:
            level = [level[i] + level[i + 1] for i in range(0, len(level), 2)]
        acc = acc + level[0]
    return acc


@pytest.mark.parametrize("d", [8, 64])
def test_mpu_matvec_matches_slow_reference(d):
    rng = np.random.default_rng(d)
    K, N = 3 * d + 5, 7
    x = (rng.standard_normal((1, K)) * 4).astype(F16)
    w = (rng.standard_normal((K, N)) * rng.choice([1e-3, 1, 100], (K, N))).astype(F16)
    b = rng.standard_normal(N).astype(F16)
    assert (nx.daz16(w) != w).any()                      # some weights are subnormal: the MPU reads them as 0
    x, w = nx.daz16(x), nx.daz16(w)
    got = nx.mpu_matvec(x, w, b, d=d)[0]
    for n in range(N):
        prods = [F32(x[0, k]) * F32(w[k, n]) for k in range(K)]
        assert got[n] == slow_tree(prods, d) + F32(b[n]), n


def test_tree_order_is_pinned():
    """Large + small cancellation: sequential summation and the tree give different fp32 results."""
    x = np.ones((1, 8), F16)
    w = np.array([[2048.0], [2.0 ** -14], [-2048.0], [2.0 ** -14], [0], [0], [0], [0]], F16)
    got = nx.mpu_matvec(x, w, d=8)[0, 0]
    # level 1: (2048 + 2^-14) rounds to 2048 in binary32 (ulp 2^-12), so the pairs cancel to exactly 0,
    # where a sequential sum ((2048 + 2^-14) - 2048) + 2^-14 would also give 2^-14 and a float64 sum 2^-13.
    assert got == F32(0.0)
    seq = F32(0.0)
    for v in w[:, 0].astype(F32):
        seq = seq + v
    assert seq == F32(2.0 ** -14) != got


def test_reductions_equal_single_column_mpu():
    rng = np.random.default_rng(3)
    a = rng.standard_normal(77).astype(F16)
    b = rng.standard_normal(77).astype(F16)
    assert nx.reduce_dot(a, b, d=8) == nx.mpu_matvec(a[None], b[:, None], d=8)[0, 0]
    assert nx.reduce_sum(a, d=8) == nx.mpu_matvec(a[None], np.ones((77, 1), F16), d=8)[0, 0]
    assert nx.reduce_max(a) == np.float32(a.max())
    assert nx.reduce_max(np.array([1, np.nan], F16)) != nx.reduce_max(np.array([1, np.nan], F16))   # NaN


def test_no_subnormals_in_mpu_accumulation():
    """Products of normal binary16 are multiples of 2^-48, so are their sums: never a binary32 subnormal."""
    tiny = np.array([2.0 ** -14, -(2.0 ** -14), 2.0 ** -14 * 1.5], F16)
    x = np.tile(tiny, 22)[None, :64]
    w = np.tile(tiny, 22)[:64, None]
    acc = nx.tree_sum((x.astype(F32)[:, :, None] * w.astype(F32)[None]), 8)
    a = np.abs(acc[acc != 0])
    assert (a >= 2.0 ** -48).all()


# ------------------------------------------------------------------------------------ VPU ops
def test_vector_ops_are_correctly_rounded():
    rng = np.random.default_rng(5)
    a = nx.daz16(rng.standard_normal(5000).astype(F16) * F16(300))
    b = nx.daz16(rng.standard_normal(5000).astype(F16))
    for op, ref in ((nx.vadd, np.add), (nx.vsub, np.subtract), (nx.vmul, np.multiply)):
        exact = ref(a.astype(np.float64), b.astype(np.float64))
        np.testing.assert_array_equal(nx.fp16_bits(op(a, b)), nx.fp16_bits(nx.to_fp16(exact)))
    assert nx.fp16_bits(nx.vmul(np.array([300.0], F16), np.array([300.0], F16))).tolist() == [0x7C00]


# ------------------------------------------------------------------------------------ function units
def test_error_bounds_against_float64():
    """The figures docs/numerics.md states; the table is `python -m dfx.numerics --error-table`."""
    rows = {(name, unit): err for name, _, err, unit in nx.error_table()}
    assert rows[("exp16", "binary16 ulp")] <= 0.51
    assert rows[("gelu16", "absolute")] <= 1e-3
    assert rows[("gelu16", "binary16 ulp")] <= 0.6
    assert rows[("recip", "binary32 ulp")] <= 2.0
    assert rows[("rsqrt", "binary32 ulp")] <= 2.0


def test_special_values():
    inf, nan = np.inf, np.nan
    r = nx.recip(np.array([0.0, -0.0, inf, -inf, nan, 1e-40], F32))
    assert r[0] == inf and r[1] == -inf and r[2] == 0 and r[3] == 0 and np.signbit(r[3]) and np.isnan(r[4])
    assert r[5] == inf                                                      # subnormal input is zero (DAZ)
    s = nx.rsqrt(np.array([0.0, inf, -1.0, 4.0, 2.0], F32))
    assert s[0] == inf and s[1] == 0 and np.isnan(s[2]) and s[3] == 0.5
    assert abs(float(s[4]) - 2 ** -0.5) <= 2 * 2.0 ** -24
    e = nx.exp16(np.array([-inf, inf, 0.0, -20.0, 12.0, nan], F16))
    assert e[0] == 0 and e[1] == inf and e[2] == 1 and e[3] == 0 and e[4] == inf and np.isnan(e[5])
    g = nx.gelu16(np.array([8.0, 100.0, -8.0, -100.0, 0.0, nan], F16))
    assert g[0] == 8 and g[1] == 100 and g[2] == 0 and g[3] == 0 and g[4] == 0 and np.isnan(g[5])


def test_gelu_lut_is_the_documented_table():
    assert nx.GELU_TABLE.size == 2048 and nx.GELU_TABLE.dtype == F32
    assert nx.GELU_TABLE[0] == F32(nx.gelu_tanh_f64(-8.0)) and nx.GELU_TABLE[-1] == F32(8.0)
    # a sample point gives the table value exactly (x = -8 + 16*i/2047 representable for i = 2047/2 +- ...)
    assert nx.gelu16(np.array([0.0], F16))[0] == 0


def test_docs_table_is_current():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "numerics.md").read_text()
    table = doc.split("<!-- error-table -->\n")[1].split("\n<!-- /error-table -->")[0]
    assert table == nx.error_table_markdown(), "docs/numerics.md is stale: paste `python -m dfx.numerics --error-table`"


def test_scalar_paths_equal_array_paths():
    """The scalar unit's one-value fast paths give the array versions' bits (specials included)."""
    rng = np.random.default_rng(9)
    v = np.concatenate([np.ldexp(rng.uniform(1, 2, 2000), rng.integers(-130, 130, 2000)),
                        [0, -0.0, np.inf, -np.inf, np.nan, -1, 1e-40, 3e38, 2.0 ** -126, 2.0 ** 127]]).astype(F32)
    w = (rng.standard_normal(v.size) * 1e30).astype(F32)
    for scalar, array in ((nx.recip, nx.recip_array), (nx.rsqrt, nx.rsqrt_array)):
        one = np.array([scalar(x) for x in v], F32)
        np.testing.assert_array_equal(one.view(np.uint32), array(v).view(np.uint32))
    for op in (nx.sadd, nx.smul):
        one = np.array([op(x, y) for x, y in zip(v, w)], F32)
        np.testing.assert_array_equal(one.view(np.uint32), op(v, w).view(np.uint32))


def test_lookup_tables_equal_the_arithmetic():
    np.testing.assert_array_equal(nx.fp16_bits(nx.exp16(ALL16)), nx.fp16_bits(nx.exp16_arith(ALL16)))
    np.testing.assert_array_equal(nx.fp16_bits(nx.gelu16(ALL16)), nx.fp16_bits(nx.gelu16_arith(ALL16)))
