"""The DMA's data alignment (hw/dma.py): `shift_units` is exactly the shift it replaces, at no extra width."""
import random

import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from dfx.hw.dma import shift_units


@pytest.mark.parametrize("width,amount_bits,unit,left", [
    (128, 3, 16, True), (128, 3, 16, False),          # tiny VBUF entry by elements
    (256, 5, 8, True), (256, 5, 8, False),            # a beat by bytes, amounts past the width
    (1024, 6, 16, True), (1024, 7, 8, False),         # the dfx preset's entry and DDR beat
])
def test_shift_units_is_the_shift(width, amount_bits, unit, left):
    x, amount, y = Signal(width), Signal(amount_bits), Signal(width)
    m = Module()
    m.d.comb += y.eq(shift_units(x, amount, unit, left))
    assert len(shift_units(x, amount, unit, left)) == width
    rng = random.Random(width * 31 + amount_bits)
    cases = [(rng.getrandbits(width), a) for a in range(1 << amount_bits) for _ in range(2)]
    cases += [((1 << width) - 1, a) for a in range(1 << amount_bits)]
    got = []

    async def bench(ctx):
        for v, a in cases:
            ctx.set(x, v)
            ctx.set(amount, a)
            got.append(ctx.get(y))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    mask = (1 << width) - 1
    want = [((v << a * unit) & mask) if left else (v >> a * unit) for v, a in cases]
    assert got == want
