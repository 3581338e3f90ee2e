"""The ring link layer's CRC (hw/ring_link.py) in amaranth.sim: the one-cycle parallel CRC-32 equals the
bit-serial reference on corner and random words; the header CRC of the RTL equals `header_crc_int`; bad
endpoint parameters are refused. The framing, replay and credits run under cocotb (tests/hw/test_ring_top.py)."""
import random

import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from dfx.hw.ring_link import (CRC_INIT, LINK_BITS, RxEndpoint, TxEndpoint, crc_next, crc_step, header_crc,
                              header_crc_int)

CORNERS = [(CRC_INIT, 0), (0, 0), (CRC_INIT, (1 << LINK_BITS) - 1), (0, 1), (0, 1 << (LINK_BITS - 1)),
           (1 << 31, 0), (0x12345678, 0xDEADBEEF << 100)]


def test_crc_next_equals_the_bit_serial_reference():
    rng = random.Random(1)
    cases = CORNERS + [(rng.getrandbits(32), rng.getrandbits(LINK_BITS)) for _ in range(40)]
    crc, word = Signal(32), Signal(LINK_BITS)
    out, hdr = Signal(32), Signal(32)
    m = Module()
    m.d.comb += [out.eq(crc_next(crc, word)), hdr.eq(header_crc(word))]
    sim = Simulator(m)

    async def bench(ctx):
        for c, w in cases:
            ctx.set(crc, c)
            ctx.set(word, w)
            assert ctx.get(out) == crc_step(c, w), (hex(c), hex(w))
            assert ctx.get(hdr) == header_crc_int(w)

    sim.add_testbench(bench)
    sim.run()


def test_crc_detects_single_bit_flips():
    rng = random.Random(2)
    w = rng.getrandbits(LINK_BITS)
    good = crc_step(CRC_INIT, w)
    assert all(crc_step(CRC_INIT, w ^ (1 << b)) != good for b in range(LINK_BITS))


@pytest.mark.parametrize("kw,msg", [(dict(frame_words=3), "frame_words must be a power of two 1..8, not 3"),
                                    (dict(frame_words=16), "frame_words must be a power of two 1..8, not 16"),
                                    (dict(window=128), "window must be a power of two 1..64, not 128")])
def test_bad_parameters(kw, msg):
    for cls in (TxEndpoint, RxEndpoint):
        with pytest.raises(ValueError, match=msg):
            cls(1, **kw)
