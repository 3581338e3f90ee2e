"""A strict stand-in for the `pynq` module whose cards are emulated boards (`host/emu.py`: the functional
simulator behind the register map). It implements exactly the PYNQ surface `host/pynq_backend.py` documents;
anything else is an AttributeError or a TypeError. It exists because no Alveo board is reachable from CI: it
produces the recorded board sessions (`host/replay.py`, `host/recording.py`) and injects the board faults the host must survive.

    fake = FakePynq(2)                                   # two cards
    write_fake_xclbin(path, cfg)                         # what `pynq.Overlay(path)` accepts here
    PynqTransport.open_all(2, xclbin=path, pynq=fake)

Faults: `FakePynq(0)` (no device), `hang=True` (the kernel never raises ap_done), `vanish_after=N` (the card
stops answering after N register or DMA operations), an xclbin written with `kernel=`/`magic=` of another
design (wrong xclbin), `hbm_bank_bytes=` (small HBM banks). With `program=` the cards' CYCLES/BUSY counters come
from the performance model, as on the sim backend (a real card counts them in hardware).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dfx import isa, regmap
from dfx.config import AccelConfig

from .emu import DDR_BANK_BYTES, HBM_BANK_BYTES, EmuCluster
from .image import DDR_BANK, device_image, hbm_bank

FORMAT = "dfx-fake-xclbin"


def write_fake_xclbin(path, cfg: AccelConfig, kernel: str = "dfx_core_1", magic: int = regmap.DFX_MAGIC,
                      isa_version: int = isa.ISA_VERSION) -> Path:
    """A stand-in xclbin for the fake: the core config it was 'built' for and its kernel name."""
    path = Path(path)
    path.write_text(json.dumps({"format": FORMAT, "config": cfg.to_dict(), "kernel": kernel, "magic": magic,
                                "isa_version": isa_version}))
    return path


class RemovedError(RuntimeError):
    """What XRT raises once a card has gone (PCIe link down, card reset)."""


class _FakeDeviceList:
    def __init__(self, fake):
        self._fake = fake

    @property
    def devices(self):
        return list(self._fake._devices)


class FakeDevice:
    def __init__(self, fake, index):
        self._fake, self.index = fake, index
        self.name = f"xilinx_u280_gen3x16_xdma_base_1 (fake {index})"
        self.board = None


class _Mem:
    def __init__(self, ol, bank):
        self._ol, self.bank = ol, bank


class _IP:
    def __init__(self, ol):
        self._ol = ol

    def read(self, offset=0):
        self._ol._fake._tick()
        return self._ol._device.board.read32(int(offset))

    def write(self, offset, value):
        self._ol._fake._tick()
        self._ol._device.board.write32(int(offset), int(value))


class FakeOverlay:
    def __init__(self, fake, path, device):
        self._fake, self._device = fake, device
        try:
            desc = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise RuntimeError(f"{path} is not a valid xclbin ({e})") from None
        if desc.get("format") != FORMAT:
            raise RuntimeError(f"{path} is not a valid xclbin")
        cfg = AccelConfig.from_dict(desc["config"])
        fake._program_card(device, cfg, desc)
        self._kernel = desc["kernel"]
        self._mems = {hbm_bank(c): c for c in range(cfg.hbm_channels)}
        self._mems[DDR_BANK] = None
        self.freed = False

    @property
    def ip_dict(self):
        return {self._kernel: {"type": "xilinx.com:RTLKernel:" + self._kernel.rsplit("_", 1)[0] + ":1.0"}}

    @property
    def mem_dict(self):
        b = self._device.board
        out = {f"HBM[{c}]": {"used": 1, "size": b.banks[hbm_bank(c)].size, "base_address": b.banks[hbm_bank(c)].base}
               for c in range(len(self._mems) - 1)}
        out["DDR[0]"] = {"used": 1, "size": b.banks[DDR_BANK].size, "base_address": b.banks[DDR_BANK].base}
        out["DDR[1]"] = {"used": 0, "size": DDR_BANK_BYTES, "base_address": 0x50_0000_0000}
        return out

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name == self._kernel:
            return _IP(self)
        if name in self._mems:
            return _Mem(self, name)
        raise AttributeError(f"overlay has no attribute {name!r}")

    def free(self):
        self.freed = True


class FakeBuffer:
    """`pynq.allocate` result: host mirror + device bytes; only slicing, sync, tobytes and freebuffer."""

    def __init__(self, fake, board, alloc, host, start=0, parent=None):
        self._fake, self._board, self._alloc, self._host, self._start = fake, board, alloc, host, start
        self._parent = parent or self
        self.device_address = alloc.address + start
        self.freed = False

    def __getitem__(self, s):
        if not isinstance(s, slice) or s.step not in (None, 1):
            raise TypeError("the fake buffer supports contiguous slices only")
        a, b, _ = s.indices(self._host.size)
        return FakeBuffer(self._fake, self._board, self._alloc, self._host[a:b], self._start + a, self._parent)

    def __setitem__(self, s, value):
        if s != slice(None):
            raise TypeError("the fake buffer supports `view[:] = data` only")
        value = np.asarray(value)
        if value.dtype != np.uint8 or value.size != self._host.size:
            raise TypeError(f"expected {self._host.size} uint8, got {value.size} {value.dtype}")
        self._host[:] = value

    def _live(self):
        if self._parent.freed:
            raise RuntimeError("buffer used after freebuffer()")

    def sync_to_device(self):
        self._live()
        self._fake._tick()
        self._board.write_mem(self._alloc, self._start, self._host.tobytes())

    def sync_from_device(self):
        self._live()
        self._fake._tick()
        self._host[:] = np.frombuffer(self._board.read_mem(self._alloc, self._start, self._host.size), np.uint8)

    def tobytes(self):
        return self._host.tobytes()

    def freebuffer(self):
        if self._parent is not self:
            raise TypeError("freebuffer() on a slice")
        if not self.freed:
            self.freed = True
            self._board.free(self._alloc)
            self._fake._live.discard(self)


class FakePynq:
    """The `pynq` module as the pynq backend uses it, for `n` emulated cards."""

    def __init__(self, n: int = 1, *, hang: bool = False, vanish_after: int | None = None,
                 hbm_bank_bytes: int = HBM_BANK_BYTES, program=None):
        self._devices = [FakeDevice(self, i) for i in range(n)]
        self.Device = _FakeDeviceList(self)
        self._cluster = None
        self._desc = None
        self._hang, self._vanish_after, self._hbm = hang, vanish_after, hbm_bank_bytes
        self._ops = 0
        self._live: set[FakeBuffer] = set()
        self._program = program           # optional: lets the cards' cycle counters use the performance model

    def _tick(self):
        self._ops += 1
        if self._vanish_after is not None and self._ops > self._vanish_after:
            raise RemovedError("xclDeviceHandle: device not found (the card was removed or reset)")

    def _program_card(self, device, cfg, desc):
        if self._cluster is None or self._desc != desc:            # a new xclbin: fresh cards
            self._desc = desc
            self._cluster = EmuCluster(cfg, len(self._devices), hang=self._hang, hbm_bank_bytes=self._hbm,
                                       magic=desc["magic"], isa_version=desc["isa_version"])
        device.board = self._cluster.boards[device.index]
        if self._program is not None:
            device.board.attach(self._program, device_image(self._program, device.index).entries)

    def Overlay(self, bitfile_name, dtbo=None, download=True, ignore_version=False, device=None,  # noqa: N802
                gen_cache=False):                 # pynq 3.0.1's name and parameters (host/pynq_api.py)
        path = bitfile_name
        if device is None:
            if not self._devices:
                raise RuntimeError("No Devices Found")
            device = self._devices[0]
        if not isinstance(device, FakeDevice):
            raise TypeError(f"device must be one of pynq.Device.devices, not {device!r}")
        self._tick()
        return FakeOverlay(self, path, device)

    def allocate(self, shape, dtype="u4", target=None, **kwargs):
        if kwargs:
            raise TypeError(f"allocate: the transport passes no {', '.join(kwargs)}")
        if not isinstance(target, _Mem):
            raise TypeError("allocate needs target=<overlay bank>")
        if np.dtype(dtype) != np.uint8 or len(shape) != 1:
            raise TypeError(f"the fake allocates 1-D uint8 buffers, not {shape} {dtype}")
        self._tick()
        board = target._ol._device.board
        a = board.alloc(target.bank, int(shape[0]))
        buf = FakeBuffer(self, board, a, np.zeros(int(shape[0]), np.uint8))
        self._live.add(buf)
        return buf

    def live_buffers(self) -> int:
        return len(self._live)
