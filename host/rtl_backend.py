"""The `rtl` transport: the integrated core (`dfx.hw.top`) in a cocotb simulation, driven by the same host code
as the boards (`host/device.py`, `host/session.py`).

The host code runs in a thread bridged into the simulation (`dfx.verify.bridge.BlockingCore`): every register
access is an AXI4-Lite transaction of the testbench's cocotbext-axi `AxiLiteMaster`, the memory banks are its
`AxiRam` models (one per HBM pseudo-channel, one for DDR; a host upload/download is a direct write/read of the
model, as a PCIe DMA would be), and a poll pause is 64 clock cycles. `dfx.host.rtl_session.run_session`
starts such a simulation; `dfx run --backend rtl` and `dfx generate --backend rtl` call it.
"""
from __future__ import annotations

from dfx.config import AccelConfig
from dfx.errors import DeviceError
from dfx.verify.bridge import BlockingCore

from .image import DDR_BANK, hbm_bank
from .transport import Buffer, Transport

POLL_CYCLES = 64


class RtlTransport(Transport):
    backend = "rtl"

    def __init__(self, core: BlockingCore, index: int = 0):
        self.core, self.index = core, index
        self.label = f"rtl device {index}"
        cfg = core.cfg
        self.rams = {hbm_bank(c): ram for c, ram in enumerate(core.hbm)}
        self.rams[DDR_BANK] = core.ddr
        own = getattr(core, "bank_sizes", None)         # the fast harness's memories hold less than the board's
        self.sizes = {hbm_bank(c): own["hbm"] if own else cfg.hbm_channel_mb << 20 for c in range(cfg.hbm_channels)}
        self.sizes[DDR_BANK] = own["ddr"] if own else cfg.ddr_bytes
        self.top = {b: 0 for b in self.rams}

    @classmethod
    def open_all(cls, cfg: AccelConfig, n: int, cores: list[BlockingCore] | None = None) -> list["RtlTransport"]:
        if cores is None:
            raise DeviceError("the rtl backend runs inside a cocotb simulation of the core: use "
                              "`dfx run --backend rtl` (or dfx.host.rtl_session.run_session)")
        if len(cores) != n:
            raise DeviceError(f"the program needs {n} cores; the simulation has {len(cores)}")
        return [cls(core, k) for k, core in enumerate(cores)]

    def read32(self, offset):
        return self.core.read32(offset)

    def write32(self, offset, value):
        self.core.write32(offset, value)

    def bank_bytes(self, bank):
        if bank not in self.sizes:
            raise DeviceError(f"{self.label} has no memory bank {bank!r}")
        return self.sizes[bank]

    def alloc(self, bank, nbytes):
        start = -(-self.top[bank] // 4096) * 4096
        if start + nbytes > self.sizes[bank]:
            raise DeviceError(f"{self.label}: cannot allocate {nbytes} bytes in {bank} ({self.sizes[bank]} bytes)")
        self.top[bank] = start + nbytes
        return Buffer(bank, nbytes, start, self.rams[bank])

    def upload(self, buf, offset, data):
        buf.handle.write(buf.address + offset, bytes(data))

    def download(self, buf, offset, nbytes):
        return bytes(buf.handle.read(buf.address + offset, nbytes))

    def free(self, buf):
        pass                          # the memory models live as long as the simulation

    def pause(self, waited):
        self.core.wait_cycles(POLL_CYCLES)
