"""cocotb side of tests/verify/test_fast_axil.py: the lean AXI4-Lite master (`dfx.verify.fast_axil`) starting
its transactions exactly on a rising clock edge, as the rtl backend's host does after a poll pause (a `Timer`
of whole clock periods, begun at an edge)."""
import cocotb
from cocotb.clock import Clock
from cocotb.triggers import Timer

from dfx.verify.fast_axil import AxiLiteLean

PERIOD_NS = 10
VALUES = [0xDEADBEEF, 1, 0x80000000, 0x12345678]


@cocotb.test()
async def lean_master_from_a_clock_edge(dut):
    m = AxiLiteLean(dut, "ctl", dut.clk)
    m.idle()
    dut.rst_n.value = 0
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start())
    await Timer(5 * PERIOD_NS, unit="ns")
    dut.rst_n.value = 1
    await Timer(2 * PERIOD_NS, unit="ns")
    await m.write_dword(0, 0)                   # returns at a rising edge: every Timer below ends on one
    for i, v in enumerate(VALUES):
        await Timer((i + 1) * PERIOD_NS, unit="ns")
        await m.write_dword(4 * i, v)
    for rnd in range(4):                        # every phase of the slave's ready pulses
        for i, v in enumerate(VALUES):
            await Timer((rnd + i + 1) * PERIOD_NS, unit="ns")
            assert await m.read_dword(4 * i) == v, f"round {rnd}, register {i}"
    assert int(dut.writes.value) == len(VALUES) + 1, "each write is one AXI transaction"
    assert int(dut.reads.value) == 4 * len(VALUES), "each read is one AXI transaction"
