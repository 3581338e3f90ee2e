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
   `bad_range` (STATUS.address_range). The axis, group size and zero points are runtime choices. The setup
   does one step of arithmetic per state (the checks into registers, then their verdict; the group count; the
   byte counts' two products by shift and add, a cycle per bit of the smaller factor; the stream addresses one
   after another; the range check): about 20 cycles after the descriptor beat, for the 300 MHz depth.
2. **Three byte streams** out of the region: codes (from byte 64, `tile_code_bytes` per tile, tiles in the MPU's
   order), scale blocks and, for `-asym`, zero-point blocks (uint8; a code fetcher has no zero stream). Per output channel (oc) the blocks
   `(nt, R, [Q,] l)` are read front to back, one linear run; per input channel (ic) each column block j reads the
   K scales of its column group (a segment), again for every block of the group. Each stream has its own beat
   FIFO; the request generator issues INCR bursts (never across a channel's 4 KiB page) for a stream only when
   its FIFO has room for the whole burst (credits), so the R data of one stream never blocks another's (the AXI
   read data come back in request order; a tag FIFO routes each beat to its stream). A request is held in a
   register until every channel has taken it. `hw.qstream.Requests` builds it in registered stages.
3. **Gearboxes** cut each stream into pieces (a tile's codes, a scale block, a zero block): a piece may straddle
   two beats (INT3, BCQ3, or parts that start mid-beat at the `dfx` preset's 2 KiB beats). Scale and zero blocks
   start at any 64 bytes; a tile's codes only at the descriptor's 64 bytes past a multiple of
   gcd(tile code bytes, beat) (the region on a beat), so their choice has beat / gcd positions (INT4 at the
   `dfx` preset: 4 of 512 bytes, where any 64 bytes would be 32 positions, each a choice of 4,096 bits). The
   oc scale and zero blocks come out of a register (`hw.qstream.gearbox(registered=True)`).
4. **Tile assembly**: per tile (i, j), oc: the scale (and zero) blocks of the row groups its real rows start (one
   block per G rows, held for the tiles of the group; two per tile when G < d); ic: one block of the tile's d
   rows. The last block is taken in the cycle the tile goes. Then d*l `Dequantizer`s (hw/dequant.py) in lockstep
   turn the tile's codes into the binary16 tile: element e = lane*d + row at bits [16e, 16e+16), as an FP16 tile
   beat. Rows >= k and columns >= n dequantise to +0 (the simulator pads with +0). With a phase p the groups
   start p elements early: row tile i (oc) or column block j (ic) starts a group when (i + p/d) (oc) or
   (j + p/l) (ic) is a multiple of the tiles (blocks) per group, and the first tile always takes one. The walk
   keeps "last row tile", "last column block" and the next tile's block count in registers (set when a tile
   goes), and the rows and columns inside k and n of the last row tile and column block as masks made at setup
   (the engine's kt = ceil(k / d) and nt = ceil(n / l)).

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
from amaranth.lib.wiring import In, Out

from dfx import formats
from dfx.config import AccelConfig

from .dequant import TABLE_MAX_BITS, CodeTile, Dequantizer, TableDequantizer
from .dma import log2
from .qstream import Requests, gearbox, req_layout, vmin

# the families a core can be built with, and the format each one's dequantisers are built for
CORE_FAMILIES = {"int8": "int8-oc-asym", "int4": "int4-oc-asym", "int3": "int3-oc-asym",
                 "fp8e4m3": "fp8e4m3", "fp8e5m2": "fp8e5m2",
                 "bcq1": "bcq1-oc", "bcq2": "bcq2-oc", "bcq3": "bcq3-oc", "bcq4": "bcq4-oc"}
CODES, SCALES, ZEROS = 0, 1, 2                  # the streams (`hw.qstream.DESC`: the descriptor's tag)
FIFO_DEPTH = {CODES: 8, SCALES: 4, ZEROS: 4}   # beats per stream FIFO (credits)
MAX_K = 1 << 16                                # the descriptor's k and n are 16-bit


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
        zeros = is_int and not self.codes                      # (a code fetcher reads symmetric codes only)
        streams = (CODES, SCALES, ZEROS) if zeros else (CODES, SCALES)
        chunk = {CODES: tcb, SCALES: 2 * l * planes, ZEROS: l}             # oc blocks
        ichunk = {SCALES: 2 * d * planes, ZEROS: d}                          # ic blocks: a tile's d rows
        # scale blocks held (groups per tile at G = 32) and the group sizes below d (several blocks per tile);
        # a table or code fetcher takes groups of G >= d only
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
        alen = {s: Signal(40, name=f"alen{s}") for s in streams}   # nbytes rounded up to 64
        caddr = {s: Signal(40, name=f"caddr{s}") for s in streams}     # next segment's address (gearbox side)
        gmask = Signal(8)                                              # ic: column blocks per group - 1
        pofs = Signal(8)                                               # the phase in tiles (oc) / blocks (ic)
        gtiles = Signal(8)                                             # oc: tiles per group - 1 (G >= d)
        end = Signal(41)
        load = Signal()                                        # restart the streams and gearboxes (RUN begins)
        # the streams: segments (oc: one linear run; ic scale / zero streams one run per column block j, the K
        # rows of its column group, read again for each block of the group), requests, routing, FIFOs
        rq = Requests(m, streams, {s: FIFO_DEPTH[s] for s in streams}, B, cfg.channel_beat_bytes, self.req,
                      self.beat, run, load)
        fifos, segb, nseg = rq.fifos, rq.segb, rq.nseg
        for s in streams:
            nstep = ic & (gsize != 0) & (((rq.rseg[s] + 1 + pofs) & gmask) == 0)
            m.d.comb += rq.step[s].eq(0 if s == CODES else Mux(nstep, segb[s], 0))

        # ---------------------------------------------------------------- tile walk: registers, not compares
        ti, tj = Signal(30), Signal(30)
        ti_rem, tj_rem = Signal(30), Signal(30)                # tiles after this one in the column / blocks
        row_last, col_last = Signal(), Signal()                # the tile is its column's last / in the last block
        kt1, kt_one, nonempty = Signal(30), Signal(), Signal()
        # rows (columns) of the last row tile (column block) inside k (n): the engine's kt = ceil(k / d), nt = ...
        rmask, cmask = Signal(d), Signal(l)
        row_ok = [~row_last | rmask[r] for r in range(d)]
        col_ok = [~col_last | cmask[c] for c in range(l)]

        # ---------------------------------------------------------------- gearboxes
        cstep = Mux((gsize != 0) & (((tj + 1 + pofs) & gmask) == 0), segb[SCALES], 0)
        gb, igb = {}, {}
        for s in streams:
            # the codes start DESC_BYTES into a region that starts on a beat (PARSE checks it), and a tile's codes
            # follow the last one's: their offsets are DESC_BYTES plus multiples of gcd(tile code bytes, B)
            # (INT4 at the dfx preset: 4 positions in the beat, not 32); the other streams start at any 64 bytes.
            # The scale and zero blocks come out of a register.
            g = math.gcd(chunk[s], B) if s == CODES else math.gcd(chunk[s], 64, B)
            gb[s] = gearbox(m, f"gb{s}", fifos[s], chunk[s], B, g, load, addr[s][log2(g):lb],
                            run if s == CODES else run & ~ic, skew=formats.DESC_BYTES % g if s == CODES else 0,
                            registered=s != CODES)
            if s != CODES:
                gi = math.gcd(ichunk[s], 64, B)
                nxt_seg = caddr[s] + (cstep if s == SCALES else Mux(cstep != 0, segb[s], 0))
                igb[s] = gearbox(m, f"igb{s}", fifos[s], ichunk[s], B, gi, load, addr[s][log2(gi):lb],
                                 run & ic, row_last, nxt_seg[log2(gi):lb])
                with m.If(igb[s][2] & row_last):
                    m.d.sync += caddr[s].eq(nxt_seg)

        # ---------------------------------------------------------------- tile assembly
        pc = Signal(range(nb + 1))
        need = Signal(range(nb + 1))                            # blocks the tile takes (a register)

        gpos, gwhole = Signal(8), Signal()                     # oc, G >= d: (ti + pofs) mod tiles per group; G = 0

        def need_of(x, first):
            """The blocks row tile x takes (`first`: x is 0; else x = ti + 1, the tile after this one)."""
            v = Mux(first, 1, ~gwhole & (gpos == gtiles))       # x starts a group when this tile ends one
            for g in small_g:
                v = Mux(gsize == g, vmin(R - (x << log2(d // g)), C(d // g, 8)), v)
            return Mux(ic, 1, v)

        hs = Array(Signal(16 * l * planes, name=f"hold_s{b}") for b in range(nb))
        hz = Array(Signal(8 * l, name=f"hold_z{b}") for b in range(nb))
        his, hiz = Signal(16 * d * planes), Signal(8 * d)      # ic: the tile's rows' scales, zero points
        sv, sdat, stake = gb[SCALES]
        isv, isdat, istake = igb[SCALES]
        blk_ok = Mux(ic, isv, sv)
        if zeros:
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
                if zeros:
                    m.d.comb += iztake.eq(asym)
                    m.d.sync += hiz.eq(Mux(asym, izdat, 0))
            with m.Else():
                m.d.comb += stake.eq(1)
                m.d.sync += hs[pc].eq(sdat)
                if zeros:
                    m.d.comb += ztake.eq(asym)
                    m.d.sync += hz[pc].eq(Mux(asym, zdat, 0))

        cv, cdat, ctake = gb[CODES]
        tvalid = run & ((pc == need) | bypass) & cv
        tready = self.dq[0].i.ready
        fire = tvalid & tready
        m.d.comb += ctake.eq(fire)
        with m.If(fire):
            m.d.sync += [pc.eq(0), need.eq(Mux(row_last, need_of(C(0, 30), 1), need_of(ti + 1, 0))),
                         gpos.eq(Mux(row_last, pofs, gpos + 1) & gtiles)]
            with m.If(row_last):
                m.d.sync += [ti.eq(0), tj.eq(tj + 1), ti_rem.eq(kt1), row_last.eq(kt_one),
                             tj_rem.eq(tj_rem - 1), col_last.eq(tj_rem == 1)]
                with m.If(col_last):
                    m.d.sync += run.eq(0)
            with m.Else():
                m.d.sync += [ti.eq(ti + 1), ti_rem.eq(ti_rem - 1), row_last.eq(ti_rem == 1)]
        half = 1 << (bits - 1)
        # the blocks the tile's lanes read: held, or the one being taken now (bypass)
        hsl, hzl = Array(), Array()
        for bi in range(nb):
            live = bypass & (pc == bi)
            hsl.append(Signal(16 * l * planes, name=f"scale_blk{bi}"))
            m.d.comb += hsl[bi].eq(Mux(live, sdat, hs[bi]))
            if zeros:
                hzl.append(Signal(8 * l, name=f"zero_blk{bi}"))
                m.d.comb += hzl[bi].eq(Mux(live, zdat, hz[bi]))
        hisr, hizr = Signal(16 * d * planes), Signal(8 * d)
        m.d.comb += hisr.eq(Mux(bypass, isdat, his))
        if zeros:
            m.d.comb += hizr.eq(Mux(bypass, izdat, hiz))
        for c in range(l if self.tables else 0):      # a table per lane: its d rows' codes, one scale and zero
            u = self.dq[c]
            m.submodules[f"tq{c}"] = u
            pay = u.i.payload
            m.d.comb += [u.i.valid.eq(tvalid), u.o.ready.eq(self.tile.ready), pay.scale.eq(hsl[0][16 * c:16 * c + 16]),
                         pay.zero.eq(Mux(asym, hzl[0][8 * c:8 * c + 8], half))]
            for r in range(d):
                e = c * d + r
                code = cdat[bits * e:bits * e + bits]
                m.d.comb += [pay.code[r].eq(Mux(asym, code, code ^ half)), pay.clear[r].eq(~(col_ok[c] & row_ok[r]))]
        for c in range(l if self.codes else 0):       # codes per lane: its d rows' codes, one scale
            u = self.dq[c]
            m.submodules[f"tc{c}"] = u
            pay = u.i.payload
            m.d.comb += [u.i.valid.eq(tvalid), u.o.ready.eq(self.tile.ready), pay.scale.eq(hsl[0][16 * c:16 * c + 16])]
            for r in range(d):
                e = c * d + r
                m.d.comb += [pay.code[r].eq(cdat[bits * e:bits * e + bits]), pay.clear[r].eq(~(col_ok[c] & row_ok[r]))]
        for c in range(0 if self.tables or self.codes else l):
            for r in range(d):
                e = c * d + r
                u = self.dq[e]
                m.submodules[f"dq{e}"] = u
                ok = col_ok[c] & row_ok[r]
                b = C(0, 1)
                for g in small_g:
                    b = Mux(gsize == g, r // g, b)
                hsb, hzb = hsl[b], (hzl[b] if zeros else None)
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
        # one step of arithmetic per state (the 300 MHz depth): the descriptor's checks into registers, then
        # their verdict; the group count; the two products by shift and add (a cycle per bit of the smaller
        # factor); the byte counts; the three stream addresses one after another; the range check
        lay = {nm: (8 * off, 8 * (off + struct_size)) for nm, off, struct_size in _desc_fields()}
        fld = {nm: rq.desc[a:b] for nm, (a, b) in lay.items()}
        k, n = self.k, self.n
        checks, on_beat = Signal(12), Signal()
        along, ph_r, rsum = Signal(33), Signal(16), Signal(35)
        ma, mb, p1 = Signal(60), Signal(30), Signal(60)        # kt * nt
        na, nbm, p2 = Signal(50), Signal(17), Signal(50)      # R * k (ic) or R * nt (oc)
        m.d.comb += load.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    rq.start_desc(m, self.base >> lb)
                    m.d.sync += run.eq(0)
                    m.next = "DESC"
            with m.State("DESC"):
                with m.If(rq.desc_in):
                    m.next = "PARSE"
            with m.State("PARSE"):
                g = fld["group"]
                flags = fld["flags"]
                ph = fld["phase"]
                # a phase inside a group, whole tiles (oc: rows, d) or column blocks (ic: lanes, l) from its start
                phase_ok = (ph == 0) | ((g != 0) & (ph < g) & Mux(flags[0], (ph & (l - 1)) == 0, (ph & (d - 1)) == 0))
                m.d.sync += [checks.eq(Cat(
                    fld["magic"] == formats.DESC_MAGIC, fld["wfmt"] == self.wfmt, fld["bits"] == bits,
                    fld["k"] == k, fld["n"] == n, (k < MAX_K) & (n < MAX_K), phase_ok,
                    ~flags[1] | C(int(is_int), 1),
                    ~flags[0] | ((k & (d - 1)) == 0),                                 # ic: whole row tiles
                    (g == 0) | (g == 32) | (g == 64) | (g == 128),
                    C(not one, 1) | (~flags[0] & ((g == 0) | (g >= d))),              # tables, codes: oc, G >= d
                    C(not self.codes, 1) | ~flags[1])),                               # codes: symmetric
                    on_beat.eq(self.base[:lb] == 0),
                    ic.eq(0 if one else flags[0]), gsize.eq(g), ph_r.eq(ph), along.eq(Mux(flags[0], n, k)),
                    gmask.eq(Mux(g == 0, 0, (g >> log2(l)) - 1)),
                    pofs.eq(Mux(flags[0], ph >> log2(l), ph >> log2(d)))]
                if zeros:
                    m.d.sync += asym.eq(flags[1])
                m.next = "VERDICT"
            with m.State("VERDICT"):
                with m.If(~on_beat):                           # a region starts on a beat
                    m.d.comb += [self.status.valid.eq(1), self.status.bad_range.eq(1)]
                    m.next = "IDLE"
                with m.Elif(~checks.all()):
                    m.d.comb += [self.status.valid.eq(1), self.status.bad_fmt.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += rsum.eq(along + ph_r + gsize - 1)
                    m.next = "GROUPS"
            with m.State("GROUPS"):
                m.d.sync += [R.eq(Mux(gsize == 0, 1, Mux(gsize == 32, rsum >> 5, Mux(gsize == 64, rsum >> 6,
                                                                                     rsum >> 7)))),
                             gtiles.eq(Mux(gsize >= d, (gsize >> log2(d)) - 1, 0)), gwhole.eq(gsize == 0),
                             ma.eq(self.kt), mb.eq(self.nt), p1.eq(0)]
                m.next = "MUL0"
            with m.State("MUL0"):
                m.d.sync += [na.eq(Mux(ic, k, self.nt)), nbm.eq(R), p2.eq(0)]
                m.next = "MUL"
            with m.State("MUL"):
                for a, b, p in ((ma, mb, p1), (na, nbm, p2)):
                    with m.If(b[0]):
                        m.d.sync += p.eq(p + a)
                    m.d.sync += [a.eq(a << 1), b.eq(b >> 1)]
                with m.If((mb == 0) & (nbm == 0)):
                    m.next = "SIZE"
            with m.State("SIZE"):
                cb = times(p1, tcb)
                sb = Mux(ic, times(p2, 2 * planes), times(p2, 2 * l * planes))
                kmod, nmod = k[:log2(d)], n[:log2(l)]
                m.d.sync += [nbytes[CODES].eq(cb), nbytes[SCALES].eq(sb), segb[CODES].eq(cb), nseg[CODES].eq(1),
                             segb[SCALES].eq(Mux(ic, times(k, 2 * planes), sb)), nseg[SCALES].eq(Mux(ic, self.nt, 1)),
                             addr[CODES].eq(self.base + formats.DESC_BYTES),
                             kt1.eq(self.kt - 1), kt_one.eq(self.kt == 1), nonempty.eq(p1 != 0),
                             rmask.eq(Cat(((kmod == 0) & (k != 0)) | (r < kmod) for r in range(d))),
                             cmask.eq(Cat(((nmod == 0) & (n != 0)) | (c < nmod) for c in range(l)))]
                if zeros:
                    zb = Mux(ic, p2, times(p2, l))
                    m.d.sync += [nbytes[ZEROS].eq(Mux(asym, zb, 0)), segb[ZEROS].eq(Mux(ic, k, zb)),
                                 nseg[ZEROS].eq(Mux(asym, Mux(ic, self.nt, 1), 0))]
                m.next = "ALIGN"
            with m.State("ALIGN"):
                m.d.sync += [alen[s].eq((nbytes[s] + 63) & ~C(63, 40)) for s in streams]
                m.next = "ADDR1"
            with m.State("ADDR1"):
                m.d.sync += addr[SCALES].eq(addr[CODES] + alen[CODES])
                m.next = "ADDR2"
            with m.State("ADDR2"):
                if zeros:
                    m.d.sync += addr[ZEROS].eq(addr[SCALES] + alen[SCALES])
                    m.next = "ADDR3"
                else:
                    m.d.sync += end.eq(addr[SCALES] + alen[SCALES])
                    m.next = "CHECK"
            if zeros:
                with m.State("ADDR3"):
                    m.d.sync += end.eq(addr[ZEROS] + alen[ZEROS])
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.status.valid.eq(1)
                with m.If(end > cfg.hbm_bytes):
                    m.d.comb += self.status.bad_range.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += [self.status.ok.eq(1), load.eq(1)]
                    for s in streams:
                        m.d.sync += [rq.raddr[s].eq(addr[s]), caddr[s].eq(addr[s])]
                    m.d.sync += [run.eq(nonempty), ti.eq(0), tj.eq(0), pc.eq(0), need.eq(need_of(C(0, 30), 1)),
                                 gpos.eq(pofs & gtiles),
                                 ti_rem.eq(kt1), row_last.eq(kt_one), tj_rem.eq(self.nt - 1),
                                 col_last.eq(self.nt == 1)]
                    m.next = "IDLE"
        return m


def times(x, c: int):
    """x * c for a constant c, as shifted copies of x added (c's set bits: one adder for the two of 3 * 2^k)."""
    terms = [x << b for b in range(c.bit_length()) if c >> b & 1]
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


def _desc_fields():
    """(name, byte offset, bytes) of the descriptor's fields (`dfx.formats.DESCRIPTOR`)."""
    off, out = 0, []
    for name, code, _ in formats.DESCRIPTOR:
        size = struct.calcsize("<" + code)
        out.append((name, off, size))
        off += size
    return out
