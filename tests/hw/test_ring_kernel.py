"""The ring kernel's width converters (hw/ring_kernel.py) in amaranth.sim: core beats -> 256-bit link words ->
core beats is the identity for every ring width the kernel accepts (a divisor or a multiple of 256 bits: the
tiny and dfx presets among them), `last` included, under back-pressure; the word count is what the packing
promises; bad widths are refused. The kernel itself runs under cocotb in tests/hw/test_ring_top.py."""
import random

import pytest
from amaranth import Module
from amaranth.lib import wiring

from dfx.hw.ring_kernel import STATUS_REGS, Packer, Unpacker, check_width, slot_bits

from hw_helpers import run_streams


class _RoundTrip(wiring.Component):
    def __init__(self, w):
        self.p, self.u = Packer(w), Unpacker(w)
        super().__init__({"i": wiring.In(self.p.i.signature.flip()), "o": wiring.Out(self.u.o.signature)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.p, m.submodules.u = self.p, self.u
        wiring.connect(m, wiring.flipped(self.i), self.p.i)
        wiring.connect(m, self.u.o, wiring.flipped(self.o))
        m.d.comb += [self.u.i.payload.eq(self.p.o.payload), self.u.i.valid.eq(self.p.o.valid),
                     self.p.o.ready.eq(self.u.i.ready)]
        return m


def _beats(w, rng, messages):
    out = []
    for _ in range(messages):
        n = rng.randint(1, 7)
        out += [rng.getrandbits(w) | (int(k == n - 1) << w) for k in range(n)]     # payload = data | last << w
    return out


@pytest.mark.parametrize("w", [64, 128, 256, 512, 1024])
def test_round_trip_is_identity(w):
    rng = random.Random(w)
    beats = _beats(w, rng, 12)
    got = run_streams(_RoundTrip(w), {"i": beats}, {"o": len(beats)}, seed=w, stall=0.3)["o"]
    assert got == beats


@pytest.mark.parametrize("w,beats,words", [(128, 3, 2), (128, 4, 2), (64, 5, 2), (256, 3, 3), (1024, 2, 8)])
def test_words_per_message(w, beats, words):
    """A message of `beats` beats becomes `words` link words: narrow beats share a word up to `last`."""
    dut = Packer(w)
    msg = [(1 << w) - 1 - k | (int(k == beats - 1) << w) for k in range(beats)]
    out = run_streams(dut, {"i": msg}, {"o": words}, stall=0)["o"]
    nb = slot_bits(w)
    last_bit = 256 + nb
    assert [o >> last_bit & 1 for o in out] == [0] * (words - 1) + [1]
    if w < 256:
        assert sum((o >> 256 & ((1 << nb) - 1)) + 1 for o in out) == beats


@pytest.mark.parametrize("w", [0, 8, 96, 384, 300])
def test_bad_width(w):
    with pytest.raises(ValueError, match="multiple or a divisor of 256 bits"):
        check_width(w)


def test_status_registers_are_distinct_words():
    offs = [off for off, _, _ in STATUS_REGS]
    assert len(set(offs)) == len(offs) and all(o % 4 == 0 for o in offs)
    assert len({name for _, name, _ in STATUS_REGS}) == len(STATUS_REGS)
