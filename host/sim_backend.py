"""The `sim` transport: the functional simulator behind the emulated register block and memory banks
(`host/emu.py`), one `EmuBoard` per device of an `EmuCluster` (a ring when there are several)."""
from __future__ import annotations

from dfx.config import AccelConfig
from dfx.errors import DeviceError

from .emu import EmuCluster
from .transport import Buffer, Transport


class SimTransport(Transport):
    """The functional simulator behind the emulated register block (`host/emu.py`)."""
    backend = "sim"
    batched_prefill = True

    def __init__(self, board):
        self.board = board
        self.label = f"sim device {board.index}"

    @classmethod
    def open_all(cls, cfg: AccelConfig, n: int, ring: list[int] | None = None, **board_kw) -> list["SimTransport"]:
        cluster = EmuCluster(cfg, n, ring, **board_kw)
        return [cls(b) for b in cluster.boards]

    def read32(self, offset):
        return self.board.read32(offset)

    def write32(self, offset, value):
        self.board.write32(offset, value)

    def bank_bytes(self, bank):
        if bank not in self.board.banks:
            raise DeviceError(f"{self.label} has no memory bank {bank!r}")
        return self.board.banks[bank].size

    def alloc(self, bank, nbytes):
        a = self.board.alloc(bank, nbytes)
        return Buffer(bank, nbytes, a.address, a)

    def upload(self, buf, offset, data):
        self.board.write_mem(buf.handle, offset, data)

    def download(self, buf, offset, nbytes):
        return self.board.read_mem(buf.handle, offset, nbytes)

    def free(self, buf):
        self.board.free(buf.handle)

    def set_deadline(self, deadline):
        self.board.deadline = deadline

    def error_detail(self):
        return self.board.detail

    def attach(self, program, entries):
        self.board.attach(program, entries)
