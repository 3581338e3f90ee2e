"""Instruction fetch: a prefetcher reading the instruction stream from DDR over the core's DDR AXI port.

`start` with `addr` (the absolute byte address of instruction 0: DDR base + ENTRY, 16-byte aligned) and `beats`
(the DDR beats from addr's beat to the end of DDR) begins;
the fetcher reads bursts of up to `BURST` beats of 16*d bits (d/8 instructions each) ahead into a FIFO
(issuing a burst only when the FIFO has room for it, so R is never back-pressured) and hands out the 128-bit
words in order on the `o` stream. It never reads past DDR's end (`beats`).
Words leave the FIFO through a register (`p`, the annotate stage) into a two-entry output buffer (`o.valid`,
`o.payload`: registers): the stage moves a word on whenever the buffer has a free entry, so `o.ready` (the front
end's dispatch decision) reaches only the buffer's registers, never the FIFO (the 300 MHz depth, docs/rtl.md); a
word passes stage and buffer in two cycles. `annotate` (optional, a component with `word` in and `pd` out, e.g.
hw/predecode.py's) is made from the stage's word, and its `pd` goes through the buffer beside the word: `o_pd`
belongs to `o.payload`. An annotate with an `early` input (and `zeros_of(word)`, `pre_of(word, zeros)`,
`early_from(word, pre)`) gets it made in two halves (the 300 MHz depth): `pre_of` each word as its beat enters
the FIFO (stored beside the beat; the word's zero tests, `zeros_of`, registered a stage before), then `early_from`
the word and its `pre` as the word enters the stage, registered beside it.
`flush` stops it: a burst offered on AR and not yet taken stays offered until it is (the AXI rule), outstanding
bursts are received and dropped and the FIFO emptied; `idle` says when that is over (the controller waits for it
before raising ap_done, so no read is left in flight between runs).
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import Array
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from dfx import isa
from dfx.config import AccelConfig

from .decoder import WordLayout
from .dma import AXI_ADDR_BITS, BURST_INCR, axi4_signature, ddr_data_bits, log2

BURST = 8
DEPTH = 32


class Fetch(wiring.Component):
    def __init__(self, cfg: AccelConfig, annotate=None):
        self.cfg, self.annotate = cfg, annotate
        pd_shape = annotate.pd.shape() if annotate is not None else 1
        super().__init__({
            "start": In(1), "addr": In(AXI_ADDR_BITS), "beats": In(AXI_ADDR_BITS), "flush": In(1),
            "idle": Out(1),
            "o": Out(stream.Signature(isa.WORD_BITS)), "o_pd": Out(pd_shape),
            "ddr": Out(axi4_signature(ddr_data_bits(self.cfg))),
        })

    def elaborate(self, platform):
        m = Module()
        dbits = ddr_data_bits(self.cfg)
        bb = dbits // 8
        per_beat = dbits // isa.WORD_BITS
        staged = self.annotate is not None and "early" in self.annotate.signature.members
        pre_lay = self.annotate.pre_layout() if staged else None
        eb = pre_lay.size if staged else 0                  # each word's `pre` half, in the FIFO beside the beat
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=dbits + per_beat * eb, depth=DEPTH)
        fa = Signal(AXI_ADDR_BITS)
        outstanding = Signal(range(DEPTH + BURST + 1))
        wi = Signal(range(per_beat))
        issuing = Signal()

        # the next burst from registers (the 300 MHz depth): `left` beats to DDR's end counts down; the beats to
        # the 4 KiB page's end and `left`, each capped at BURST (`b_page`, `b_left`), are registered a cycle after
        # fa / left change, `burst` (the smaller) and `room` a cycle later; `fresh` is low for the two cycles
        # after a change (`fresh1` for the first), so an AR goes out at most every 3rd cycle (a burst is BURST beats)
        b4k = 4096 // bb
        to4k = b4k - ((fa >> log2(bb)) & (b4k - 1))
        left = Signal(AXI_ADDR_BITS)
        burst, fresh, fresh1 = Signal(range(BURST + 1)), Signal(), Signal()
        burst_nz = Signal()             # burst != 0 (b_page is at least 1), registered with it
        b_page, b_left = Signal(range(BURST + 1)), Signal(range(BURST + 1))
        m.d.sync += [b_page.eq(Mux(to4k < BURST, to4k, BURST)), b_left.eq(Mux(left < BURST, left, BURST)),
                     burst.eq(Mux(b_left < b_page, b_left, b_page)), burst_nz.eq(b_left != 0)]
        # `room` from `held`, the beats in the FIFO or on their way, counted from registers (the 300 MHz depth): an
        # AR's beats as they join `outstanding` (`added`), a FIFO read a cycle after it (`rd_r`), so `held` is at
        # least the FIFO's level plus `outstanding`. (`room` is stale only by FIFO reads, which free room, and after
        # an AR, when `fresh` is low anyway.)
        room, rd_r = Signal(), Signal()
        r_v, r_d = Signal(name="r_v"), Signal(dbits, name="r_d")
        r_v2, r_d2, r_pre = Signal(name="r_v2"), Signal(dbits, name="r_d2"), Signal(per_beat * eb, name="r_pre")
        held = Signal(range(DEPTH + BURST + 1))
        m.d.sync += room.eq(held + BURST <= DEPTH)
        ar = self.ddr
        m.d.comb += [
            ar.arvalid.eq(issuing & fresh & room & burst_nz),
            ar.araddr.eq(fa), ar.arlen.eq(burst - 1), ar.arsize.eq(log2(bb)), ar.arburst.eq(BURST_INCR),
            ar.rready.eq(1), fifo.w_en.eq(r_v2), fifo.w_data.eq(Cat(r_d2, r_pre)),
        ]
        # (each R beat goes through two registers before the FIFO, the second with its words' `pre` halves made
        # from the first: the DDR arbiter's R routing, the `pre` logic and the FIFO's write are then apart, the
        # 300 MHz depth; `held` counts the beat meanwhile, from its AR to its read)
        # (and each word's zero tests, `r_z`, beside the first: its `pre` half reads them, the 300 MHz depth)
        def word(v, i):
            return data.View(WordLayout, v.word_select(i, isa.WORD_BITS))
        zs = [self.annotate.zeros_of(word(ar.rdata, i)) for i in range(per_beat)] if staged else []
        r_z = Signal(sum(len(z) for z in zs), name="r_z")
        m.d.sync += [r_v.eq(ar.rvalid), r_d.eq(ar.rdata), r_v2.eq(r_v), r_d2.eq(r_d), r_z.eq(Cat(*zs)),
                     r_pre.eq(Cat(*[self.annotate.pre_of(word(r_d, i), r_z.word_select(i, len(zs[0])))
                                    for i in range(per_beat) if staged]))]
        ar_hs = ar.arvalid & ar.arready
        m.d.sync += [fresh1.eq(~ar_hs), fresh.eq(fresh1 & ~ar_hs)]
        with m.If(ar_hs):
            m.d.sync += [fa.eq(fa + (burst << log2(bb))), left.eq(left - burst)]
        # (an AR's beats join `outstanding` a cycle after its handshake, through `added`: the 300 MHz depth; `room`
        # reads `outstanding` two cycles after an AR at the earliest, by then counted)
        added = Signal(range(BURST + 1))
        m.d.sync += [added.eq(Mux(ar_hs, burst, 0)), outstanding.eq(outstanding + added - ar.rvalid),
                     rd_r.eq(fifo.r_en & fifo.r_rdy), held.eq(held + added - rd_r)]

        words = Array(fifo.r_data[isa.WORD_BITS * i:isa.WORD_BITS * (i + 1)] for i in range(per_beat))
        # the annotate stage: `p`, the next word, with `p_valid`; its annotation made from it (comb)
        p, p_valid = Signal(isa.WORD_BITS), Signal()
        pd_p = Signal(self.o_pd.shape())
        if self.annotate is not None:
            m.submodules.annotate = self.annotate
            m.d.comb += [self.annotate.word.eq(p), pd_p.eq(self.annotate.pd)]

        # the output buffer: s0 (the head, `o`) and s1, each with its annotation; n words held. It takes from the
        # stage on `n < 2`, a register, whatever `o.ready` does this cycle.
        s0, s1 = Signal(isa.WORD_BITS), Signal(isa.WORD_BITS)
        pd0, pd1 = Signal(self.o_pd.shape()), Signal(self.o_pd.shape())
        n = Signal(range(3))
        take, fill = Signal(), Signal()
        pop = self.o.valid & self.o.ready
        m.d.comb += [self.o.payload.eq(s0), self.o_pd.eq(pd0), self.o.valid.eq(n != 0),
                     take.eq(p_valid & (n != 2))]
        with m.If(pop & (n == 2)):
            m.d.sync += [s0.eq(s1), pd0.eq(pd1)]
        with m.Elif(take & ((n == 0) | pop)):
            m.d.sync += [s0.eq(p), pd0.eq(pd_p)]
        with m.If(take & (n == 1) & ~pop):
            m.d.sync += [s1.eq(p), pd1.eq(pd_p)]
        m.d.sync += n.eq(n + take - pop)
        with m.If(fill):
            m.d.sync += p.eq(words[wi])
        m.d.sync += p_valid.eq(fill | (p_valid & ~take))
        if staged:
            p_early = Signal(self.annotate.early.shape())      # the annotate's early part, registered beside `p`
            pres = Array(fifo.r_data[dbits + eb * i:dbits + eb * (i + 1)] for i in range(per_beat))
            m.d.comb += self.annotate.early.eq(p_early)
            with m.If(fill):
                m.d.sync += p_early.eq(self.annotate.early_from(data.View(WordLayout, words[wi]),
                                                                data.View(pre_lay, pres[wi])))

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(1)
                with m.If(self.start):
                    m.d.sync += [fa.eq(self.addr & ~(bb - 1)), left.eq(self.beats), fresh.eq(0), fresh1.eq(0), issuing.eq(1), held.eq(0),
                                 wi.eq((self.addr & (bb - 1)) >> log2(isa.WORD_BYTES))]
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += fill.eq(fifo.r_rdy & (~p_valid | take))
                with m.If(fill):
                    with m.If(wi == per_beat - 1):
                        m.d.comb += fifo.r_en.eq(1)
                        m.d.sync += wi.eq(0)
                    with m.Else():
                        m.d.sync += wi.eq(wi + 1)
                with m.If(self.flush):
                    # an AR offered and not yet taken stays offered until it is (AXI: ARVALID, once high, stays
                    # high until ARREADY); its beats are then received and dropped like the others
                    m.d.sync += [issuing.eq(ar.arvalid & ~ar.arready), n.eq(0), p_valid.eq(0)]
                    m.next = "FLUSH"
            with m.State("FLUSH"):
                m.d.comb += fifo.r_en.eq(1)
                with m.If(ar_hs):
                    m.d.sync += issuing.eq(0)
                with m.If(~issuing & (outstanding == 0) & (added == 0) & (fifo.level == 0) & ~ar.rvalid & ~r_v
                          & ~r_v2):
                    m.next = "IDLE"
        return m
