"""The small part of a host backend that differs between the simulator, the RTL and a board: 32-bit register
reads/writes on the kernel's AXI4-Lite slave, device buffers (allocate in a bank, copy in, copy out, free) and
a pause between polls. Everything else (`host/device.py`) is one code path over all of them. The transports:
`host/sim_backend.py` (sim), `host/rtl_backend.py` (rtl), `host/pynq_backend.py` (pynq); `host/transports.py`
opens one by name.

A transport raises `DeviceError` (one line, naming the device) for anything the device refuses or cannot do.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

from dfx.errors import DeviceError


class Buffer:
    """A device buffer: `address` is what the kernel argument register receives."""

    def __init__(self, bank: str, nbytes: int, address: int, handle):
        self.bank, self.nbytes, self.address, self.handle = bank, nbytes, address, handle
        self.freed = False

    def __repr__(self):
        return f"Buffer({self.bank}, {self.nbytes} B at 0x{self.address:x})"


class Transport(ABC):
    backend: str = "?"
    label: str = "?"                 # "sim device 0", "pynq device 1 (xilinx_u280_gen3x16_xdma_base_1)"
    batched_prefill: bool = True     # the core runs BATCH/CHUNK/SLOT (every kernel of ISA version 2 does, the RTL core
    #                                  included: the handshake checks ISA_VERSION); False: the host refuses such programs

    @abstractmethod
    def read32(self, offset: int) -> int: ...

    @abstractmethod
    def write32(self, offset: int, value: int) -> None: ...

    @abstractmethod
    def bank_bytes(self, bank: str) -> int:
        """Capacity of a memory bank (`HBM0`.., `DDR0`); DeviceError if the device has no such bank."""

    @abstractmethod
    def alloc(self, bank: str, nbytes: int) -> Buffer: ...

    @abstractmethod
    def upload(self, buf: Buffer, offset: int, data: bytes) -> None:
        """Host -> device: write `data` at `offset` and sync it to the device."""

    @abstractmethod
    def download(self, buf: Buffer, offset: int, nbytes: int) -> bytes:
        """Device -> host: sync `nbytes` at `offset` from the device and return them."""

    @abstractmethod
    def free(self, buf: Buffer) -> None: ...

    def close(self) -> None:
        """Release the device (buffers are freed by the caller first)."""

    def set_deadline(self, deadline: float | None) -> None:
        """The host's deadline (`time.monotonic()` seconds) for the run it starts next: a transport that runs the
        kernel inside the start (the simulator) stops there, and the host's wait then reports its timeout."""

    def pause(self, waited: float) -> None:
        """Between two polls of CTRL; `waited` seconds since start."""

    def error_detail(self) -> str | None:
        """More about the last error the kernel reported, where the backend knows it (the simulator does)."""
        return None

    def attach(self, program, entries: dict[str, int]) -> None:
        """The program loaded (the simulator names streams and computes cycle counters from it)."""


def board_xclbin(backend: str, xclbin: str | os.PathLike | None) -> Path:
    """The xclbin a board transport loads: `xclbin`, else $DFX_XCLBIN; DeviceError (one line) when neither names
    an existing file."""
    xclbin = xclbin or os.environ.get("DFX_XCLBIN")
    if not xclbin:
        raise DeviceError(f"the {backend} backend needs an xclbin: pass --xclbin or set DFX_XCLBIN (build it with "
                          "`dfx build --board u280`)")
    xclbin = Path(xclbin)
    if not xclbin.is_file():
        raise DeviceError(f"xclbin {xclbin} does not exist")
    return xclbin
