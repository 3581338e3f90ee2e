"""The matrix unit's fast bit-exact paths, bit-identical to `dfx.numerics.mpu_matvec` (tested in
tests/core/test_fastmpu.py):

- `tiled_matvec`: one vector against a matrix stored as the DMA stores it (binary16 d x l tiles), read in place
  by a numba kernel, one pass over the weights. The functional simulator runs every LINEAR, QK, SV and LMHEAD
  through it.
- `TreeWeights` + `mpu_matvec1`: a binary32 matrix arranged once for the adder trees (bit reversal), each tree
  level one contiguous in-place PyTorch/numpy add (kept for callers that hold a binary32 matrix)."""
from __future__ import annotations

import contextlib
import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numba
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


# ---------------------------------------------------------------------------------------------- tiled kernel
# The matrix path straight from the weight tiles as the DMA stores them (`dfx.program.tile_matrix`: d x l tiles,
# [lane][row] inside a tile), binary16, one pass over them: no binary32 copy of the weights, no product buffer
# the size of the matrix. A numba kernel with the exact operation order of `numerics.mpu_matvec`, per tile:
# widen (DAZ) the d*l weights, multiply by the input (binary32, exact), then the pairwise tree as log2(d)
# passes that each add adjacent pairs over the whole tile (a group of d never straddles two lanes, so pass m
# holds every lane's level-m sums in order), then acc[lane] = acc[lane] + group sum, starting from +0.
# No fastmath: LLVM keeps every binary32 operation as written (no reassociation, no contraction into FMAs).

@numba.njit(nogil=True, cache=True, inline="always")
def _widen_bits(h):
    """binary16 bits -> binary32 bits after DAZ (subnormal -> signed zero; inf and NaN stay inf and NaN), branch
    free so that LLVM vectorises it: e5 the exponent field, nz = (e5 != 0), inf = (e5 == 31)."""
    h = np.uint32(h)
    e5 = (h >> np.uint32(10)) & np.uint32(31)
    nz = (e5 + np.uint32(31)) >> np.uint32(5)
    inf = (e5 + np.uint32(1)) >> np.uint32(5)
    body = ((e5 + np.uint32(112) + inf * np.uint32(112)) << np.uint32(23)) | ((h & np.uint32(0x3FF)) << np.uint32(13))
    return ((h & np.uint32(0x8000)) << np.uint32(16)) | (body & (np.uint32(0) - nz))


@numba.njit(nogil=True, cache=True)
def _halve(src, dst, m):
    for u in range(m):
        dst[u] = src[2 * u] + src[2 * u + 1]


@numba.njit(nogil=True, cache=True)
def _widen_mul(hs, xs, pb, pf, a):
    """a = xs * widen(hs) element-wise: a tile's exact binary32 products (pb: uint32 scratch, pf: its binary32
    view). Slices indexed by the loop variable: an index computed from an offset makes numba check for a negative
    index in the loop, and LLVM then does not vectorise it."""
    for u in range(pb.shape[0]):
        pb[u] = _widen_bits(hs[u])
    for u in range(a.shape[0]):
        a[u] = xs[u] * pf[u]


@numba.njit(nogil=True, cache=True)
def _tiled_kernel(xt, h, e0, kt, nt, d, l, rowmajor, j0, j1, out, ts, scaled):
    """Column tiles j0..j1-1 of the matrix whose tiles start at element e0 of `h` (uint16), into out[j*l + lane]
    (out holds (j1 - j0) * l accumulators, starting with column tile j0). xt: (kt * d * l,) binary32, the
    input's row tile i repeated for each of the l lanes (row tile i at i * d * l). `scaled`: every group sum is
    multiplied by ts[i, j*l + lane] (binary32) before it is accumulated (tile-scaled weights; ts is empty
    otherwise), the product its own binary32 operation (two statements, no fastmath: no FMA)."""
    te = d * l
    pb = np.empty(te, np.uint32)
    pf = pb.view(np.float32)
    a = np.empty(te, np.float32)
    b = np.empty(te, np.float32)
    acc = np.empty(l, np.float32)
    for j in range(j0, j1):
        for q in range(l):
            acc[q] = np.float32(0.0)
        for i in range(kt):
            t = i * nt + j if rowmajor else j * kt + i
            base = e0 + t * te
            _widen_mul(h[base:base + te], xt[i * te:(i + 1) * te], pb, pf, a)
            m = te
            while m > l:
                m //= 2
                _halve(a, b, m)
                if m > l:
                    m //= 2
                    _halve(b, a, m)
                else:
                    a[:m] = b[:m]
            if scaled:
                c0 = j * l
                for q in range(l):
                    p = a[q] * ts[i, c0 + q]
                    acc[q] = acc[q] + p
            else:
                for q in range(l):
                    acc[q] = acc[q] + a[q]
        o = (j - j0) * l
        for q in range(l):
            out[o + q] = acc[q]


_NO_SCALE = np.zeros((0, 0), F32)      # `_tiled_kernel`'s ts when there is no tile scale (one compiled signature)
_POOL: list = []                      # [ThreadPoolExecutor] for splitting one matrix over the cores, made on first use
SPLIT_MIN = 1 << 18                   # weights below this run on the calling thread (a pool hand-off costs ~50 us)


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:            # not Linux
        return max(1, os.cpu_count() or 1)


def _pool():
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max_workers=cpu_count(), thread_name_prefix="dfx-mpu"))
    return _POOL[0]


def tiled_matvec(x, h: np.ndarray, e0: int, kt: int, nt: int, n: int, d: int, l: int, rowmajor: bool = False,
                 bias=None, threads: int = 1, tile_scale=None) -> np.ndarray:
    """`mpu_matvec(x, W, bias, d, tile_scale)` for the (kt*d, nt*l) binary16 matrix W stored as tiles from element
    e0 of the uint16 array `h` (`dfx.program.tile_matrix` layout, `rowmajor` tile order): (n,) binary32
    accumulators for columns 0..n-1, bit-identical (tested; a NaN's sign and payload are unspecified until
    `to_fp16`). x: k <= kt*d binary16 values, zero-padded to kt*d rows. The weights are read once, in their
    stored width. `threads` > 1 splits the column tiles over that many threads (the kernel releases the GIL).
    tile_scale (tile-scaled weights): None, or (kt, nt*l) binary16 scales, [row tile, column] (binary32 holding
    DAZ-clean binary16 values is taken as it is: the caller's promise, as `mpu_matvec`'s)."""
    d, l = _check_d(d), int(l)
    x32 = widen16(x)
    k = x32.shape[0]
    if k > kt * d:
        raise ValueError(f"tiled_matvec: x has {k} elements but the weights have {kt * d} rows")
    if e0 < 0 or e0 + kt * nt * d * l > h.shape[0]:
        raise ValueError(f"tiled_matvec: tiles {e0}..{e0 + kt * nt * d * l} lie outside the {h.shape[0]} elements")
    xp = np.zeros((kt, 1, d), F32)
    xp.reshape(-1)[:k] = x32
    xt = np.ascontiguousarray(np.broadcast_to(xp, (kt, l, d))).reshape(-1)
    if tile_scale is None:
        ts = _NO_SCALE
    else:
        ts = tile_scale if getattr(tile_scale, "dtype", None) == F32 else widen16(tile_scale)
        if ts.shape != (kt, nt * l):
            raise ValueError(f"tiled_matvec: tile_scale must be (kt, nt*l) = {(kt, nt * l)}, not {ts.shape}")
        ts = np.ascontiguousarray(ts)
    scaled = tile_scale is not None
    nj = min(-(-n // l), nt)
    out = np.empty(nj * l, F32)
    parts = min(max(1, threads), nj) if kt * nj * d * l >= SPLIT_MIN else 1
    if parts == 1:
        _tiled_kernel(xt, h, e0, kt, nt, d, l, rowmajor, 0, nj, out, ts, scaled)
    else:
        cuts = [nj * p // parts for p in range(parts + 1)]
        futs = [_pool().submit(_tiled_kernel, xt, h, e0, kt, nt, d, l, rowmajor, a, b, out[a * l:b * l], ts, scaled)
                for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
        for f in futs:
            f.result()
    acc = out[:n]
    if bias is not None:
        acc = acc + widen16(bias)[:n]
    return acc
