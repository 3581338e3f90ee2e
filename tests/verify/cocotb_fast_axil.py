"""cocotb side of tests/verify/test_fast_verilator.py: the lean AXI4-Lite master (`dfx.verify.fast_axil`)
against a register slave with back-pressure, and a `mem` array read through the design's hierarchy."""
import cocotb
from cocotb.clock import Clock
from cocotb.triggers import Timer

from dfx.verify.fast_axil import AxiLiteLean

VALUES = [0xDEADBEEF, 1, 0x80000000, 0x12345678]


@cocotb.test()
async def lean_master_round_trip(dut):
    m = AxiLiteLean(dut, "ctl", dut.clk)
    m.idle()
    dut.rst_n.value = 0
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns", impl="gpi").start())
    await Timer(50, unit="ns")
    dut.rst_n.value = 1
    await Timer(20, unit="ns")
    for i, v in enumerate(VALUES):
        await m.write_dword(4 * i, v)
    for i, v in enumerate(reversed(VALUES)):
        assert await m.read_dword(4 * (3 - i)) == v
    assert int(dut.writes.value) == len(VALUES), "each write is one AXI transaction"
    assert int(dut.reads.value) == len(VALUES), "each read is one AXI transaction"
    assert int(dut.inner.regs.mem[2].value) == VALUES[2]
