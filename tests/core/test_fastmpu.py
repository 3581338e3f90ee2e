"""The simulator's fast MPU path (`dfx.fastmpu`) is bit-identical to the reference `dfx.numerics.mpu_matvec`."""
import numpy as np
import pytest

from dfx import fastmpu as fm
from dfx import numerics as nx

F16, F32 = np.float16, np.float32
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


# ---------------------------------------------------------------------------------- the simulator's fast MPU path
def _nasty16(rng, shape):
    """binary16 values over the whole exponent range, with signed zeros, infinities and NaNs sprinkled in."""
    v = rng.standard_normal(shape) * np.exp2(rng.integers(-14, 15, shape))
    v = v.astype(F16)
    r = rng.random(shape)
    v[r < 0.02] = F16(-0.0)
    v[(r >= 0.02) & (r < 0.025)] = F16(np.inf)
    v[(r >= 0.025) & (r < 0.03)] = F16(np.nan)
    return nx.daz16(v)


def _bits32(a):
    """binary32 bits with every NaN canonical: an accumulator's NaN sign/payload is unspecified (the policy
    makes it the canonical NaN when it is rounded to binary16)."""
    a = np.asarray(a, F32)
    return np.where(np.isnan(a), np.uint32(0x7FC00000), nx.fp32_bits(a))


@pytest.mark.parametrize("d", [1, 2, 8, 64])
@pytest.mark.parametrize("k, n", [(1, 1), (5, 1), (9, 2), (64, 16), (200, 3), (257, 80), (1024, 17), (520, 130)])
def test_mpu_matvec1_is_bit_identical_to_mpu_matvec(d, k, n):
    rng = np.random.default_rng(k * 1000 + n * 10 + d)
    w, x, b = _nasty16(rng, (k, n)), _nasty16(rng, k), _nasty16(rng, n)
    tw = fm.TreeWeights(nx.widen16(w), d)
    with np.errstate(all="ignore"), fm.torch_single_thread():
        for bias in (None, b):
            want = _bits32(nx.mpu_matvec(x[None], w, bias, d=d)[0])
            np.testing.assert_array_equal(_bits32(fm.mpu_matvec1(x, tw, bias)), want)
            scratch = np.empty(tw.w.size + 7, F32)
            np.testing.assert_array_equal(_bits32(fm.mpu_matvec1(x, tw, bias, scratch)), want)
        # a shorter input is zero-padded, like a dyn_k instruction over the first k' rows
        if k > 1:
            want = nx.mpu_matvec(x[None, :k - 1], w[:k - 1], None, d=d)[0]
            got = fm.mpu_matvec1(x[:k - 1], fm.TreeWeights(nx.widen16(w), d, k=k - 1))
            np.testing.assert_array_equal(_bits32(got), _bits32(want))


def test_mpu_matvec1_group_accumulation_is_sequential():
    """Large cancellations across groups: any other summation order than ((+0 + g0) + g1) + ... shows."""
    d, c, n = 2, 40, 33
    x = np.ones(d * c, F16)
    w = np.zeros((d * c, n), F16)
    w[0::2] = F16(2.0 ** 12)
    w[2::4] = F16(-(2.0 ** 12))
    w[1::2] = F16(2.0 ** -11)
    got = fm.mpu_matvec1(x, fm.TreeWeights(nx.widen16(w), d))
    np.testing.assert_array_equal(nx.fp32_bits(got), nx.fp32_bits(nx.mpu_matvec(x[None], w, d=d)[0]))


def test_tree_weights_from_tiles_equals_from_matrix():
    rng = np.random.default_rng(3)
    w = nx.widen16(_nasty16(rng, (32, 12)))
    a = fm.TreeWeights(w, 8)
    b = fm.TreeWeights.from_tiles(w.reshape(4, 8, 12), 8)
    np.testing.assert_array_equal(a.w.view(np.uint32), b.w.view(np.uint32))
    c = fm.TreeWeights.from_rows(w.reshape(4, 8, 3, 4).transpose(1, 0, 2, 3), 8)
    assert c.w.flags["C_CONTIGUOUS"] and (c.k, c.n) == (32, 12)
    np.testing.assert_array_equal(a.w.view(np.uint32), c.w.view(np.uint32))


def test_mpu_matvec1_runs_both_kernels():
    """The shapes above cover both element-wise back ends (numpy below `TORCH_MIN` products, PyTorch above)."""
    assert 64 * 16 < fm.TORCH_MIN <= 520 * 130


# ---------------------------------------------------------------------------------- the tiled kernel (numba)
def _raw16(rng, shape):
    """`_nasty16` with raw subnormals left in (the kernel applies DAZ to what it reads from HBM)."""
    v = _nasty16(rng, shape)
    r = rng.random(shape)
    v[r < 0.02] = F16(3e-6) * np.sign(rng.standard_normal(int((r < 0.02).sum()))).astype(F16)
    return v


@pytest.mark.parametrize("d, l", [(1, 1), (2, 1), (8, 4), (64, 16)])
@pytest.mark.parametrize("k, n", [(1, 1), (5, 3), (64, 16), (200, 37), (520, 130)])
@pytest.mark.parametrize("rowmajor", [False, True])
def test_tiled_matvec_is_bit_identical_to_mpu_matvec(d, l, k, n, rowmajor):
    from dfx.program import tile_matrix
    rng = np.random.default_rng(k * 1000 + n * 10 + d + rowmajor)
    w, x, b = _raw16(rng, (k, n)), _raw16(rng, k), _raw16(rng, n)
    kt, nt = -(-k // d), -(-n // l)
    h = np.concatenate([np.full(7, 0x7C01, np.uint16), tile_matrix(w, d, l, rowmajor).view(np.uint16)])
    with np.errstate(all="ignore"):
        for bias in (None, b):
            want = _bits32(nx.mpu_matvec(nx.daz16(x)[None], nx.daz16(w), bias, d=d)[0])
            for threads in (1, 2):
                got = fm.tiled_matvec(x, h, 7, kt, nt, n, d, l, rowmajor, bias, threads=threads)
                np.testing.assert_array_equal(_bits32(got), want)
        if k > 1:                               # fewer input rows than the tiles hold: zero-padded (dyn_k)
            got = fm.tiled_matvec(x[:k - 1], h, 7, kt, nt, n - 1 if n > 1 else n, d, l, rowmajor)
            want = nx.mpu_matvec(nx.daz16(x[:k - 1])[None], nx.daz16(w[:k - 1]), None, d=d)[0][:got.size]
            np.testing.assert_array_equal(_bits32(got), _bits32(want))


def test_tiled_matvec_splits_large_matrices_over_threads():
    """Above `SPLIT_MIN` weights the column tiles go to the pool; the result does not depend on the split."""
    from dfx.program import tile_matrix
    rng = np.random.default_rng(5)
    k, n, d, l = 512, 1000, 64, 16
    assert k * n >= fm.SPLIT_MIN
    w, x = _raw16(rng, (k, n)), _raw16(rng, k)
    h = tile_matrix(w, d, l).view(np.uint16)
    with np.errstate(all="ignore"):
        one = fm.tiled_matvec(x, h, 0, k // d, -(-n // l), n, d, l, threads=1)
        for threads in (2, 3, 64):
            np.testing.assert_array_equal(_bits32(fm.tiled_matvec(x, h, 0, k // d, -(-n // l), n, d, l,
                                                                  threads=threads)), _bits32(one))


def test_tiled_matvec_refuses_tiles_outside_the_array():
    with pytest.raises(ValueError, match="outside"):
        fm.tiled_matvec(np.zeros(8, F16), np.zeros(100, np.uint16), 0, 1, 4, 4, 8, 4)
    with pytest.raises(ValueError, match="rows"):
        fm.tiled_matvec(np.zeros(9, F16), np.zeros(100, np.uint16), 0, 1, 1, 4, 8, 4)


# ---------------------------------------------------------------------------------- tile-scaled weights (dfx.tilescale)
def _codes16(rng, shape):
    """int4 codes, [-8, 7], as binary16 (exact)."""
    return rng.integers(-8, 8, shape).astype(F16)


def _scales16(rng, shape):
    """Per-tile scales over binary16's range, mixed signs, a few zeros and raw subnormals (read with DAZ)."""
    s = (rng.uniform(0.5, 2, shape) * np.exp2(rng.integers(-14, 12, shape))).astype(F16)
    s *= np.where(rng.random(shape) < 0.2, -1, 1).astype(F16)
    r = rng.random(shape)
    s[r < 0.03] = F16(0.0)
    s[(r >= 0.03) & (r < 0.06)] = F16(3e-6)
    return s


@pytest.mark.parametrize("d, l", [(1, 1), (2, 1), (8, 4), (16, 2), (64, 16)])
@pytest.mark.parametrize("k, n", [(1, 1), (5, 3), (64, 16), (200, 37), (520, 130)])
@pytest.mark.parametrize("rowmajor", [False, True])
@pytest.mark.parametrize("nasty", [False, True])
def test_tiled_matvec_tile_scale_is_bit_identical_to_mpu_matvec(d, l, k, n, rowmajor, nasty):
    """Codes times x, each row tile's tree sum times its scale (a separate binary32 multiply, no FMA: random data
    of mixed signs and magnitudes shows any contraction), ragged k and n; with `nasty`, inputs with signed zeros,
    infinities and NaNs and arbitrary binary16 weights (a NaN's payload is unspecified: compared canonical)."""
    from dfx.program import tile_matrix
    rng = np.random.default_rng(k * 1000 + n * 10 + d + rowmajor + 7 * nasty)
    w = _raw16(rng, (k, n)) if nasty else _codes16(rng, (k, n))
    x = _raw16(rng, k) if nasty else nx.daz16((rng.standard_normal(k) * np.exp2(rng.integers(-14, 12, k)))
                                               .astype(F16))
    b = _raw16(rng, n)
    kt, nt = -(-k // d), -(-n // l)
    ts = _scales16(rng, (kt, n))
    tsp = np.zeros((kt, nt * l), F16)
    tsp[:, :n] = ts
    h = np.concatenate([np.full(5, 0x7C01, np.uint16), tile_matrix(w, d, l, rowmajor).view(np.uint16)])
    with np.errstate(all="ignore"):
        for bias in (None, b):
            want = _bits32(nx.mpu_matvec(nx.daz16(x)[None], nx.daz16(w), bias, d=d, tile_scale=ts)[0])
            for threads in (1, 2):
                got = fm.tiled_matvec(x, h, 5, kt, nt, n, d, l, rowmajor, bias, threads=threads, tile_scale=tsp)
                np.testing.assert_array_equal(_bits32(got), want)
            got = fm.tiled_matvec(x, h, 5, kt, nt, n, d, l, rowmajor, bias, tile_scale=nx.widen16(tsp))
            np.testing.assert_array_equal(_bits32(got), want)           # binary32 scales: taken as they are
        if k > 1:                               # fewer input rows than the tiles hold: zero-padded (dyn_k)
            got = fm.tiled_matvec(x[:k - 1], h, 5, kt, nt, n, d, l, rowmajor, tile_scale=tsp)
            xp = np.zeros(kt * d, F16)
            xp[:k - 1] = x[:k - 1]
            wp = np.zeros((kt * d, n), F16)
            wp[:k] = w
            want = nx.mpu_matvec(nx.daz16(xp)[None], nx.daz16(wp), None, d=d, tile_scale=ts)[0]
            np.testing.assert_array_equal(_bits32(got), _bits32(want))


def test_tiled_matvec_tile_scale_is_not_fused():
    """d=1, two row tiles: g0' = -1; g1 = (1 + 2^-10)^2 exact, g1 * s1 = (1 + 2^-10)^3 = 1 + 3*2^-10 + 3*2^-20 +
    2^-30 rounds to binary32 without the 2^-30, so acc = g0' + g1' = 3*2^-10 + 3*2^-20. A fused multiply-add
    (acc + g1 * s1 rounded once) would keep the 2^-30."""
    from dfx.program import tile_matrix
    e = 2.0 ** -10
    x = np.array([1.0, 1.0 + e], F16)
    w = np.array([[-1.0], [1.0 + e]], F16)
    s = np.array([[1.0], [1.0 + e]], F16)
    got = fm.tiled_matvec(x, tile_matrix(w, 1, 1).view(np.uint16), 0, 2, 1, 1, 1, 1, tile_scale=s)
    want = nx.mpu_matvec(x, w, d=1, tile_scale=s)
    assert got[0] == want[0] == F32(3 * e + 3 * e * e)
    assert F32(3 * e + 3 * e * e + e ** 3) != F32(3 * e + 3 * e * e)      # what an FMA would give


def test_tiled_matvec_tile_scale_shape_is_checked():
    with pytest.raises(ValueError, match=r"tile_scale must be \(kt, nt\*l\) = \(1, 4\)"):
        fm.tiled_matvec(np.zeros(8, F16), np.zeros(32, np.uint16), 0, 1, 1, 3, 8, 4, tile_scale=np.ones((1, 3), F16))
