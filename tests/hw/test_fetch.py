"""The instruction prefetcher (hw/fetch.py) on its own, against a DDR model in the testbench: the words come out
in order from any start, it never reads past DDR's end, and a flush keeps the AXI read address rules (an AR once
offered stays offered, unchanged, until it is taken), drops every beat still on its way and then reports idle."""

import random

import pytest
from amaranth.sim import Simulator

from dfx import isa
from dfx.config import PRESETS
from dfx.hw.dma import ddr_data_bits
from dfx.hw.fetch import Fetch

WORD_MASK = (1 << isa.WORD_BITS) - 1


def word_at(i: int) -> int:
    """The DDR model's 128-bit word at word index i (distinct per index)."""
    return ((i * 0x9E3779B97F4A7C15) ^ (i << 100) ^ 0x5A5A) & WORD_MASK


def run_fetch(cfg, start_word: int, beats: int, *, ar_delay, flush_at=None, cycles=400, r_gap=0, seed=1):
    """Run the fetcher from `start_word` with `beats` DDR beats to DDR's end. `ar_delay(k)`: cycles the k-th AR
    waits for ARREADY. `flush_at`: the cycle at which `flush` is raised (for one cycle). Returns the words out,
    the ARs taken, the AXI rule breaks seen, the cycle at which `idle` rose after the flush (or None) and whether an
    AR was on offer, not yet taken, in the flush's cycle."""
    dut = Fetch(cfg)
    bb = ddr_data_bits(cfg) // 8
    per_beat = bb * 8 // isa.WORD_BITS
    rng = random.Random(seed)
    out, ars, breaks, idle_at, on_offer = [], [], [], [None], [False]
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def bench(ctx):
        ctx.set(dut.start, 1)
        ctx.set(dut.addr, start_word * (isa.WORD_BITS // 8))
        ctx.set(dut.beats, beats)
        await ctx.tick()
        ctx.set(dut.start, 0)
        r_queue = []                           # beat indices still to return on R, in order
        offered, wait = None, 0                # the AR on offer (addr, len) and the cycles it has waited
        for cyc in range(cycles):
            ctx.set(dut.flush, int(flush_at is not None and cyc == flush_at))
            arv = ctx.get(dut.ddr.arvalid)
            cur = (ctx.get(dut.ddr.araddr), ctx.get(dut.ddr.arlen)) if arv else None
            if offered is not None and cur != offered:
                breaks.append((cyc, "ARVALID dropped or AR changed before ARREADY", offered, cur))
            if cur is not None and offered is None:
                if flush_at is not None and cyc > flush_at:
                    breaks.append((cyc, "a new AR after the flush", cur))
                offered, wait = cur, 0
            if cyc == flush_at:
                on_offer[0] = offered is not None
            take = offered is not None and wait >= ar_delay(len(ars))
            ctx.set(dut.ddr.arready, int(take))
            if take:
                addr, alen = offered
                ars.append(offered)
                if addr // bb + alen + 1 > beats + start_word // per_beat:
                    breaks.append((cyc, "read past DDR's end", offered))
                r_queue += [addr // bb + k for k in range(alen + 1)]
                offered = None
            elif offered is not None:
                wait += 1
            send = bool(r_queue) and rng.random() >= r_gap
            ctx.set(dut.ddr.rvalid, int(send))
            if send:
                b = r_queue.pop(0)
                ctx.set(dut.ddr.rdata, sum(word_at(b * per_beat + w) << (isa.WORD_BITS * w)
                                           for w in range(per_beat)))
                ctx.set(dut.ddr.rlast, 0)
            ctx.set(dut.o.ready, int(rng.random() < 0.7))
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                out.append(ctx.get(dut.o.payload))
            if flush_at is not None and cyc > flush_at and idle_at[0] is None and ctx.get(dut.idle):
                idle_at[0] = cyc
                if r_queue or offered is not None:
                    breaks.append((cyc, "idle with a read still in flight", len(r_queue), offered))
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()
    return out, ars, breaks, idle_at[0], on_offer[0]


@pytest.mark.parametrize("preset", ["tiny", "dfx"])
@pytest.mark.parametrize("start_word", [0, 3])
def test_words_come_out_in_order_and_never_past_ddr_end(preset, start_word):
    cfg = PRESETS[preset]
    per_beat = ddr_data_bits(cfg) // isa.WORD_BITS
    beats = 11                                 # DDR ends 11 beats after the start's beat
    out, ars, breaks, _, _ = run_fetch(cfg, start_word, beats, ar_delay=lambda k: k % 3, cycles=300, r_gap=0.3)
    assert not breaks
    want = [word_at(i) for i in range(start_word, (start_word // per_beat + beats) * per_beat)]
    assert out == want


@pytest.mark.parametrize("preset", ["tiny", "dfx"])
@pytest.mark.parametrize("flush_at", [0, 1, 2, 5, 9, 17])
def test_flush_keeps_an_offered_ar_until_taken_then_drains(preset, flush_at):
    """Every AR waits 12 cycles for ARREADY, so flushes land while one is on offer (the DDR arbiter holding it for
    another port): it must stay offered, unchanged, be taken, and its beats drained before `idle`."""
    cfg = PRESETS[preset]
    out, ars, breaks, idle_at, on_offer = run_fetch(cfg, 0, 1 << 20, ar_delay=lambda k: 12, flush_at=flush_at, cycles=200,
                                          r_gap=0.2)
    assert not breaks
    assert idle_at is not None, "the fetcher never went idle after the flush"
    if flush_at in (2, 5, 9):                  # the first AR is offered at cycle 2 and taken at 14
        assert on_offer, "no AR was on offer at the flush: the case tests nothing"
