"""The vector buffer (hw/buffers.py): with its write through registers to per-read-port copies
(`write_stages=2`, the core's) every read returns, in the cycle after its `en`, what the plain buffer (one
memory, the write port straight to it, reads transparent to it: `write_stages=0`) returns, under random traffic
that writes and reads a few entries in every order and distance, with partial lane enables and idle cycles."""

import random

import pytest
from amaranth import Module
from amaranth.sim import Simulator

from dfx.config import PRESETS
from dfx.hw.buffers import VectorBuffer


def run_pair(cfg, readers: int, cycles: int, seed: int, n_addr: int = 4):
    m = Module()
    m.submodules.ref = ref = VectorBuffer(cfg, readers=readers, write_stages=0)
    m.submodules.dut = dut = VectorBuffer(cfg, readers=readers, write_stages=2)
    rng = random.Random(seed)
    d = cfg.d
    mismatches, reads = [], [0]
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def bench(ctx):
        prev_en = [0] * readers
        for cyc in range(cycles):
            en = rng.getrandbits(d) if rng.random() < 0.6 else 0
            addr, data = rng.randrange(n_addr), rng.getrandbits(16 * d)
            for b in (ref, dut):
                ctx.set(b.w.addr, addr)
                ctx.set(b.w.en, en)
                ctx.set(b.w.data, data)
            for i in range(readers):                # the data of the reads issued in the cycle before
                a, b = ctx.get(getattr(ref, f"r{i}").data), ctx.get(getattr(dut, f"r{i}").data)
                if prev_en[i] and a != b:
                    mismatches.append((cyc, i, hex(a), hex(b)))
            for i in range(readers):
                r_en, r_addr = int(rng.random() < 0.7), rng.randrange(n_addr)
                reads[0] += r_en
                prev_en[i] = r_en
                for b in (ref, dut):
                    ctx.set(getattr(b, f"r{i}").en, r_en)
                    ctx.set(getattr(b, f"r{i}").addr, r_addr)
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()
    return mismatches, reads[0]


@pytest.mark.parametrize("seed", range(3))
def test_registered_write_reads_like_the_plain_buffer(seed):
    mismatches, reads = run_pair(PRESETS["tiny"], readers=3, cycles=600, seed=seed)
    assert reads > 1000
    assert not mismatches, mismatches[:5]


def test_the_plain_buffer_is_not_trivially_equal():
    """The comparison can fail: a memory written two cycles late with nothing merged (what the registered write
    would be without the merge) returns stale lanes under the same traffic."""
    cfg = PRESETS["tiny"]
    m = Module()
    m.submodules.ref = ref = VectorBuffer(cfg, readers=1, write_stages=0)
    m.submodules.late = late = _late_write_buffer(cfg)
    rng = random.Random(7)
    diffs = [0]
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def bench(ctx):
        for _ in range(300):
            en, addr, data = rng.getrandbits(cfg.d), rng.randrange(4), rng.getrandbits(16 * cfg.d)
            r_addr = rng.randrange(4)
            for b in (ref, late):
                ctx.set(b.w.addr, addr)
                ctx.set(b.w.en, en)
                ctx.set(b.w.data, data)
                ctx.set(b.r0.en, 1)
                ctx.set(b.r0.addr, r_addr)
            diffs[0] += ctx.get(ref.r0.data) != ctx.get(late.r0.data)
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()
    assert diffs[0] > 10


def _late_write_buffer(cfg):
    """A buffer whose write reaches its memory two cycles late, with no merge (what the registered write would
    be without it)."""
    from amaranth import Signal
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import In

    from dfx.hw.buffers import vbuf_read_signature, vbuf_write_signature

    class Late(wiring.Component):
        def __init__(self):
            super().__init__({"w": In(vbuf_write_signature(cfg)), "r0": In(vbuf_read_signature(cfg))})

        def elaborate(self, platform):
            m = Module()
            m.submodules.mem = mem = Memory(shape=16 * cfg.d, depth=cfg.vbuf_entries, init=[])
            a1, e1, d1 = Signal.like(self.w.addr), Signal.like(self.w.en), Signal.like(self.w.data)
            a2, e2, d2 = Signal.like(self.w.addr), Signal.like(self.w.en), Signal.like(self.w.data)
            m.d.sync += [a1.eq(self.w.addr), e1.eq(self.w.en), d1.eq(self.w.data), a2.eq(a1), e2.eq(e1), d2.eq(d1)]
            wp = mem.write_port(granularity=16)
            m.d.comb += [wp.addr.eq(a2), wp.en.eq(e2), wp.data.eq(d2)]
            rp = mem.read_port(transparent_for=(wp,))
            m.d.comb += [rp.addr.eq(self.r0.addr), rp.en.eq(self.r0.en), self.r0.data.eq(rp.data)]
            return m

    return Late()


def test_write_stages_must_be_0_or_2():
    with pytest.raises(ValueError, match="write_stages must be 0"):
        VectorBuffer(PRESETS["tiny"], readers=1, write_stages=1)
