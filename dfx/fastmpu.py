"""The matrix unit's fast bit-exact path: `TreeWeights` (a weight matrix arranged once for the MPU's adder
trees) and `mpu_matvec1` (one vector against it), bit-identical to `dfx.numerics.mpu_matvec` (tested in
tests/core/test_fastmpu.py). The functional simulator runs every LINEAR, QK, SV and LMHEAD through it."""
from __future__ import annotations

import contextlib
import functools

import numpy as np
import torch

from .numerics import F32, _check_d, _ro, widen16

@functools.lru_cache(maxsize=None)
def _bitrev(d: int) -> np.ndarray:
    bits = d.bit_length() - 1
    return _ro(np.array([int(f"{j:0{bits}b}"[::-1], 2) if bits else 0 for j in range(d)], np.intp))


class TreeWeights:
    """A weight matrix pre-arranged for `mpu_matvec1`: the same sums as `mpu_matvec`, in fewer, contiguous,
    in-place numpy passes (the functional simulator's hot path).

    Row c*d + j of the zero-padded (C*d, N) binary32 matrix goes to slab `rev[j]` of a (d, C, N) array, where
    `rev` is the bit-reversal permutation. With that order every level of the pairwise tree adds the first half
    of the slabs to the second half (level 1 adds slabs 0..d/2-1 to d/2..d-1, which hold the pairs (2i, 2i+1),
    and so on), so each level is one contiguous in-place add. IEEE addition is commutative, so the sums are
    bit-identical to `tree_sum`'s.
    """

    __slots__ = ("w", "k", "n", "d", "rev", "_buf")

    def __init__(self, w32: np.ndarray, d: int, k: int | None = None):
        """w32: (K', N) binary32 holding DAZ-clean binary16 values, K' >= k rows (extra rows are ignored)."""
        d = _check_d(d)
        w32 = np.asarray(w32, F32)
        self.k = w32.shape[0] if k is None else int(k)
        self.n, self.d = w32.shape[1], d
        c = max(-(-self.k // d), 1)
        wp = np.zeros((c * d, self.n), F32)
        wp[:self.k] = w32[:self.k]
        self.rev = _bitrev(d)
        self.w = np.empty((d, c, self.n), F32)
        self.w[self.rev] = wp.reshape(c, d, self.n).transpose(1, 0, 2)
        self._buf = None

    @classmethod
    def from_rows(cls, v: np.ndarray, d: int) -> "TreeWeights":
        """From a (d, C, ...) binary32 view whose [j, c] is row c*d + j (the trailing axes flatten to the N
        columns), with one gather copy: bit reversal is its own inverse, so slab r is v[rev[r]]."""
        self = cls.__new__(cls)
        self.d, self.rev = d, _bitrev(d)
        w = v[self.rev]
        self.w = w.reshape(d, w.shape[1], -1)
        self.k, self.n = self.w.shape[1] * d, self.w.shape[2]
        self._buf = None
        return self

    @classmethod
    def from_tiles(cls, tiles: np.ndarray, d: int) -> "TreeWeights":
        """From a (C, d, N) binary32 array (row c*d + j at [c, j]) without an intermediate (K, N) copy."""
        self = cls.__new__(cls)
        c, _, self.n = tiles.shape
        self.k, self.d, self.rev = c * d, d, _bitrev(d)
        self.w = np.empty((d, c, self.n), F32)
        self.w[self.rev] = tiles.transpose(1, 0, 2)
        self._buf = None
        return self


TORCH_MIN = 1 << 15        # products below this run in numpy (PyTorch's per-call overhead dominates there)


@contextlib.contextmanager
def torch_single_thread():
    """Run PyTorch's CPU kernels on one thread inside the block (then restore). The simulator's element-wise
    passes are short: on a shared machine a thread pool waits for busy cores far longer than it saves."""
    n = torch.get_num_threads()
    if n != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if n != 1:
            torch.set_num_threads(n)


def mpu_matvec1(x, tw: TreeWeights, bias=None, scratch: np.ndarray | None = None) -> np.ndarray:
    """`mpu_matvec` for one binary16 input vector x (k,) against prepared weights: (N,) binary32 accumulators,
    bit-identical to `mpu_matvec(x[None], w, bias, d)[0]` (tested; a NaN's sign and payload are unspecified
    until `to_fp16` makes it canonical). `scratch`: an optional 1-D binary32 work
    array of at least d*C*N elements; one shared scratch keeps the products in cache across instructions.

    The element-wise passes run as PyTorch CPU kernels on the same memory (zero-copy): IEEE binary32 multiply
    and add, RNE, no contraction into FMAs, 2-3x faster than numpy's on the broadcast multiply. No subnormal
    can arise (products of DAZ-clean binary16 are >= 2^-28 in magnitude and sums are multiples of 2^-51), so
    the denormal mode does not matter. The accumulation over groups stays in numpy (sequential order)."""
    d, c = tw.d, tw.w.shape[1]
    x32 = widen16(x)
    k = x32.shape[0]
    if k > c * d:
        raise ValueError(f"mpu_matvec1: x has {k} elements but the weights have {c * d} rows")
    xp = np.zeros(c * d, F32)
    xp[:k] = x32
    xs = np.empty((d, c, 1), F32)
    xs[tw.rev] = xp.reshape(c, d).T[:, :, None]
    if scratch is not None and scratch.size >= tw.w.size:
        buf = scratch[:tw.w.size].reshape(tw.w.shape)
    else:
        if tw._buf is None:                                  # kept: a fresh large array per call page-faults
            tw._buf = np.empty_like(tw.w)
        buf = tw._buf
    if buf.size >= TORCH_MIN:
        tb, tx, tww = torch.from_numpy(buf), torch.from_numpy(xs), torch.from_numpy(tw.w)
        h = d // 2
        if h:
            # level 1 fused: p_j + p_j+h with p exact, so addcmul (FMA or not) rounds exactly once, as the tree
            torch.mul(tx[:h], tww[:h], out=tb[:h])
            torch.addcmul(tb[:h], tx[h:], tww[h:], out=tb[:h])
        else:
            torch.mul(tx, tww, out=tb)                       # d = 1: the products are the group sums
        while h > 1:                                         # the pairwise tree, one contiguous add per level
            h //= 2
            torch.add(tb[:h], tb[h:2 * h], out=tb[:h])
    else:                                                    # small: numpy's lower per-call cost wins
        np.multiply(xs, tw.w, out=buf)
        h = d
        while h > 1:
            h //= 2
            np.add(buf[:h], buf[h:2 * h], out=buf[:h])
    g = buf[0]                                               # (C, N) group sums, C-contiguous
    np.add(g[0], F32(0.0), out=g[0])                         # +0 + g0
    if tw.n >= 2:
        # numpy reduces axis 0 of a C-contiguous (C, N >= 2) array row by row, in order: ((g0 + g1) + g2)...
        # (pairwise summation applies only along a contiguous reduction axis, i.e. N == 1); pinned by
        # tests/core/test_numerics.py against mpu_matvec's np.add.accumulate, which is sequential by definition
        acc = np.add.reduce(g, axis=0)
    else:
        acc = np.add.accumulate(g, axis=0)[-1]
    if bias is not None:
        acc = acc + widen16(bias)
    return acc
