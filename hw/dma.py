"""AXI4 memory interfaces of the core and the DMA engine (LOAD, STORE, STORE_K, STORE_VT).

AXI4 masters. `axi4_signature(data_bits)` is one AXI4 master port (64-bit addresses, INCR bursts, one-bit
IDs always 0: every port keeps its transactions in order), member names as AXI spells them (`awvalid`,
`araddr`, ...), so the top level (hw/top.py) flattens them into Vitis' `m_axi_<port>_<signal>` names. The core
has one port per HBM pseudo-channel (`cfg.hbm_width` bits) and one DDR port of `16 * d` bits (one VBUF entry per
beat: the DMA moves a whole entry per beat when the addresses line up).

Address spaces (`dfx.isa`): DDR is byte-addressed from the DDR base register. HBM is *striped*: byte b of
the HBM space lives in pseudo-channel (b // cb) % C at channel offset (b // (cb * C)) * cb + b % cb, with
cb = hbm_width / 8 bytes and C channels (`dfx.program.stripe`), from that channel's base register.

The DMA engine. Every DMA instruction is a list of *runs* of contiguous FP16 elements (off-chip byte address,
VBUF element index, count):

    LOAD / STORE   one run of n elements at addr (+ TOKEN or POS times stride)
    STORE_K        ceil(n/d) runs of up to d elements: row tile i of column POS of a column-major tiled
                   matrix (K cache append)
    STORE_VT       n runs of one element: row POS of a row-major tiled matrix, element c going to tile
                   (POS // d) * ceil(n/l) + c // l, lane c % l, row POS % d (the transpose unit: V cache)

and every run is cut into *pieces* that lie inside one memory beat and one VBUF entry (pieces of aligned LOADs
and STOREs are whole beats). A run's beats form, on every port it touches (HBM striping deals them round-robin
over the pseudo-channels), one range of consecutive beats, moved as AXI4 INCR bursts of up to `AXI_BURST_BEATS`
beats that never cross a 4 KiB boundary:

- reads (LOAD): each port issues its ARs on its own, up to `AXI_MAX_OUTSTANDING_READS` bursts in flight, while
  the pieces queue in order in a descriptor FIFO; R data is matched to its piece in order (each port returns its
  beats in order), shifted into place, its binary16 lanes cleaned as the simulator loads them (DAZ: a subnormal
  becomes a zero of its sign, a NaN 0x7E00) and written into VBUF with a per-element mask. A beat holding two
  pieces is taken (RREADY) with its second.
- writes (STORE, STORE_K, STORE_VT): a beat gathers its pieces' bytes and strobes (no read-modify-write) and goes
  out as one W beat from registers (the beat's data and its burst's AW fields shared by the ports, a valid per
  port, so AWREADY and WREADY reach only those registers); a burst's AW is handed over with its first beat, while
  the port has fewer than `AXI_MAX_OUTSTANDING_WRITES` bursts unanswered. Every B response is counted: the instruction is `done` only
  when every read has arrived and every write is acknowledged (what FENCE and the scoreboard wait for).

Before moving anything the engine checks the instruction: an index register `dfx.isa.INDEX_REGS` does not
define, or a K/V cache store to DDR, raises STATUS.illegal_opcode; an off-chip range beyond the config's
capacity (cfg.ddr_bytes, cfg.hbm_bytes) or an odd byte address raises STATUS.address_range. Either ends the
instruction at once (`done`). The controller drives it through the engine contract (hw/core_engine.py).
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

from amaranth import Cat, C, Module, Mux, Signal, Value, signed
from amaranth.hdl import Array
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from dfx import isa
from dfx.config import AccelConfig

from .core_engine import Engine
from .decoder import Opcode, format_layout

AXI_ADDR_BITS = 64
BURST_INCR = 1
# The DMA engine's AXI traffic (read by the performance model's HBM/DDR model, dfx.perf.hbm), per port: INCR bursts
# of up to AXI_BURST_BEATS beats, never across 4 KiB; up to AXI_MAX_OUTSTANDING_READS read bursts in flight and
# AXI_MAX_OUTSTANDING_WRITES write bursts awaiting their B response.
#
# Sizing by Little's law (beats in flight = round-trip latency x beats per cycle). The DMA moves one beat per
# cycle. The U280 HBM's read latency is at most Shuhai's page-miss figure, 137.8 ns (Wang et al., FCCM 2020, DOI
# 10.1109/FCCM48280.2020.00024: 62 cycles of the 450 MHz AXI clock; boards/u280/board.json hbm.page_miss_latency_ns)
# = 27.6 cycles of the 200 MHz core clock, plus 8 cycles through the platform's clock and width converters
# (board.json hbm.converter_cycles, an assumption) = 36 cycles: 36 beats in flight keep a port busy. 4 bursts of
# 16 beats = 64 beats cover it with 1.8x margin for the loaded latency (queueing behind other traffic, refresh),
# i.e. a round trip up to 64 cycles = 320 ns. 16 beats of the dfx preset's 64-byte HBM beat are 1 KiB, one HBM
# page (PG276), read as row hits. Writes: the write response comes about 150 ns (30 cycles, board.json
# hbm.write_latency_ns, an assumption) after the data; stores move a beat every 5 cycles (STORE_PIECE_CYCLES), so
# 6 beats are waiting at a time; 4 bursts leave margin. (The matrix engine's weight streamer issues its own INCR bursts of
# up to 256 beats within 4 KiB: hw/core_mpu.py.)
AXI_BURST_BEATS = 16
AXI_MAX_OUTSTANDING_READS = 4
AXI_MAX_OUTSTANDING_WRITES = 4
DMA_PIECES_IN_FLIGHT = AXI_BURST_BEATS * AXI_MAX_OUTSTANDING_READS    # the read-piece descriptor FIFO
LOAD_SHIFT_SPLIT = 3      # a load's byte shift: these low bits of the offset in its first stage, the rest (words) next
AXI_MEMBERS_OUT = ("awvalid", "awaddr", "awlen", "awsize", "awburst", "wvalid", "wdata", "wstrb", "wlast",
                   "bready", "arvalid", "araddr", "arlen", "arsize", "arburst", "rready")
AXI_HANDSHAKE_IN = ("awready", "wready", "bvalid", "arready", "rvalid")


def axi4_signature(data_bits: int) -> wiring.Signature:
    """One AXI4 master port (the master's view), 64-bit addresses, IDs always 0."""
    a = AXI_ADDR_BITS
    return wiring.Signature({
        "awid": Out(1), "arid": Out(1), "bid": In(1), "rid": In(1),     # always 0 (cocotbext-axi wants them)
        "awvalid": Out(1), "awready": In(1), "awaddr": Out(a), "awlen": Out(8), "awsize": Out(3),
        "awburst": Out(2),
        "wvalid": Out(1), "wready": In(1), "wdata": Out(data_bits), "wstrb": Out(data_bits // 8), "wlast": Out(1),
        "bvalid": In(1), "bready": Out(1), "bresp": In(2),
        "arvalid": Out(1), "arready": In(1), "araddr": Out(a), "arlen": Out(8), "arsize": Out(3),
        "arburst": Out(2),
        "rvalid": In(1), "rready": Out(1), "rdata": In(data_bits), "rresp": In(2), "rlast": In(1),
    })


def ddr_data_bits(cfg: AccelConfig) -> int:
    """Width of the DDR port: one VBUF entry (d binary16 elements) per beat."""
    return 16 * cfg.d


def log2(x: int) -> int:
    assert x > 0 and x & (x - 1) == 0, x
    return x.bit_length() - 1


def hbm_port_names(cfg: AccelConfig) -> list[str]:
    return [f"hbm{c}" for c in range(cfg.hbm_channels)]


def lane_mask(width: int, lo, count=None, end=None) -> "Value":
    """A `width`-bit mask with bits lo .. lo+count-1 (or lo .. end-1) set (lo, count, end: Amaranth values)."""
    hi = lo + count if end is None else end
    return Cat(*[(lo <= r) & (r < hi) for r in range(width)])


def shift_units(x, amount, unit: int, left: bool, m: Module | None = None) -> Value:
    """`x` shifted by `amount * unit` bits, zero-filled, as wide as `x`: `(x << amount * unit)[:len(x)]` or
    `x >> amount * unit`, built as one 2:1 mux stage per bit of `amount`. (Amaranth's `<<` by a value widens
    its result by 2**width(amount) - 1 bits, and `y << int` is a shift by a Const of that width, so
    `x << (amount << 4)` on a VBUF entry grows past the 65,536-bit net limit at d=64.) With a module `m`, every
    stage is a signal of its own: each stage reads its input twice, so as one expression the stages form a DAG
    that the netlist builder expands into 2**stages copies (quadratic in d: 37 GB at d=32, out of memory at
    the dfx preset)."""
    x = Value.cast(x)
    amount = Value.cast(amount)
    w = len(x)
    for i in range(len(amount)):
        s = unit << i
        if s >= w:
            moved = C(0, w)
        elif left:
            moved = Cat(C(0, s), x[:w - s])
        else:
            moved = Cat(x[s:], C(0, s))
        x = Mux(amount[i], moved, x)
        if m is not None:
            stage = Signal(w, name=f"shift{unit}_{'l' if left else 'r'}{i}")
            m.d.comb += stage.eq(x)
            x = stage
    return x


def daz16_lanes(x) -> Value:
    """Every binary16 lane of `x` as the functional simulator loads it (`dfx.numerics.daz16`, docs/numerics.md,
    "Subnormals, infinities, NaN"): a subnormal becomes a zero of its sign, a NaN the canonical 0x7E00."""
    x = Value.cast(x)
    out = []
    for i in range(len(x) // 16):
        e = x[16 * i + 10:16 * i + 15]
        man = x[16 * i:16 * i + 10]
        sign = x[16 * i + 15]
        out.append(Mux(e == 0, Cat(C(0, 15), sign), Mux((e == 31) & man.any(), C(0x7E00, 16), x[16 * i:16 * i + 16])))
    return Cat(*out)


class DmaEngine(Engine):
    """The DMA unit (see the module docstring). `ctl.start` (one cycle, `ctl.word` valid) begins an instruction;
    `ctl.done` pulses when it has completed (every write acknowledged), with `ctl.err` telling why if it stopped.
    Besides `ctl`: TOKEN, POS, the DDR and HBM channel bases, the DDR AXI4 master and one per HBM pseudo-channel.

    Cycle counts, read by the performance model's serial-issue mode (dfx.perf.timing): from `start` to `done`,
    SETUP_CYCLES + RUN_CYCLES per run + then, for a LOAD, LOAD_PIECE_CYCLES per piece + the read latency +
    LOAD_DRAIN_CYCLES; for a store, STORE_PIECE_CYCLES per piece + the write response + STORE_DRAIN_CYCLES."""

    UNIT = isa.Unit.DMA
    ERRORS = ("illegal_opcode", "address_range")
    VBUF_READS = ("ra",)

    SETUP_CYCLES = 6          # SETUP, SETUP2, SETUP3, SETUP4, RANGE, CHECK
    RUN_CYCLES = 2            # NEXT_RUN, LOAD_RUN, once per run
    LOAD_PIECE_CYCLES = 1     # PIECE: one AR per cycle, reads pipelined (piece-descriptor FIFO)
    LOAD_STAGES = 4           # registers from an R beat to its VBUF write (elaborate: the 300 MHz depth)
    AR_CYCLES = 1             # a port's first AR a cycle after its run is loaded (the AR path from registers)
    # after the last R beat's latency: the descriptor FIFO's match, DRAIN; plus the AR's and the load stages' delay
    LOAD_DRAIN_CYCLES = 3 + AR_CYCLES + LOAD_STAGES
    # PIECE (VBUF read), READ (its data registered), ALIGN (lane shift), ALIGN2 (byte shift), WRITE (the beat to its port)
    STORE_PIECE_CYCLES = 5
    STORE_DRAIN_CYCLES = 2    # the port's W register, then DRAIN sees the last B response counted

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            self._MustUse__silence = True
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        members = {
            "token": In(32), "pos": In(32),
            "ddr_base": In(AXI_ADDR_BITS), "hbm_base": In(data.ArrayLayout(AXI_ADDR_BITS, cfg.hbm_channels)),
            "ddr": Out(axi4_signature(ddr_data_bits(cfg))),
        }
        for name in hbm_port_names(cfg):
            members[name] = Out(axi4_signature(cfg.hbm_width))
        super().__init__(cfg, members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        d, l, nch = cfg.d, cfg.l, cfg.hbm_channels
        cb, ddrb = cfg.channel_beat_bytes, ddr_data_bits(cfg) // 8
        hbm_ports = [getattr(self, n) for n in hbm_port_names(cfg)]
        ctl, vbuf = self.ctl, self.ctl.vbuf

        # ---- the instruction, latched at start (fields as `dfx.isa.DMA` defines them)
        ins = Signal(format_layout(isa.DMA))
        hbm, n, vaddr, addr, index, stride = ins.hbm, ins.n, ins.vaddr, ins.addr, ins.index, ins.stride
        a0, base = Signal(64, name="a0"), Signal(64, name="base")
        # SETUP's partial products: 16 bits of the index (TOKEN / POS) times the stride, 16 bits of the tile row
        # times its tile count
        pa_lo, pa_hi = (Signal(16 + len(stride), name=nm) for nm in ("pa_lo", "pa_hi"))
        pt_lo, pt_hi = (Signal(16 + isa.LEN_BITS, name=nm) for nm in ("pt_lo", "pt_hi"))
        run_bits = isa.LEN_BITS + 1                           # runs: up to n (STORE_VT), and counters to it
        kt, nt, tbase, runs = Signal(isa.LEN_BITS), Signal(isa.LEN_BITS), Signal(32 + isa.LEN_BITS), Signal(run_bits)
        tend = Signal(33 + isa.LEN_BITS, name="tend")         # tbase + the tiles of one row (RANGE's end)
        tm, tk = Signal(32, name="tm"), Signal(isa.LEN_BITS, name="tk")   # the tile row, the tiles per row (SETUP)
        # RANGE's limits, made before it (the 300 MHz depth: one comparison there): the last start a plain run's
        # 2n bytes fit below, and the last tile end a cache store's tiles fit below (signed: below 0, none fits)
        cap = Mux(hbm, cfg.hbm_bytes, cfg.ddr_bytes)
        lim_plain, lim_cache = Signal(signed(66), name="lim_plain"), Signal(signed(66), name="lim_cache")
        # the opcode's classes, registered at start beside `ins` (the 300 MHz depth)
        is_k, is_vt, is_store = Signal(name="is_k"), Signal(name="is_vt"), Signal(name="is_store")

        # ---- run and piece state
        ri = Signal(run_bits)
        cur_a, cur_left, cur_v = Signal(64), Signal(run_bits), Signal(32)
        # cur_a as registers: its bits within the widest beat (`cur_lo`) and above (`cur_hi`, with `cur_hi1` = cur_hi
        # + 1 beside it), so that a piece's advance (inside one beat) adds only within the beat and takes the carry
        # into the high part from a register (the 300 MHz depth: no 64-bit add in the piece loop)
        lo_bits = log2(max(cb, ddrb))
        cur_lo, cur_hi, cur_hi1 = (Signal(w, name=nm) for w, nm in ((lo_bits, "cur_lo"), (64 - lo_bits, "cur_hi"),
                                                                      (64 - lo_bits, "cur_hi1")))
        m.d.comb += cur_a.eq(Cat(cur_lo, cur_hi))
        pos = self.pos
        log2tb = log2(cfg.tile_bytes)
        run_a = Signal(64)
        # a cache store's run ri starts at kv_base + ri * (a tile, STORE_K; a lane of d elements, STORE_VT), with
        # kv_base = base + tbase * tile bytes + the POS row's offset in its tile, registered in RANGE (`kv_pos`, the
        # offset plus base, in SETUP4): one add per run (the 300 MHz depth)
        kv_pos, kv_base = Signal(64, name="kv_pos"), Signal(64, name="kv_base")
        run_cnt = Signal(run_bits)
        run_v = Signal(32)
        v0 = vaddr * d
        with m.If(is_k):
            m.d.comb += [
                run_a.eq(kv_base + (ri << log2tb)),
                run_cnt.eq(Mux(n - (ri << log2(d)) > d, d, n - (ri << log2(d)))),
                run_v.eq(v0 + (ri << log2(d))),
            ]
        with m.Elif(is_vt):
            m.d.comb += [
                run_a.eq(kv_base + (ri << (log2(d) + 1))),      # (tile ri // l, lane ri % l: ri * 2d bytes)
                run_cnt.eq(1),
                run_v.eq(v0 + ri),
            ]
        with m.Else():
            m.d.comb += [run_a.eq(a0), run_cnt.eq(n), run_v.eq(v0)]

        off = Signal(range(max(cb, ddrb)))
        m.d.comb += off.eq(Mux(hbm, cur_a & (cb - 1), cur_a & (ddrb - 1)))
        to_beat = Signal(range(max(cb, ddrb) + 1))
        m.d.comb += to_beat.eq(Mux(hbm, cb - off, ddrb - off) >> 1)
        lane = Signal(range(d))
        m.d.comb += lane.eq(cur_v & (d - 1))
        to_entry = Signal(range(d + 1))
        m.d.comb += to_entry.eq(d - lane)
        # The piece's length from registers (the 300 MHz depth): `tb` and `te`, the elements from the piece's start
        # to the end of its memory beat and of its VBUF entry, and `tb_first` = (tb <= te), kept beside cur_* (set
        # in LOAD_RUN, advanced with each piece). A piece that does not end its run is min(tb, te) long (`pc`);
        # after it, the boundary it reached restarts at a whole beat or a whole entry. So the loop compares no
        # value it has just computed, and the run's count enters only at its last piece.
        dw = max(max(cb, ddrb) // 2, d).bit_length() + 1
        tb, te = Signal(dw, name="tb"), Signal(dw, name="te")
        # (`tb_first` is the sign of `t_df` = te - tb, a register kept beside them: the next piece's difference is
        # one addition of a constant to it, so no comparison follows a subtraction, the 300 MHz depth)
        t_df = Signal(signed(dw + 1), name="t_df")
        tb_first = Signal(name="tb_first")
        m.d.comb += tb_first.eq(~t_df[-1])
        pc = Signal(range(d + 1))
        m.d.comb += pc.eq(Mux(tb_first, tb, te))
        run_end = Signal()                                 # the piece ends its run
        m.d.comb += run_end.eq((cur_left <= tb) & (cur_left <= te))
        cnt = Signal(range(d + 1))
        m.d.comb += cnt.eq(Mux(run_end, cur_left, pc))
        beat = Mux(hbm, cb // 2, ddrb // 2)
        t_eq = Signal()                                    # tb == te
        m.d.comb += t_eq.eq(t_df == 0)
        ntb = Mux(tb_first, beat, (tb - te)[:dw])
        nte = Mux(~tb_first | t_eq, d, (te - tb)[:dw])
        # nte - ntb: a whole beat after the beat's end (and a whole entry too where both ended), or a whole entry
        # after the entry's end
        ndf = Mux(tb_first & t_eq, d - beat, t_df + Mux(tb_first, -beat, d))
        entry = Signal(isa.VADDR_BITS)
        m.d.comb += entry.eq(cur_v >> log2(d))
        ch = Signal(range(nch))
        m.d.comb += ch.eq((cur_a >> log2(cb)) & (nch - 1))
        last_piece = Signal()
        last_run = Signal()                                # ri + 1 >= runs (a register beside `ri`)
        m.d.comb += last_piece.eq(run_end & last_run)

        # A store's piece: its arithmetic above registered in PIECE (the piece's cur_* hold until WRITE advances),
        # so that WRITE's AXI handshakes and the next piece's state start from registers (the 300 MHz depth).
        # A load advances a piece per cycle from the comb values.
        w_cnt, w_pop, w_last, w_rend = Signal.like(cnt), Signal(), Signal(), Signal()
        w_off, w_lane, w_ch = Signal.like(off), Signal.like(lane), Signal.like(ch)
        p_cnt = Mux(is_store, w_cnt, pc)                  # the piece that advances (within its run)
        p_rend = Mux(is_store, w_rend, run_end)

        advance = Signal()
        with m.If(advance):
            with m.If(p_rend):
                m.d.sync += [ri.eq(ri + 1), last_run.eq(ri + 2 >= runs)]    # the next run is loaded in NEXT_RUN
            with m.Else():
                lo_sum = cur_lo + (p_cnt << 1)       # (<= one beat past cur_lo's beat: the carry ends the beat)
                m.d.sync += [cur_lo.eq(lo_sum[:lo_bits]), cur_v.eq(cur_v + p_cnt), cur_left.eq(cur_left - p_cnt),
                             tb.eq(ntb), te.eq(nte), t_df.eq(ndf)]
                with m.If(lo_sum[lo_bits]):
                    m.d.sync += [cur_hi.eq(cur_hi1), cur_hi1.eq(cur_hi1 + 1)]

        # ---- per-port burst state: the HBM pseudo-channels, then DDR. A run's bytes cover, on each port, one
        # range of consecutive beats (HBM striping deals the run's beats round-robin over the channels); LOAD_RUN
        # loads each port's first beat address and beat count. Reads: each port issues its ARs on its own, in
        # bursts, while it has fewer than AXI_MAX_OUTSTANDING_READS in flight. Writes: see the ports' AW and W
        # registers below.
        ports = hbm_ports + [self.ddr]
        bws = [cb] * nch + [ddrb]                          # bytes per beat of each port
        npt = len(ports)
        p_addr = [Signal(64, name=f"p{i}_addr") for i in range(npt)]       # next beat (writes) / next AR (reads)
        p_left = [Signal(run_bits, name=f"p{i}_left") for i in range(npt)]
        p_rem = [Signal(range(AXI_BURST_BEATS + 1), name=f"p{i}_rem") for i in range(npt)]   # beats left in a W burst
        p_out = [Signal(range(max(AXI_MAX_OUTSTANDING_READS, AXI_MAX_OUTSTANDING_WRITES) + 1), name=f"p{i}_out")
                 for i in range(npt)]
        # (stores only) the piece's port, one-hot, registered in PIECE beside `w_ch`
        p_sel = [Signal(name=f"p{i}_sel") for i in range(npt)]

        def burst_len(i):
            """Beats of the next burst on port i: what is left, at most AXI_BURST_BEATS, not across 4 KiB."""
            b4k = max(1, 4096 // bws[i])
            to4k = b4k - ((p_addr[i] >> log2(bws[i])) & (b4k - 1))
            lim = min(AXI_BURST_BEATS, b4k)
            x = Mux(p_left[i] < lim, p_left[i], lim)
            bl = Signal(range(AXI_BURST_BEATS + 1), name=f"p{i}_blen")
            # (and bl - 1, AWLEN, registered with it, no subtraction after the choice: to4k - 1 is the complement
            # of the page offset; the 300 MHz depth)
            bl1 = Signal(8, name=f"p{i}_blen_m1")
            m.d.sync += [bl.eq(Mux(to4k < x, to4k, x)),
                         bl1.eq(Mux(to4k < x, ~(p_addr[i] >> log2(bws[i]))[:log2(b4k)],
                                    Mux(p_left[i] < lim, p_left[i] - 1, lim - 1)))]
            blen_m1.append(bl1)
            return bl

        # The AR and AW path from registers (the 300 MHz depth): each port's next burst length (`blen`), whether it
        # has beats left to read and room for another read (`p_more`), all computed a cycle after p_addr / p_left
        # / p_out; `p_fresh` is low for the cycle after a change (an AR, a run's load), when they are stale. A
        # store's next burst starts at least three cycles after its previous beat (STORE_PIECE_CYCLES).

        blen_m1 = []
        blen = [burst_len(i) for i in range(npt)]
        p_more = [Signal(name=f"p{i}_more") for i in range(npt)]
        p_fresh = [Signal(name=f"p{i}_fresh") for i in range(npt)]
        # A run's beats on each port, in two steps from registers (the 300 MHz depth). First (`load_run`), from the
        # run's first address and count: its first stripe (`s_a0`, and `s_a1` = s_a0 + 1; a stripe is one beat of
        # every channel), each channel against the channels of its first and last beats (`s_lt`: before the
        # first, `s_le`: not after the last), the whole stripes from the first to the last (`s_q`), its first DDR
        # beat and its last beat's offset from it (`s_da`, `s_dn`: the count less one). A cycle later
        # (`load_run2`), each port's first beat address and beat count. A LOAD's or STORE's one run is a0 and n,
        # registers: the first step is NEXT_RUN, the second LOAD_RUN. A cache store's runs are registered in
        # NEXT_RUN (cur_*): the first step is LOAD_RUN, the second PIECE, still before its first beat (WRITE).
        lc, ld, sb = log2(cb), log2(ddrb), log2(cb) + log2(nch)
        plain = ~is_k & ~is_vt
        ra, rn = Mux(plain, a0, cur_a), Mux(plain, n, cur_left)
        span = (ra & ((1 << sb) - 1)) + (rn << 1) - 1        # the run's last byte from its stripe's start
        dspan = (ra & (ddrb - 1)) + (rn << 1) - 1
        s_a0, s_a1 = Signal(64 - sb, name="s_a0"), Signal(64 - sb, name="s_a1")
        s_q, s_dn = Signal(run_bits, name="s_q"), Signal(run_bits, name="s_dn")
        s_da = Signal(64 - ld, name="s_da")
        s_lt, s_le = Signal(nch, name="s_lt"), Signal(nch, name="s_le")
        load_run, load_run2 = Signal(), Signal()
        m.d.sync += load_run2.eq(load_run)
        with m.If(load_run):
            m.d.sync += [s_a0.eq(ra >> sb), s_a1.eq((ra >> sb) + 1), s_q.eq(span >> sb), s_da.eq(ra >> ld),
                         s_dn.eq(dspan >> ld),
                         s_lt.eq(Cat(*[c < ((ra >> lc) & (nch - 1)) for c in range(nch)])),
                         s_le.eq(Cat(C(1, 1), *[c <= ((span >> lc) & (nch - 1)) for c in range(1, nch)]))]
        with m.If(load_run2):
            for c in range(nch):
                m.d.sync += [p_addr[c].eq(self.hbm_base[c] + (Mux(s_lt[c], s_a1, s_a0) << lc)),
                             p_left[c].eq(Mux(hbm, s_q + (s_le[c] if c else 1) - s_lt[c], 0))]
            m.d.sync += [p_addr[nch].eq(self.ddr_base + (s_da << ld)), p_left[nch].eq(Mux(hbm, 0, s_dn + 1))]
            m.d.sync += [p_rem[i].eq(0) for i in range(npt)]

        # ---- reads: ARs per port; piece descriptors of the reads in flight, in order
        meta_layout = data.StructLayout({"hbm": 1, "ch": range(nch), "off": range(max(cb, ddrb)),
                                         "lane": range(d), "cnt": range(d + 1), "entry": isa.VADDR_BITS,
                                         "pop": 1})
        m.submodules.meta = meta = SyncFIFOBuffered(width=meta_layout.size, depth=DMA_PIECES_IN_FLIGHT)
        mh = data.View(meta_layout, meta.r_data)
        rdata = Signal(max(8 * cb, 8 * ddrb))
        rvalid = Signal()
        with m.If(mh.hbm):
            m.d.comb += [rdata.eq(Array(p.rdata for p in hbm_ports)[mh.ch]),
                         rvalid.eq(Array(p.rvalid for p in hbm_ports)[mh.ch])]
        with m.Else():
            m.d.comb += [rdata.eq(self.ddr.rdata), rvalid.eq(self.ddr.rvalid)]
        # R data reaches VBUF's shared write port (hw/buffers.py) through four registers (`LOAD_STAGES`, the 300 MHz
        # depth): the port's beat as it is (out of the 33:1 port multiplexer); shifted by its byte offset's low 3
        # bits and cleaned (DAZ: the elements then sit on the 16-bit grid, whatever the offset); shifted by its
        # 8-byte words; placed at its lane in the holding register (`h_*`) whose write request VBUF sees, so no other
        # engine's grant (`w_rdy`) follows this one's R path. Each stage moves when the next one has room. A beat
        # holding two pieces (a run not aligned to VBUF entries) is taken (RREADY) with its second.
        wide = max(8 * cb, 8 * ddrb, 16 * d)

        def stage(k, width):
            return (Signal(name=f"s{k}_v"), Signal(width, name=f"s{k}_data"), Signal.like(mh.off, name=f"s{k}_off"),
                    Signal.like(mh.lane, name=f"s{k}_lane"), Signal.like(vbuf.w_addr, name=f"s{k}_addr"),
                    Signal.like(vbuf.w_en, name=f"s{k}_en"))
        st = [stage(0, len(rdata)), stage(1, wide), stage(2, 16 * d)]
        hv, h_addr, h_en, h_data = (Signal(name="h_v"), Signal.like(vbuf.w_addr, name="h_addr"),
                                    Signal.like(vbuf.w_en, name="h_en"), Signal.like(vbuf.w_data, name="h_data"))
        # spaces[k]: stage k loads this cycle (it is empty or the next one loads); the last, the holding register's
        spaces = [~hv | vbuf.w_rdy]
        for k in reversed(range(len(st))):
            spaces.insert(0, ~st[k][0] | spaces[0])
        space = spaces[0]
        m.d.comb += self.ddr.rready.eq(meta.r_rdy & ~mh.hbm & space & mh.pop)
        for c, p in enumerate(hbm_ports):
            m.d.comb += p.rready.eq(meta.r_rdy & mh.hbm & (mh.ch == c) & space & mh.pop)
        got, req = Signal(name="r_got"), Signal(name="r_req")
        m.d.comb += [req.eq(meta.r_rdy & rvalid), got.eq(req & space), meta.r_en.eq(got)]
        s0, s1, s2 = st
        made = [
            (got, rdata, mh.off, mh.lane, mh.entry, lane_mask(d, mh.lane, mh.cnt)),
            (s0[0], daz16_lanes(shift_units(Cat(s0[1], C(0, wide - len(s0[1]))), s0[2][:LOAD_SHIFT_SPLIT], 8,
                                            left=False, m=m)), *s0[2:]),
            (s1[0], shift_units(s1[1], s1[2][LOAD_SHIFT_SPLIT:], 8 << LOAD_SHIFT_SPLIT, left=False, m=m)[:16 * d],
             *s1[2:]),
        ]
        for k, (regs, vals) in enumerate(zip(st, made)):
            with m.If(spaces[k]):
                m.d.sync += [r.eq(v) for r, v in zip(regs, vals)]
        with m.If(spaces[len(st)]):
            m.d.sync += [hv.eq(s2[0]), h_addr.eq(s2[4]), h_en.eq(s2[5]),
                         h_data.eq(shift_units(s2[1], s2[3], 16, left=True, m=m))]
        with m.If(hv):
            m.d.comb += [vbuf.w_req.eq(1), vbuf.w_addr.eq(h_addr), vbuf.w_en.eq(h_en), vbuf.w_data.eq(h_data)]
        pop = Signal()                                     # the piece ends its memory beat
        m.d.comb += [pop.eq(tb_first | run_end),
                     meta.w_data.eq(Cat(hbm, ch, off, lane, cnt, entry, pop))]
        reading = Signal()                                 # a LOAD from LOAD_RUN to done (a register)
        ld_piece = Signal()                                # ... in PIECE (a register: the descriptor FIFO's write
        m.d.comb += meta.w_en.eq(ld_piece & meta.w_rdy)    # enable from registers, the 300 MHz depth)
        for i, p in enumerate(ports):
            m.d.comb += [p.arvalid.eq(reading & p_more[i] & p_fresh[i]), p.araddr.eq(p_addr[i]),
                         p.arlen.eq(blen[i] - 1)]
            m.d.sync += [p_more[i].eq((p_left[i] != 0) & (p_out[i] < AXI_MAX_OUTSTANDING_READS)),
                         p_fresh[i].eq(~(p.arvalid & p.arready) & ~load_run & ~load_run2)]
            with m.If(p.arvalid & p.arready):
                m.d.sync += [p_addr[i].eq(p_addr[i] + (blen[i] << log2(bws[i]))), p_left[i].eq(p_left[i] - blen[i])]

        # ---- writes: a memory beat gathers its pieces (byte strobes), then goes out as one W beat of a burst
        wdata_bits = max(8 * cb, 8 * ddrb)
        # the piece's data over three registers (the 300 MHz depth): the VBUF entry as read (`st_raw`, in READ:
        # the block RAM's output and VBUF's transparency multiplexer then feed nothing more; Vivado can pack it as
        # the RAM's output register), shifted to its first lane (`st_elems`, in ALIGN), then to its byte offset in
        # the beat (`st_data`, in ALIGN2)
        st_raw, st_elems, st_data = Signal(16 * d, name="st_raw"), Signal(16 * d), Signal(wdata_bits)
        elems = shift_units(st_raw, w_lane, 16, left=False, m=m)
        placed = shift_units(Cat(st_elems, C(0, max(0, wdata_bits - 16 * d)))[:wdata_bits], w_off, 8, left=True, m=m)
        st_strb = Signal(wdata_bits // 8)                 # the piece's strobes, registered in ALIGN2
        w_end = Signal(range(2 * max(cb, ddrb) + 1))       # the piece's end byte in its beat, registered in ALIGN
        acc_data, acc_strb = Signal(wdata_bits), Signal(wdata_bits // 8)
        beat_data, beat_strb = Signal(wdata_bits), Signal(wdata_bits // 8)
        m.d.comb += [beat_data.eq(acc_data | (st_data & Cat(*[b for b in st_strb for _ in range(8)]))),
                     beat_strb.eq(acc_strb | st_strb)]
        emit = Signal()                                    # WRITE of a piece that ends its beat
        beat_done = Signal()                               # ... the beat (and its burst's AW) taken
        for p in ports:
            m.d.comb += [p.bready.eq(1), p.arburst.eq(BURST_INCR), p.awburst.eq(BURST_INCR)]
        m.d.comb += [self.ddr.arsize.eq(log2(ddrb)), self.ddr.awsize.eq(log2(ddrb))]
        for p in hbm_ports:
            m.d.comb += [p.arsize.eq(log2(cb)), p.awsize.eq(log2(cb))]
        # The ports' AW and W come from registers (one beat: a store writes a beat at most every STORE_PIECE_CYCLES):
        # the piece walker hands a beat over when no port still holds one, so AWREADY and WREADY reach only those
        # registers (the 300 MHz depth). The beat's data, strobes, last flag and its burst's AW fields are shared
        # by the ports; each port has its own valids. A burst's first beat hands over its AW with it.
        w_d, w_s, w_l = Signal(wdata_bits, name="w_d"), Signal(wdata_bits // 8, name="w_s"), Signal(name="w_l")
        aw_a, aw_l = Signal(64, name="aw_a"), Signal(8, name="aw_l")
        aw_v = [Signal(name=f"p{i}_aw_v") for i in range(npt)]
        w_v = [Signal(name=f"p{i}_w_v") for i in range(npt)]
        w_free, w_free_r = Signal(), Signal()          # no port holds a beat (now; a cycle ago: a register, safe
        m.d.comb += w_free.eq(~Cat(*aw_v, *w_v).any())    # since a beat is handed over at most every 4th cycle)
        m.d.sync += w_free_r.eq(w_free)
        news = [p_rem[i] == 0 for i in range(npt)]
        oks = [~news[i] | (p_out[i] < AXI_MAX_OUTSTANDING_WRITES) for i in range(npt)]

        def at_port(vals):
            """The value of the piece's port (`w_ch` of the HBM channels, or DDR): a mux, not a priority chain."""
            return Mux(hbm, Array(vals[:nch])[w_ch], vals[nch]) if nch > 1 else Mux(hbm, vals[0], vals[nch])
        new_s = at_port(news)
        # (`ok_r`: the port may take the beat (its burst's AW within the outstanding writes), a register made from
        # the piece's port each cycle: fresh in WRITE, since `w_ch` and the port's p_rem / p_out last changed at
        # least two cycles before (PIECE, ALIGN, ALIGN2), save B responses, which only free it)
        ok_r = Signal()
        m.d.sync += ok_r.eq(at_port(oks))
        m.d.comb += beat_done.eq(emit & w_free_r & ok_r)
        with m.If(beat_done):
            m.d.sync += [w_d.eq(beat_data), w_s.eq(beat_strb),
                         w_l.eq(Mux(new_s, at_port([b == 1 for b in blen]), at_port([r == 1 for r in p_rem])))]
            with m.If(new_s):
                m.d.sync += [aw_a.eq(at_port(p_addr)), aw_l.eq(at_port(blen_m1))]
        for i, p in enumerate(ports):
            fin = Signal(name=f"p{i}_fin")
            m.d.comb += [fin.eq(beat_done & p_sel[i]),
                         p.awvalid.eq(aw_v[i]), p.awaddr.eq(aw_a), p.awlen.eq(aw_l),
                         p.wvalid.eq(w_v[i]), p.wdata.eq(w_d), p.wstrb.eq(w_s), p.wlast.eq(w_l)]
            with m.If(p.awready):
                m.d.sync += aw_v[i].eq(0)
            with m.If(p.wready):
                m.d.sync += w_v[i].eq(0)
            with m.If(fin):
                m.d.sync += [w_v[i].eq(1), p_rem[i].eq(Mux(news[i], blen[i], p_rem[i]) - 1),
                             p_addr[i].eq(p_addr[i] + bws[i]), p_left[i].eq(p_left[i] - 1)]
                with m.If(news[i]):
                    m.d.sync += aw_v[i].eq(1)
            r_end = p.rvalid & p.rready & p.rlast
            b_end = p.bvalid & p.bready
            m.d.sync += p_out[i].eq(p_out[i] + ((p.arvalid & p.arready) | (fin & news[i])) - (r_end | b_end))
        quiet = Signal()                                   # every read in, every write answered
        m.d.comb += quiet.eq((meta.level == 0) & ~Cat(*[x[0] for x in st]).any() & ~hv
                             & Cat(*[o == 0 for o in p_out]).all()
                             & w_free)

        # ---- control
        index_regs = {"TOKEN": self.token, "POS": pos}
        illegal, bad, empty = Signal(), Signal(), Signal()     # RANGE's checks
        m.d.comb += ctl.busy.eq(1)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += ctl.busy.eq(0)
                with m.If(ctl.start):
                    w_op = ctl.word.dma.opcode
                    m.d.sync += [ins.eq(ctl.word.dma), ri.eq(0), is_k.eq(w_op == Opcode.STORE_K),
                                 is_vt.eq(w_op == Opcode.STORE_VT), is_store.eq(w_op != Opcode.LOAD)]
                    m.next = "SETUP"
            # The setup arithmetic over registers (the 300 MHz depth): each product as two partial products of at
            # most 16 x 28 bits, registered (one DSP48E2 each, its input a register or a 1-LUT mux), summed a state
            # later; one adder per state after that.
            with m.State("SETUP"):
                idx = 0                                       # the row index register (none: 0)
                for code, reg in isa.INDEX_REGS.items():
                    if reg is not None:
                        idx = Mux(index == code, index_regs[reg], idx)
                m.d.sync += [
                    base.eq(Mux(hbm, addr << log2(isa.HBM_UNIT), addr)),
                    lim_plain.eq(cap - (n << 1)),          # a0 + 2n > cap iff a0 > cap - 2n
                    pa_lo.eq(idx[:16] * stride), pa_hi.eq(idx[16:32] * stride),     # a0 = idx * stride (+ base)
                    kt.eq((n + d - 1) >> log2(d)), nt.eq((n + l - 1) >> log2(l)),
                    tm.eq(Mux(is_k, pos >> log2(l), pos >> log2(d))),                # tbase = tm * tk
                    tk.eq(Mux(is_k, (n + d - 1) >> log2(d), (n + l - 1) >> log2(l))),
                ]
                m.next = "SETUP2"
            with m.State("SETUP2"):
                m.d.sync += [
                    a0.eq(pa_lo + (pa_hi << 16)),
                    pt_lo.eq(tm[:16] * tk), pt_hi.eq(tm[16:32] * tk),
                    runs.eq(Mux(is_k, kt, Mux(is_vt, n, 1))),
                    lim_cache.eq((cap - base) >> log2tb),  # base + tend * T > cap iff tend > (cap - base) // T
                ]
                m.next = "SETUP3"
            with m.State("SETUP3"):
                m.d.sync += [a0.eq(base + a0), tbase.eq(pt_lo + (pt_hi << 16)), last_run.eq(runs <= 1)]
                m.next = "SETUP4"
            with m.State("SETUP4"):
                m.d.sync += [tend.eq(tbase + Mux(is_k, kt, nt)),
                             kv_pos.eq(base + Mux(is_k, (pos & (l - 1)) << (log2(d) + 1), (pos & (d - 1)) << 1))]
                m.next = "RANGE"
            with m.State("RANGE"):                        # the checks into registers (the 300 MHz depth)
                no_index = Cat(*[index != code for code in isa.INDEX_REGS]).all()
                m.d.sync += [kv_base.eq(kv_pos + (tbase << log2tb)),
                             illegal.eq(no_index | ((is_k | is_vt) & ~hbm)), empty.eq(n == 0),
                             bad.eq(Mux(is_k | is_vt, tend > lim_cache, (a0 > lim_plain) | a0[0]))]
                m.next = "CHECK"
            with m.State("CHECK"):
                with m.If(illegal | bad):
                    m.d.comb += [ctl.done.eq(1), ctl.err.illegal_opcode.eq(illegal),
                                 ctl.err.address_range.eq(~illegal)]
                    m.next = "IDLE"
                with m.Elif(empty):
                    m.d.comb += ctl.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.next = "NEXT_RUN"
            with m.State("NEXT_RUN"):
                m.d.comb += load_run.eq(plain)
                m.d.sync += [cur_lo.eq(run_a[:lo_bits]), cur_hi.eq(run_a[lo_bits:]), cur_left.eq(run_cnt),
                             cur_v.eq(run_v)]
                m.next = "LOAD_RUN"
            with m.State("LOAD_RUN"):
                m.d.comb += load_run.eq(~plain)
                # (t_df = to_entry - to_beat = (d - beat) + off / 2 - lane, as every run starts at an even
                # address (RANGE's checks): one addition to a constant, not after to_beat's subtraction)
                m.d.sync += [cur_hi1.eq(cur_hi + 1), tb.eq(to_beat), te.eq(to_entry),
                             t_df.eq(Mux(hbm, d - cb // 2, d - ddrb // 2) + (off >> 1) - lane)]
                m.d.sync += [reading.eq(~is_store), ld_piece.eq(~is_store)]
                m.next = "PIECE"
            with m.State("PIECE"):
                with m.If(is_store):
                    m.d.comb += [vbuf.ra_en.eq(1), vbuf.ra_addr.eq(entry)]
                    m.d.sync += [w_cnt.eq(cnt), w_pop.eq(pop), w_last.eq(last_piece),
                                 w_rend.eq(run_end), w_off.eq(off), w_lane.eq(lane), w_ch.eq(ch),
                                 *[p_sel[c].eq(hbm & (ch == c)) for c in range(nch)], p_sel[nch].eq(~hbm)]
                    m.next = "READ"
                with m.Else():
                    m.d.comb += advance.eq(meta.w_rdy)
                    with m.If(meta.w_rdy & last_piece):
                        m.d.sync += ld_piece.eq(0)
                        m.next = "DRAIN"
            with m.State("READ"):
                m.d.sync += st_raw.eq(vbuf.ra_data)
                m.next = "ALIGN"
            with m.State("ALIGN"):
                m.d.sync += [st_elems.eq(elems), w_end.eq(w_off + (w_cnt << 1))]
                m.next = "ALIGN2"
            with m.State("ALIGN2"):
                m.d.sync += [st_data.eq(placed), st_strb.eq(lane_mask(wdata_bits // 8, w_off, end=w_end))]
                m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += emit.eq(w_pop)
                with m.If(~w_pop | beat_done):
                    m.d.comb += advance.eq(1)
                    m.d.sync += [acc_data.eq(Mux(w_pop, 0, beat_data)), acc_strb.eq(Mux(w_pop, 0, beat_strb))]
                    with m.If(w_last):
                        m.next = "DRAIN"
                    with m.Elif(w_rend):
                        m.next = "NEXT_RUN"
                    with m.Else():
                        m.next = "PIECE"
            with m.State("DRAIN"):
                with m.If(quiet):
                    m.d.comb += ctl.done.eq(1)
                    m.d.sync += reading.eq(0)
                    m.next = "IDLE"
        return m
