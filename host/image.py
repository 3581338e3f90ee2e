"""Where a program lives in one device's memory: the buffers the host allocates and what it writes into them.

The program container holds, per device, a striped HBM image, a DDR image and the instruction streams. On a
device (board, RTL or emulated register block) they become:

- one buffer per HBM pseudo-channel port `m_axi_hbmNN`, holding that channel's slice of the striped image
  (`dfx.program.stripe`: channel c gets every c-th `hbm_width`-bit beat), its base written to argument HBMNN;
- one DDR buffer (`m_axi_ddr`), base written to argument DDR, holding the DDR image followed by every
  instruction stream, each starting on a `STREAM_ALIGN`-byte boundary; ENTRY selects the stream of a run.

The core reads instructions from DDR at `DDR + ENTRY` until HALT. Everything here is a pure function of the
program, so every backend (and the RTL harness) places the same bytes at the same offsets.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dfx import isa
from dfx.errors import DeviceError
from dfx.program import Program

STREAM_ALIGN = 4096        # a page: streams never share a 4 KiB page (or a 512-bit beat) with data
MiB = 1 << 20


def _align(x: int, a: int = STREAM_ALIGN) -> int:
    return -(-x // a) * a


def hbm_bank(c: int) -> str:
    """The Vitis memory bank of HBM pseudo-channel port c (`HBM[c]` in the connectivity config)."""
    return f"HBM{c}"


DDR_BANK = "DDR0"


@dataclass(frozen=True)
class DeviceImage:
    """The bytes of one device, ready to copy: `hbm[c]` for bank HBM{c}, `ddr` for DDR0."""
    device: int
    hbm: list[bytes]
    ddr: bytes
    entries: dict[str, int]          # stream name -> byte offset of its first instruction in the DDR buffer

    @property
    def hbm_bank_bytes(self) -> int:
        size = getattr(self.hbm, "channel_bytes", None)      # dfx.images.HbmChannels: known without a read
        return size if size is not None else len(self.hbm[0]) if self.hbm else 0

    def banks(self) -> Mapping[str, bytes]:
        """Bank -> bytes, each channel image made when it is asked for (one at a time in memory)."""
        return _Banks(self)


class _Banks(Mapping):
    def __init__(self, image: DeviceImage):
        self.image = image
        self.names = [hbm_bank(c) for c in range(len(image.hbm))] + [DDR_BANK]

    def __iter__(self):
        return iter(self.names)

    def __len__(self):
        return len(self.names)

    def __getitem__(self, bank: str) -> bytes:
        if bank == DDR_BANK:
            return self.image.ddr
        return self.image.hbm[self.names.index(bank)]


def device_image(program: Program, k: int) -> DeviceImage:
    """Device k's buffers. Refuses a program without weights or one that does not fit the config's banks."""
    if not program.has_weights:
        raise DeviceError("this program was compiled from shapes only (no weights); it cannot run on a device: "
                          "compile a checkpoint")
    cfg = program.config
    img = program.devices[k]
    hbm = img.channels(cfg)                                     # read or striped one channel at a time
    ddr = img.take_ddr()
    entries = {}
    for name, instrs in img.streams.items():
        ddr.extend(bytes(_align(len(ddr)) - len(ddr)))
        entries[name] = len(ddr)
        ddr.extend(isa.encode_stream(instrs))
    ddr.extend(bytes(_align(len(ddr), 64) - len(ddr)))          # whole 512-bit beats
    out = DeviceImage(k, hbm, bytes(ddr), entries)
    check_fits(out, cfg.hbm_channel_mb * MiB, cfg.ddr_mb * MiB, "the core's config")
    return out


def check_fits(image: DeviceImage, hbm_bank_bytes: int, ddr_bytes: int, where: str) -> None:
    """Raise a DeviceError naming the first bank the image does not fit in."""
    if image.hbm_bank_bytes > hbm_bank_bytes:
        raise DeviceError(f"device {image.device}: each HBM channel image is {image.hbm_bank_bytes / MiB:.2f} MiB, "
                          f"larger than the {hbm_bank_bytes / MiB:.2f} MiB HBM bank of {where}; use more devices "
                          "or a smaller weight format")
    if len(image.ddr) > ddr_bytes:
        raise DeviceError(f"device {image.device}: the DDR image (tables + streams) is {len(image.ddr) / MiB:.2f} "
                          f"MiB, larger than the {ddr_bytes / MiB:.2f} MiB DDR bank of {where}")
