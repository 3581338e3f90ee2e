"""The byte streams of a quantized region (`hw/qstream.py`) on their own, in amaranth.sim: the gearbox cuts a
FIFO's byte stream into pieces at any allowed start (pieces that straddle two beats, a skew, a registered
output) under random back-pressure; the request generator reads every beat of every segment of each stream
exactly once and in order, never across a channel's 4 KiB page, and never writes a full FIFO (its stream FIFOs'
credits, and the tag FIFO that needs none)."""
import random

import pytest
from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from dfx.hw.qstream import Requests, gearbox, req_layout


class GearboxHarness(wiring.Component):
    def __init__(self, beat, chunk, gran, skew, pos0, registered):
        self.args = beat, chunk, gran, skew, pos0, registered
        super().__init__({"start": In(1), "w": In(stream.Signature(8 * beat)), "take": In(1),
                          "valid": Out(1), "data": Out(8 * chunk)})

    def elaborate(self, platform):
        beat, chunk, gran, skew, pos0, registered = self.args
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8 * beat, depth=4)
        m.d.comb += [fifo.w_data.eq(self.w.payload), fifo.w_en.eq(self.w.valid), self.w.ready.eq(fifo.w_rdy)]
        run = Signal()
        with m.If(self.start):
            m.d.sync += run.eq(1)
        valid, data, take = gearbox(m, "g", fifo, chunk, beat, gran, self.start, pos0, run, skew=skew,
                                    registered=registered)
        m.d.comb += [self.valid.eq(valid), self.data.eq(data), take.eq(self.take & valid)]
        return m


@pytest.mark.parametrize("beat,chunk,gran,skew,pos0,registered", [
    (16, 4, 4, 0, 2, False),          # pieces inside a beat, starting mid-beat
    (16, 6, 2, 1, 3, False),          # pieces that straddle two beats, a skew of one byte
    (16, 4, 4, 0, 1, True),           # a registered output (the scale and zero blocks')
    (16, 12, 4, 0, 0, True),          # registered, straddling
])
def test_gearbox_cuts_the_stream_into_pieces(beat, chunk, gran, skew, pos0, registered):
    rng = random.Random(beat * chunk + skew + pos0)
    nbeats = 12
    stream_bytes = bytes(rng.randrange(256) for _ in range(nbeats * beat))
    first = skew + pos0 * gran
    want = [stream_bytes[first + i * chunk:first + (i + 1) * chunk]
            for i in range((nbeats * beat - first) // chunk)]
    dut = GearboxHarness(beat, chunk, gran, skew, pos0, registered)
    got = []

    async def bench(ctx):
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)

    async def writer(ctx):
        await ctx.tick()
        for b in range(nbeats):
            while rng.random() < 0.4:
                await ctx.tick()
            ctx.set(dut.w.payload, int.from_bytes(stream_bytes[b * beat:(b + 1) * beat], "little"))
            ctx.set(dut.w.valid, 1)
            await ctx.tick().until(dut.w.ready)
            ctx.set(dut.w.valid, 0)

    async def reader(ctx):
        while len(got) < len(want):
            ctx.set(dut.take, int(rng.random() < 0.6))
            _, _, v, t, d = await ctx.tick().sample(dut.valid, dut.take, dut.data)
            if v and t:
                got.append(d.to_bytes(chunk, "little"))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_testbench(writer)
    sim.add_testbench(reader)
    sim.run_until(1e-8 * 2000)
    assert got == want


class RequestHarness(wiring.Component):
    """Two streams: a linear run (stream 0) and segments with gaps (stream 1), as `Requests` sees them."""

    def __init__(self, B, cb, depth, segs):
        self.B, self.cb, self.depth, self.segs = B, cb, depth, segs
        super().__init__({"start": In(1), "req": Out(stream.Signature(req_layout())),
                          "beat": In(stream.Signature(8 * B))})

    def elaborate(self, platform):
        m = Module()
        run = Signal()
        with m.If(self.start):
            m.d.sync += run.eq(1)
        self.rq = rq = Requests(m, tuple(self.depth), self.depth, self.B, self.cb, self.req, self.beat, run,
                                self.start)
        for s, (addr, segb, nseg, step) in self.segs.items():
            m.d.comb += [rq.segb[s].eq(segb), rq.nseg[s].eq(nseg), rq.step[s].eq(step)]
            with m.If(self.start):
                m.d.sync += rq.raddr[s].eq(addr)
        return m


def test_requests_read_each_segment_once_within_pages_and_credits():
    B, cb = 64, 16                                     # a 64-byte beat of 4 channels: 256 beats per 4 KiB page
    depth = {0: 8, 1: 4}
    segs = {0: (4096 * 3 - 64 * 40, 64 * 300 + 16, 1, 0),       # 301 beats across a page, a partial last beat
            1: (100_000 * 64 + 32, 200, 5, 1024)}               # 5 segments of 200 bytes, 1 KiB apart
    want = {s: [b for q in range(nseg) for b in range((addr + q * step) // B, (addr + q * step + segb - 1) // B + 1)]
            for s, (addr, segb, nseg, step) in segs.items()}
    dut = RequestHarness(B, cb, depth, segs)
    rng = random.Random(3)
    reqs, got, bad = [], {s: [] for s in depth}, []

    async def bench(ctx):
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)

    async def requests(ctx):
        while True:
            ctx.set(dut.req.ready, int(rng.random() < 0.7))
            _, _, v, r, beat, n = await ctx.tick().sample(dut.req.valid, dut.req.ready, dut.req.payload.beat,
                                                          dut.req.payload.len)
            if v and r:
                if beat // (4096 // cb) != (beat + n - 1) // (4096 // cb):
                    bad.append(("crosses a 4 KiB page", beat, n))
                reqs.extend(range(beat, beat + n))

    async def memory(ctx):
        while True:
            if not reqs or rng.random() < 0.2:
                await ctx.tick()
                continue
            ctx.set(dut.beat.payload, reqs.pop(0))
            ctx.set(dut.beat.valid, 1)
            await ctx.tick().until(dut.beat.ready)
            ctx.set(dut.beat.valid, 0)

    async def consumers(ctx):
        rq = dut.rq
        while True:
            for s in depth:
                ctx.set(rq.fifos[s].r_en, int(rng.random() < 0.3))
            _, _, *sampled = await ctx.tick().sample(
                *[x for s in depth for x in (rq.fifos[s].r_en, rq.fifos[s].r_rdy, rq.fifos[s].r_data,
                                             rq.fifos[s].w_en, rq.fifos[s].w_rdy)], rq.tags.w_en, rq.tags.w_rdy)
            for i, s in enumerate(depth):
                en, rdy, dat, wen, wrdy = sampled[5 * i:5 * i + 5]
                if en and rdy:
                    got[s].append(dat)
                if wen and not wrdy:
                    bad.append(("stream FIFO written while full", s))
            if sampled[-2] and not sampled[-1]:
                bad.append(("tag FIFO written while full",))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_process(requests)
    sim.add_process(memory)
    sim.add_process(consumers)
    sim.run_until(1e-8 * 6000)
    assert not bad, bad[:5]
    assert got == want
