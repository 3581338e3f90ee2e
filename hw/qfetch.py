"""The quantized weight path of the matrix engine: one `QuantTiles` per format family the core is built with
(`CORE_FAMILIES`) reads a quantized matrix's HBM region (`dfx.formats.RegionLayout`) and hands the MPU the
binary16 tiles the functional simulator multiplies with, bit for bit.

Per instruction:

1. **Descriptor.** One beat read at the region start, which must be on a beat (`cfg.beat_bytes`; the compiler
   places every matrix on one, `compiler.allocate`; elsewhere `bad_range`); the 64-byte descriptor is checked against the instruction
   and this build: magic, `wfmt`, `bits`, k and n equal to the instruction's, group 0 (the whole axis), 32, 64 or
   128, zero points only for int, for per-input-channel (ic) groups k a multiple of d, and a phase (the position
   of element 0 of the group axis in its group: a column piece of a matrix cut mid-group, `dfx.formats.piece_phase`)
   of 0, or inside a group and a multiple of l (ic: a column block then never straddles two groups) or of d (oc:
   a row tile never straddles two groups). Anything else
   reports `bad_fmt` (the engine stops with STATUS.illegal_opcode); a region past the end of HBM reports
   `bad_range` (STATUS.address_range). The axis, group size and zero points are runtime choices.
2. **Three byte streams** out of the region: codes (from byte 64, `tile_code_bytes` per tile, tiles in the MPU's
   order), scale blocks and, for `-asym`, zero-point blocks (uint8). Per output channel (oc) the blocks
   `(nt, R, [Q,] l)` are read front to back, one linear run; per input channel (ic) each column block j reads the
   K scales of its column group (a segment), again for every block of the group. Each stream has its own beat
   FIFO; the request generator issues INCR bursts (never across a channel's 4 KiB page) for a stream only when
   its FIFO has room for the whole burst (credits), so the R data of one stream never blocks another's (the AXI
   read data come back in request order; a tag FIFO routes each beat to its stream). A request is held in a
   register until every channel has taken it.
3. **Gearboxes** cut each stream into pieces (a tile's codes, a scale block, a zero block): a piece may straddle
   two beats (INT3, BCQ3, or parts that start mid-beat at the `dfx` preset's 2 KiB beats). Scale and zero blocks
   start at any 64 bytes; a tile's codes only at the descriptor's 64 bytes past a multiple of
   gcd(tile code bytes, beat) (the region on a beat), so their choice has beat / gcd positions (INT4 at the
   `dfx` preset: 4 of 512 bytes, where any 64 bytes would be 32 positions, each a choice of 4,096 bits).
4. **Tile assembly**: per tile (i, j), oc: the scale (and zero) blocks of the row groups its real rows start (one
   block per G rows, held for the tiles of the group; two per tile when G < d); ic: one block of the tile's d
   rows. The last block is taken in the cycle the tile goes. Then d*l `Dequantizer`s (hw/dequant.py) in lockstep
   turn the tile's codes into the binary16 tile: element e = lane*d + row at bits [16e, 16e+16), as an FP16 tile
   beat. Rows >= k and columns >= n dequantise to +0 (the simulator pads with +0). With a phase p the groups
   start p elements early: row tile i (oc) or column block j (ic) starts a group when (i + p/d) (oc) or
   (j + p/l) (ic) is a multiple of the tiles (blocks) per group, and the first tile always takes one.

Symmetric int codes go through the asymmetric datapath: a two's complement b-bit code q is (q xor 2^(b-1)) -
2^(b-1), so one int dequantiser serves both. Rate: one tile per cycle out of the dequantisers while codes keep
up (ic: one cycle more per column block): an HBM beat holds `beat_bytes / tile_code_bytes` tiles of codes
(INT4: 4, INT8: 2), so the weight stream needs a beat every 4 (INT4) or 2 (INT8) cycles, plus the scale blocks.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

import math
import struct

from amaranth import C, Cat, Module, Mux, Signal, Value
from amaranth.hdl import Array
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from dfx import formats
from dfx.config import AccelConfig

from .dequant import TABLE_MAX_BITS, CodeTile, Dequantizer, TableDequantizer
from .dma import log2

# the families a core can be built with, and the format each one's dequantisers are built for
CORE_FAMILIES = {"int8": "int8-oc-asym", "int4": "int4-oc-asym", "int3": "int3-oc-asym",
                 "fp8e4m3": "fp8e4m3", "fp8e5m2": "fp8e5m2",
                 "bcq1": "bcq1-oc", "bcq2": "bcq2-oc", "bcq3": "bcq3-oc", "bcq4": "bcq4-oc"}
CODES, SCALES, ZEROS, DESC = 0, 1, 2, 3
FIFO_DEPTH = {CODES: 8, SCALES: 4, ZEROS: 4}   # beats per stream FIFO (credits)
MAX_K = 1 << 16                                # the descriptor's k and n are 16-bit


def req_layout() -> data.StructLayout:
    return data.StructLayout({"beat": 40, "len": 9})


def family_formats(families) -> tuple[str, ...]:
    """The quantized families of `families` (fp16 dropped), checked against `CORE_FAMILIES`."""
    out = []
    for f in families:
        if f == "fp16":
            continue
        if f not in CORE_FAMILIES:
            raise ValueError(f"weight format family {f!r} has no tile fetcher in the core; built: "
                             f"{', '.join(CORE_FAMILIES)} (and fp16)")
        if f not in out:
            out.append(f)
    return tuple(out)


def core_family(fmt: formats.WeightFormat) -> str:
    """The tile fetcher a format needs (a key of `CORE_FAMILIES`; bcq: one per plane count)."""
    return f"bcq{fmt.bits}" if fmt.kind == "bcq" else fmt.family


def core_cannot_read(fmt: formats.WeightFormat, phase: int = 0, k: int = 0, d: int = 1, l: int | None = None
                     ) -> str | None:
    """Why a core with `fmt`'s family built in cannot read a region of `fmt` (None: it can) of a (k, n) matrix
    whose group axis starts at `phase` of its group, for a d x l MPU (`l` None: d, the stricter check; the
    compiler's column pieces start at multiples of d)."""
    if fmt.kind == "fp16":
        return None
    if core_family(fmt) not in CORE_FAMILIES:
        return f"the RTL core has no tile fetcher for {fmt.family} (it reads fp16, {', '.join(CORE_FAMILIES)})"
    if fmt.axis == "ic" and k % d:
        return f"the RTL core reads per-input-channel (ic) groups of matrices whose k is a multiple of d ({d}), not {k}"
    if phase:
        step, unit = (d, "d") if fmt.axis == "oc" else (d if l is None else l, "d" if l is None else "l")
        if not fmt.group or phase >= fmt.group:
            return f"phase {phase} is not inside a group of {fmt.group or 'the whole axis'}"
        if phase % step:
            return (f"the RTL core reads a region whose {fmt.axis} group axis starts mid-group at a multiple of "
                    f"{unit} ({step}) only, not at phase {phase}")
    return None


def table_format(fmt: formats.WeightFormat) -> bool:
    """Whether a table dequantiser serves `fmt`'s kind and width: int formats of at most `TABLE_MAX_BITS` bits."""
    return fmt.kind == "int" and fmt.bits <= TABLE_MAX_BITS


def table_family(family: str) -> bool:
    """Whether the tile fetcher of `family` (a key of `CORE_FAMILIES`) can be built with table dequantisers."""
    return table_format(formats.parse(CORE_FAMILIES[family]))


def table_cannot_read(fmt: formats.WeightFormat, d: int) -> str | None:
    """Why a fetcher built with table dequantisers (`QuantTiles(tables=True)`) for a d x l MPU cannot read a
    region of `fmt` (None: it can): it takes int3 / int4 per-output-channel groups of at least d rows."""
    if not table_format(fmt):
        return f"table dequantisers read int formats of at most {TABLE_MAX_BITS} bits, not {fmt.name}"
    if fmt.axis != "oc":
        return f"table dequantisers read per-output-channel (oc) groups only, not {fmt.name}"
    if fmt.group and fmt.group < d:
        return f"table dequantisers read groups of at least d ({d}) rows, not {fmt.group}"
    return None


def _min(*vals):
    out = vals[0]
    for v in vals[1:]:
        out = Mux(v < out, v, out)
    return out


def gearbox(m: Module, name: str, fifo, chunk: int, beat: int, gran: int, load, off0, run, seg_end=C(0, 1),
            seg_off=C(0, 1), skew: int = 0):
    """Cut the byte stream of `fifo` (beats of `beat` bytes; the stream's first byte at `off0` of its first beat)
    into `chunk`-byte pieces. `load`: (re)start at off0 with nothing held. Returns (valid, data, take): `take`
    (driven by the caller) consumes the piece; with `seg_end` it is the last piece of a segment (a run of beats
    read on its own): the rest of its beat is dropped and the next segment starts at `seg_off` of the next beat.
    Offsets are `skew` (0 <= skew < gran) plus a multiple of `gran`: the piece is a beat / gran : 1 choice."""
    cur = Signal(8 * beat, name=f"{name}_cur")
    have = Signal(name=f"{name}_have")
    off = Signal(range(beat), name=f"{name}_off")
    take = Signal(name=f"{name}_take")
    win = Cat(cur, fifo.r_data)
    pos = Array(win[8 * p:8 * (p + chunk)] for p in range(skew, beat, gran))
    dat = Signal(8 * chunk, name=f"{name}_data")
    end = off + chunk
    m.d.comb += dat.eq(pos[off >> log2(gran)] if beat > gran else win[8 * skew:8 * (skew + chunk)])
    valid = run & have & ((end <= beat) | fifo.r_rdy)
    with m.If(load):
        m.d.sync += [have.eq(0), off.eq(off0)]
    with m.Elif(~have):
        with m.If(fifo.r_rdy & run):
            m.d.comb += fifo.r_en.eq(1)
            m.d.sync += [cur.eq(fifo.r_data), have.eq(1)]
    with m.Elif(take & seg_end):
        m.d.sync += [off.eq(seg_off), have.eq(0)]
        m.d.comb += fifo.r_en.eq(end > beat)
    with m.Elif(take):
        with m.If(end < beat):
            m.d.sync += off.eq(end)
        with m.Else():
            m.d.sync += [off.eq(end - beat), cur.eq(fifo.r_data), have.eq(fifo.r_rdy)]
            m.d.comb += fifo.r_en.eq(fifo.r_rdy)
    return valid, dat, take


class QuantTiles(wiring.Component):
    """The quantized tile fetcher and dequantisers of one family (`CORE_FAMILIES`).

    start: one cycle, with `base` (the region's HBM byte address), `wfmt`, `k`, `n`, `kt`, `nt` held until the
    instruction ends. `status` pulses once after the descriptor: `ok`, or `bad_fmt` / `bad_range`. `req`: beat
    reads (beat index across all channels, burst length); `beat`: the joined read data, in request order; `tile`:
    the binary16 tiles for the MPU's `w`.

    tables: one `TableDequantizer` per lane (n = d: a tile's d rows of an output channel share one group) instead
    of d*l element dequantisers; an int family of at most `TABLE_MAX_BITS` bits (int3, int4). Such a fetcher
    reads per-output-channel (oc) groups of G >= d rows or the whole column only (`table_cannot_read`); other
    regions report `bad_fmt`. Its lanes take one scale (and zero point) each per tile, and the codes.

    codes: the tile-scaled core's fetcher (`AccelConfig.tile_scale`, `hw.mpu.MPU(tile_scale=True)`): one
    `CodeTile` per lane hands the MPU the tile's symmetric codes as binary16 integers and the lane's group scale
    (`tile` is then {tile, scale}: the MPU multiplies the lane's tree sum by it). It reads what
    `dfx.tilescale.tile_scale_cannot_read` accepts (symmetric int3 / int4, oc groups of G >= d or the whole
    column); zero points, ic groups and G < d report `bad_fmt`.
    """

    def __init__(self, cfg: AccelConfig, family: str, tables: bool = False, codes: bool = False, **dq_stages):
        self.cfg, self.family, self.tables, self.codes = cfg, family, bool(tables), bool(codes)
        self.fmt = formats.parse(CORE_FAMILIES[family])
        if self.tables and self.codes:
            self._MustUse__silence = True
            raise ValueError("a tile fetcher has table dequantisers or hands the MPU codes, not both")
        tile = 16 * cfg.d * cfg.l
        if self.codes:
            if not table_format(self.fmt):
                self._MustUse__silence = True
                raise ValueError(f"a code fetcher takes int families of at most {TABLE_MAX_BITS} bits (int3, "
                                 f"int4), not {family}")
            self.dq = [CodeTile(f"int{self.fmt.bits}-oc", cfg.d) for _ in range(cfg.l)]
            tile = data.StructLayout({"tile": tile, "scale": data.ArrayLayout(16, cfg.l)})
        elif self.tables:
            if not table_format(self.fmt):
                self._MustUse__silence = True
                raise ValueError(f"table dequantisers take int families of at most {TABLE_MAX_BITS} bits (int3, "
                                 f"int4), not {family}")
            kw = {k: v for k, v in dq_stages.items() if k in ("mul_stages", "round_stages")}
            self.dq = [TableDequantizer(self.fmt, cfg.d, masked=True, **kw) for _ in range(cfg.l)]
        else:
            self.dq = [Dequantizer(self.fmt, **dq_stages) for _ in range(cfg.d * cfg.l)]
        self.latency = self.dq[0].latency
        super().__init__({
            "start": In(1), "base": In(40), "wfmt": In(4), "k": In(33), "n": In(33), "kt": In(30), "nt": In(30),
            "status": Out(data.StructLayout({"valid": 1, "ok": 1, "bad_fmt": 1, "bad_range": 1})),
            "req": Out(stream.Signature(req_layout())),
            "beat": In(stream.Signature(8 * cfg.beat_bytes)),
            "tile": Out(stream.Signature(tile)),
        })

    @property
    def wfmt_codes(self) -> tuple[int, ...]:
        return (self.fmt.wfmt,)

    def elaborate(self, platform):
        m = Module()
        cfg, fmt = self.cfg, self.fmt
        d, l, B = cfg.d, cfg.l, cfg.beat_bytes
        lb = log2(B)
        is_int, is_bcq = fmt.kind == "int", fmt.kind == "bcq"
        bits = fmt.bits
        planes = bits if is_bcq else 1
        tcb = d * l * bits // 8                                # code bytes per tile
        streams = (CODES, SCALES, ZEROS) if is_int else (CODES, SCALES)
        chunk = {CODES: tcb, SCALES: 2 * l * planes, ZEROS: l}             # oc blocks
        ichunk = {SCALES: 2 * d * planes, ZEROS: d}                          # ic blocks: a tile's d rows
        # scale blocks held (groups per tile at G = 32) and the group sizes below d (several blocks per tile);
        # a table fetcher takes groups of G >= d only
        one = self.tables or self.codes                      # one scale per lane and tile
        nb = 1 if one else max(1, d // 32)
        small_g = [] if one else [g for g in formats.GROUP_SIZES if g < d]

        # ---------------------------------------------------------------- instruction state
        run = Signal()                                         # streams and tiles active
        asym, ic = Signal(), Signal()                          # zero points; per-input-channel groups
        gsize = Signal(8)                                      # 0: the whole column (oc) / row (ic)
        R = Signal(17)                                         # groups along the axis (oc: rows, ic: columns)
        addr = {s: Signal(40, name=f"addr{s}") for s in streams}   # byte address of each stream's start
        nbytes = {s: Signal(40, name=f"bytes{s}") for s in streams}
        # segments: oc streams are one linear run; ic scale / zero streams one run per column block j (the K rows
        # of its column group, read again for each block of the group)
        segb = {s: Signal(40, name=f"segb{s}") for s in streams}       # bytes per segment
        nseg = {s: Signal(30, name=f"nseg{s}") for s in streams}
        rseg = {s: Signal(30, name=f"rseg{s}") for s in streams}       # segments requested (request side)
        raddr = {s: Signal(40, name=f"raddr{s}") for s in streams}     # next segment's address (request side)
        caddr = {s: Signal(40, name=f"caddr{s}") for s in streams}     # next segment's address (gearbox side)
        gmask = Signal(8)                                              # ic: column blocks per group - 1
        pofs = Signal(8)                                               # the phase in tiles (oc) / blocks (ic)
        left = {s: Signal(32, name=f"left{s}") for s in streams}     # beats still to request
        nxt = {s: Signal(34, name=f"next{s}") for s in streams}      # next beat to request
        cred = {s: Signal(range(FIFO_DEPTH[s] + 1), name=f"cred{s}") for s in streams}
        total = Signal(60)
        end = Signal(41)
        load = Signal()                                        # restart the gearboxes (RUN begins)

        # ---------------------------------------------------------------- beat FIFOs, tag FIFO, routing
        fifos = {}
        for s in streams:
            fifos[s] = SyncFIFOBuffered(width=8 * B, depth=FIFO_DEPTH[s])
            m.submodules[f"bfifo{s}"] = fifos[s]
        tdepth = sum(FIFO_DEPTH.values()) + 1
        m.submodules.tags = tags = SyncFIFOBuffered(width=2 + 9, depth=tdepth)
        tag_s, tag_len = tags.r_data[:2], tags.r_data[2:]
        cnt = Signal(9)
        desc = Signal(512)
        desc_in = Signal()
        m.d.comb += self.beat.ready.eq(tags.r_rdy)             # credits: every stream FIFO has room
        with m.If(self.beat.valid & tags.r_rdy):
            for s in streams:
                with m.If(tag_s == s):
                    m.d.comb += [fifos[s].w_en.eq(1)]
            with m.If(tag_s == DESC):                          # the region starts on a beat
                m.d.sync += [desc.eq(self.beat.payload[:512]), desc_in.eq(1)]
            with m.If(cnt + 1 == tag_len):
                m.d.comb += tags.r_en.eq(1)
                m.d.sync += cnt.eq(0)
            with m.Else():
                m.d.sync += cnt.eq(cnt + 1)
        for s in streams:
            m.d.comb += fifos[s].w_data.eq(self.beat.payload)

        # ---------------------------------------------------------------- request generator
        # a request is chosen into a register (`rq`), which holds it until every channel has taken it: the AR
        # payload stays put while valid. Its tag is pushed and its credits spent when it is chosen.
        b4k = 4096 // cfg.channel_beat_bytes
        rq_valid = Signal()
        rq = Signal(req_layout())
        m.d.comb += [self.req.valid.eq(rq_valid), self.req.payload.eq(rq)]
        with m.If(rq_valid & self.req.ready):
            m.d.sync += rq_valid.eq(0)
        free = (~rq_valid | self.req.ready) & tags.w_rdy
        spent = {s: Signal(9, name=f"spent{s}") for s in streams}
        dreq = Signal()                                        # the descriptor read is due
        with m.If(dreq):
            with m.If(free):
                m.d.comb += [tags.w_en.eq(1), tags.w_data.eq(Cat(C(DESC, 2), C(1, 9)))]
                m.d.sync += [rq.beat.eq(self.base >> lb), rq.len.eq(1), rq_valid.eq(1), dreq.eq(0)]
        with m.Elif(run):
            for s in streams:                                  # load the next segment of a stream
                with m.If((left[s] == 0) & (rseg[s] != nseg[s])):
                    first, last = raddr[s] >> lb, (raddr[s] + segb[s] - 1) >> lb
                    step = Mux(ic & (gsize != 0) & (((rseg[s] + 1 + pofs) & gmask) == 0), segb[s], 0)
                    m.d.sync += [nxt[s].eq(first), left[s].eq(last - first + 1), rseg[s].eq(rseg[s] + 1),
                                 raddr[s].eq(raddr[s] + (0 if s == CODES else step))]
            chosen = C(0, 1)
            for s in reversed(streams):                        # priority: zeros, scales, then codes
                to4k = b4k - (nxt[s] & (b4k - 1))
                want = _min(left[s], to4k, C(FIFO_DEPTH[s] // 2, 8))
                blen = _min(left[s], to4k, cred[s], C(256, 9))
                ok = (left[s] != 0) & (cred[s] >= want)
                with m.If(ok & ~chosen & free):
                    m.d.comb += [tags.w_en.eq(1), tags.w_data.eq(Cat(C(s, 2), blen[:9])), spent[s].eq(blen)]
                    m.d.sync += [rq.beat.eq(nxt[s]), rq.len.eq(blen), rq_valid.eq(1),
                                 left[s].eq(left[s] - blen), nxt[s].eq(nxt[s] + blen)]
                chosen = chosen | ok
        for s in streams:                                      # credits: requested beats, back when popped
            back = fifos[s].r_en & fifos[s].r_rdy
            with m.If(~load):
                m.d.sync += cred[s].eq(cred[s] - spent[s] + back)

        # ---------------------------------------------------------------- gearboxes
        ti, tj, t = Signal(30), Signal(30), Signal(60)
        col_end = ti + 1 == self.kt
        cstep = Mux((gsize != 0) & (((tj + 1 + pofs) & gmask) == 0), segb[SCALES], 0)
        gb, igb = {}, {}
        for s in streams:
            # the codes start DESC_BYTES into a region that starts on a beat (PARSE checks it), and a tile's codes
            # follow the last one's: their offsets are DESC_BYTES plus multiples of gcd(tile code bytes, B)
            # (INT4 at the dfx preset: 4 positions in the beat, not 32); the other streams start at any 64 bytes
            g = math.gcd(chunk[s], B) if s == CODES else math.gcd(chunk[s], 64, B)
            off0 = addr[s] & (B - 1)
            gb[s] = gearbox(m, f"gb{s}", fifos[s], chunk[s], B, g, load, off0, run if s == CODES else run & ~ic,
                            skew=formats.DESC_BYTES % g if s == CODES else 0)
            if s != CODES:
                nxt_seg = caddr[s] + Mux(s == SCALES, cstep, Mux(cstep != 0, segb[s], 0))
                igb[s] = gearbox(m, f"igb{s}", fifos[s], ichunk[s], B, math.gcd(ichunk[s], 64, B), load, off0,
                                 run & ic, col_end, nxt_seg & (B - 1))
                with m.If(igb[s][2] & col_end):
                    m.d.sync += caddr[s].eq(nxt_seg)

        # ---------------------------------------------------------------- tile assembly
        pc = Signal(range(nb + 1))
        need = Signal(range(nb + 1))
        first_row = ti << log2(d)
        gtiles = Mux(gsize >= d, (gsize >> log2(d)) - 1, 0)   # tiles per group - 1 (G >= d)
        need_big = Mux(gsize == 0, ti == 0, (((ti + pofs) & gtiles) == 0) | (ti == 0))
        need_v = need_big
        for g in small_g:
            rem = R - (ti << log2(d // g))
            need_v = Mux(gsize == g, _min(rem, C(d // g, 8)), need_v)
        m.d.comb += need.eq(Mux(ic, 1, need_v))
        hs = Array(Signal(16 * l * planes, name=f"hold_s{b}") for b in range(nb))
        hz = Array(Signal(8 * l, name=f"hold_z{b}") for b in range(nb))
        his, hiz = Signal(16 * d * planes), Signal(8 * d)      # ic: the tile's rows' scales, zero points
        sv, sdat, stake = gb[SCALES]
        isv, isdat, istake = igb[SCALES]
        blk_ok = Mux(ic, isv, sv)
        if is_int:
            zv, zdat, ztake = gb[ZEROS]
            izv, izdat, iztake = igb[ZEROS]
            blk_ok = blk_ok & (Mux(ic, izv, zv) | ~asym)
        # a tile's last block is taken in the cycle the tile goes (`bypass`: its lanes read the gearbox's output),
        # so a tile that starts a group costs no extra cycle
        bypass = Signal()
        m.d.comb += bypass.eq((pc + 1 == need) & blk_ok)
        with m.If(run & (pc < need) & blk_ok):
            m.d.sync += pc.eq(pc + 1)
            with m.If(ic):
                m.d.comb += istake.eq(1)
                m.d.sync += his.eq(isdat)
                if is_int:
                    m.d.comb += iztake.eq(asym)
                    m.d.sync += hiz.eq(Mux(asym, izdat, 0))
            with m.Else():
                m.d.comb += stake.eq(1)
                m.d.sync += hs[pc].eq(sdat)
                if is_int:
                    m.d.comb += ztake.eq(asym)
                    m.d.sync += hz[pc].eq(Mux(asym, zdat, 0))

        cv, cdat, ctake = gb[CODES]
        tvalid = run & ((pc == need) | bypass) & cv
        tready = self.dq[0].i.ready
        fire = tvalid & tready
        m.d.comb += ctake.eq(fire)
        with m.If(fire):
            m.d.sync += [pc.eq(0), t.eq(t + 1)]
            with m.If(ti + 1 == self.kt):
                m.d.sync += [ti.eq(0), tj.eq(tj + 1)]
            with m.Else():
                m.d.sync += ti.eq(ti + 1)
            with m.If(t + 1 == total):
                m.d.sync += run.eq(0)
        half = 1 << (bits - 1)
        # the blocks the tile's lanes read: held, or the one being taken now (bypass)
        hsl, hzl = Array(), Array()
        for bi in range(nb):
            live = bypass & (pc == bi)
            hsl.append(Signal(16 * l * planes, name=f"scale_blk{bi}"))
            m.d.comb += hsl[bi].eq(Mux(live, sdat, hs[bi]))
            if is_int:
                hzl.append(Signal(8 * l, name=f"zero_blk{bi}"))
                m.d.comb += hzl[bi].eq(Mux(live, zdat, hz[bi]))
        hisr, hizr = Signal(16 * d * planes), Signal(8 * d)
        m.d.comb += hisr.eq(Mux(bypass, isdat, his))
        if is_int:
            m.d.comb += hizr.eq(Mux(bypass, izdat, hiz))
        for c in range(l if self.tables else 0):      # a table per lane: its d rows' codes, one scale and zero
            col_ok = (tj << log2(l)) + c < self.n
            u = self.dq[c]
            m.submodules[f"tq{c}"] = u
            pay = u.i.payload
            m.d.comb += [u.i.valid.eq(tvalid), u.o.ready.eq(self.tile.ready), pay.scale.eq(hsl[0][16 * c:16 * c + 16]),
                         pay.zero.eq(Mux(asym, hzl[0][8 * c:8 * c + 8], half))]
            for r in range(d):
                e = c * d + r
                code = cdat[bits * e:bits * e + bits]
                m.d.comb += [pay.code[r].eq(Mux(asym, code, code ^ half)),
                             pay.clear[r].eq(~(col_ok & (first_row + r < self.k)))]
        for c in range(l if self.codes else 0):       # codes per lane: its d rows' codes, one scale
            col_ok = (tj << log2(l)) + c < self.n
            u = self.dq[c]
            m.submodules[f"tc{c}"] = u
            pay = u.i.payload
            m.d.comb += [u.i.valid.eq(tvalid), u.o.ready.eq(self.tile.ready), pay.scale.eq(hsl[0][16 * c:16 * c + 16])]
            for r in range(d):
                e = c * d + r
                m.d.comb += [pay.code[r].eq(cdat[bits * e:bits * e + bits]),
                             pay.clear[r].eq(~(col_ok & (first_row + r < self.k)))]
        for c in range(0 if self.tables or self.codes else l):
            col_ok = (tj << log2(l)) + c < self.n
            for r in range(d):
                e = c * d + r
                u = self.dq[e]
                m.submodules[f"dq{e}"] = u
                ok = col_ok & (first_row + r < self.k)
                b = C(0, 1)
                for g in small_g:
                    b = Mux(gsize == g, r // g, b)
                hsb, hzb = hsl[b], (hzl[b] if is_int else None)
                pay = u.i.payload
                m.d.comb += [u.i.valid.eq(tvalid), u.o.ready.eq(self.tile.ready)]
                if is_bcq:     # plane q's bit at q*d*l + e; alphas: oc (q, lane c) of a block, ic (row r, q)
                    m.d.comb += pay.code.eq(Mux(ok, Cat(*[cdat[q * d * l + e] for q in range(planes)]), 0))
                    for q in range(planes):
                        a, ia = 16 * (q * l + c), 16 * (r * planes + q)
                        m.d.comb += pay.scale[q].eq(Mux(ok, Mux(ic, hisr[ia:ia + 16], hsb[a:a + 16]), 0))
                    continue
                code = cdat[bits * e:bits * e + bits]
                m.d.comb += pay.scale.eq(Mux(ok, Mux(ic, hisr[16 * r:16 * r + 16], hsb[16 * c:16 * c + 16]), 0))
                if is_int:
                    zp = Mux(ic, hizr[8 * r:8 * r + 8], hzb[8 * c:8 * c + 8])
                    m.d.comb += [pay.code.eq(Mux(ok, Mux(asym, code, code ^ half), 0)),
                                 pay.zero.eq(Mux(ok, Mux(asym, zp, half), 0))]
                else:
                    m.d.comb += pay.code.eq(Mux(ok, code, 0))
        m.d.comb += self.tile.valid.eq(self.dq[0].o.valid)
        if self.codes:
            m.d.comb += [self.tile.payload.tile.eq(Cat(*[u.o.payload.w for u in self.dq])),
                         self.tile.payload.scale.eq(Cat(*[u.o.payload.scale for u in self.dq]))]
        else:
            m.d.comb += self.tile.payload.eq(Cat(*[Value.cast(u.o.payload) for u in self.dq]))

        # ---------------------------------------------------------------- control: descriptor, setup
        lay = {nm: (8 * off, 8 * (off + struct_size)) for nm, off, struct_size in _desc_fields()}
        fld = {nm: desc[a:b] for nm, (a, b) in lay.items()}
        k, n = self.k, self.n
        m.d.comb += load.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [dreq.eq(1), desc_in.eq(0), run.eq(0)]
                    m.next = "DESC"
            with m.State("DESC"):
                with m.If(desc_in):
                    m.next = "PARSE"
            with m.State("PARSE"):
                g = fld["group"]
                flags = fld["flags"]
                ph = fld["phase"]
                # a phase inside a group, whole tiles (oc: rows, d) or column blocks (ic: lanes, l) from its start
                phase_ok = (ph == 0) | ((g != 0) & (ph < g) & Mux(flags[0], (ph & (l - 1)) == 0, (ph & (d - 1)) == 0))
                good = ((fld["magic"] == formats.DESC_MAGIC) & (fld["wfmt"] == self.wfmt) & (fld["bits"] == bits)
                        & (fld["k"] == k) & (fld["n"] == n) & (k < MAX_K) & (n < MAX_K) & phase_ok
                        & (~flags[1] | C(int(is_int), 1))
                        & (~flags[0] | ((k & (d - 1)) == 0))             # ic: whole row tiles
                        & ((g == 0) | (g == 32) | (g == 64) | (g == 128))
                        & (C(not one, 1) | (~flags[0] & ((g == 0) | (g >= d))))    # tables, codes: oc, G >= d
                        & (C(not self.codes, 1) | ~flags[1]))                       # codes: symmetric
                gl = Mux(g == 32, 5, Mux(g == 64, 6, 7))
                along = Mux(flags[0], n, k)
                m.d.sync += [asym.eq(flags[1]), ic.eq(0 if one else flags[0]), gsize.eq(g),
                             gmask.eq(Mux(g == 0, 0, (g >> log2(l)) - 1)),
                             pofs.eq(Mux(flags[0], ph >> log2(l), ph >> log2(d))),
                             R.eq(Mux(g == 0, 1, (along + ph + g - 1) >> gl)), total.eq(self.kt * self.nt)]
                with m.If(self.base[:lb] != 0):                # a region starts on a beat
                    m.d.comb += [self.status.valid.eq(1), self.status.bad_range.eq(1)]
                    m.next = "IDLE"
                with m.Elif(~good):
                    m.d.comb += [self.status.valid.eq(1), self.status.bad_fmt.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.next = "SIZE"
            with m.State("SIZE"):
                cb = total * tcb
                sb = Mux(ic, R * k * (2 * planes), self.nt * R * (2 * l * planes))
                m.d.sync += [nbytes[CODES].eq(cb), nbytes[SCALES].eq(sb), segb[CODES].eq(cb), nseg[CODES].eq(1),
                             segb[SCALES].eq(Mux(ic, k * (2 * planes), sb)), nseg[SCALES].eq(Mux(ic, self.nt, 1)),
                             addr[CODES].eq(self.base + formats.DESC_BYTES)]
                if is_int:
                    zb = Mux(ic, R * k, self.nt * R * l)
                    m.d.sync += [nbytes[ZEROS].eq(Mux(asym, zb, 0)), segb[ZEROS].eq(Mux(ic, k, zb)),
                                 nseg[ZEROS].eq(Mux(asym, Mux(ic, self.nt, 1), 0))]
                m.next = "ADDR"
            with m.State("ADDR"):
                a64 = (nbytes[CODES] + 63) & ~C(63, 40)
                s_at = addr[CODES] + a64
                m.d.sync += addr[SCALES].eq(s_at)
                sa64 = (nbytes[SCALES] + 63) & ~C(63, 40)
                if is_int:
                    m.d.sync += addr[ZEROS].eq(s_at + sa64)
                    za64 = (nbytes[ZEROS] + 63) & ~C(63, 40)
                    m.d.sync += end.eq(s_at + sa64 + za64)
                else:
                    m.d.sync += end.eq(s_at + sa64)
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.status.valid.eq(1)
                with m.If(end > cfg.hbm_bytes):
                    m.d.comb += self.status.bad_range.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += [self.status.ok.eq(1), load.eq(1)]
                    for s in streams:
                        m.d.sync += [left[s].eq(0), rseg[s].eq(0), raddr[s].eq(addr[s]), caddr[s].eq(addr[s]),
                                     cred[s].eq(FIFO_DEPTH[s])]
                    m.d.sync += [run.eq(total != 0), ti.eq(0), tj.eq(0), t.eq(0), pc.eq(0)]
                    m.next = "IDLE"
        return m


def _desc_fields():
    """(name, byte offset, bytes) of the descriptor's fields (`dfx.formats.DESCRIPTOR`)."""
    off, out = 0, []
    for name, code, _ in formats.DESCRIPTOR:
        size = struct.calcsize("<" + code)
        out.append((name, off, size))
        off += size
    return out
