"""The program container (docs/design.md, contract 4) and the weight-tiling layout the DMA and MPU share.

A program is one ZIP file (every member stored, not compressed) holding exactly:

    manifest.json            the typed manifest (`dfx.manifest.Manifest`): format and ISA version, accelerator
                             config and hash, model config, device count and ring order, streams, host symbols,
                             quantized weight regions, per-device memory map, node pcs, SHA-256 of every data
                             member below
    digest.json              the SHA-256 of manifest.json: with the manifest's checksum table it covers every
                             byte of the program, so an edit of any member or of the manifest is detected
    signature.json           only in a signed program (`dfx compile --sign`): an Ed25519 signature of the digest
    dev{K}/{stream}.bin      instruction words of each stream of device K (`prefill`, `decode`, and
                             `prefill_batch` in a program compiled with --prefill-batch)
    dev{K}/hbm/ch{C:02}.bin  HBM image of pseudo-channel C, exactly as the DMA reads it    } only in a program
    dev{K}/ddr.bin           DDR image (embedding tables, biases, LayerNorm parameters,   } compiled with weights
                             the logits buffer and the batched prefill's token table)     }
    tokenizer/tokenizer.json the checkpoint's tokenizer as one file, if it had one (built in memory on load)

A program file is untrusted input (docs/security.md). `load_program` reads nothing outside the archive and
writes nothing; before it reads a member it checks, from the ZIP directory alone, that every name is one of the
names above, every member is a stored regular file whose bytes lie inside the archive, and every declared size is
within the limit of its kind (`member_limit`: the config's HBM channel and DDR capacity, `MAX_STREAM_INSTRS`,
`MAX_TOKENIZER_BYTES`); it then reads each member with a bounded read and checks it against the manifest, the
manifest against the digest and, with a trusted key, the digest against the signature. The memory images (HBM
channels, DDR) are hashed in pieces and not kept: the loaded program reads them again from the same open file
when they are used (`dfx.images.FileMembers`), checking their SHA-256 again, so a program holds no copy of its
weights and a file changed after loading is refused, not used. Every refusal is one `ProgramError` line naming
the member. A program written by an older dfx (another manifest format version) is
refused with "recompile with dfx compile". `save_program` writes a temporary file next to the target and renames
it, so a failed save never leaves a half-written program behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import struct
import tempfile
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from collections.abc import Callable, Iterable
from functools import partial
from typing import BinaryIO, Iterator

import numpy as np
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import isa
from .config import AccelConfig
from .errors import EncodeError, ProgramError, UsageError
from .images import DeviceImage, FileMembers, stripe, unstripe  # noqa: F401 (re-exported)
from .manifest import MAX_MANIFEST_BYTES, HostSymbols, Manifest, check_config_name


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


# ---------------------------------------------------------------------------------------------- container
@dataclass
class Program:
    manifest: Manifest
    devices: list[DeviceImage]
    tokenizer_json: bytes | None = None      # the checkpoint's tokenizer (`dfx.models.tokenizer.tokenizer_from_json`)

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


# ---------------------------------------------------------------------------------------------- limits
MANIFEST, DIGEST, SIGNATURE = "manifest.json", "digest.json", "signature.json"
TOKENIZER = "tokenizer/tokenizer.json"
MAX_STREAM_INSTRS = 1 << 20         # the longest stream a program may hold (GPT-2 1.5B on one dfx device: 13,758
                                    # decode instructions, 26,927 in a --prefill-batch 2 stream)
MAX_TOKENIZER_BYTES = 8 << 20       # GPT-2's tokenizer.json is 1.4 MB
CHUNK = 8 << 20                     # bytes per read when a member is hashed
MAX_SEAL_BYTES = 1 << 10            # digest.json and signature.json are a few hundred bytes
MAX_MEMBERS = 4096                  # devices x (streams + HBM channels + DDR) + 4; dfx config on 8 devices: 292
MAX_DIRECTORY_BYTES = MAX_MEMBERS * 128   # a dfx member's directory entry: 46 bytes + name + zip64 sizes < 128
ACCEPTED_NAMES = (f"{MANIFEST}, {DIGEST}, {SIGNATURE}, dev<K>/<stream>.bin, dev<K>/hbm/ch<CC>.bin, dev<K>/ddr.bin, "
                  f"{TOKENIZER}")
_NAME = re.compile(r"(manifest|digest|signature)\.json|tokenizer/tokenizer\.json"
                   r"|dev(0|[1-9][0-9]{0,3})/((prefill|decode|prefill_batch)\.bin|hbm/ch[0-9]{2,4}\.bin|ddr\.bin)")
_SIGNED = b"dfx-program-signature-v1\0"   # prefix of the message a signature signs (then the 32-byte digest)
_END = struct.Struct("<4s4H2LH")          # ZIP end of central directory record (APPNOTE 4.3.16)
_END64_LOCATOR = struct.Struct("<4sLQL")  # zip64 end of central directory locator (4.3.15)
_END64 = struct.Struct("<4sQ2H2L4Q")      # zip64 end of central directory record (4.3.14)


def member_limit(name: str, cfg: AccelConfig | None) -> tuple[int, str]:
    """The most bytes member `name` (an accepted name) may hold in a program for `cfg`, and why. Only the HBM
    channel and DDR images depend on the config (`cfg` may be None for the others)."""
    if name == MANIFEST:
        return MAX_MANIFEST_BYTES, "a dfx manifest"
    if name in (DIGEST, SIGNATURE):
        return MAX_SEAL_BYTES, name
    if name == TOKENIZER:
        return MAX_TOKENIZER_BYTES, "a tokenizer.json"
    if name.endswith("/ddr.bin"):
        return cfg.ddr_bytes, f"the DDR capacity of config {cfg.name!r}"
    if "/hbm/" in name:
        return cfg.hbm_channel_mb << 20, f"the HBM channel capacity of config {cfg.name!r}"
    return MAX_STREAM_INSTRS * isa.WORD_BYTES, f"{MAX_STREAM_INSTRS:,} instructions of {isa.WORD_BYTES} bytes"


def _sized_by_config(name: str) -> bool:
    return name.endswith("/ddr.bin") or "/hbm/" in name


def _check_size(where, name: str, size: int, cfg: AccelConfig | None) -> None:
    limit, why = member_limit(name, cfg)
    if size > limit:
        raise ProgramError(f"{where}: member {name} is {size:,} bytes; a program accepts at most {limit:,} ({why})")


def _data_members(m: Manifest) -> Iterator[str]:
    """The members `m` describes besides manifest, digest, signature and tokenizer, in the order they are written
    (lazily: a forged manifest may describe billions)."""
    for k in range(m.devices):
        yield from (f"dev{k}/{s}.bin" for s in m.streams)
        if m.weights:
            yield from (f"dev{k}/hbm/ch{c:02}.bin" for c in range(m.config.hbm_channels))
            yield f"dev{k}/ddr.bin"


# ---------------------------------------------------------------------------------------------- integrity
def program_digest(manifest_json: bytes) -> str:
    """What digest.json holds: the SHA-256 of manifest.json, whose checksum table holds the name and SHA-256 of
    every other data member, so the digest covers the whole program."""
    return _sha(manifest_json)


def _seal_json(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True).encode()


def _parse_seal(blob: bytes, where: str, consts: dict[str, str], hexes: dict[str, int]) -> dict[str, bytes]:
    """A digest.json or signature.json: exactly `consts` and hex fields of the given byte lengths."""
    try:
        obj = json.loads(blob)
    except (ValueError, RecursionError):
        obj = None
    ok = (isinstance(obj, dict) and set(obj) == set(consts) | set(hexes)
          and all(obj[k] == v for k, v in consts.items())
          and all(isinstance(obj[k], str) and len(obj[k]) == 2 * n and not obj[k].strip("0123456789abcdef")
                  for k, n in hexes.items()))
    if not ok:
        fields = ", ".join([f'"{k}": "{v}"' for k, v in consts.items()] +
                           [f'"{k}": <{2 * n} hex digits>' for k, n in hexes.items()])
        raise ProgramError(f"{where} is malformed; expected {{{fields}}}")
    return {k: bytes.fromhex(obj[k]) for k in hexes}


def key_fingerprint(key: Ed25519PublicKey) -> str:
    """A public key's short name in messages: the first 16 hex digits of the SHA-256 of its raw 32 bytes."""
    return hashlib.sha256(_raw(key)).hexdigest()[:16]


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _pem(path, private: bool):
    what = "private" if private else "public"
    make = (f"openssl genpkey -algorithm ed25519 -out {path}" if private else
            f"openssl pkey -in PRIVATE.pem -pubout -out {path}")
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 16)
    except OSError as e:
        raise UsageError(f"key file {path} cannot be read ({e.strerror}); make one with: {make}") from None
    try:
        key = (serialization.load_pem_private_key(data, password=None) if private else
               serialization.load_pem_public_key(data))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, Ed25519PrivateKey if private else Ed25519PublicKey):
        raise UsageError(f"{path} is not an unencrypted Ed25519 {what} key in PEM form; make one with: {make}")
    return key


def load_signing_key(path: str | os.PathLike) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file (`openssl genpkey -algorithm ed25519 -out KEY.pem`)."""
    return _pem(path, True)


def load_trusted_key(path: str | os.PathLike) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (`openssl pkey -in KEY.pem -pubout -out KEY.pub.pem`)."""
    return _pem(path, False)


# ---------------------------------------------------------------------------------------------- writing
def _members(prog: Program) -> Iterator[tuple[str, int, Callable[[], Iterable]]]:
    """(name, size, pieces) of every data member, in the order they are written; `pieces()` gives its bytes in
    pieces, each member made or read when it is reached, a memory image never whole (`DeviceImage.members`)."""
    cfg = prog.config
    for k, dev in enumerate(prog.devices):
        for name, instrs in dev.streams.items():
            blob = isa.encode_stream(instrs)
            yield f"dev{k}/{name}.bin", len(blob), partial(iter, (blob,))
        if prog.has_weights:
            for name, size, pieces in dev.members(cfg):
                yield f"dev{k}/{name}", size, pieces
    if prog.tokenizer_json is not None:
        yield TOKENIZER, len(prog.tokenizer_json), partial(iter, (prog.tokenizer_json,))


def _write_member(z: zipfile.ZipFile, name: str, size: int, pieces: Iterable) -> str:
    """Write a stored member piece by piece (the entry `ZipFile.writestr` makes); its SHA-256."""
    info = zipfile.ZipInfo(name, time.localtime(time.time())[:6])
    info.compress_type, info.external_attr, info.file_size = zipfile.ZIP_STORED, 0o600 << 16, size
    h = hashlib.sha256()
    with z.open(info, "w") as dst:
        for blob in pieces:
            h.update(blob)
            dst.write(blob)
    return h.hexdigest()


def save_program(prog: Program, path: str | os.PathLike, signing_key: Ed25519PrivateKey | None = None) -> Path:
    """Write `prog` to `path` (atomically); `prog.manifest` gets the members' checksums. With `signing_key`, the
    program carries an Ed25519 signature of its digest (`load_program(..., trusted_key=)` checks it). Members
    are hashed, then written, in pieces: a memory image is never held whole."""
    path = Path(path)
    try:
        check_config_name(prog.config.name)
    except ProgramError as e:
        raise ProgramError(f"{path}: {e}") from None
    checksums = {}                            # a first pass: sizes and checksums, no member kept
    for name, size, pieces in _members(prog):
        _check_size(path, name, size, prog.config)
        h = hashlib.sha256()
        for blob in pieces():
            h.update(blob)
        checksums[name] = h.hexdigest()
    if len(checksums) + 3 > MAX_MEMBERS:
        raise ProgramError(f"{path}: a program of {len(checksums) + 3} members cannot be written; a program has at "
                           f"most {MAX_MEMBERS}")
    manifest = replace(prog.manifest, checksums=checksums)
    text = manifest.to_json().encode()
    digest = program_digest(text)
    seal = {DIGEST: _seal_json({"format": "dfx-digest", "sha256": digest})}
    if signing_key is not None:
        sig = signing_key.sign(_SIGNED + bytes.fromhex(digest))
        seal[SIGNATURE] = _seal_json({"format": "dfx-signature", "algorithm": "ed25519",
                                      "public_key": _raw(signing_key.public_key()).hex(), "signature": sig.hex()})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
            z.writestr(MANIFEST, text)
            for name, blob in seal.items():
                z.writestr(name, blob)
            for name, size, pieces in _members(prog):  # the second pass writes them, as the checksums say
                if _write_member(z, name, size, pieces()) != checksums[name]:
                    raise ProgramError(f"{path}: member {name} changed while the program was written")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    prog.manifest = manifest
    return path


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ---------------------------------------------------------------------------------------------- reading
def _directory_extent(f: BinaryIO, size: int, path: Path) -> tuple[int, int, int]:
    """(entries, directory bytes, directory offset) from the archive's end records, read before zipfile parses
    the directory. The directory must end where the end records start, as dfx writes it (no comment, no data
    around the archive), so this is the directory zipfile then reads."""
    bad = ProgramError(f"{path} is not a dfx program (truncated or not a ZIP container)")
    n64 = _END.size + _END64_LOCATOR.size + _END64.size
    f.seek(max(0, size - n64))
    tail = f.read(n64)
    if len(tail) < _END.size:
        raise bad
    sig, disk, cd_disk, _, entries, cd_bytes, cd_offset, comment = _END.unpack(tail[-_END.size:])
    if sig != b"PK\x05\x06" or comment or disk or cd_disk:
        raise bad
    end = size - _END.size
    if tail[-_END.size - _END64_LOCATOR.size:][:4] == b"PK\x06\x07":     # zip64: the record precedes the locator
        if len(tail) < n64:
            raise bad
        sig, _, _, _, disk, cd_disk, _, entries, cd_bytes, cd_offset = _END64.unpack(tail[:_END64.size])
        if sig != b"PK\x06\x06" or disk or cd_disk:
            raise bad
        end -= _END64_LOCATOR.size + _END64.size
    if cd_offset + cd_bytes != end:
        raise bad
    if entries > MAX_MEMBERS:
        raise ProgramError(f"{path} has {entries:,} members; a dfx program has at most {MAX_MEMBERS:,}")
    if cd_bytes > MAX_DIRECTORY_BYTES:
        raise ProgramError(f"{path}: its ZIP directory is {cd_bytes:,} bytes; a dfx program's is at most "
                           f"{MAX_DIRECTORY_BYTES:,}")
    return entries, cd_bytes, cd_offset


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class _Archive:
    """A program file's ZIP directory, checked before any member is read; members come by bounded reads."""

    def __init__(self, path: Path, f: BinaryIO):
        self.path = path
        entries, _, cd_offset = _directory_extent(f, os.fstat(f.fileno()).st_size, path)
        self.cd_offset = cd_offset
        try:
            self.zip = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error, NotImplementedError) as e:
            raise ProgramError(f"{path} is not a dfx program ({_first_line(e)})") from None
        infos = self.zip.infolist()
        if len(infos) != entries:
            raise ProgramError(f"{path}: its ZIP directory holds {len(infos)} entries, its end record says {entries}; "
                               "it is not a dfx program")
        self.infos: dict[str, zipfile.ZipInfo] = {}
        used = 0
        for info in infos:
            name = self._check_entry(info, cd_offset)
            if name in self.infos:
                raise ProgramError(f"{path}: member {name} appears twice")
            self.infos[name] = info
            used += 30 + len(info.orig_filename.encode()) + info.compress_size
        if used > cd_offset:
            raise ProgramError(f"{path}: its members declare {used:,} bytes but the archive holds {cd_offset:,}; "
                               "members overlap or the file is truncated")

    def _check_entry(self, info: zipfile.ZipInfo, cd_offset: int) -> str:
        """The member's name, once it is an accepted name of a stored regular file inside the archive."""
        name, where = info.orig_filename, self.path
        if not _NAME.fullmatch(name):
            if name.startswith(("tokenizer/", "tokenizer\\")):
                raise ProgramError(f"{where}: member {ascii(name)} is refused: a program's tokenizer is the one "
                                   f"member {TOKENIZER}")
            raise ProgramError(f"{where}: member {ascii(name)} is not part of a dfx program (accepted: "
                               f"{ACCEPTED_NAMES})")
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind not in (0, stat.S_IFREG):
            what = {stat.S_IFLNK: "a symbolic link", stat.S_IFDIR: "a directory"}.get(kind, "a special file")
            raise ProgramError(f"{where}: member {name} is {what}; a dfx program holds regular files only")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ProgramError(f"{where}: member {name} is compressed (ZIP method {info.compress_type}); a dfx "
                               f"program stores its members uncompressed (method {zipfile.ZIP_STORED})")
        if info.flag_bits & 0x1:
            raise ProgramError(f"{where}: member {name} is encrypted; a dfx program is not")
        if info.compress_size != info.file_size:
            raise ProgramError(f"{where}: member {name} declares {info.file_size:,} bytes stored in "
                               f"{info.compress_size:,}; a stored member's sizes are equal")
        if not _sized_by_config(name):
            _check_size(where, name, info.file_size, None)   # limits that need no config: checked at once
        if info.header_offset + 30 + len(name.encode()) + info.compress_size > cd_offset:
            raise ProgramError(f"{where}: member {name} lies outside the archive (truncated program?)")
        return name

    def read(self, name: str) -> bytes:
        """The member's bytes: a read of at most its declared size (already checked against its limit)."""
        return b"".join(self._pieces(name, self.infos[name].file_size + 1))

    def sha256(self, name: str) -> str:
        """The SHA-256 of the member's bytes, read in pieces (bounded as `read`), none of them kept."""
        h = hashlib.sha256()
        for blob in self._pieces(name, CHUNK):
            h.update(blob)
        return h.hexdigest()

    def _pieces(self, name: str, chunk: int) -> Iterator[bytes]:
        info = self.infos[name]
        done = 0
        try:
            with self.zip.open(info) as f:
                while done <= info.file_size:
                    blob = f.read(min(chunk, info.file_size + 1 - done))
                    if not blob:
                        break
                    done += len(blob)
                    yield blob
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
            raise ProgramError(f"{self.path}: member {name} cannot be read ({_first_line(e)})") from None
        if done != info.file_size:
            raise ProgramError(f"{self.path}: member {name} holds {done:,} bytes, not the {info.file_size:,} "
                               "its entry declares")

    def data_offset(self, name: str, f: BinaryIO) -> int:
        """Where the member's bytes start in the file: after its local header, which must name it (as zipfile
        checks when it reads a member) and end inside the archive."""
        info = self.infos[name]
        f.seek(info.header_offset)
        head = f.read(30)
        raw = info.orig_filename.encode()
        if len(head) != 30 or head[:4] != b"PK\x03\x04":
            raise ProgramError(f"{self.path}: member {name} has no local header (truncated program?)")
        n, e = struct.unpack("<2H", head[26:30])
        if f.read(n) != raw:
            raise ProgramError(f"{self.path}: member {name}'s local header names another file")
        off = info.header_offset + 30 + n + e
        if off + info.file_size > self.cd_offset:
            raise ProgramError(f"{self.path}: member {name} lies outside the archive (truncated program?)")
        return off


def load_program(path: str | os.PathLike, expect: AccelConfig | None = None,
                 trusted_key: Ed25519PublicKey | None = None) -> Program:
    """Read and verify a program file (an untrusted input: docs/security.md). With `expect`, refuse a program built
    for another hardware config; with `trusted_key`, refuse one that is not signed by that key."""
    path = Path(path)
    if path.is_dir():
        raise ProgramError(f"{path} is a directory, not a dfx program file (write one with `dfx compile -o`)")
    if not path.is_file():
        raise ProgramError(f"program file {path} does not exist")
    try:
        f = open(path, "rb")
    except OSError as e:
        raise ProgramError(f"program file {path} cannot be read ({e.strerror})") from None
    with f:
        ar = _Archive(path, f)
        with ar.zip:
            manifest = _verified_manifest(ar, trusted_key)
            cfg = manifest.config
            if expect is not None and expect.config_hash != cfg.config_hash:
                raise ProgramError(f"{path} was built for config {cfg.name!r} (hash {cfg.config_hash}), not for "
                                   f"{expect.name!r} (hash {expect.config_hash}); recompile with --config "
                                   f"{expect.name}")
            _check_layout(ar, manifest)
            blobs, images = {}, {}
            for name, digest in manifest.checksums.items():
                if _sized_by_config(name):           # memory images: verified here, read again when used
                    if ar.sha256(name) != digest:
                        raise ProgramError(f"{path}: checksum mismatch in {name} (the file is corrupted)")
                    images[name] = (ar.data_offset(name, f), ar.infos[name].file_size, digest)
                    continue
                blob = ar.read(name)
                if _sha(blob) != digest:
                    raise ProgramError(f"{path}: checksum mismatch in {name} (the file is corrupted)")
                blobs[name] = blob
            source = FileMembers(path, os.dup(f.fileno()), images)
    devices = []
    for k in range(manifest.devices):
        streams = {}
        for s in manifest.streams:
            key = f"dev{k}/{s}.bin"
            try:
                streams[s] = isa.decode_stream(blobs[key])
            except EncodeError as e:
                raise ProgramError(f"{path}: {key}: {e}") from None
        if manifest.weights:                          # read from the file when first used (dfx.images)
            devices.append(DeviceImage(streams, source=source, cfg=cfg, device=k))
        else:
            devices.append(DeviceImage(streams, bytearray(), bytearray()))
    return Program(manifest, devices, blobs.get(TOKENIZER))


def _verified_manifest(ar: _Archive, trusted_key: Ed25519PublicKey | None) -> Manifest:
    """The manifest, once it matches digest.json and, with `trusted_key`, the digest carries that key's signature."""
    path = ar.path
    if MANIFEST not in ar.infos:
        raise ProgramError(f"{path} has no {MANIFEST}; it is not a dfx program")
    text = ar.read(MANIFEST)
    try:
        manifest = Manifest.loads(text)
    except ProgramError as e:
        raise ProgramError(f"{path}: {e}") from None
    if DIGEST not in ar.infos:
        raise ProgramError(f"{path} has no {DIGEST}; it was not written by dfx compile")
    digest = _parse_seal(ar.read(DIGEST), f"{path}: {DIGEST}", {"format": "dfx-digest"}, {"sha256": 32})["sha256"]
    if digest.hex() != program_digest(text):
        raise ProgramError(f"{path}: the program was modified after it was written ({MANIFEST} does not match "
                           f"its digest)")
    if SIGNATURE not in ar.infos:
        if trusted_key is not None:
            raise ProgramError(f"{path} is not signed; only a program signed with key {key_fingerprint(trusted_key)} "
                               "(dfx compile --sign) is accepted")
        return manifest
    sig = _parse_seal(ar.read(SIGNATURE), f"{path}: {SIGNATURE}", {"algorithm": "ed25519", "format": "dfx-signature"},
                      {"public_key": 32, "signature": 64})
    if trusted_key is None:
        return manifest
    want = key_fingerprint(trusted_key)
    if sig["public_key"] != _raw(trusted_key):
        got = hashlib.sha256(sig["public_key"]).hexdigest()[:16]
        raise ProgramError(f"{path} is signed by key {got}, not by the trusted key {want}")
    try:
        trusted_key.verify(sig["signature"], _SIGNED + digest)
    except InvalidSignature:
        raise ProgramError(f"{path}: the signature does not verify with key {want}; the program was modified after "
                           "it was signed") from None
    return manifest


def _check_layout(ar: _Archive, m: Manifest) -> None:
    """The members are exactly those `m` describes, each within its config's capacity and of the size the memory
    map gives: all checked from the ZIP directory, before a data member is read."""
    path, cfg = ar.path, m.config
    per_device = len(m.streams) + (cfg.hbm_channels + 1 if m.weights else 0)
    most = m.devices * per_device + 3 + (m.tokenizer == "files")      # + manifest, digest, signature, tokenizer
    if len(ar.infos) > most:
        raise ProgramError(f"{path} has {len(ar.infos)} members; a program of {m.devices} device(s) and streams "
                           f"{', '.join(m.streams)} has at most {most}")
    for name in _data_members(m):             # stops at the first missing one: the list below is short
        if name not in ar.infos:
            raise ProgramError(f"{path}: member {name} is missing (truncated program?)")
    data = list(_data_members(m))
    allowed = {MANIFEST, DIGEST, SIGNATURE, *data, *((TOKENIZER,) if m.tokenizer == "files" else ())}
    for name in ar.infos:
        if name not in allowed:
            raise ProgramError(f"{path}: member {name} does not belong to this program ({m.devices} device(s), "
                               f"streams {', '.join(m.streams)}, {'with' if m.weights else 'without'} weights, "
                               f"tokenizer {m.tokenizer})")
    present = set(ar.infos) - {MANIFEST, DIGEST, SIGNATURE}
    for name in m.checksums:
        if name not in present:
            raise ProgramError(f"{path}: the manifest's checksum table names {ascii(name)}, which is not a member "
                               "of this program")
    extra = present - set(m.checksums)
    if extra:
        raise ProgramError(f"{path}: members without checksum: {', '.join(sorted(extra))}")
    for name in present:
        _check_size(path, name, ar.infos[name].file_size, cfg)
    for k, mem in enumerate(m.memory):
        if m.weights:
            want = {f"dev{k}/hbm/ch{c:02}.bin": -(-mem.hbm_bytes // cfg.beat_bytes) * cfg.channel_beat_bytes
                    for c in range(cfg.hbm_channels)}
            want[f"dev{k}/ddr.bin"] = mem.ddr_bytes
            for name, n in want.items():
                if ar.infos[name].file_size != n:
                    raise ProgramError(f"{path}: member {name} is {ar.infos[name].file_size:,} bytes; the manifest's "
                                       f"memory map of device {k} makes it {n:,}")
        ddr = sum(ar.infos[n].file_size for n in data if n.startswith(f"dev{k}/") and "/hbm/" not in n)
        if ddr > cfg.ddr_bytes:
            raise ProgramError(f"{path}: device {k}'s DDR image and streams are {ddr:,} bytes; config {cfg.name!r} "
                               f"has {cfg.ddr_bytes:,} bytes of DDR")
