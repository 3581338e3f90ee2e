"""Blocking host code inside a cocotb simulation of the core. The host code (`dfx.host`) is blocking Python; the
simulator is cooperative: the code runs in a thread made with `cocotb.bridge`, and every operation on the core
is a coroutine of the simulation awaited through `cocotb.resume`.

`BlockingCore(tb)` is one core (`dfx.verify.core_tb.CoreTB`) seen from that thread: `read32`/`write32` are
AXI4-Lite transactions of the testbench's cocotbext-axi `AxiLiteMaster`, `hbm` / `ddr` are its `AxiRam` models
(read and written directly, as a PCIe DMA would), and `wait_cycles(n)` lets n clock cycles pass.
"""
from __future__ import annotations


def bridge_api():
    """(bridge, resume): public as cocotb.bridge / cocotb.resume inside a simulation (cocotb 2.x)."""
    import cocotb  # lazy: cocotb exists only inside the simulator process (the optional `sim` extra)
    if hasattr(cocotb, "bridge"):
        return cocotb.bridge, cocotb.resume
    from cocotb._bridge import bridge, resume  # lazy: (older cocotb 2.x) as above
    return bridge, resume


class BlockingCore:
    """A `CoreTB` for a thread bridged into the simulation (see the module docstring)."""

    def __init__(self, tb):
        self.tb, self.cfg = tb, tb.cfg
        self.hbm, self.ddr = tb.hbm, tb.ddr
        self._resume = bridge_api()[1]

    def read32(self, offset: int) -> int:
        return int(self._resume(self.tb.axil.read_dword)(offset))

    def write32(self, offset: int, value: int) -> None:
        self._resume(self.tb.axil.write_dword)(offset, value)

    def wait_cycles(self, n: int) -> None:
        from cocotb.triggers import ClockCycles  # lazy: cocotb exists only inside the simulator process

        async def cycles():
            await ClockCycles(self.tb.clk, n)
        self._resume(cycles)()
