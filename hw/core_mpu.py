"""The matrix engine: the MPU (hw/mpu.py) with its operand collector, weight streamer and write-back.

One MATRIX instruction (LINEAR, QK, SV, LMHEAD) runs as three concurrent processes around the MPU:

- **weight streamer**: reads the kt x nt weight tiles from HBM, in the MPU's order (column block j, then row
  tile i). A d x l tile is exactly one beat across all pseudo-channels (`tile_bytes == beat_bytes`, true of
  both presets), so every channel gets the same AR stream: for a column-major matrix (weights, K cache) the
  tiles are consecutive beats and go out as bursts (up to 256 beats, never across a 4 KiB boundary); for a
  row-major one (V cache, `rowmajor`) tile (i, j) is at i*nt + j and each is a one-beat burst. Each channel's
  R data lands in its own FIFO; a tile is the concatenation of one beat from every channel (channel 0 in the
  low bits), handed to the MPU's `w` stream. On the pipelined accumulator (`PROFILES["deep"]`) the FP16 tiles
  go in chunks of I column blocks x `ROB_BURST` row tiles (one burst per block) through a reorder buffer that
  hands them over in `hw.mpu.beat_order(kt, nt, I)` (hw/core_rob.py); quantized tiles stay column-major.
- **operand collector**: per beat, in the MPU's order, reads x group i (VBUF entry src+i, lanes past k forced
  to +0) on port A and the bias entry of block j on port B, and builds the MPU's `x` payload with the finishing
  controls (bias lanes, scale S[s], GELU, and the causal mask: lane c of block j is masked when j*l + c > POS)
  and, on the pipelined accumulator, `first`.
- **write-back**: each output beat (l results of block j) is written into VBUF at dst with a lane mask that
  keeps the columns < n.

k = POS+1 with dyn_k, n = POS+1 with dyn_n. Checks before anything moves: weight format 0 (FP16) or one of the
quantized families the engine is built with (`wformats`; anything else: STATUS.illegal_opcode), FP16 weights
inside the HBM capacity and tile-aligned (STATUS.address_range). A quantized instruction (wfmt != 0) goes to its
family's tile fetcher (hw/qfetch.py): the AR generator issues the fetcher's reads instead of the tile stream, the
joined R beats go to the fetcher, and its dequantised binary16 tiles feed the MPU's `w` in the FP16 tiles' order;
the fetcher's descriptor check can still stop the instruction (STATUS.illegal_opcode, address_range). The
controller drives it through the engine contract (hw/core_engine.py).
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

import os

from amaranth import Cat, C, Module, Mux, Signal
from amaranth.hdl import Array
from amaranth.lib import data
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from dfx import isa
from dfx.config import AccelConfig, pipeline_profile
from dfx.errors import ConfigError

from .core_engine import Engine
from .core_rob import ROB_BURST, ChunkWalk, Reorder, interleave, tile_cycles
from .decoder import format_layout
from .dequant import STAGES_300MHZ as DQ_STAGES_300MHZ
from .dma import AXI_ADDR_BITS, BURST_INCR, axi4_signature, hbm_port_names, lane_mask, log2
from .mpu import MPU, STAGES_300MHZ, x_layout
from .qfetch import QuantTiles, family_formats, table_family
from .slr import BROADCAST_SLR_STAGES, slice_chain

# Beats of each HBM channel's R FIFO in the weight streamer (read by dfx.perf.hbm). The AR generator does not wait
# for FIFO space (the memory queues the requests; R back-pressure holds the data), so the FIFO need not cover the
# round trip (Little's law: 36 beats at the U280 HBM's 36-cycle latency, hw/dma.py); it decouples the channels:
# while one pseudo-channel refreshes (tRFC = 260 ns = 52 cycles at 200 MHz, JESD235) every other channel keeps
# filling its FIFO, so that the next channel's refresh is hidden by the beats it ran ahead. 52 beats + the join's
# skew: 64.
WEIGHT_FIFO_BEATS = 64


def check_core_config(owner, cfg: AccelConfig) -> None:
    """What the integrated core needs of a config (both presets have it); the message names the field."""
    problems = []
    if not isinstance(cfg, AccelConfig):
        problems.append(f"cfg must be an AccelConfig, not {cfg!r}")
    elif cfg.tile_bytes != cfg.beat_bytes:
        problems.append(f"AccelConfig.l: the core streams one d x l tile per HBM beat, so tile_bytes "
                        f"({cfg.tile_bytes}) must equal hbm_channels * hbm_width / 8 ({cfg.beat_bytes})")
    elif cfg.l > cfg.d:
        problems.append(f"AccelConfig.l must be <= d ({cfg.d}), not {cfg.l}")
    elif cfg.vpu_width != cfg.d:
        problems.append(f"AccelConfig.vpu_width must equal d ({cfg.d}), not {cfg.vpu_width}")
    if problems:
        owner._MustUse__silence = True
        raise ValueError(problems[0])


class MatrixEngine(Engine):
    """MATRIX instructions; besides `ctl`: POS, S[s] (`scale`), the HBM channel bases and one AXI4 master per
    HBM pseudo-channel."""

    UNIT = isa.Unit.MPU
    ERRORS = ("illegal_opcode", "address_range")
    VBUF_READS = ("ra", "rb")

    # Cycle counts of this engine, read by the performance model's serial-issue mode (dfx.perf.timing). A
    # matrix instruction takes SETUP_CYCLES + the HBM read latency + FEED_CYCLES + `MPU.latency` + one cycle
    # per tile from `start` to `done`.
    SETUP_CYCLES = 5          # SETUP, SETUP2, SETUP3, RANGE, CHECK: the first AR goes out in RUN
    FEED_CYCLES = 2           # an R beat through its channel FIFO (SyncFIFOBuffered) to the MPU's `w` input

    # The MPU's depths in the core (`mpu_params`): "default" (hw.mpu.MPU's defaults: a single-cycle accumulator,
    # column-major tiles) or "deep" (`hw.mpu.STAGES_300MHZ`: the pipelined accumulator, I interleaved blocks).
    # $DFX_RTL_MPU (PROFILE_ENV) replaces PROFILE for the builds and the performance model of one process.
    PROFILES = {"default": {}, "deep": STAGES_300MHZ}
    PROFILE = "default"
    PROFILE_ENV = "DFX_RTL_MPU"

    @classmethod
    def profile(cls) -> str:
        """The MPU profile the core is built with: $DFX_RTL_MPU, else "deep" under the deep pipeline profile
        (`dfx.config.pipeline_profile`), else PROFILE."""
        p = os.environ.get(cls.PROFILE_ENV) or ("deep" if pipeline_profile() == "deep" else cls.PROFILE)
        if p not in cls.PROFILES:
            raise ConfigError(f"{cls.PROFILE_ENV}={p!r}: the MPU profile must be one of {', '.join(cls.PROFILES)}")
        return p

    QTABLES_ENV = "DFX_RTL_QTABLES"

    @classmethod
    def qtables(cls) -> bool:
        """Whether the core's int3 / int4 tile fetchers use one table dequantiser per lane
        (`QuantTiles(tables=True)`: oc groups of G >= d only) instead of d*l element dequantisers: $DFX_RTL_QTABLES
        1; 0 or unset: element dequantisers."""
        v = os.environ.get(cls.QTABLES_ENV) or "0"
        if v not in ("0", "1"):
            raise ConfigError(f"{cls.QTABLES_ENV}={v!r}: must be 0 (element dequantisers) or 1 (table dequantisers "
                             "for int3 and int4)")
        return v == "1"

    @staticmethod
    def default_slr_stages() -> int:
        """The SLR crossing stages the core's matrix engine has: `hw.slr.BROADCAST_SLR_STAGES` under the deep
        pipeline profile, else 0."""
        return BROADCAST_SLR_STAGES if pipeline_profile() == "deep" else 0

    @classmethod
    def mpu_params(cls, cfg: AccelConfig) -> dict:
        """The MPU's keyword arguments in the core (`PROFILES[profile()]`); keyword arguments to the engine
        replace or add to them."""
        return dict(cls.PROFILES[cls.profile()])

    def __init__(self, cfg: AccelConfig, wformats: tuple[str, ...] = (), slr_stages: int | None = None,
                 **mpu_stages):
        """wformats: the quantized weight format families (`hw.qfetch.CORE_FAMILIES`) this core reads, one tile
        fetcher with d*l dequantisers each; () builds the FP16-only engine. mpu_stages: `hw.mpu.MPU`'s keyword
        arguments over `mpu_params(cfg)`; with acc_stages > 0 the FP16 weights are fetched in chunks of
        I = `core_rob.interleave(...)` column blocks x `ROB_BURST` row tiles through a reorder buffer.
        slr_stages (0..4; None: `hw.slr.BROADCAST_SLR_STAGES` under the deep pipeline profile, else 0): full
        register slices (`hw.slr.RegSlice`) on the operand broadcast (the x FIFO to the MPU's `x`, from the HBM's
        SLR to the lanes in the others), and as many plain registers on the joined d x l tile from the channel
        FIFOs to the reorder buffer's memory (`Reorder(lag=...)`: credits, no multiplexer per bit). Latency only:
        the same beats, one per cycle."""
        check_core_config(self, cfg)
        try:
            tables = self.qtables()
        except ValueError:
            self._MustUse__silence = True
            raise
        if slr_stages is None:
            slr_stages = self.default_slr_stages()
        if not isinstance(slr_stages, int) or isinstance(slr_stages, bool) or not 0 <= slr_stages <= 4:
            self._MustUse__silence = True
            raise ValueError(f"slr_stages must be an integer 0..4, not {slr_stages!r}")
        self.slr_stages = slr_stages
        try:
            self.wformats = family_formats(wformats)
        except ValueError:
            self._MustUse__silence = True
            raise
        if cfg.tile_scale and not all(table_family(f) for f in self.wformats):
            self._MustUse__silence = True
            raise ValueError(f"a tile-scaled core (AccelConfig.tile_scale) reads int3 and int4 codes only, not "
                             f"{', '.join(f for f in self.wformats if not table_family(f))}")
        self.mpu = MPU(cfg, **{**self.mpu_params(cfg), **mpu_stages, "tile_scale": cfg.tile_scale})
        self.interleave = interleave(self.mpu.acc_stages, self.mpu.acc_fifo)
        self.rob = (Reorder(16 * cfg.d * cfg.l, self.interleave, lag=slr_stages) if self.interleave > 1
                    else None)
        dq = DQ_STAGES_300MHZ if pipeline_profile() == "deep" else {}
        self.qtiles = [QuantTiles(cfg, f, codes=True) if cfg.tile_scale else
                       QuantTiles(cfg, f, tables=tables and table_family(f), **dq) for f in self.wformats]
        members = {"pos": In(32), "scale": In(32),
                   "hbm_base": In(data.ArrayLayout(AXI_ADDR_BITS, cfg.hbm_channels))}
        for name in hbm_port_names(cfg):
            members[name] = Out(axi4_signature(cfg.hbm_width))
        super().__init__(cfg, members)

    def tile_cycles(self, kt: int, nt: int, quantized: bool = False) -> int:
        """`core_rob.tile_cycles` for this engine's MPU."""
        return tile_cycles(kt, nt, self.mpu.acc_stages, self.mpu.acc_fifo, quantized, lag=self.slr_stages)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        d, l, nch, cb = cfg.d, cfg.l, cfg.hbm_channels, cfg.channel_beat_bytes
        groups = d // l                       # output blocks per VBUF entry
        m.submodules.mpu = mpu = self.mpu
        ports = [getattr(self, nm) for nm in hbm_port_names(cfg)]
        ctl, vbuf = self.ctl, self.ctl.vbuf
        pos = self.pos

        # ---- the instruction, latched at start (fields as `dfx.isa.MATRIX` defines them), and S[s]
        ins = Signal(format_layout(isa.MATRIX))
        dst, src, bias, w, kf, nf = ins.dst, ins.src, ins.bias, ins.w, ins.k, ins.n
        has_bias, gelu, mask, scale_en = ins.has_bias, ins.gelu, ins.mask, ins.scale
        dyn_k, dyn_n, rowmajor, wfmt = ins.dyn_k, ins.dyn_n, ins.rowmajor, ins.wfmt
        scale = Signal(32)
        k, n = Signal(33), Signal(33)
        kt, nt = Signal(30), Signal(30)
        KB = (cfg.hbm_bytes // cfg.tile_bytes).bit_length()      # 2**KB tiles overrun HBM
        KH = (KB + 1) // 2
        pk0, pk1, big = Signal(KB + KH, name="pk0"), Signal(2 * KB - KH, name="pk1"), Signal(name="big")
        # kt * nt in KB + 1 bits (exact below 2**KB tiles; `tbig` when the product reaches 2**KB: it overruns HBM)
        total, tbig = Signal(KB + 1, name="total"), Signal(name="tbig")
        # the tiles HBM holds after the first (HT - beat0, signed: negative when it starts past HBM; `b0big` when
        # beat0 has bits above KB + 1), made in SETUP3 beside total, so RANGE compares once (the 300 MHz depth)
        HT = cfg.hbm_bytes // cfg.tile_bytes
        t_lim, b0big = Signal(KB + 2, name="t_lim"), Signal(name="b0big")
        wbyte = Signal(40)

        # ---- weight streamer: AR generator (all channels in lockstep)
        beat0 = Signal(40)
        # (beat numbers below 2**KB: RANGE stops an instruction whose weights overrun HBM, so the walk's beat
        # registers are KB + 1 bits wide, which keeps their adders short: the 300 MHz depth)
        BW = KB + 1
        ar_left, ar_b, ar_t, ar_i, ar_j = Signal(60), Signal(BW), Signal(48), Signal(30), Signal(30)
        ar_go = Signal()
        b4k = 4096 // cb
        to4k = Signal(range(b4k + 1))
        m.d.comb += to4k.eq(b4k - (ar_b & (b4k - 1)))
        burst = Signal(9)
        arlen = Signal(8)                   # burst - 1
        lin = Mux(ar_left < to4k, ar_left, to4k)
        qs = self.qtiles
        qsel = Signal(max(len(qs), 1))              # the quantized fetcher of this instruction (one-hot)
        qon = qsel.any()
        qreq_valid, qreq_beat, qreq_len = Signal(), Signal(40), Signal(9)
        for q, qt in enumerate(qs):
            with m.If(qsel[q]):
                m.d.comb += [qreq_valid.eq(qt.req.valid), qreq_beat.eq(qt.req.payload.beat),
                             qreq_len.eq(qt.req.payload.len)]
        I, B = self.interleave, ROB_BURST
        if I == 1:
            m.d.comb += [burst.eq(Mux(qon, qreq_len, Mux(rowmajor, 1, Mux(lin > 256, 256, lin)))), arlen.eq(burst - 1)]
            beat = Mux(qon, qreq_beat, Mux(rowmajor, beat0 + ar_t, ar_b))
            ar_want = Mux(qon, qreq_valid, ar_go & (ar_left != 0))
        else:
            # chunks (core_rob.py): block j0+u's rows i0 .. i0+Bc-1 as one run of `seg` beats (column-major: one
            # INCR burst, split at 4 KiB; row-major: one beat per tile, nt apart); tile (i, j) is at beat0 +
            # i*s_row + j*s_blk
            aw = ChunkWalk(m, "arw", kt, nt, I, B)
            gbase, cbase, ubase = Signal(BW), Signal(BW), Signal(BW)
            gstep = Signal(BW)                  # I * s_blk
            # kt * I, a register made every cycle: shifts of kt added (I is a constant of at most 16: no DSP, whose
            # partial products need a carry chain after it; the 300 MHz depth)
            kt_i = Signal(BW)
            m.d.sync += kt_i.eq(sum(kt << b for b in range(I.bit_length()) if I >> b & 1))
            seg = Signal(range(B + 1))
            # seg - 1 as a register kept beside seg (every assignment of seg sets it too; all ones while seg is 0):
            # the page test below then starts from a register, not from a subtraction (the 300 MHz depth)
            seg_d = Signal(len(seg), name="seg_d", init=(1 << len(seg)) - 1)
            # the walk's steps: a block's, a row range's (registers made every cycle, as kt_i)
            s_blk, s_rowb = Signal(30, name="s_blk"), Signal(30 + log2(B), name="s_rowb")
            m.d.sync += [s_blk.eq(Mux(rowmajor, 1, kt)), s_rowb.eq(Mux(rowmajor, nt << log2(B), B))]
            # a column-major run's burst from registers (the 300 MHz depth): `seg` <= beats to the 4 KiB page and
            # those beats, made a cycle after ar_b / seg change (`ar_fresh` low that cycle: such an AR goes out
            # at most every 2nd cycle, of runs of up to B beats); row-major runs go a beat per AR, every cycle
            seg_le, to4k_r, ar_fresh = Signal(), Signal.like(to4k), Signal()
            seg_m1, to4k_m1 = Signal(8, name="seg_m1"), Signal(8, name="to4k_m1")
            # ... and the run's address step after this AR, as valid as they are (row-major: nt, per beat)
            ar_step = Signal(BW)
            # (seg <= to4k as seg - 1 <= to4k - 1, the complement of ar_b's page offset: one carry chain, not the
            # subtraction of to4k before it; seg is at least 1 while the walk runs)
            le = seg_d <= ~ar_b[:log2(b4k)]
            m.d.sync += [seg_le.eq(le), to4k_r.eq(to4k), ar_step.eq(Mux(rowmajor, nt, Mux(le, seg, to4k))),
                         seg_m1.eq(seg - 1), to4k_m1.eq(~ar_b[:log2(b4k)])]
            run_end = Mux(rowmajor, seg == 1, seg_le)              # this AR's burst ends the run
            # the chunk's last block: a register beside a down-counter of the blocks left (as hw/core_rob.py's)
            au_n, au_z = Signal(range(max(I, 2))), Signal()

            def au_load(size):
                v, one = size
                return [au_n.eq(v - 1), au_z.eq(one)]
            m.d.comb += burst.eq(Mux(qon, qreq_len, Mux(rowmajor, 1, Mux(seg_le, seg, to4k_r))))
            # (a column-major run's ARLEN from registers made with seg_le: seg - 1, or the page's beats less one,
            # the complement of ar_b's page offset; the 300 MHz depth)
            m.d.comb += arlen.eq(Mux(qon, qreq_len - 1, Mux(rowmajor, 0, Mux(seg_le, seg_m1, to4k_m1))))
            beat = Mux(qon, qreq_beat, ar_b)
            ar_want = Mux(qon, qreq_valid, ar_go & (rowmajor | ar_fresh))
        accepted = Signal(nch)
        hs_all = Signal()
        hs = []
        for c, p in enumerate(ports):
            h = p.arvalid & p.arready
            hs.append(h)
            m.d.comb += [
                p.arvalid.eq(ar_want & ~accepted[c]),
                p.araddr.eq(self.hbm_base[c] + (beat << log2(cb))),
                p.arlen.eq(arlen), p.arsize.eq(log2(cb)), p.arburst.eq(BURST_INCR),
            ]
        # (every channel has taken this AR or takes it now: accepted | (ar_want & arready), with ar_want out of the
        # 32-input AND, which then reads registers only: the 300 MHz depth)
        m.d.comb += hs_all.eq(ar_want & Cat(*[accepted[c] | ports[c].arready for c in range(nch)]).all())
        if I > 1:
            m.d.sync += ar_fresh.eq(~hs_all)
        for q, qt in enumerate(qs):
            m.d.comb += qt.req.ready.eq(qsel[q] & hs_all)
        with m.If(hs_all):
            m.d.sync += accepted.eq(0)
            if I == 1:
                m.d.sync += [ar_left.eq(ar_left - burst), ar_b.eq(ar_b + burst)]
                with m.If(ar_i + 1 == kt):
                    m.d.sync += [ar_i.eq(0), ar_j.eq(ar_j + 1), ar_t.eq(ar_j + 1)]
                with m.Else():
                    m.d.sync += [ar_i.eq(ar_i + 1), ar_t.eq(ar_t + nt)]
            else:
                with m.If(qon):
                    pass
                with m.Elif(~run_end):                       # the run goes on
                    m.d.sync += [seg.eq(seg - burst), seg_d.eq(seg_d - burst), ar_b.eq(ar_b + ar_step)]
                with m.Elif(~au_z):                          # the next block of the chunk
                    m.d.sync += [au_n.eq(au_n - 1), au_z.eq(au_n == 1), ubase.eq(ubase + s_blk), ar_b.eq(ubase + s_blk),
                                 seg.eq(aw.bc), seg_d.eq(aw.bc - 1)]
                with m.Else():                               # the next chunk
                    aw.advance(m)
                    m.d.sync += au_load(aw.ic_next())
                    with m.If(aw.last):
                        m.d.sync += ar_go.eq(0)
                    with m.Elif(aw.more_rows):               # same blocks, the next rows
                        m.d.sync += [cbase.eq(cbase + s_rowb), ubase.eq(cbase + s_rowb), ar_b.eq(cbase + s_rowb),
                                     seg.eq(Mux(aw.more_rows2, B, aw.rows - B)),
                                     seg_d.eq(Mux(aw.more_rows2, B - 1, aw.rows - (B + 1)))]
                    with m.Else():                           # the next group of blocks
                        m.d.sync += [gbase.eq(gbase + gstep), cbase.eq(gbase + gstep), ubase.eq(gbase + gstep),
                                     ar_b.eq(gbase + gstep), seg.eq(aw.kt_bc), seg_d.eq(aw.kt_bc - 1)]
        with m.Else():
            for c in range(nch):
                with m.If(hs[c]):
                    m.d.sync += accepted[c].eq(1)

        # ---- weight streamer: R FIFOs per channel, joined into tiles
        fifos = []
        for c, p in enumerate(ports):
            fifo = SyncFIFOBuffered(width=8 * cb, depth=WEIGHT_FIFO_BEATS)
            m.submodules[f"wfifo{c}"] = fifo
            fifos.append(fifo)
            m.d.comb += [p.rready.eq(fifo.w_rdy), fifo.w_en.eq(p.rvalid), fifo.w_data.eq(p.rdata),
                         p.bready.eq(1)]
        # `tile_ok`: every channel FIFO holds a beat at its output, a register made a cycle ahead (the 300 MHz
        # depth: no AND of the 32 outputs before their reads). Exact: a SyncFIFOBuffered's output holds a beat next
        # cycle iff its memory holds one (level > r_rdy), when read now, else iff that or it holds one now.
        tile_ok, take = Signal(name="tile_ok"), Signal()
        inner = [fi.level != fi.r_rdy for fi in fifos]
        m.d.sync += tile_ok.eq(Mux(take, Cat(*inner).all(), Cat(*[x | fi.r_rdy for x, fi in zip(inner, fifos)]).all()))
        joined = Cat(*[fi.r_data for fi in fifos])
        beat_ready = Signal()
        rob_start = Signal()
        wtile = mpu.w.payload.tile if mpu.tile_scale else mpu.w.payload      # FP16 tiles: scale_en stays 0
        if I == 1:
            m.d.comb += [mpu.w.valid.eq(tile_ok & ~qon), wtile.eq(joined), beat_ready.eq(mpu.w.ready)]
        else:                                       # FP16 tiles through the reorder buffer (chunk -> MPU order)
            m.submodules.rob = rob = self.rob
            m.d.comb += [rob.start.eq(rob_start), rob.kt.eq(kt), rob.nt.eq(nt),
                         rob.i.valid.eq(tile_ok & ~qon), rob.i.payload.eq(joined), beat_ready.eq(rob.i.ready),
                         mpu.w.valid.eq(rob.o.valid & ~qon), wtile.eq(rob.o.payload),
                         rob.o.ready.eq(mpu.w.ready & ~qon)]
        m.d.comb += take.eq(tile_ok & beat_ready)
        for fi in fifos:
            m.d.comb += fi.r_en.eq(take)

        # ---- quantized weights (hw/qfetch.py): the joined beats go to the instruction's tile fetcher, whose
        # dequantised binary16 tiles feed the MPU's `w` in place of the FP16 beats
        qstart = Signal()
        qstat_ok, qstat_fmt, qstat_range, qstat_valid = Signal(), Signal(), Signal(), Signal()
        for q, qt in enumerate(qs):
            m.submodules[f"qtiles_{qt.family}"] = qt
            m.d.comb += [qt.start.eq(qstart & qsel[q]), qt.base.eq(wbyte), qt.wfmt.eq(wfmt), qt.k.eq(k),
                         qt.n.eq(n), qt.kt.eq(kt), qt.nt.eq(nt),
                         qt.beat.valid.eq(tile_ok & qsel[q]), qt.beat.payload.eq(joined)]
            with m.If(qsel[q]):
                if mpu.tile_scale:                  # the codes and their lanes' scales
                    m.d.comb += [wtile.eq(qt.tile.payload.tile), mpu.w.payload.scale.eq(qt.tile.payload.scale),
                                 mpu.w.payload.scale_en.eq(1)]
                else:
                    m.d.comb += wtile.eq(qt.tile.payload)
                m.d.comb += [beat_ready.eq(qt.beat.ready), mpu.w.valid.eq(qt.tile.valid), qt.tile.ready.eq(mpu.w.ready),
                             qstat_valid.eq(qt.status.valid), qstat_ok.eq(qt.status.ok),
                             qstat_fmt.eq(qt.status.bad_fmt), qstat_range.eq(qt.status.bad_range)]

        # ---- operand collector
        # x groups in the MPU's beat order (`hw.mpu.beat_order(kt, nt, Ix)`): Ix = I blocks of an FP16 matrix
        # interleaved group by group, one block at a time for a quantized one (its fetcher streams column-major)
        # (5 entries: an entry's credit comes back a cycle after its read, below, and a VBUF read reaches the FIFO's
        # output three cycles after it is issued, so 5 keep one operand group per cycle going)
        xdepth = 5
        acc = self.mpu.acc_stages > 0
        lay = x_layout(cfg, first=acc)
        m.submodules.xfifo = xfifo = SyncFIFOBuffered(width=lay.size, depth=xdepth)
        x_go = Signal()
        xi, xj0 = Signal(30), Signal(30)
        xu = Signal(range(max(I, 2)))
        xj = Signal(30)                     # xj0 + xu, a register kept beside them (the 300 MHz depth: no add into
                                            # the bias read's address)
        ix = Mux(qon, 1, I) if I > 1 else 1
        # the walk's tests from registers (the 300 MHz depth): blocks in this group (xic), xi the last row group,
        # this group the last
        xic, xi_last, xj_end = Signal(range(max(I, 2) + 1)), Signal(), Signal()
        xu_last = Signal()                  # xu + 1 >= xic: this block the group's last (a register beside xu)

        # ... and the counts they test: the row groups after xi (xi_left), the blocks after this group (xrem)
        xi_left, xrem, kt_m1 = Signal(30), Signal(30), Signal(30)

        # the walk's first tests, registered in RANGE (ix as it will be: 1 for a quantized matrix)
        xic0, xi_last0, xj_end0, xrem0 = Signal.like(xic), Signal(), Signal(), Signal(30)
        ix0 = Mux(wfmt != 0, 1, I) if I > 1 else 1

        def x_start():
            return [x_go.eq(1), xi.eq(0), xj0.eq(0), xu.eq(0), xj.eq(0), xu_last.eq(xic0 <= 1), xic.eq(xic0), xi_last.eq(xi_last0),
                    xj_end.eq(xj_end0), xi_left.eq(kt_m1), xrem.eq(xrem0)]

        def x_first():
            return [xic0.eq(Mux(nt > ix0, ix0, nt)), xi_last0.eq(kt == 1), xj_end0.eq(ix0 >= nt),
                    xrem0.eq(Mux(nt > ix0, nt - ix0, 0)), kt_m1.eq(kt - 1)]
        pend, pend_i, pend_j, pend_last = Signal(), Signal(30), Signal(30), Signal()
        # the read goes when the FIFO will have room, from registers (the 300 MHz depth): `can_r`, made a cycle
        # ahead from the entries then held or on their way (level + pend) and that cycle's read (can), not counting
        # that cycle's FIFO read (so it is late by one read: never too early)
        can_r = Signal(name="x_can_r")
        can = x_go & can_r
        m.d.sync += [pend.eq(can), can_r.eq(xfifo.level + pend + can < xdepth)]
        with m.If(can):
            m.d.comb += [vbuf.ra_en.eq(1), vbuf.ra_addr.eq(src + xi),
                         vbuf.rb_en.eq(1), vbuf.rb_addr.eq(bias + (xj >> log2(groups)))]
            m.d.sync += [pend_i.eq(xi), pend_j.eq(xj), pend_last.eq(xi_last)]
            with m.If(xu_last):
                m.d.sync += xu.eq(0)
                with m.If(xi_last):
                    m.d.sync += [xi.eq(0), xj0.eq(xj0 + ix), xj.eq(xj0 + ix), xi_last.eq(kt_m1 == 0), xi_left.eq(kt_m1),
                                 xic.eq(Mux(xrem > ix, ix, xrem)), xu_last.eq(Mux(xrem > ix, ix <= 1, xrem <= 1)),
                                 xj_end.eq(xrem <= ix), xrem.eq(Mux(xrem > ix, xrem - ix, 0))]
                    with m.If(xj_end):
                        m.d.sync += x_go.eq(0)
                with m.Else():
                    m.d.sync += [xi.eq(xi + 1), xi_left.eq(xi_left - 1), xi_last.eq(xi_left == 1),
                                 xu_last.eq(xic <= 1), xj.eq(xj0)]
            with m.Else():
                m.d.sync += [xu.eq(xu + 1), xj.eq(xj + 1), xu_last.eq(xu + 2 >= xic)]
        xp = Signal(lay)
        row0 = pend_i << log2(d)
        col0 = pend_j << log2(l)
        for r in range(d):
            m.d.comb += xp.x[r].eq(Mux(row0 + r < k, vbuf.ra_data[16 * r:16 * r + 16], 0))
        bgroups = Array(vbuf.rb_data[16 * l * g:16 * l * (g + 1)] for g in range(groups))
        bsel = Signal(16 * l)
        m.d.comb += bsel.eq(bgroups[pend_j & (groups - 1)])
        for c in range(l):
            m.d.comb += [
                xp.fin.bias[c].eq(Mux(col0 + c < n, bsel[16 * c:16 * c + 16], 0)),
                xp.fin.mask[c].eq(mask & (col0 + c > pos)),
            ]
        m.d.comb += [
            xp.last.eq(pend_last),
            *([xp.first.eq(pend_i == 0)] if acc else []),
            xp.fin.has_bias.eq(has_bias), xp.fin.scale.eq(scale), xp.fin.scale_en.eq(scale_en),
            xp.fin.gelu.eq(gelu),
            xfifo.w_en.eq(pend), xfifo.w_data.eq(xp.as_value()),
            *([] if self.slr_stages else [mpu.x.valid.eq(xfifo.r_rdy), mpu.x.payload.eq(xfifo.r_data),
                                          xfifo.r_en.eq(mpu.x.ready)]),
        ]
        if self.slr_stages:                         # the operand broadcast through its SLR slices
            x_ready = Signal()
            xv, far_ready, xd = slice_chain(m, "x_slr", self.slr_stages, xfifo.r_rdy, x_ready, xfifo.r_data, lay.size)
            m.d.comb += [mpu.x.valid.eq(xv), mpu.x.payload.eq(xd), far_ready.eq(mpu.x.ready), xfifo.r_en.eq(x_ready)]

        # ---- write-back
        jo = Signal(30)
        jo_last = Signal()                          # jo is the last block (jo + 1 == nt), from registers
        out_go = Signal()
        m.d.comb += mpu.o.ready.eq(vbuf.w_rdy)        # the shared VBUF write port (hw/buffers.py)
        g = Signal(range(max(groups, 2)))           # the block's group in the VBUF entry
        m.d.comb += g.eq(jo & (groups - 1))
        lanes = Signal(l)                           # the block's live columns ((jo << log2 l) + c < n), registered
        # from registers (the 300 MHz depth): the blocks after jo (jo_left), the last block's live columns
        # (lanes_end), the entry jo writes (waddr)
        jo_left, lanes_end = Signal(30), Signal(l)
        waddr = Signal.like(vbuf.w_addr)

        def out_first():
            """The write-back's registers for block 0 (set in RANGE, from n, nt and dst)."""
            rem = n[:log2(l)] if l > 1 else C(0, 1)
            end = Cat(*[(rem == 0) | (c < rem) for c in range(l)])
            return [jo.eq(0), jo_left.eq(nt - 1), jo_last.eq(nt == 1), lanes_end.eq(end),
                    lanes.eq(Mux(nt == 1, end, (1 << l) - 1)), waddr.eq(dst)]
        out_req = out_go & mpu.o.valid
        out_fire = out_req & vbuf.w_rdy
        m.d.comb += vbuf.w_req.eq(out_req)
        with m.If(out_req):
            # group g of the entry (a part select: the rest stays 0; no variable shift, which Amaranth would
            # widen by 2**width(amount) past its 65,536-bit net limit at d=64, l=16)
            m.d.comb += [
                vbuf.w_addr.eq(waddr),
                vbuf.w_en.word_select(g, l).eq(lanes),
                vbuf.w_data.word_select(g, 16 * l).eq(mpu.o.payload.as_value()),
            ]
        with m.If(out_fire):
            m.d.sync += [jo.eq(jo + 1), jo_left.eq(jo_left - 1), jo_last.eq(jo_left == 1),
                         lanes.eq(Mux(jo_left == 1, lanes_end, (1 << l) - 1))]
            with m.If(g == groups - 1):
                m.d.sync += waddr.eq(waddr + 1)

        # ---- control
        quant, illegal, bad, no_tiles = Signal(), Signal(), Signal(), Signal()     # RANGE's checks
        qnext = Signal.like(qsel)
        m.d.comb += ctl.busy.eq(1)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += ctl.busy.eq(0)
                with m.If(ctl.start):
                    m.d.sync += [ins.eq(ctl.word.matrix), scale.eq(self.scale)]
                    m.next = "SETUP"
            with m.State("SETUP"):
                kk = Mux(dyn_k, pos + 1, kf)
                nn = Mux(dyn_n, pos + 1, nf)
                # the tile counts with one adder each (the 300 MHz depth): ceil((pos + 1) / d) = (pos + d) / d, and
                # a static k of 0 counts one tile
                ktt = Mux(dyn_k, (pos + d) >> log2(d), Mux(kf == 0, 1, (kf + d - 1) >> log2(d)))
                ntt = Mux(dyn_n, (pos + l) >> log2(l), (nf + l - 1) >> log2(l))
                m.d.sync += [k.eq(kk), n.eq(nn), kt.eq(ktt), nt.eq(ntt), wbyte.eq(w << log2(isa.HBM_UNIT))]
                m.next = "SETUP2"
            # total = kt * nt over registers (the 300 MHz depth): two partial products of kt's and nt's low KB bits
            # (one DSP48E2 each, registered), summed in SETUP3; a factor of KB bits or more makes the weights
            # overrun HBM (`big`, an address_range error), so only such products are inexact
            with m.State("SETUP2"):
                m.d.sync += [pk0.eq(kt[:KB] * nt[:KH]), pk1.eq(kt[:KB] * nt[KH:KB]),
                             big.eq(((kt >> KB) != 0) & (nt != 0) | ((nt >> KB) != 0)),
                             beat0.eq(wbyte >> log2(cfg.beat_bytes))]
                m.next = "SETUP3"
            with m.State("SETUP3"):
                lo = pk0[:KB + 1] + (pk1 << KH)[:KB + 1]       # (KB + 2 bits: one short adder, the 300 MHz depth)
                m.d.sync += [total.eq(lo), tbig.eq((lo >> KB != 0) | (pk0 >> (KB + 1) != 0)
                                                    | ((pk1 << KH) >> (KB + 1) != 0)),
                             t_lim.eq(C(HT, KB + 2) - beat0[:KB + 1]), b0big.eq(beat0 >> (KB + 1) != 0)]
                m.next = "RANGE"
            with m.State("RANGE"):
                # the checks into registers, so that CHECK decides from registers alone (the 300 MHz depth)
                built = Cat(*[wfmt == c for qt in qs for c in qt.wfmt_codes], C(0, 1))
                m.d.sync += [
                    quant.eq(wfmt != 0), illegal.eq((wfmt != 0) & ~built.any()), no_tiles.eq(nt == 0),
                    bad.eq((wfmt == 0) & ((wbyte & (cfg.beat_bytes - 1)).any()
                                          | big | tbig | b0big | t_lim[-1] | (total > t_lim))),
                    *[qnext[q].eq(Cat(*[wfmt == c for c in qt.wfmt_codes]).any()) for q, qt in enumerate(qs)],
                    *x_first(), *out_first(),
                ]
                m.next = "CHECK"
            with m.State("CHECK"):
                with m.If(quant & ~illegal & ~no_tiles):
                    m.d.sync += qsel.eq(qnext)
                    m.next = "QSTART"
                with m.Elif(illegal | bad):
                    m.d.comb += [ctl.done.eq(1), ctl.err.illegal_opcode.eq(illegal),
                                 ctl.err.address_range.eq(~illegal)]
                    m.next = "IDLE"
                with m.Elif(no_tiles):
                    m.d.comb += ctl.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [ar_go.eq(1), ar_left.eq(total), ar_b.eq(beat0), ar_t.eq(0), ar_i.eq(0),
                                 ar_j.eq(0), accepted.eq(0),
                                 *x_start(), out_go.eq(1)]
                    if I > 1:
                        m.d.comb += rob_start.eq(1)
                        aw.start(m)
                        m.d.sync += [gbase.eq(beat0), cbase.eq(beat0), ubase.eq(beat0),
                                     seg.eq(aw.kt_bc), seg_d.eq(aw.kt_bc - 1), gstep.eq(Mux(rowmajor, I, kt_i)),
                                     ar_fresh.eq(0), *au_load(aw.first()[1])]
                    m.next = "RUN"
            with m.State("QSTART"):
                m.d.comb += qstart.eq(1)
                m.next = "QDESC"
            with m.State("QDESC"):                    # the fetcher reads and checks the region's descriptor
                with m.If(qstat_valid & ~qstat_ok):
                    m.d.comb += [ctl.done.eq(1), ctl.err.illegal_opcode.eq(qstat_fmt),
                                 ctl.err.address_range.eq(qstat_range)]
                    m.d.sync += qsel.eq(0)
                    m.next = "IDLE"
                with m.Elif(qstat_valid):
                    m.d.sync += [*x_start(), out_go.eq(1)]
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(out_fire & jo_last):
                    m.d.sync += [ar_go.eq(0), x_go.eq(0), out_go.eq(0), qsel.eq(0)]
                    m.d.comb += ctl.done.eq(1)
                    m.next = "IDLE"
        return m
