"""The DMA's data alignment (hw/dma.py): `shift_units` is exactly the shift it replaces, at no extra width."""
import random
import subprocess
import sys

import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from dfx.hw.dma import shift_units


@pytest.mark.parametrize("staged", [False, True])
@pytest.mark.parametrize("width,amount_bits,unit,left", [
    (128, 3, 16, True), (128, 3, 16, False),          # tiny VBUF entry by elements
    (256, 5, 8, True), (256, 5, 8, False),            # a beat by bytes, amounts past the width
    (1024, 6, 16, True), (1024, 7, 8, False),         # the dfx preset's entry and DDR beat
])
def test_shift_units_is_the_shift(width, amount_bits, unit, left, staged):
    """As one expression, and with every stage a signal of the module (`m=`: what the DMA uses)."""
    x, amount, y = Signal(width), Signal(amount_bits), Signal(width)
    m = Module()
    m.d.comb += y.eq(shift_units(x, amount, unit, left, m=m if staged else None))
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


def test_dma_converts_at_the_dfx_preset():
    """The DMA engine at the dfx preset converts to RTLIL in a bounded address space (3 GB; it takes ~0.2 GB):
    with its shifters as single expressions the netlist builder expanded them 2**stages times and ran out of
    memory (MemoryError after 7 GB), which stopped `dfx build` at the dfx preset."""
    code = ("from amaranth.back import rtlil\nfrom dfx.config import load_config\nfrom dfx.hw.dma import DmaEngine\n"
            "print(len(rtlil.convert(DmaEngine(load_config('dfx')))))")
    r = subprocess.run(["prlimit", "--as=3000000000", "--", sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr.strip().splitlines()[-1:]
    assert int(r.stdout.split()[-1]) > 100_000
