"""The program container (docs/design.md, contract 4) and the weight-tiling layout the DMA and MPU share.

A program is one ZIP file (stored, not compressed) holding:

    manifest.json            the typed manifest (`dfx.manifest.Manifest`): format and ISA version, accelerator
                             config and hash, model config, device count and ring order, streams, host symbols,
                             quantized weight regions, per-device memory map, node pcs, SHA-256 of every other
                             member
    dev{K}/{stream}.bin      instruction words of each stream of device K (`prefill`, `decode`, and
                             `prefill_batch` in a program compiled with --prefill-batch)
    dev{K}/hbm/ch{C:02}.bin  HBM image of pseudo-channel C, exactly as the DMA reads it    } only in a program
    dev{K}/ddr.bin           DDR image (embedding tables, biases, LayerNorm parameters,   } compiled with weights
                             the logits buffer and the batched prefill's token table)     }
    tokenizer/...            the checkpoint's tokenizer files, if it had any

`load_program` verifies every part and names what does not match; a program written by an older dfx (another
manifest format version) is refused with "recompile with dfx compile". `save_program` writes a temporary file
next to the target and renames it, so a failed save never leaves a half-written program behind.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import isa
from .config import AccelConfig
from .errors import EncodeError, ProgramError
from .manifest import MAX_MANIFEST_BYTES, HostSymbols, Manifest


# ---------------------------------------------------------------------------------------------- tiling
def tile_grid(k: int, n: int, d: int, l: int) -> tuple[int, int]:
    """(row tiles, column tiles) of a k x n matrix cut into d x l tiles."""
    return -(-k // d), -(-n // l)


def tile_matrix(w: np.ndarray, d: int, l: int, rowmajor: bool = False) -> np.ndarray:
    """Lay out a (k, n) FP16 matrix as the MPU consumes it; returns a flat float16 array.

    The matrix is zero-padded to (kt*d, nt*l) and cut into d x l tiles; tile (i, j) holds rows i*d.. and
    columns j*l..; inside a tile, lane c's d weights are contiguous ([lane][row]), so one tile is the l
    column-vectors the l adder trees take in one cycle. Tiles are ordered column-major (j*kt + i: all row
    tiles of output block j, then the next block) or, with `rowmajor`, row-major (i*nt + j).
    """
    k, n = w.shape
    kt, nt = tile_grid(k, n, d, l)
    p = np.zeros((kt * d, nt * l), np.float16)
    p[:k, :n] = w
    t = p.reshape(kt, d, nt, l)                     # (kt, d, nt, l)
    t = t.transpose(0, 2, 3, 1) if rowmajor else t.transpose(2, 0, 3, 1)   # (kt|nt, nt|kt, l, d)
    return np.ascontiguousarray(t).reshape(-1)


def untile_matrix(flat: np.ndarray, k: int, n: int, d: int, l: int, rowmajor: bool = False) -> np.ndarray:
    """Inverse of `tile_matrix`: the (k, n) matrix (a view-free copy)."""
    kt, nt = tile_grid(k, n, d, l)
    if rowmajor:
        t = flat[:kt * nt * l * d].reshape(kt, nt, l, d).transpose(0, 3, 1, 2)   # (kt, d, nt, l)
    else:
        t = flat[:kt * nt * l * d].reshape(nt, kt, l, d).transpose(1, 3, 0, 2)
    return t.reshape(kt * d, nt * l)[:k, :n]


def stripe(image: bytes | np.ndarray, cfg: AccelConfig) -> list[bytes]:
    """Split a striped HBM image into per-channel images (channel c gets every channels-th beat slice)."""
    buf = np.frombuffer(bytes(image), np.uint8)
    pad = -len(buf) % cfg.beat_bytes
    if pad:
        buf = np.concatenate([buf, np.zeros(pad, np.uint8)])
    rows = buf.reshape(-1, cfg.hbm_channels, cfg.channel_beat_bytes)
    return [rows[:, c, :].tobytes() for c in range(cfg.hbm_channels)]


def unstripe(channels: list[bytes], cfg: AccelConfig) -> bytearray:
    arrs = [np.frombuffer(c, np.uint8).reshape(-1, cfg.channel_beat_bytes) for c in channels]
    return bytearray(np.stack(arrs, axis=1).tobytes())


# ---------------------------------------------------------------------------------------------- container
@dataclass
class DeviceImage:
    streams: dict[str, list[isa.Instr]]
    hbm: bytearray          # striped HBM image (zero-initialised KV regions included)
    ddr: bytearray


@dataclass
class Program:
    manifest: Manifest
    devices: list[DeviceImage]
    tokenizer_files: dict[str, bytes] = field(default_factory=dict)

    @property
    def config(self) -> AccelConfig:
        return self.manifest.config

    @property
    def n_devices(self) -> int:
        return self.manifest.devices

    @property
    def symbols(self) -> HostSymbols:
        return self.manifest.symbols

    @property
    def has_weights(self) -> bool:
        return self.manifest.weights


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _members(prog: Program) -> dict[str, bytes]:
    cfg = prog.config
    out = {}
    for k, dev in enumerate(prog.devices):
        for name, instrs in dev.streams.items():
            out[f"dev{k}/{name}.bin"] = isa.encode_stream(instrs)
        if prog.has_weights:
            for c, blob in enumerate(stripe(dev.hbm, cfg)):
                out[f"dev{k}/hbm/ch{c:02}.bin"] = blob
            out[f"dev{k}/ddr.bin"] = bytes(dev.ddr)
    for name, blob in prog.tokenizer_files.items():
        out[f"tokenizer/{name}"] = blob
    return out


def save_program(prog: Program, path: str | os.PathLike) -> Path:
    """Write `prog` to `path` (atomically); `prog.manifest` gets the members' checksums."""
    path = Path(path)
    members = _members(prog)
    manifest = replace(prog.manifest, checksums={name: _sha(blob) for name, blob in members.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
            z.writestr("manifest.json", manifest.to_json())
            for name, blob in members.items():
                z.writestr(name, blob)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    prog.manifest = manifest
    return path


def load_program(path: str | os.PathLike, expect: AccelConfig | None = None) -> Program:
    """Read and verify a program file. With `expect`, refuse a program built for another hardware config."""
    path = Path(path)
    if path.is_dir():
        raise ProgramError(f"{path} is a directory, not a dfx program file (write one with `dfx compile -o`)")
    if not path.is_file():
        raise ProgramError(f"program file {path} does not exist")
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise ProgramError(f"{path} is not a dfx program (truncated or not a ZIP container)") from None
    with z:
        try:
            info = z.getinfo("manifest.json")
        except KeyError:
            raise ProgramError(f"{path} has no manifest.json; it is not a dfx program") from None
        if info.file_size > MAX_MANIFEST_BYTES:
            raise ProgramError(f"{path}: manifest.json is {info.file_size} bytes; a dfx manifest is at most "
                               f"{MAX_MANIFEST_BYTES}")
        try:
            text = z.read(info)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise ProgramError(f"{path}: manifest.json cannot be read ({e})") from None
        try:
            manifest = Manifest.loads(text)
        except ProgramError as e:
            raise ProgramError(f"{path}: {e}") from None
        cfg = manifest.config
        if expect is not None and expect.config_hash != cfg.config_hash:
            raise ProgramError(f"{path} was built for config {cfg.name!r} (hash {cfg.config_hash}), not for "
                               f"{expect.name!r} (hash {expect.config_hash}); recompile with --config {expect.name}")
        blobs = {}
        names = set(z.namelist()) - {"manifest.json"}
        for name, digest in manifest.checksums.items():
            if name not in names:
                raise ProgramError(f"{path}: member {name} is missing (truncated program?)")
            try:
                blob = z.read(name)
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise ProgramError(f"{path}: member {name} cannot be read ({e})") from None
            if _sha(blob) != digest:
                raise ProgramError(f"{path}: checksum mismatch in {name} (the file is corrupted)")
            blobs[name] = blob
        extra = names - set(blobs)
        if extra:
            raise ProgramError(f"{path}: members without checksum: {', '.join(sorted(extra))}")
    devices = []
    for k in range(manifest.devices):
        streams = {}
        for s in manifest.streams:
            key = f"dev{k}/{s}.bin"
            if key not in blobs:
                raise ProgramError(f"{path}: stream {key} is missing")
            try:
                streams[s] = isa.decode_stream(blobs[key])
            except EncodeError as e:
                raise ProgramError(f"{path}: {key}: {e}") from None
        if manifest.weights:
            chans = []
            for key in [f"dev{k}/hbm/ch{c:02}.bin" for c in range(cfg.hbm_channels)] + [f"dev{k}/ddr.bin"]:
                if key not in blobs:
                    raise ProgramError(f"{path}: memory image {key} is missing")
                chans.append(blobs[key])
            hbm, ddr = unstripe(chans[:-1], cfg), bytearray(chans[-1])
        else:
            hbm, ddr = bytearray(), bytearray()
        devices.append(DeviceImage(streams, hbm, ddr))
    tok = {n.split("/", 1)[1]: b for n, b in blobs.items() if n.startswith("tokenizer/")}
    return Program(manifest, devices, tok)
