"""The controller's batched-prefill unit (ISA version 2: BATCH, CHUNK, SLOT; docs/rtl_core.md, "Batched prefill").

It sits beside the front end of hw/core.py and sees the instruction register (`word`, `pc`, `valid`: the front
end may act on it this cycle). It holds the batched-run registers and the TOKEN / POS the front end dispatches
with (`token`, `pos`: loaded from the host's registers at ap_start, changed by SLOT; every instruction carries the
values of its dispatch to its engine, ISA dependency rule 6), and decides for the word in `word`:

- skipped (`skip` words after a SLOT whose token does not exist): `handled`, retired at once, not decoded;
- CHUNK: `handled`; reads the u32 COUNT at DDR[addr] through its read port (one single-beat AXI read on the DDR
  port, arbitrated with the fetcher and the DMA in hw/core.py), then COUNT, TBASE = addr + 4, POS0 = POS;
- SLOT i: `handled`; with i < COUNT reads TOKEN = u32 DDR[TBASE + 4i] and sets POS = POS0 + i, else skips;
- BATCH: `handled`; latches m (COUNT with dyn_m), the strides and the PC, and retires;
- the instruction after a BATCH (LINEAR or ALLGATHER): not handled; the front end dispatches `word_out` (the
  instruction with its strided operands moved to vector i: LINEAR src/dst, ALLGATHER vaddr) once per vector,
  i = 0..m-1, each a queue entry of its own with its own scoreboard footprint, and retires the word with the
  push of the last one (`last`). `range_ok`: the last vector's strided operands lie inside VBUF (the strides
  are unsigned, so every vector's do): checked before vector 0 is dispatched, so a range error is precise.

The word's checks against the batch state (the rules below, `range_ok`, the word's class) are made into registers
a cycle ahead, as the front end's are (hw/core.py): `restate` tells the front end when a cycle changes what they
read, and the u32 read is checked as it arrives. They compare the word's predecode (`pd_w`, `pd_in`:
hw/predecode.py, made in the prefetcher) with the batch state; the decoder's `illegal` goes into them too (an
illegal BATCH, CHUNK or SLOT never acts: the front end reports it). `own_w` / `own_in` (comb) say that the word is
one the front end dispatches itself with no error against the batch state, which the front end folds into its own
class registers.

Errors (`err_invalid`, `err_range`, at `err_pc`; the front end stops as for its own errors): the rules of
`dfx.isa.check_batch` (BATCH followed by neither LINEAR nor ALLGATHER, dyn_m with COUNT 0, m = 0, dyn_k/dyn_n on
a batched LINEAR, unequal strides on a batched ALLGATHER: STATUS.invalid at the BATCH's PC), `check_chunk` (an
unaligned table or COUNT outside 1..cap: STATUS.invalid), `check_slot` (SLOT before CHUNK: STATUS.invalid), and a
token table past the config's DDR (STATUS.address_range at the CHUNK).
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from dfx import isa
from dfx.config import AccelConfig

from .decoder import WordLayout
from .dma import AXI_ADDR_BITS, ddr_data_bits, log2
from .predecode import ent1_bits, predecode_layout
from .scoreboard import is_op

L = isa.LEN_BITS


class BatchUnit(wiring.Component):
    """See the module docstring. The read port (`ar_*`, `r_*`) is one outstanding single-beat read."""

    def __init__(self, cfg: AccelConfig, units):
        """`units`: the core's engines' `dfx.isa.Unit`s (the predecode layout's)."""
        self.cfg = cfg
        bits = ddr_data_bits(cfg)
        super().__init__({
            "run_start": In(1), "token_in": In(32), "pos_in": In(32), "ddr_base": In(AXI_ADDR_BITS),
            "word": In(WordLayout), "pc": In(32), "valid": In(1), "pushed": In(1),
            "word_in": In(WordLayout), "ck_sel": In(1), "restate": Out(1),
            "pd_w": In(predecode_layout(cfg, units)), "pd_in": In(predecode_layout(cfg, units)),
            "own_w": Out(1), "own_in": Out(1),
            "token": Out(32), "pos": Out(32), "pos1": Out(33), "ent1": Out(ent1_bits(cfg)), "count": Out(L),
            "off_r0": Out(32), "off_w": Out(32),
            "word_out": Out(WordLayout), "skipping": Out(1), "handled": Out(1), "leave": Out(1), "ev": Out(1), "last": Out(1),
            "range_ok": Out(1), "bad": Out(1), "err_invalid": Out(1), "err_range": Out(1), "err_pc": Out(32),
            "ar_valid": Out(1), "ar_addr": Out(AXI_ADDR_BITS), "ar_ready": In(1),
            "r_valid": In(1), "r_data": In(bits), "rd_busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        w = self.word
        bb = ddr_data_bits(cfg) // 8
        elems = cfg.vbuf_elems
        sh = log2(cfg.d)

        count, tbase, pos0 = Signal(L), Signal(40), Signal(32)
        count_z = Signal()                           # count == 0, kept beside it
        b_ne = Signal()                              # the BATCH's strides differ
        token, pos = Signal(32), Signal(32)
        pos1 = Signal(33)                            # pos + 1, kept beside it (the 300 MHz depth of the checks)
        # ceil((pos + 1) / d) for the footprint (hw/predecode.py `ent1_bits`: exact when pos + 1 <= VBUF's
        # elements, taken mod 2**eb from pos0 + d + i), and pos0 + d
        eb = ent1_bits(cfg) + sh
        ent1, pos0d = Signal(ent1_bits(cfg)), Signal(eb)
        skip_n = Signal(L)
        bpend, bpc = Signal(), Signal(32)
        bss, bds = Signal(isa.VADDR_BITS), Signal(isa.VADDR_BITS)
        b_left = Signal(L)                           # vectors after the current one: m - 1 - i
        b_last = Signal()                            # b_left == 0, kept in a register
        offs, offd = Signal(32), Signal(32)          # i * src_stride, i * dst_stride
        lasts, lastd = Signal(32), Signal(32)        # (m - 1) * src_stride, (m - 1) * dst_stride (below 2**RB)
        # ... made from registers a cycle after the BATCH (the 300 MHz depth: one DSP, no carry chain after it):
        # m - 1 taken mod 2**RB, and whether it was above (then any stride but 0 puts the last vector past VBUF:
        # a room is at most VBUF's entries, below 2**RB)
        RB = (cfg.vbuf_elems // cfg.d).bit_length()
        b_m1, b_big, b_new = Signal(RB), Signal(), Signal()
        sbig, dbig = Signal(), Signal()
        m.d.sync += [lasts.eq(b_m1 * bss), lastd.eq(b_m1 * bds), sbig.eq(b_big & (bss != 0)),
                     dbig.eq(b_big & (bds != 0))]
        m.d.comb += [self.token.eq(token), self.pos.eq(pos), self.pos1.eq(pos1), self.ent1.eq(ent1),
                     self.count.eq(count)]

        # ---- the read port: one u32 of DDR (byte address `rd_a` relative to the DDR base)
        rd_a = Signal(40)
        rd_req, rd_sent, rd_got, rd_have = Signal(), Signal(), Signal(), Signal()
        rd_data = Signal(32)
        full = Signal(AXI_ADDR_BITS)
        lane = Signal(range(bb // 4))
        m.d.comb += [full.eq(self.ddr_base + rd_a), self.ar_addr.eq(full & ~C(bb - 1, AXI_ADDR_BITS)),
                     self.ar_valid.eq(rd_req & ~rd_sent & ~rd_got & ~rd_have), self.rd_busy.eq(rd_sent)]
        with m.If(self.ar_valid & self.ar_ready):
            m.d.sync += [rd_sent.eq(1), lane.eq(full[2:log2(bb)])]
        # the u32 read into `rd_data` as it arrives (`rd_got`), its checks a cycle later (`rd_have`), for the word
        # in `word`, which waits for it; a CHUNK's table past DDR against the predecode's room (hw/predecode.py)
        rd_zero, rd_over, rd_past, rd_bad = (Signal(name=nm) for nm in ("rd_zero", "rd_over", "rd_past", "rd_bad"))
        chunk_end = w.slot.addr + isa.TOKEN_TABLE_HEADER             # CHUNK: the token table's first entry
        with m.If(rd_sent & self.r_valid):
            m.d.sync += [rd_sent.eq(0), rd_got.eq(1), rd_data.eq(self.r_data.word_select(lane, 32))]
        with m.If(rd_got):
            zero, over, past = rd_data == 0, rd_data > w.slot.cap, (rd_data << 2) > self.pd_w.t_room
            m.d.sync += [rd_got.eq(0), rd_have.eq(1), rd_zero.eq(zero), rd_over.eq(over),
                         rd_past.eq(past), rd_bad.eq(zero | over | past)]

        # ---- the word in the instruction register
        sl, bt = w.slot, w.batch
        is_lin, is_ag = is_op(w, "LINEAR"), is_op(w, "ALLGATHER")

        # The word's checks against the batch state, from registers (the 300 MHz depth), as the front end's
        # (hw/core.py): made for `word` and for `word_in` each cycle, the one for `word_in` used when it was taken
        # into `word` (`ck_sel`). `restate`: this cycle changes the state they read (a BATCH, CHUNK or SLOT
        # leaves, or a vector of a batched instruction is pushed: the next one's footprint); the front end then
        # waits a cycle.
        def checks(v, pd):
            lin, ag = pd.lin, pd.ag
            c_batch, c_chunk, c_slot = pd.c_batch, pd.c_chunk, pd.c_slot
            # the last vector's strided operands inside VBUF: its offsets against the rooms (hw/predecode.py)
            out = bpend & (pd.b_never | ((lin | ag) & (dbig | (lastd > pd.droom))) | (lin & (sbig | (lasts > pd.sroom))))
            pair = bpend & (pd.pair | (ag & b_ne))
            m_zero = Mux(v.batch.dyn_m, count_z, pd.m_zero)
            past = pd.past
            odd = v.slot.addr[:2] != 0
            no_count = count_z
            bad = (pair | (c_batch & m_zero) | (c_chunk & (past | odd)) | (c_slot & no_count)
                   | (~(c_batch | c_chunk | c_slot) & out))
            ok = ~bad & ~pd.illegal          # (an illegal word, the front end's error, never goes)
            skip = v.slot.i >= count
            # the classes the decision reads (each one register): BATCH, CHUNK, SLOT skipping / reading, with no
            # error; `own`, a word the front end dispatches itself, with no error against the batch state
            return (Cat(pair, c_batch & m_zero, c_chunk & past, c_chunk & odd, c_slot & no_count, out, bad,
                        c_batch, c_chunk, c_slot,
                        c_batch & ok, c_chunk & ok, c_slot & skip & ok, c_slot & ~skip & ok),
                    ~(c_batch | c_chunk | c_slot) & ~pair & ~out)
        ck_w, ck_in, ck = Signal(14), Signal(14), Signal(14)
        (ck_w_c, own_w), (ck_in_c, own_in) = checks(w, self.pd_w), checks(self.word_in, self.pd_in)
        m.d.sync += [ck_w.eq(ck_w_c), ck_in.eq(ck_in_c)]
        m.d.comb += [ck.eq(Mux(self.ck_sel, ck_in, ck_w)), self.own_w.eq(own_w), self.own_in.eq(own_in)]
        (e_pair, e_m_zero, e_past, e_odd, e_no_count, e_out, e_any, c_batch, c_chunk, c_slot,
         k_batch, k_chunk, k_skip, k_read) = (ck[i] for i in range(14))
        m.d.comb += self.err_pc.eq(Mux(e_pair, bpc, self.pc))

        # The decision, as flat terms of registers (the 300 MHz depth): the word's checks and class (`ck`: `e_any`,
        # any error the word has against the batch state; the others, which one), the state's flag `skip_nz`
        # (skip_n != 0) and the read's (`rd_have`, `rd_bad`). In priority: skipped; a BATCH followed by what it
        # may not prefix; the word's own errors; it leaves, or waits for its read. (The front end stops on an
        # error, so only the first is acted on.)
        skip_nz = Signal()
        act = self.valid & ~skip_nz
        rd_go = rd_have & ~rd_bad
        m.d.comb += [
            self.skipping.eq(self.valid & skip_nz),
            self.handled.eq(self.valid & (skip_nz | c_batch | c_chunk | c_slot)),
            self.err_invalid.eq(act & (e_pair | (~e_past & (e_m_zero | e_odd | e_no_count))
                                       | (k_chunk & rd_have & (rd_zero | rd_over)))),
            self.err_range.eq(act & ~e_pair & (e_past | (k_chunk & rd_have & ~rd_zero & ~rd_over & rd_past))),
            self.ev.eq(act & (k_batch | (k_chunk & rd_go) | k_skip | (k_read & rd_have))),
            self.leave.eq(self.skipping | self.ev),
            self.range_ok.eq(~e_out), self.bad.eq(e_any),
        ]
        with m.If(self.skipping):
            m.d.sync += [skip_n.eq(skip_n - 1), skip_nz.eq(skip_n != 1)]
        with m.If(act & k_batch):
            mm = Mux(bt.dyn_m, count, bt.m)
            m.d.sync += [bpend.eq(1), bpc.eq(self.pc), bss.eq(bt.src_stride), b_ne.eq(bt.src_stride != bt.dst_stride),
                         bds.eq(bt.dst_stride), b_left.eq(mm - 1), b_last.eq(mm == 1), offs.eq(0), offd.eq(0),
                         b_m1.eq(mm - 1), b_big.eq(mm > (1 << RB))]
        with m.If(act & k_chunk & ~rd_have):
            m.d.sync += [rd_req.eq(1), rd_a.eq(sl.addr)]
        with m.If(act & k_chunk & rd_go):
            m.d.sync += [count.eq(rd_data), count_z.eq(rd_zero), tbase.eq(chunk_end), pos0.eq(pos),
                         pos0d.eq(pos + cfg.d)]
        with m.If(act & k_skip):
            m.d.sync += [skip_n.eq(sl.skip), skip_nz.eq(sl.skip != 0)]
        with m.If(act & k_read & ~rd_have):
            m.d.sync += [rd_req.eq(1), rd_a.eq(tbase + (sl.i << 2))]
        with m.If(act & k_read & rd_have):
            m.d.sync += [token.eq(rd_data), pos.eq(pos0 + sl.i), pos1.eq((pos0 + sl.i)[:32] + 1),
                         ent1.eq((pos0d + sl.i)[:eb] >> sh)]
        with m.If(self.leave | self.err_invalid | self.err_range):
            m.d.sync += [rd_req.eq(0), rd_got.eq(0), rd_have.eq(0)]

        # ---- the batched instruction: vector m - 1 - b_left of m
        # the footprint's offsets of the same vector (hw/scoreboard.py `finish_footprint`: LINEAR src is its r0,
        # dst its w; ALLGATHER's vaddr both), from the predecode's class registers
        pw = self.pd_w
        m.d.comb += [self.off_r0.eq(Mux(bpend & pw.lin, offs, Mux(bpend & pw.ag, offd, 0))),
                     self.off_w.eq(Mux(bpend & (pw.lin | pw.ag), offd, 0))]
        m.d.comb += [self.word_out.eq(w), self.last.eq(~bpend | b_last),
                     self.restate.eq(self.ev | b_new | (bpend & self.pushed))]
        m.d.sync += b_new.eq(act & k_batch)          # (the front end waits a cycle more after a BATCH: `lasts`)
        with m.If(bpend):
            with m.If(is_lin):
                mx = w.matrix
                m.d.comb += [self.word_out.matrix.src.eq(mx.src + offs), self.word_out.matrix.dst.eq(mx.dst + offd)]
            with m.Elif(is_ag):
                m.d.comb += self.word_out.route.vaddr.eq(w.route.vaddr + offd)
            with m.If(self.pushed):
                m.d.sync += [b_left.eq(b_left - 1), b_last.eq(b_left == 1), offs.eq(offs + bss), offd.eq(offd + bds)]
                with m.If(b_last):
                    m.d.sync += bpend.eq(0)

        with m.If(self.run_start):
            m.d.sync += [count.eq(0), count_z.eq(1), tbase.eq(0), pos0.eq(0), token.eq(self.token_in),
                         pos.eq(self.pos_in), pos1.eq(self.pos_in + 1), ent1.eq((self.pos_in + cfg.d)[:eb] >> sh),
                         skip_n.eq(0), skip_nz.eq(0), bpend.eq(0), rd_req.eq(0), rd_got.eq(0), rd_have.eq(0)]
        return m
