"""The byte streams of a quantized region (`hw.qfetch.QuantTiles`): the beat requests, the routing of the read
data into one FIFO per stream, and the gearboxes that cut a stream into pieces, built for the 300 MHz depth
(every register's next value a few LUT levels from registers: docs/rtl.md, "The INT4 tile fetcher").

**Requests** (`Requests`), per stream s: a segment (a run of beats read on its own) is prepared over two cycles
(its first beat, then its beat count), then loaded when the last one is all requested. Every cycle three
registered stages look at the stream: `m1` = min(beats left, beats to the channel's next 4 KiB page); then `ok`
and the burst length (at most the credits: the FIFO's free beats); then one request is picked (zeros, scales,
codes) into `pick` and issued into the AR register the cycle after. A stream's registered views are two cycles
old, so a stream that has just issued waits two cycles (`stale`); credits are taken off one cycle after the
issue (within that wait) and come back one cycle after the FIFO pops (`back`), so every view a pick reads is a
lower bound of the truth and no FIFO overflows. Rate: a request every 4 cycles per stream; a burst waits for
half the stream's FIFO free (or the rest of its run or page) and takes all its free beats.

**Routing**: a tag FIFO (stream, beats, one-beat flag) in request order; the beat counter of the head tag keeps
its "next beat is the last" flag in a register, so the tag pop is one LUT from the read data's valid. The tag
FIFO never fills: every tag holds at least one beat of a stream's credits (or is the descriptor's), and it has a
place for each of those and one more; so a request never waits for it.

**Gearboxes** (`gearbox`) keep their offset as a position index (the offsets a piece may start at are `skew`
plus multiples of `gran`), so "the piece ends in this beat" is a comparison of a few bits with a constant.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.hdl import Array
from amaranth.lib import data
from amaranth.lib.fifo import SyncFIFOBuffered

from .dma import log2

DESC = 3                                             # the descriptor's tag (streams are 0..2)


def req_layout() -> data.StructLayout:
    return data.StructLayout({"beat": 40, "len": 9})


def vmin(a, b):
    """The smaller of two values (one comparison, one multiplexer)."""
    return Mux(b < a, b, a)


def gearbox(m: Module, name: str, fifo, chunk: int, beat: int, gran: int, load, pos0, run, seg_end=None,
            seg_pos=None, skew: int = 0, registered: bool = False):
    """Cut the byte stream of `fifo` (beats of `beat` bytes) into `chunk`-byte pieces starting at `skew` plus a
    multiple of `gran` bytes in a beat (0 <= skew < gran; gran divides chunk and beat; a piece straddles at most
    two beats). `load`: (re)start at position `pos0` (the byte offset >> log2(gran)) with nothing held.
    Returns (valid, data, take): `take` (driven by the caller) consumes the piece; with `seg_end` it is the last
    piece of a segment (a run of beats read on its own): the rest of its beat is dropped and the next segment
    starts at position `seg_pos` of the next beat. `registered`: the piece comes out of a register (the gearbox
    cuts the next one meanwhile), so `valid` and `data` are registers; no segments then."""
    assert chunk % gran == 0 and beat % gran == 0 and 0 <= skew < gran and chunk <= beat
    assert not (registered and seg_end is not None)
    npos, cg = beat // gran, chunk // gran
    cur = Signal(8 * beat, name=f"{name}_cur")
    have = Signal(name=f"{name}_have")
    pi = Signal(range(npos), name=f"{name}_pos")
    take = Signal(name=f"{name}_take")
    win = Cat(cur, fifo.r_data)
    pieces = [win[8 * (skew + q * gran):8 * (skew + q * gran + chunk)] for q in range(npos)]
    dat = Signal(8 * chunk, name=f"{name}_data")
    m.d.comb += dat.eq(Array(pieces)[pi] if npos > 1 else pieces[0])
    # the piece's end skew + (pi + cg) * gran is within the beat (<= beat) / before its end (< beat)
    last_le = npos - (1 if skew else 0) - cg
    fits = (pi <= last_le) if last_le >= 0 else C(0, 1)
    inside = (pi <= npos - 1 - cg) if npos - 1 - cg >= 0 else C(0, 1)
    step = Signal(range(2 * npos), name=f"{name}_step")
    m.d.comb += step.eq(pi + cg)
    valid = run & have & (fits | fifo.r_rdy)
    go = take
    if registered:
        pv, pd, go = Signal(name=f"{name}_pv"), Signal(8 * chunk, name=f"{name}_pd"), Signal(name=f"{name}_adv")
        m.d.comb += go.eq(valid & (~pv | take))
        with m.If(load):
            m.d.sync += pv.eq(0)
        with m.Elif(go):
            m.d.sync += [pv.eq(1), pd.eq(dat)]
        with m.Elif(take):
            m.d.sync += pv.eq(0)
    with m.If(load):
        m.d.sync += [have.eq(0), pi.eq(pos0)]
    with m.Elif(~have):
        with m.If(fifo.r_rdy & run):
            m.d.comb += fifo.r_en.eq(1)
            m.d.sync += [cur.eq(fifo.r_data), have.eq(1)]
    if seg_end is not None:
        with m.Elif(go & seg_end):
            m.d.sync += [pi.eq(seg_pos), have.eq(0)]
            m.d.comb += fifo.r_en.eq(~fits)
    with m.Elif(go):
        with m.If(inside):
            m.d.sync += pi.eq(step)
        with m.Else():
            m.d.sync += [pi.eq(step - npos), cur.eq(fifo.r_data), have.eq(fifo.r_rdy)]
            m.d.comb += fifo.r_en.eq(fifo.r_rdy)
    if registered:
        return pv, pd, take
    return valid, dat, take


class Requests:
    """The request generator, the tag FIFO and the stream FIFOs of one tile fetcher, built into `m`.

    streams: the stream numbers; depth: {stream: FIFO beats}; beat_bytes, channel_beat_bytes: the joined beat
    and one channel's. Per stream the owner sets `raddr` (first segment's byte address), `segb` (bytes per
    segment), `nseg` (segments) and `step` (the address step from a segment to the next, a value of registers)
    and strobes `load` (the registers restart). `run` gates new segments and requests. `start_desc(m, beat)`
    (in the owner's IDLE) queues the descriptor's one-beat read; `desc` / `desc_in` hold that beat.
    `req` / `beat`: the component's AR-like stream and read data. `fifos[s]`: the stream's beats."""

    def __init__(self, m: Module, streams, depth: dict, beat_bytes: int, channel_beat_bytes: int, req, beat,
                 run, load):
        B = beat_bytes
        self.lb = lb = log2(B)
        b4k = 4096 // channel_beat_bytes
        assert 1 <= b4k <= 256, b4k
        self.streams, self.depth = streams, depth
        self.raddr = {s: Signal(40, name=f"raddr{s}") for s in streams}
        self.segb = {s: Signal(40, name=f"segb{s}") for s in streams}
        self.nseg = {s: Signal(30, name=f"nseg{s}") for s in streams}
        self.rseg = {s: Signal(30, name=f"rseg{s}") for s in streams}
        self.step = {s: Signal(40, name=f"step{s}") for s in streams}
        self.desc, self.desc_in = Signal(512), Signal()

        # ------------------------------------------------ FIFOs and the routing of the read data
        fifos = self.fifos = {}
        for s in streams:
            fifos[s] = SyncFIFOBuffered(width=8 * B, depth=depth[s])
            m.submodules[f"bfifo{s}"] = fifos[s]
        m.submodules.tags = self.tags = tags = SyncFIFOBuffered(width=2 + 9 + 1, depth=sum(depth.values()) + 1)
        tag_s, tag_len, tag_one = tags.r_data[:2], tags.r_data[2:11], tags.r_data[11]
        first, remz, rem = Signal(init=1), Signal(), Signal(9)      # the head tag's beats: first / last next
        last = Mux(first, tag_one, remz)
        got = beat.valid & tags.r_rdy
        m.d.comb += beat.ready.eq(tags.r_rdy)
        for s in streams:
            m.d.comb += [fifos[s].w_en.eq(got & (tag_s == s)), fifos[s].w_data.eq(beat.payload)]
        with m.If(got):
            with m.If(tag_s == DESC):                             # the region starts on a beat
                m.d.sync += [self.desc.eq(beat.payload[:512]), self.desc_in.eq(1)]
            with m.If(last):
                m.d.comb += tags.r_en.eq(1)
                m.d.sync += first.eq(1)
            with m.Else():
                m.d.sync += [first.eq(0), rem.eq(Mux(first, tag_len - 2, rem - 1)),
                             remz.eq(Mux(first, tag_len == 2, rem == 1))]

        # ------------------------------------------------ per stream: segments, the 4 KiB page, credits
        pick_v, pick_s, pick_beat, pick_len, pick_one = (Signal(), Signal(2), Signal(40), Signal(9), Signal())
        rq_valid, rq = Signal(), Signal(req_layout())
        m.d.comb += [req.valid.eq(rq_valid), req.payload.eq(rq)]
        with m.If(rq_valid & req.ready):
            m.d.sync += rq_valid.eq(0)
        issue = pick_v & (~rq_valid | req.ready)
        with m.If(issue):
            m.d.comb += [tags.w_en.eq(1), tags.w_data.eq(Cat(pick_s, pick_len, pick_one))]
            m.d.sync += [rq.beat.eq(pick_beat), rq.len.eq(pick_len), rq_valid.eq(1), pick_v.eq(0)]
        self._pick = (pick_v, pick_s, pick_beat, pick_len, pick_one)
        cands = []
        for s in streams:
            F = depth[s]
            left, nxt = Signal(32, name=f"left{s}"), Signal(34, name=f"next{s}")
            to4k = Signal(range(b4k + 1), name=f"to4k{s}")
            cred = Signal(range(F + 1), name=f"cred{s}")
            back, spent = Signal(name=f"back{s}"), Signal(range(F + 1), name=f"spent{s}")
            stale = Signal(2, name=f"stale{s}")
            sp_v, sp_st = Signal(name=f"sp_v{s}"), Signal(name=f"sp_st{s}")
            sp_first, sp_last, sp_cnt = (Signal(34, name=f"sp_first{s}"), Signal(34, name=f"sp_last{s}"),
                                         Signal(32, name=f"sp_cnt{s}"))
            m1 = Signal(range(b4k + 1), name=f"m1_{s}")
            ok, blen, one = Signal(name=f"ok{s}"), Signal(range(F + 1), name=f"blen{s}"), Signal(name=f"one{s}")
            mine = issue & (pick_s == s)
            # segment preparation (two cycles) and load
            # (a stream's own issue needs beats left, so it never meets the load of its next segment)
            seg_load = sp_v & (left == 0)
            with m.If(load):
                m.d.sync += [sp_v.eq(0), sp_st.eq(0), self.rseg[s].eq(0)]
            with m.Elif(~sp_v & ~sp_st & run & (self.rseg[s] != self.nseg[s])):
                m.d.sync += [sp_first.eq(self.raddr[s] >> lb), sp_last.eq((self.raddr[s] + self.segb[s] - 1) >> lb),
                             self.rseg[s].eq(self.rseg[s] + 1), self.raddr[s].eq(self.raddr[s] + self.step[s]),
                             sp_st.eq(1)]
            with m.Elif(sp_st):
                m.d.sync += [sp_cnt.eq(sp_last - sp_first + 1), sp_v.eq(1), sp_st.eq(0)]
            with m.Elif(seg_load):
                m.d.sync += sp_v.eq(0)
            with m.If(load):
                m.d.sync += left.eq(0)
            with m.Elif(seg_load):
                m.d.sync += [nxt.eq(sp_first), left.eq(sp_cnt), to4k.eq(b4k - (sp_first & (b4k - 1)))]
            with m.Elif(mine):
                m.d.sync += [left.eq(left - pick_len), nxt.eq(nxt + pick_len),
                             to4k.eq(Mux(to4k == pick_len, b4k, to4k - pick_len))]
            # the registered views
            tb = (b4k + 1).bit_length()
            small = ((left >> tb) == 0) & (left[:tb] < to4k)
            m.d.sync += m1.eq(Mux(small, left[:tb], to4k))
            m.d.sync += [ok.eq((m1 != 0) & ((cred >= F // 2) | (cred >= m1))), blen.eq(vmin(m1, cred)),
                         one.eq((m1 == 1) | (cred == 1))]
            # credits spent and returned a cycle late (registers): while spent ones are not yet taken off, the
            # stream is stale, and returned ones only make the view lower than the truth
            m.d.sync += [back.eq(fifos[s].r_en & fifos[s].r_rdy), spent.eq(Mux(mine, pick_len, 0))]
            with m.If(load):
                m.d.sync += [cred.eq(F), back.eq(0), spent.eq(0), stale.eq(0b11)]
            with m.Else():
                m.d.sync += [cred.eq(cred - spent + back), stale.eq(Mux(mine, 0b11, stale >> 1))]
            cands.append((s, ok & (stale == 0), blen, one, nxt))
        # the pick: zeros, then scales, then codes
        with m.If(~pick_v & run & ~load):
            chosen = C(0, 1)
            for s, can, blen, one, nxt in reversed(cands):
                with m.If(can & ~chosen):
                    m.d.sync += [pick_v.eq(1), pick_s.eq(s), pick_len.eq(blen), pick_one.eq(one),
                                 pick_beat.eq(nxt)]
                chosen = chosen | can

    def start_desc(self, m: Module, beat):
        """Queue the descriptor's read (one beat at `beat`) and forget the last one (in the owner's start)."""
        pick_v, pick_s, pick_beat, pick_len, pick_one = self._pick
        m.d.sync += [pick_v.eq(1), pick_s.eq(DESC), pick_beat.eq(beat), pick_len.eq(1), pick_one.eq(1),
                     self.desc_in.eq(0)]
