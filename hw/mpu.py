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
from amaranth.hdl import Array
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from dfx.config import AccelConfig
from dfx.program import tile_grid, tile_matrix

from .fp import ADD_MAX_STAGES, DSP_MODES, MUL16_CUTS, MUL32_CUTS, fp16_mul, fp32_add, fp32_mul, fp32_to_fp16, widen16
from .pipe import Pipe, T, check_stages
from .sfu import gelu16

NEG_INF16 = 0xFC00
# The pipeline depths for a 300 MHz clock (docs/rtl.md, "Logic depth"): every operator cut, the pipelined
# accumulator with room for the acc_stages + 2 interleaved column blocks it needs for one tile per cycle.
STAGES_300MHZ = dict(mul_stages=len(MUL16_CUTS), add_stages=ADD_MAX_STAGES, fin_mul_stages=len(MUL32_CUTS),
                     acc_stages=ADD_MAX_STAGES, acc_fifo=16)


def tile_layout(cfg: AccelConfig) -> data.ArrayLayout:
    """One d x l binary16 weight tile, [lane][row] (lane 0's d weights in the low bits)."""
    return data.ArrayLayout(data.ArrayLayout(16, cfg.d), cfg.l)


def w_layout(cfg: AccelConfig, tile_scale: bool = False) -> data.Layout:
    """The w stream's payload: one tile (`tile_layout`); with `tile_scale` also l binary16 `scale`s (lane c's
    tree sum is multiplied by scale[c] before the accumulator) and `scale_en` (0: the tree sums as they are, an
    FP16 tile)."""
    if not tile_scale:
        return tile_layout(cfg)
    return data.StructLayout({"tile": tile_layout(cfg), "scale": data.ArrayLayout(16, cfg.l), "scale_en": 1})


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


def x_layout(cfg: AccelConfig, first: bool = False) -> data.StructLayout:
    """The x stream's payload; with `first` (the pipelined accumulator, `acc_stages` > 0) it also carries
    `first`: the group is the first of its output block."""
    fields = {"x": data.ArrayLayout(16, cfg.d), "last": 1, "fin": finish_layout(cfg)}
    if first:
        fields["first"] = 1
    return data.StructLayout(fields)


def out_layout(cfg: AccelConfig) -> data.ArrayLayout:
    return data.ArrayLayout(16, cfg.l)


def adder_tree(p: Pipe, values: list, add_stages: int, dsp: str | None = None) -> T:
    """The MPU's pairwise binary32 tree over a power-of-two number of values (`numerics.tree_sum`'s order);
    `dsp`: the adders' DSP48E2 mode (`fp.fp32_add`)."""
    assert len(values) & (len(values) - 1) == 0, len(values)
    while len(values) > 1:
        values = [fp32_add(p, values[2 * i], values[2 * i + 1], add_stages, dsp=dsp)
                  for i in range(len(values) // 2)]
    return values[0]


class MPU(wiring.Component):
    """Matrix unit for `cfg` (d-wide trees, l lanes). See the module docstring for streams and order.

    Parameters: mul_stages (0..3) for the binary16 multipliers, add_stages (0..ADD_MAX_STAGES) for every
    pipelined binary32 adder (tree, bias), fin_mul_stages (0..4) for the scale multiply, gelu (include the
    per-lane GELU units; without them the `gelu` control is ignored), acc_stages (0..ADD_MAX_STAGES, with
    acc_fifo) for the group accumulator:

    - acc_stages=0: a single-cycle adder in a feedback loop; any beat order of `tile_matrix`'s kind (each
      block's groups consecutive) runs at one tile per cycle, through a long combinational path;
    - acc_stages=A > 0: a pipelined accumulator adder. Partial sums wait in a per-lane FIFO of `acc_fifo`
      entries and are taken back in the order they were made, so the x stream carries `first` (x_layout(cfg,
      first=True)) and the beat order may interleave up to `acc_fifo` output blocks group by group
      (`beat_order`): group i of blocks j0..j1, then group i+1 of the same blocks, ... The accumulation of
      each block stays in order ((+0 + g0) + g1) + ...; the unit stalls its input while a group's partial
      sum is still in the adder (A stages after a register on its operands), so it runs at one tile per cycle
      when at least A + 2 blocks are interleaved, and correctly (slower) with fewer.

    tile_scale: the w stream carries a binary16 scale per lane and a `scale_en` bit with every tile
    (`w_layout`); with scale_en the lane's tree sum is multiplied by widen16(scale) (`fp.fp32_mul`, RNE, with
    fin_mul_stages cuts) before the accumulator: `numerics.mpu_matvec`'s tile_scale, the core's tile-scaled
    integer weights (`AccelConfig.tile_scale`: the tiles hold the codes, exact in binary16). Without scale_en
    (FP16 tiles) the sum passes unchanged, delayed to the same stage: `tree_latency` includes the multiply.

    dsp_add ("model", the default; "primitive"; None): the tree and accumulator adders with their alignment
    and wide add in two DSP48E2 each (`fp.fp32_add`'s `dsp`; "model" simulates and Vivado infers the slices
    from it, "primitive" instantiates them for synthesis only; None: LUTs and carry chains, about 190 more
    LUTs per adder for 2 fewer DSP48E2, docs/rtl.md). The results and the latency are the LUT adders'; the
    bias adder stays in LUTs.
    """

    def __init__(self, cfg: AccelConfig, *, mul_stages: int = 1, add_stages: int = 2, fin_mul_stages: int = 2,
                 gelu: bool = True, acc_stages: int = 0, acc_fifo: int = 8, dsp_add: str | None = "model",
                 tile_scale: bool = False):
        if not isinstance(cfg, AccelConfig):
            self._MustUse__silence = True
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        check_stages(self, mul_stages=(mul_stages, len(MUL16_CUTS)), add_stages=(add_stages, ADD_MAX_STAGES),
                     fin_mul_stages=(fin_mul_stages, len(MUL32_CUTS)), acc_stages=(acc_stages, ADD_MAX_STAGES))
        if acc_fifo not in (2, 4, 8, 16, 32):
            self._MustUse__silence = True
            raise ValueError(f"acc_fifo must be one of 2, 4, 8, 16, 32, not {acc_fifo!r}")
        if acc_stages and mul_stages + add_stages == 0:
            self._MustUse__silence = True
            raise ValueError("acc_stages > 0 needs a registered tree (mul_stages + add_stages >= 1)")
        if dsp_add not in DSP_MODES:
            self._MustUse__silence = True
            raise ValueError(f"dsp_add must be one of {', '.join(map(repr, DSP_MODES))}, not {dsp_add!r}")
        self.acc_stages, self.acc_fifo, self.dsp_add = acc_stages, acc_fifo, dsp_add
        self.cfg = cfg
        self.mul_stages, self.add_stages, self.fin_mul_stages = mul_stages, add_stages, fin_mul_stages
        self.has_gelu = gelu
        self.tile_scale = bool(tile_scale)
        self.tree_latency = (mul_stages + add_stages * (cfg.d.bit_length() - 1)
                             + (fin_mul_stages if self.tile_scale else 0))
        super().__init__({
            "x": In(stream.Signature(x_layout(cfg, first=acc_stages > 0))),
            "w": In(stream.Signature(w_layout(cfg, self.tile_scale))),
            "o": Out(stream.Signature(out_layout(cfg))),
        })
        self.latency = self._finish_latency() + self.tree_latency + acc_stages + 1

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
                g = gelu16(p, h, self.add_stages, min(self.fin_mul_stages, len(MUL32_CUTS)))
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
        ce = Signal()                                   # the back end: accumulator, SFU_M, output
        m.d.comb += ce.eq(~self.o.valid | self.o.ready)
        ce_f = Signal()                                 # the front end: multipliers and trees
        stall = Signal()                                # (only the pipelined accumulator drives it)
        m.d.comb += ce_f.eq(ce & ~stall)
        fire = Signal()
        m.d.comb += [
            fire.eq(self.x.valid & self.w.valid & ce_f),
            self.x.ready.eq(ce_f & self.w.valid),
            self.w.ready.eq(ce_f & self.x.valid),
        ]
        p = Pipe(m, ce_f)

        # ---- products and trees (stage 0 .. tree_latency)
        xs = [T(self.x.payload.x[r], 0) for r in range(cfg.d)]
        tile = self.w.payload.tile if self.tile_scale else self.w.payload
        sums = []
        for c in range(cfg.l):
            prods = [fp16_mul(p, xs[r], T(tile[c][r], 0), self.mul_stages) for r in range(cfg.d)]
            g = adder_tree(p, prods, self.add_stages, self.dsp_add)
            if self.tile_scale:                         # * the tile's scale (the narrow operand: 11 bits)
                s32 = T(widen16(self.w.payload.scale[c]), 0)
                gs = fp32_mul(p, s32, g, self.fin_mul_stages, a_bits=11)
                t, (gv, sv, en) = p.sync(g, gs, T(self.w.payload.scale_en, 0))
                g = T(Mux(en, sv, gv), t)
            sums.append(g)
        tg = self.tree_latency
        assert all(s.t == tg for s in sums)

        v_g = p.flag(fire, tg, "v_tree")                # valid bits have a reset; data registers none
        last_g = p.at(T(self.x.payload.last, 0), tg)
        fin_g = p.at(T(self.x.payload.fin, 0), tg)
        if self.acc_stages:
            pb, t_acc, accs, fin, v_acc = self._pipelined_acc(m, ce, stall, sums, v_g, last_g, fin_g,
                                                              p.at(T(self.x.payload.first, 0), tg))
        else:
            pb, t_acc, accs, fin, v_acc = self._loop_acc(m, p, ce, sums, v_g, last_g, fin_g)

        # ---- SFU_M on the finished blocks
        outs = self._finish(pb, accs, fin)
        t_end = max(o.t for o in outs)
        assert t_end - t_acc + tg + self.acc_stages + 1 == self.latency, (t_end, self.latency)
        v_out = pb.flag(v_acc, t_end - t_acc, "v_fin")
        m.d.comb += self.o.valid.eq(v_out)
        for c, o in enumerate(outs):
            m.d.comb += self.o.payload[c].eq(pb.at(o, t_end))
        return m

    def _loop_acc(self, m, p, ce, sums, v_g, last_g, fin_g):
        """acc = (first ? +0 : acc) + g: one single-cycle adder per lane in a feedback loop."""
        tg = self.tree_latency
        first = Signal(init=1)
        accs = []
        for c in range(self.cfg.l):
            acc = Signal(32, name=f"acc_{c}")
            a_in = Mux(first, C(0, 32), acc)
            nxt = fp32_add(p, a_in, sums[c].v, stages=0, dsp=self.dsp_add)
            with m.If(ce & v_g):
                m.d.sync += acc.eq(nxt.v)
            accs.append(T(acc, tg + 1))
        with m.If(ce & v_g):
            m.d.sync += first.eq(last_g)
        fin = T(p.reg(fin_g, "fin"), tg + 1)
        v_acc = p.flag(v_g & last_g, 1, "v_acc")
        return p, tg + 1, accs, fin, v_acc

    def _pipelined_acc(self, m, ce, stall, sums, v_g, last_g, fin_g, first_g):
        """A = acc_stages-deep adders; partial sums in per-lane FIFOs (shared pointers), taken back in the
        order they were made. The beat at the tree output waits (`stall`) while it needs a partial sum that
        is not in the FIFO yet, or would open more blocks than the FIFO holds."""
        a, depth = self.acc_stages, self.acc_fifo
        pb = Pipe(m, ce)                                # stage 0: the accumulator's input
        rd, wr = Signal(range(depth), name="accq_rd"), Signal(range(depth), name="accq_wr")
        count, opened = Signal(range(depth + 1), name="accq_count"), Signal(range(depth + 1), name="acc_open")
        # count == 0 and opened == depth as registers of their own, updated from the current counts (the
        # stall -> accept -> count path then has no compare after the counter)
        empty, full = Signal(init=1, name="accq_empty"), Signal(name="acc_full")
        need = v_g & ~first_g
        opens = v_g & first_g & ~last_g
        m.d.comb += stall.eq((need & empty) | (opens & full))
        go = Signal()
        m.d.comb += go.eq(ce & v_g & ~stall)
        pop = go & ~first_g
        v_res = pb.flag(go, a + 1, "v_accr")
        last_res = pb.at(T(last_g, 0), a + 1)
        push = Signal()
        m.d.comb += push.eq(ce & v_res & ~last_res)
        accs = []
        for c in range(self.cfg.l):
            q = Array(Signal(32, name=f"accq_{c}_{k}", reset_less=True) for k in range(depth))
            a_in = T(pb.reg(Mux(first_g, C(0, 32), q[rd]), "acc_a"), 1)     # operands registered first:
            res = fp32_add(pb, a_in, T(pb.reg(sums[c].v, "acc_b"), 1), a, dsp=self.dsp_add)   # FIFO read: a path

            with m.If(push):
                m.d.sync += q[wr].eq(res.v)
            accs.append(res)
        with m.If(pop):
            m.d.sync += rd.eq(rd + 1)
        with m.If(push):
            m.d.sync += wr.eq(wr + 1)
        m.d.sync += count.eq(count + push - pop)
        with m.If(push & ~pop):
            m.d.sync += empty.eq(0)
        with m.Elif(pop & ~push):
            m.d.sync += empty.eq(count == 1)
        with m.If(go & first_g & ~last_g):
            m.d.sync += [opened.eq(opened + 1), full.eq(opened == depth - 1)]
        with m.Elif(go & ~first_g & last_g):
            m.d.sync += [opened.eq(opened - 1), full.eq(0)]
        fin = T(pb.at(T(fin_g, 0), a + 1), a + 1)
        return pb, a + 1, accs, fin, v_res & last_res


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


def beat_order(kt: int, nt: int, interleave: int = 1) -> list[tuple[int, int]]:
    """(block j, group i) of every beat: blocks taken `interleave` at a time, group by group (1: the
    column-major order of `tile_matrix`, each block's kt groups in a row)."""
    out = []
    for j0 in range(0, nt, interleave):
        js = range(j0, min(j0 + interleave, nt))
        out += [(j, i) for i in range(kt) for j in js]
    return out


def mpu_beats(cfg: AccelConfig, x, w, bias=None, scale=None, gelu: bool = False, mask_limit=None,
              interleave: int = 1, first: bool = False, tile_scale=None, scaled: bool = False):
    """The x and w stream payloads of one matrix instruction y = mpu(x, w, bias, d, scale, gelu, mask_limit),
    in the MPU's beat order (what the operand collector and the weight DMA deliver), as ints. `interleave`
    and `first`: the order and x layout of an MPU with a pipelined accumulator (`beat_order`; first=True
    adds the `first` flag to x).

    x (K,), w (K, N), bias (N,) binary16; scale a binary32 value. Returns (x_words, w_words); the MPU then
    emits ceil(N/l) output beats (`unpack16` each, keep the first N values). `scaled`: w words in the layout of
    an MPU built with tile_scale (`w_layout(cfg, True)`), with `tile_scale` ((ceil(K/d), N) binary16: row tile
    i's scale of column c) and scale_en set, or (None) scale_en clear.
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
    lay = x_layout(cfg, first=first)
    fins = []
    for j in range(nt):
        mask = 0
        if mask_limit is not None:
            mask = sum(1 << c for c in range(l) if j * l + c > mask_limit)
        fins.append({"bias": [int(v) for v in bp[j * l:(j + 1) * l].view(np.uint16)], "has_bias": bias is not None,
                     "scale": scale_bits, "scale_en": scale is not None, "gelu": bool(gelu), "mask": mask})
    ts = np.zeros((kt, nt * l), np.float16)
    if tile_scale is not None:
        ts[:, :n] = np.asarray(tile_scale, np.float16)
    wlay = w_layout(cfg, True)
    xs, ws = [], []
    for j, i in beat_order(kt, nt, interleave):
        beat = {"x": [int(v) for v in xp[i * d:(i + 1) * d].view(np.uint16)], "last": i == kt - 1, "fin": fins[j]}
        if first:
            beat["first"] = i == 0
        xs.append(lay.const(beat).as_bits())
        if scaled:
            ws.append(pack16(tiles[j, i]) | (pack16(ts[i, j * l:(j + 1) * l]) << (16 * d * l))
                      | (int(tile_scale is not None) << (16 * d * l + 16 * l)))
            assert wlay.size == 16 * d * l + 16 * l + 1
        else:
            ws.append(pack16(tiles[j, i]))
    return xs, ws
