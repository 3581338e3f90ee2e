"""A lean AXI4-Lite master for the fast harness's control ports (`dfx.verify.fast_tb`): one coroutine per
transaction and one wake-up per clock edge while it lasts, where cocotbext-axi's `AxiLiteMaster` runs a queue
and five channel coroutines per port. A run of the tiny core is a few thousand cycles and a dozen register
accesses, so the bus model's Python cost is what bounds the harness's speed (benchmarks/rtl_core_speed.py).
cocotbext-axi stays the protocol-checking master of the cocotbext-axi harness (`dfx.verify.rtl_core`).

    m = AxiLiteLean(dut, "dev0_s_axi_control", dut.ap_clk)
    m.idle()                                  # drive the idle levels (before reset is released)
    await m.write_dword(0x10, 1); v = await m.read_dword(0x10)

The handshakes are sampled right after each rising edge, as cocotbext-axi samples them, so a transfer counts
at the edge where valid and ready were both high, the master's own valid read back from the design: a
transaction begun in the time step of a rising edge (the host's first access after a poll pause of whole clock
periods) may reach that edge before its valid does (Icarus runs the edge's callbacks first), and the slave's
ready seen there is not an answer to it (counted as one, it dropped ARVALID and waited for a response that never
came: the ring's stall, docs/rtl_core.md "Several devices"; tests/verify/test_fast_axil.py). BREADY and RREADY
stay high (a master may hold them), so each response is seen on exactly one edge. A transaction the slave leaves
unanswered for `LIMIT` cycles raises.
"""
from __future__ import annotations

LIMIT = 10_000          # cycles a transaction may take before the master gives up
OKAY = 0


class AxiLiteLean:
    """One AXI4-Lite control port driven from cocotb (see the module docstring)."""

    def __init__(self, dut, prefix: str, clock):
        self.clock = clock
        for name in ("awvalid", "awaddr", "awready", "wvalid", "wdata", "wstrb", "wready", "bvalid", "bready",
                     "bresp", "arvalid", "araddr", "arready", "rvalid", "rdata", "rready", "rresp"):
            setattr(self, name, getattr(dut, f"{prefix}_{name}"))

    def idle(self) -> None:
        self.awvalid.value = self.wvalid.value = self.arvalid.value = 0
        self.bready.value = self.rready.value = 1

    async def write_dword(self, address: int, value: int) -> None:
        from cocotb.triggers import RisingEdge  # lazy: cocotb exists only inside the simulator process
        edge = RisingEdge(self.clock)
        self.awaddr.value, self.wdata.value, self.wstrb.value = address, value & 0xFFFFFFFF, 0xF
        self.awvalid.value = self.wvalid.value = 1
        aw = w = True
        for _ in range(LIMIT):
            await edge
            if not (aw or w) and int(self.bvalid.value):
                if int(self.bresp.value) != OKAY:
                    raise RuntimeError(f"AXI4-Lite write of 0x{address:x}: BRESP {int(self.bresp.value)}")
                return
            if aw and int(self.awvalid.value) and int(self.awready.value):
                self.awvalid.value, aw = 0, False
            if w and int(self.wvalid.value) and int(self.wready.value):
                self.wvalid.value, w = 0, False
        raise RuntimeError(f"AXI4-Lite write of 0x{address:x}: no response in {LIMIT} cycles")

    async def read_dword(self, address: int) -> int:
        from cocotb.triggers import RisingEdge  # lazy: cocotb exists only inside the simulator process
        edge = RisingEdge(self.clock)
        self.araddr.value, self.arvalid.value = address, 1
        ar = True
        for _ in range(LIMIT):
            await edge
            if not ar and int(self.rvalid.value):
                if int(self.rresp.value) != OKAY:
                    raise RuntimeError(f"AXI4-Lite read of 0x{address:x}: RRESP {int(self.rresp.value)}")
                return int(self.rdata.value)
            if ar and int(self.arvalid.value) and int(self.arready.value):
                self.arvalid.value, ar = 0, False
        raise RuntimeError(f"AXI4-Lite read of 0x{address:x}: no response in {LIMIT} cycles")


__all__ = ["AxiLiteLean"]
