"""A device's memory images (docs/design.md, contract 4): its instruction streams, its HBM image and its DDR image.

The HBM image is striped over the pseudo-channels as the program stores it (`stripe`: channel c gets every
channels-th beat slice). A `DeviceImage` holds its images in memory, or reads them on demand from a program file
that `dfx.program.load_program` has verified (`FileMembers`), so that a loaded program holds no copy of its
weights: a simulator takes one fresh copy (`take_hbm`, `take_ddr`), a host uploads channel by channel
(`channels`), `save_program` copies member by member (`DeviceImage.members`). Every read from the file is checked
again against the SHA-256 the manifest gives, so a file changed after it was loaded is refused (`ProgramError`),
never used. The compiler writes a program's images into an `ImageFile` (a temporary file laid out as the
program's members) rather than into memory, and its `DeviceImage`s read them from there.
"""
from __future__ import annotations

import hashlib
import mmap
import os
import tempfile
import weakref
from collections.abc import Callable, Iterator, Sequence
from functools import partial

import numpy as np

from . import isa
from .config import AccelConfig
from .errors import ProgramError

CHUNK = 8 << 20                     # bytes per read when a member is streamed


def zeros(n: int) -> np.ndarray:
    """n zero bytes (uint8) in an anonymous mapping of their own, for a memory image: no page is held until it is
    written (a bytearray's are all written at once), and all go back to the system when it is freed."""
    return np.frombuffer(mmap.mmap(-1, max(n, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS), np.uint8)[:n]


def discard(a: np.ndarray, start: int, nbytes: int) -> None:
    """Give back the whole pages of bytes start..start+nbytes of an array made by `zeros` (they read as zero
    afterwards); other arrays are left as they are."""
    m = a
    while m is not None and not isinstance(m, mmap.mmap):
        m = m.obj if isinstance(m, memoryview) else getattr(m, "base", None)
    if m is None or not hasattr(mmap, "MADV_DONTNEED"):
        return
    at = a.__array_interface__["data"][0] - np.frombuffer(m, np.uint8).__array_interface__["data"][0] + start
    lo, hi = -(-at // mmap.PAGESIZE) * mmap.PAGESIZE, (at + nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
    if hi > lo:
        m.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def stripe(image: bytes | np.ndarray, cfg: AccelConfig) -> list[bytes]:
    """Split a striped HBM image into per-channel images (channel c gets every channels-th beat slice)."""
    buf = np.frombuffer(image, np.uint8)
    pad = -len(buf) % cfg.beat_bytes
    if pad:
        buf = np.concatenate([buf, np.zeros(pad, np.uint8)])
    rows = buf.reshape(-1, cfg.hbm_channels, cfg.channel_beat_bytes)
    return [rows[:, c, :].tobytes() for c in range(cfg.hbm_channels)]


def unstripe(channels: Sequence, cfg: AccelConfig) -> bytearray:
    """The HBM image from its channel images (buffers of equal size), written once into a new bytearray."""
    cbb = cfg.channel_beat_bytes
    n = len(memoryview(channels[0]).cast("B")) if len(channels) else 0
    out = bytearray(n * len(channels))
    rows = np.frombuffer(out, np.uint8).reshape(-1, len(channels), cbb) if n else None
    for c, blob in enumerate(channels):
        rows[:, c, :] = np.frombuffer(blob, np.uint8).reshape(-1, cbb)
    return out


class FileMembers:
    """Data members of a verified program file, read again on demand by positional reads of its open file (the
    same file `load_program` checked, whatever its path names later). `where`: name -> (data offset, size,
    SHA-256 hex digest, or None for a member of the compiler's own `ImageFile`, which nobody else can change)."""

    def __init__(self, path, fd: int, where: dict[str, tuple[int, int, str]]):
        self.path, self._fd, self.where = path, fd, where
        weakref.finalize(self, os.close, fd)

    def size(self, name: str) -> int:
        return self.where[name][1]

    def chunks(self, name: str, chunk: int = CHUNK) -> Iterator[bytes]:
        """The member's bytes in pieces of `chunk` bytes; after the last one, a `ProgramError` if they are not the
        bytes that were verified (the caller discards what it built from them)."""
        off, size, digest = self.where[name]
        h = hashlib.sha256() if digest is not None else None
        done = 0
        while done < size:
            blob = os.pread(self._fd, min(chunk, size - done), off + done)
            if not blob:
                break
            if h is not None:
                h.update(blob)
            done += len(blob)
            yield blob
        if done != size or (h is not None and h.hexdigest() != digest):
            raise ProgramError(f"{self.path}: member {name} changed after the program was loaded (its SHA-256 no "
                               "longer matches the manifest); load it again")

    def read(self, name: str) -> bytearray:
        out = bytearray(self.size(name))
        at = 0
        for blob in self.chunks(name):
            out[at:at + len(blob)] = blob
            at += len(blob)
        return out


class ImageFile(FileMembers):
    """The memory images of a ring's devices as the compiler writes them: into an unnamed temporary file (in the
    system's temporary folder, removed when the last image using it is freed), laid out as a program's members
    (each device's HBM channel images, then its DDR image), so that the images take disk, not memory, until
    `save_program` copies them into the program in pieces. `sizes`: (HBM bytes, DDR bytes) of every device.
    Bytes never written read as zero (the file is sparse)."""

    def __init__(self, cfg: AccelConfig, sizes: Sequence[tuple[int, int]]):
        self.cfg, where, at = cfg, {}, 0
        for k, (hbm, ddr) in enumerate(sizes):
            ch = -(-hbm // cfg.beat_bytes) * cfg.channel_beat_bytes
            for c in range(cfg.hbm_channels):
                where[f"dev{k}/hbm/ch{c:02}.bin"] = (at, ch, None)
                at += ch
            where[f"dev{k}/ddr.bin"] = (at, ddr, None)
            at += ddr
        with tempfile.TemporaryFile(prefix="dfx-images-") as f:
            fd = os.dup(f.fileno())
        os.ftruncate(fd, at)
        super().__init__("the compiler's image file", fd, where)

    def _at(self, name: str, start: int, n: int) -> int:
        off, size, _ = self.where[name]
        if not 0 <= start <= start + n <= size:
            raise ValueError(f"{name}: bytes {start}..{start + n} lie outside its {size} bytes")
        return off + start

    def write_ddr(self, device: int, addr: int, data) -> None:
        """Bytes `data` at byte `addr` of the device's DDR image."""
        data = memoryview(data).cast("B")
        os.pwrite(self._fd, data, self._at(f"dev{device}/ddr.bin", addr, len(data)))

    def write_hbm(self, device: int, addr: int, data) -> None:
        """Bytes `data` at byte `addr` of the device's (unstriped) HBM image, written striped into its channel
        images: whole beats channel by channel, a partial beat at either end merged with what the file holds."""
        cfg, buf = self.cfg, np.frombuffer(data, np.uint8)
        B, C, cbb = cfg.beat_bytes, cfg.hbm_channels, cfg.channel_beat_bytes
        names = [f"dev{device}/hbm/ch{c:02}.bin" for c in range(C)]
        end = addr + buf.size
        a1, a2 = min(-(-addr // B) * B, end), max(end // B * B, addr)
        for lo, hi in ((addr, a1), (a2, end)) if a1 <= a2 else ((addr, end),):
            if hi > lo:                             # inside one beat: read it, merge, write it back
                j = lo // B
                beat = np.frombuffer(b"".join(os.pread(self._fd, cbb, self._at(nm, j * cbb, cbb)) for nm in names),
                                     np.uint8).copy()
                beat[lo - j * B:hi - j * B] = buf[lo - addr:hi - addr]
                for c, nm in enumerate(names):
                    os.pwrite(self._fd, beat[c * cbb:(c + 1) * cbb], self._at(nm, j * cbb, cbb))
        if a2 > a1:
            rows = buf[a1 - addr:a2 - addr].reshape(-1, C, cbb)
            for c, nm in enumerate(names):
                os.pwrite(self._fd, rows[:, c, :].tobytes(), self._at(nm, a1 // B * cbb, rows.shape[0] * cbb))


class HbmChannels(Sequence):
    """The channel images of one device's HBM, each read (or striped) when it is asked for."""

    def __init__(self, image: "DeviceImage", cfg: AccelConfig):
        self.image, self.cfg = image, cfg

    def __len__(self) -> int:
        return self.cfg.hbm_channels

    @property
    def channel_bytes(self) -> int:
        """Bytes of each channel image."""
        img = self.image
        if img._hbm is None:
            return img._source.size(img._name(0))
        return -(-len(img._hbm) // self.cfg.beat_bytes) * self.cfg.channel_beat_bytes

    def __getitem__(self, c):
        if isinstance(c, slice):
            return [self[i] for i in range(*c.indices(len(self)))]
        if not -len(self) <= c < len(self):
            raise IndexError(f"HBM channel {c} of {len(self)}")
        c %= len(self)
        img = self.image
        if img._hbm is None:
            return bytes(img._source.read(img._name(c)))
        cbb, beat = self.cfg.channel_beat_bytes, self.cfg.beat_bytes
        buf = np.frombuffer(img._hbm, np.uint8)
        rows = len(buf) // beat
        full = buf[:rows * beat].reshape(rows, -1, cbb)[:, c, :].tobytes()
        tail = buf[rows * beat:]                 # a last, partial beat: zero-padded
        if tail.size:
            t = np.zeros(beat, np.uint8)
            t[:tail.size] = tail
            full += t[c * cbb:(c + 1) * cbb].tobytes()
        return full


class DeviceImage:
    """One device's streams and memory images: `hbm` (the unstriped HBM image) and `ddr`, writable byte buffers
    (bytearrays or uint8 arrays) in memory, or, with `source`, read from the program file (or the compiler's
    `ImageFile`) when first asked for (then kept as bytearrays, so edits stick)."""

    def __init__(self, streams: dict[str, list[isa.Instr]], hbm: bytearray | None = None,
                 ddr: bytearray | None = None, *, source: FileMembers | None = None, cfg: AccelConfig | None = None,
                 device: int = 0):
        self.streams = streams
        self._hbm, self._ddr = hbm, ddr
        self._source, self._cfg, self._device = source, cfg, device
        if source is None and (hbm is None or ddr is None):
            raise ValueError("DeviceImage: give hbm and ddr, or the file they are read from")

    def _name(self, c: int | None) -> str:
        k = self._device
        return f"dev{k}/ddr.bin" if c is None else f"dev{k}/hbm/ch{c:02}.bin"

    @property
    def hbm(self) -> bytearray:
        if self._hbm is None:
            self._hbm = self.take_hbm(bytearray)
        return self._hbm

    @hbm.setter
    def hbm(self, value: bytearray) -> None:
        self._hbm = value

    @property
    def ddr(self) -> bytearray:
        if self._ddr is None:
            self._ddr = self.take_ddr()
        return self._ddr

    @ddr.setter
    def ddr(self, value: bytearray) -> None:
        self._ddr = value

    def channels(self, cfg: AccelConfig) -> HbmChannels:
        """The HBM image as `cfg`'s channel images (what `stripe` gives), each made when it is asked for."""
        return HbmChannels(self, cfg)

    def members(self, cfg: AccelConfig) -> Iterator[tuple[str, int, Callable[[], Iterator]]]:
        """(name under dev{K}/, bytes, pieces) of the images as a program stores them, HBM channel images then the
        DDR image; `pieces()` gives the member's bytes in pieces: read from the source file (never held whole),
        or cut from the images in memory one channel image at a time."""
        src, chans = self._source, self.channels(cfg)
        for c in range(cfg.hbm_channels):
            if self._hbm is None:
                yield f"hbm/ch{c:02}.bin", src.size(self._name(c)), partial(src.chunks, self._name(c))
            else:
                yield f"hbm/ch{c:02}.bin", chans.channel_bytes, partial(lambda c: iter((chans[c],)), c)
        if self._ddr is None:
            yield "ddr.bin", src.size(self._name(None)), partial(src.chunks, self._name(None))
        else:
            ddr = memoryview(self._ddr).cast("B")
            yield "ddr.bin", len(ddr), lambda: (ddr[i:i + CHUNK] for i in range(0, len(ddr), CHUNK))

    def take_hbm(self, kind=None) -> bytearray | np.ndarray:
        """A new copy of the unstriped HBM image, the caller's to write: streamed from the file channel by channel
        into the one buffer (no other copy is made), or copied from memory. `kind` bytearray: as a bytearray,
        else as `zeros` makes it (uint8, pages held only once written)."""
        if self._hbm is not None:
            return bytearray(self._hbm)
        src, cfg = self._source, self._cfg
        C, cbb = cfg.hbm_channels, cfg.channel_beat_bytes
        n = src.size(self._name(0))
        out = bytearray(n * C) if kind is bytearray else zeros(n * C)
        rows = np.frombuffer(out, np.uint8).reshape(-1, C, cbb)
        for c in range(C):
            r = 0
            for blob in src.chunks(self._name(c), CHUNK - CHUNK % cbb):
                m = len(blob) // cbb
                rows[r:r + m, c, :] = np.frombuffer(blob, np.uint8).reshape(m, cbb)
                r += m
        return out

    def take_ddr(self) -> bytearray:
        """A new copy of the DDR image, the caller's to write."""
        return bytearray(self._ddr) if self._ddr is not None else self._source.read(self._name(None))

    def __eq__(self, other) -> bool:
        if not isinstance(other, DeviceImage):
            return NotImplemented
        return (self.streams == other.streams and bytes(self.hbm) == bytes(other.hbm)
                and bytes(self.ddr) == bytes(other.ddr))

    def __repr__(self) -> str:
        where = "in memory" if self._source is None else f"from {self._source.path}"
        return f"DeviceImage(device {self._device}, streams {', '.join(self.streams)}, images {where})"
