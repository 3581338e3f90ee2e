"""The matrix processing unit (MPU + SFU_M): l lanes, each a d-wide binary16 multiplier row and a pairwise
binary32 adder tree, a group accumulator per lane, then bias, scale, rounding to binary16, GELU and the causal
mask. Bit-exact to `numerics.mpu_matvec` + `numerics.mpu_finish` (docs/numerics.md, "MPU").

Streams (one beat per cycle when both inputs are valid):

    x  (from the vector buffer side)  one group of d binary16 inputs, plus `last` (the group ends an output
                                      block) and, read on last beats, the finishing controls of the block:
                                      l binary16 biases, has_bias, the binary32 scale and scale_en, gelu,
                                      and one mask bit per lane (the controller sets it for columns > POS)
    w  (from HBM)                     one d x l weight tile, lane-major ([lane][row]), exactly one tile of
                                      `dfx.program.tile_matrix`'s layout
    o                                 l binary16 outputs, one beat per output block

The beat order is the tile order of `tile_matrix` (column-major): the kt row tiles of output block 0 (x
groups 0..kt-1, the last one flagged), then those of block 1, ... The x groups are re-sent for every block
(the operand collector replays them from the vector buffer).

Datapath and order (the spec's):
- products x_r * W_rc exact in binary32 (`fp.fp16_mul`, one DSP48E2 each: 11 x 11 bits);
- per lane a balanced pairwise tree: level 1 adds products (2i, 2i+1), each later level adjacent sums;
- per lane an accumulator acc = ((+0 + g0) + g1) + ...: a single-cycle binary32 adder in a feedback loop, so
  consecutive groups of the same block can follow each other every cycle (a deeper adder would need the
  tile order interleaved across blocks; this is the trade-off: throughput 1 tile/cycle for a long path in
  one pipeline stage);
- on the last group: + bias (widened exactly), * scale (binary32 RNE), `to_fp16`, GELU (`sfu.gelu16`, one
  unit per lane), mask to -inf.

Latency: `latency` cycles from the last beat of a block to its output beat (= `tree_latency` + 1 + the
finishing pipeline); throughput: one tile per cycle, so a block of kt row tiles occupies the MPU kt cycles.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

import numpy as np
from amaranth import C, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from dfx.config import AccelConfig
from dfx.program import tile_grid, tile_matrix

from .fp import fp16_mul, fp32_add, fp32_mul, fp32_to_fp16, widen16
from .pipe import Pipe, T, check_stages
from .sfu import gelu16

NEG_INF16 = 0xFC00


def tile_layout(cfg: AccelConfig) -> data.ArrayLayout:
    """One d x l binary16 weight tile, [lane][row] (lane 0's d weights in the low bits)."""
    return data.ArrayLayout(data.ArrayLayout(16, cfg.d), cfg.l)


def finish_layout(cfg: AccelConfig) -> data.StructLayout:
    """SFU_M controls of one output block (read with its last group)."""
    return data.StructLayout({
        "bias": data.ArrayLayout(16, cfg.l),   # binary16 bias per lane (column)
        "has_bias": 1,
        "scale": 32,                           # binary32 bits of the scale register
        "scale_en": 1,
        "gelu": 1,
        "mask": cfg.l,                         # lane c's output becomes -inf
    })


def x_layout(cfg: AccelConfig) -> data.StructLayout:
    return data.StructLayout({"x": data.ArrayLayout(16, cfg.d), "last": 1, "fin": finish_layout(cfg)})


def out_layout(cfg: AccelConfig) -> data.ArrayLayout:
    return data.ArrayLayout(16, cfg.l)


def adder_tree(p: Pipe, values: list, add_stages: int) -> T:
    """The MPU's pairwise binary32 tree over a power-of-two number of values (`numerics.tree_sum`'s order)."""
    assert len(values) & (len(values) - 1) == 0, len(values)
    while len(values) > 1:
        values = [fp32_add(p, values[2 * i], values[2 * i + 1], add_stages) for i in range(len(values) // 2)]
    return values[0]


class MPU(wiring.Component):
    """Matrix unit for `cfg` (d-wide trees, l lanes). See the module docstring for streams and order.

    Parameters: mul_stages (0..2) for the binary16 multipliers, add_stages (0..3) for every pipelined
    binary32 adder (tree, bias), fin_mul_stages (0..2) for the scale multiply, gelu (include the per-lane
    GELU units; without them the `gelu` control is ignored).
    """

    def __init__(self, cfg: AccelConfig, *, mul_stages: int = 1, add_stages: int = 2, fin_mul_stages: int = 2,
                 gelu: bool = True):
        if not isinstance(cfg, AccelConfig):
            self._MustUse__silence = True
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        check_stages(self, mul_stages=(mul_stages, 2), add_stages=(add_stages, 3),
                     fin_mul_stages=(fin_mul_stages, 2))
        self.cfg = cfg
        self.mul_stages, self.add_stages, self.fin_mul_stages = mul_stages, add_stages, fin_mul_stages
        self.has_gelu = gelu
        self.tree_latency = mul_stages + add_stages * (cfg.d.bit_length() - 1)
        super().__init__({
            "x": In(stream.Signature(x_layout(cfg))),
            "w": In(stream.Signature(tile_layout(cfg))),
            "o": Out(stream.Signature(out_layout(cfg))),
        })
        self.latency = self._finish_latency() + self.tree_latency + 1

    def _finish(self, p: Pipe, acc: list, fin) -> list:
        """bias, scale, round, GELU, mask on the l accumulators (T values at one stage)."""
        t0 = fin.t
        has_bias, scale_en = T(fin.v.has_bias, t0), T(fin.v.scale_en, t0)
        scale, gelu_en = T(fin.v.scale, t0), T(fin.v.gelu, t0)
        outs = []
        for c in range(self.cfg.l):
            b32 = T(widen16(fin.v.bias[c]), t0)
            y = fp32_add(p, acc[c], b32, self.add_stages)                    # acc + bias
            t, (yv, a, hb) = p.sync(y, acc[c], has_bias)
            y = T(Mux(hb, yv, a), t)
            z = fp32_mul(p, y, scale, self.fin_mul_stages)                   # * scale
            t, (zv, yv, se) = p.sync(z, y, scale_en)
            y = T(Mux(se, zv, yv), t)
            h = fp32_to_fp16(p, y)                                           # one rounding to binary16
            if self.has_gelu:
                g = gelu16(p, h, self.add_stages, min(self.fin_mul_stages, 2))
                t, (gv, hv, ge) = p.sync(g, h, gelu_en)
                h = T(Mux(ge, gv, hv), t)
            t, (hv, mk) = p.sync(h, T(fin.v.mask[c], t0))
            outs.append(T(Mux(mk, NEG_INF16, hv), t))
        return outs

    def _finish_latency(self) -> int:
        m = Module()
        m._MustUse__silence = True
        p = Pipe(m, C(1, 1))
        fin = Signal(finish_layout(self.cfg))
        acc = [T(Signal(32), 0) for _ in range(self.cfg.l)]
        return max(o.t for o in self._finish(p, acc, T(fin, 0)))

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        ce = Signal()
        m.d.comb += ce.eq(~self.o.valid | self.o.ready)
        fire = Signal()
        m.d.comb += [
            fire.eq(self.x.valid & self.w.valid & ce),
            self.x.ready.eq(ce & self.w.valid),
            self.w.ready.eq(ce & self.x.valid),
        ]
        p = Pipe(m, ce)

        # ---- products and trees (stage 0 .. tree_latency)
        xs = [T(self.x.payload.x[r], 0) for r in range(cfg.d)]
        sums = []
        for c in range(cfg.l):
            prods = [fp16_mul(p, xs[r], T(self.w.payload[c][r], 0), self.mul_stages) for r in range(cfg.d)]
            sums.append(adder_tree(p, prods, self.add_stages))
        tg = self.tree_latency
        assert all(s.t == tg for s in sums)

        v_g = p.flag(fire, tg, "v_tree")                # valid bits have a reset; data registers none
        last_g = p.at(T(self.x.payload.last, 0), tg)
        fin_g = p.at(T(self.x.payload.fin, 0), tg)

        # ---- group accumulators: acc = (first ? +0 : acc) + g, one cycle
        first = Signal(init=1)
        accs = []
        for c in range(cfg.l):
            acc = Signal(32, name=f"acc_{c}")
            a_in = Mux(first, C(0, 32), acc)
            nxt = fp32_add(p, a_in, sums[c].v, stages=0)
            with m.If(ce & v_g):
                m.d.sync += acc.eq(nxt.v)
            accs.append(T(acc, tg + 1))
        with m.If(ce & v_g):
            m.d.sync += first.eq(last_g)
        fin = T(p.reg(fin_g, "fin"), tg + 1)
        v_acc = p.flag(v_g & last_g, 1, "v_acc")

        # ---- SFU_M on the finished blocks
        outs = self._finish(p, accs, fin)
        t_end = max(o.t for o in outs)
        assert t_end == self.latency, (t_end, self.latency)
        v_out = p.flag(v_acc, t_end - (tg + 1), "v_fin")
        m.d.comb += self.o.valid.eq(v_out)
        for c, o in enumerate(outs):
            m.d.comb += self.o.payload[c].eq(p.at(o, t_end))
        return m


# ============================================================================================ host side
def pack16(values) -> int:
    """binary16 values (any array-like of float16, or uint16 bits) as one little-endian int (element 0 in
    the low bits): the payload of an `ArrayLayout(16, n)`."""
    a = np.asarray(values)
    a = a.view(np.uint16) if a.dtype == np.float16 else a.astype(np.uint16)
    return int.from_bytes(np.ascontiguousarray(a, "<u2").tobytes(), "little")


def unpack16(word: int, n: int) -> np.ndarray:
    """Inverse of `pack16`: n binary16 values (float16)."""
    return np.frombuffer(int(word).to_bytes(2 * n, "little"), "<u2").astype(np.uint16).view(np.float16)


def mpu_beats(cfg: AccelConfig, x, w, bias=None, scale=None, gelu: bool = False, mask_limit=None):
    """The x and w stream payloads of one matrix instruction y = mpu(x, w, bias, d, scale, gelu, mask_limit),
    in the MPU's beat order (what the operand collector and the weight DMA deliver), as ints.

    x (K,), w (K, N), bias (N,) binary16; scale a binary32 value. Returns (x_words, w_words); the MPU then
    emits ceil(N/l) output beats (`unpack16` each, keep the first N values).
    """
    d, l = cfg.d, cfg.l
    x = np.asarray(x, np.float16)
    w = np.asarray(w, np.float16)
    k, n = w.shape
    if x.shape != (k,):
        raise ValueError(f"x must have shape ({k},) to match w {w.shape}, not {x.shape}")
    kt, nt = tile_grid(k, n, d, l)
    tiles = tile_matrix(w, d, l).reshape(nt, kt, l, d)
    xp = np.zeros(kt * d, np.float16)
    xp[:k] = x
    bp = np.zeros(nt * l, np.float16)
    if bias is not None:
        bp[:n] = np.asarray(bias, np.float16)
    scale_bits = int(np.float32(scale).view(np.uint32)) if scale is not None else 0
    lay = x_layout(cfg)
    xs, ws = [], []
    for j in range(nt):
        mask = 0
        if mask_limit is not None:
            mask = sum(1 << c for c in range(l) if j * l + c > mask_limit)
        fin = {"bias": [int(v) for v in bp[j * l:(j + 1) * l].view(np.uint16)], "has_bias": bias is not None,
               "scale": scale_bits, "scale_en": scale is not None, "gelu": bool(gelu), "mask": mask}
        for i in range(kt):
            xs.append(lay.const({"x": [int(v) for v in xp[i * d:(i + 1) * d].view(np.uint16)],
                                 "last": i == kt - 1, "fin": fin}).as_bits())
            ws.append(pack16(tiles[j, i]))
    return xs, ws
