"""Blocking host code on the fast harness (`dfx.verify.fast_top`): the same contract as `dfx.verify.bridge` (the
host `rtl` transport runs on it unchanged), with the memories inside the simulated design.

`FastBlockingCore(tb, k)` is device k of a `dfx.verify.fast_tb.FastTB` seen from a thread bridged into the
simulation: `read32` / `write32` are AXI4-Lite transactions on its control port, `wait_cycles(n)` lets n cycles
pass, `hbm[c]` / `ddr` are `BackdoorMemory`s (`read(addr, n)`, `write(addr, data)` through the memories' file
backdoor, as a PCIe DMA would move data) and `bank_sizes` the bytes each memory holds. The cocotb test
`dfx_fast_host_job` is `dfx.verify.session.run_host_job`'s simulator side on this design.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

from dfx.config import AccelConfig

from .bridge import bridge_api
from .fast_tb import CLOCK_NS, FastTB, from_hex, to_hex

FAST_HOST_ENV = "DFX_FAST_HOST_JOB"


async def poke(tb: FastTB, name: str, addr: int, data: bytes) -> None:
    """Write `data` at byte `addr` of memory `name` through the backdoor (the partial words at either end are
    read first, so their other bytes keep their contents)."""
    if not data:
        return
    from cocotb.triggers import Timer  # lazy: cocotb exists only inside the simulator process
    wb = tb.word_bytes[tb._kind(name)]
    lo, hi = addr // wb, (addr + len(data) - 1) // wb
    buf = bytearray((hi - lo + 1) * wb)
    if addr % wb or (addr + len(data)) % wb:
        buf[:] = await tb.dump(name, len(buf), lo * wb)
    buf[addr - lo * wb:addr - lo * wb + len(data)] = data
    Path(f"{name}.hex").write_text(f"@{lo:x}\n" + to_hex(bytes(buf), wb))
    tb.dut.mem_clear.value = 0
    await tb.settle()
    tb.dut.mem_load.value = 1 << tb.names.index(name)
    await Timer(1, unit="ns")
    tb.dut.mem_load.value = 0


class BackdoorMemory:
    """One memory of the fast design with the `AxiRam` calls the host transport makes (`read`, `write`)."""

    def __init__(self, tb: FastTB, name: str, size: int):
        self.tb, self.name, self.size = tb, name, size
        self._resume = bridge_api()[1]

    def read(self, addr: int, n: int) -> bytes:
        return self._resume(self.tb.dump)(self.name, n, addr)

    def write(self, addr: int, data) -> None:
        self._resume(poke)(self.tb, self.name, addr, bytes(data))


class FastBlockingCore:
    """Device k of the fast design for a bridged thread (see the module docstring)."""

    def __init__(self, tb: FastTB, k: int = 0, ddr_bytes: int = 0, hbm_bytes: int = 0):
        self.tb, self.k, self.cfg = tb, k, tb.cfg
        self._resume = bridge_api()[1]
        self.ddr = BackdoorMemory(tb, f"d{k}_ddr", ddr_bytes)
        self.hbm = [BackdoorMemory(tb, f"d{k}_hbm{c:02d}", hbm_bytes) for c in range(tb.cfg.hbm_channels)]
        self.bank_sizes = {"ddr": ddr_bytes, "hbm": hbm_bytes}

    def read32(self, offset: int) -> int:
        return int(self._resume(self.tb.axil[self.k].read_dword)(offset))

    def write32(self, offset: int, value: int) -> None:
        self._resume(self.tb.axil[self.k].write_dword)(offset, value)

    def wait_cycles(self, n: int) -> None:
        from cocotb.triggers import Timer  # lazy: cocotb exists only inside the simulator process

        async def cycles():
            await Timer(n * CLOCK_NS, unit="ns")
        self._resume(cycles)()


def _cocotb_test():
    import cocotb  # lazy: cocotb exists only inside the simulator process

    @cocotb.test()
    async def dfx_fast_host_job(dut):
        spec = json.loads(Path(os.environ[FAST_HOST_ENV]).read_text())
        cfg = AccelConfig.from_dict(spec["cfg"])
        tb = FastTB(dut, cfg, 1, spec["word_bytes"])
        await tb.start()
        await tb.load({})
        await tb.reset()
        core = FastBlockingCore(tb, 0, spec["ddr_bytes"], spec["hbm_bytes"])
        module, _, name = spec["entry"].partition(":")
        fn = getattr(importlib.import_module(module), name)
        result = await bridge_api()[0](lambda: fn([core], spec["args"]))()
        Path(spec["out"]).write_text(json.dumps(result))

    return dfx_fast_host_job


if "cocotb" in sys.modules and os.environ.get(FAST_HOST_ENV):     # loaded by cocotb as the test module of a job
    dfx_fast_host_job = _cocotb_test()
