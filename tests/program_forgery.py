"""Forging program files as an attacker would (tests of docs/security.md): read and rewrite members, recompute
the checksums and the digest, patch the ZIP directory, build huge directories cheaply."""
import hashlib
import json
import struct
import zipfile

from dfx.program import program_digest

SEALS = ("manifest.json", "digest.json", "signature.json")
_ENTRY = struct.Struct("<4s6H3L5H2L")          # ZIP central directory entry


def read_members(p) -> dict[str, bytes]:
    with zipfile.ZipFile(p) as z:
        return {i.orig_filename: z.read(i) for i in z.infolist()}


def write_members(p, members: dict):
    """Members in order: name -> bytes, or ZipInfo -> bytes (stored)."""
    with zipfile.ZipFile(p, "w", zipfile.ZIP_STORED) as z:
        for name, blob in members.items():
            z.writestr(name, blob)


def reseal(p, members: dict, edit=None, digest: bool = True):
    """Rewrite `p` with `members`: the manifest's checksum table lists every data member with its SHA-256,
    `edit(manifest object)` is applied, and (with `digest`) digest.json is recomputed."""
    m = json.loads(members["manifest.json"])
    m["checksums"] = {(k.orig_filename if isinstance(k, zipfile.ZipInfo) else k): hashlib.sha256(b).hexdigest()
                      for k, b in members.items() if k not in SEALS}
    if edit is not None:
        edit(m)
    text = json.dumps(m, sort_keys=True, indent=1).encode()
    out = {"manifest.json": text, **{k: b for k, b in members.items() if k != "manifest.json"}}
    if digest:
        out["digest.json"] = json.dumps({"format": "dfx-digest", "sha256": program_digest(text)}).encode()
    write_members(p, out)


def add_compressed(p, name: str, mib: int, method: int = zipfile.ZIP_DEFLATED) -> None:
    """A zip bomb: `mib` MiB of zeros as member `name` compressed with `method`, its SHA-256 in the manifest and
    the digest recomputed (written chunk by chunk: the test never holds the bomb's size)."""
    zeros, sha = bytes(1 << 20), hashlib.sha256()
    for _ in range(mib):
        sha.update(zeros)
    members = {k: v for k, v in read_members(p).items() if k != name}
    reseal(p, members, edit=lambda m: m["checksums"].update({name: sha.hexdigest()}))
    with zipfile.ZipFile(p, "a") as z:
        info = zipfile.ZipInfo(name)
        info.compress_type = method
        with z.open(info, "w") as w:
            for _ in range(mib):
                w.write(zeros)


def raw_zip(names: list[str], zip64: bool = False) -> bytes:
    """An archive of empty stored members, built directly (fast for 100,000 members)."""
    local, central, off = [], [], 0
    for n in names:
        nb = n.encode()
        h = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(nb), 0) + nb
        central.append(_ENTRY.pack(b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(nb), 0, 0, 0, 0, 0, off) + nb)
        local.append(h)
        off += len(h)
    cd, n = b"".join(central), len(names)
    end = b""
    if zip64:
        end += struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, len(cd), off)
        end += struct.pack("<4sLQL", b"PK\x06\x07", 0, off + len(cd), 1)
        n, off = 0xFFFF, 0xFFFFFFFF
    end += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(cd), off, 0)
    return b"".join(local) + cd + end


def patch_entry(p, name: str, size: int | None = None, flags: int | None = None, version: int | None = None):
    """Change member `name`'s declared sizes (both), flag bits or version needed to extract in the ZIP central
    directory, in place."""
    data = bytearray(p.read_bytes())
    _, _, _, _, n, _, at, _ = struct.unpack("<4s4H2LH", data[-22:])
    for _ in range(n):
        f = list(_ENTRY.unpack_from(data, at))
        nlen, xlen, clen = f[10], f[11], f[12]
        if data[at + 46:at + 46 + nlen].decode() == name:
            for i, v in ((8, size), (9, size), (3, flags), (2, version)):
                if v is not None:
                    f[i] = v
            _ENTRY.pack_into(data, at, *f)
        at += 46 + nlen + xlen + clen
    p.write_bytes(bytes(data))
