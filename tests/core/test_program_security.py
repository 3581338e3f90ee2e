"""A program file is untrusted input (docs/security.md): `load_program` tried as an attacker would.

Every forged program here is refused with one `ProgramError` line naming what is wrong, before the member at
fault is read; nothing is written (the `sandbox` fixture checks an empty TMPDIR and working directory and the
traversal target after each test), and the bombs and oversized members are refused without allocating their size
(tracemalloc). Most forgeries are full rewrites: the member's SHA-256 in the manifest and the digest recomputed,
as anyone can do to an unsigned program (`_reseal`).
"""
import hashlib
import json
import re
import stat
import tempfile
import tracemalloc
import zipfile
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dfx import isa
from dfx.config import PRESETS
from dfx.errors import ProgramError, UsageError
from dfx.isa import Instr
from dfx.manifest import MAX_MANIFEST_BYTES, DeviceMemory, HostSymbols, Manifest, ModelConfig, Quantization
from dfx.program import (ACCEPTED_NAMES, MAX_DIRECTORY_BYTES, MAX_MEMBERS, MAX_STREAM_INSTRS, MAX_TOKENIZER_BYTES,
                         DeviceImage, Program, key_fingerprint, load_program, load_signing_key, load_trusted_key,
                         save_program)
from dfx.symbols import Space, SymbolTable
from program_forgery import add_compressed, patch_entry, raw_zip, read_members, reseal, write_members

TINY = PRESETS["tiny"]
SMALL = replace(TINY, name="small", hbm_channel_mb=1, ddr_mb=1)      # 1 MiB per HBM channel, 1 MiB of DDR
TOKENIZER = "tokenizer/tokenizer.json"
TOK_REFUSED = "is refused: a program's tokenizer is the one member tokenizer/tokenizer.json"
NOT_PART = f"is not part of a dfx program (accepted: {ACCEPTED_NAMES})"


def _prog(cfg=TINY, tokenizer: bytes | None = None, hbm: int = 1024, ddr: int = 128) -> Program:
    streams = {"prefill": [Instr("HALT")], "decode": [Instr("VADD", n=8), Instr("HALT")]}
    dev = DeviceImage(streams, bytearray(hbm), bytearray(ddr))
    manifest = Manifest(
        isa_version=isa.ISA_VERSION, config=cfg, devices=1, ring=(0,), overlap=1, weights=True, max_seq=16,
        model=ModelConfig(vocab_size=64, n_positions=16, n_embd=8, n_layer=1, n_head=1, layer_norm_epsilon=1e-5),
        streams=("prefill", "decode"), symbols=HostSymbols(0, 64, (((0, 64),),), None),
        quantization=Quantization("fp16", "rtn", {}, {}, ({},)), node_pcs={},
        tokenizer="files" if tokenizer is not None else "bytes",
        memory=(DeviceMemory(hbm, ddr, 0, None, SymbolTable(Space.HBM), SymbolTable(Space.DDR)),))
    return Program(manifest, [dev], tokenizer)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """(program path, traversal target): TMPDIR and the working directory are empty folders, and after the test
    they are still empty, the program's folder holds only the program, and the target does not exist."""
    tmp, cwd, progs = tmp_path / "tmp", tmp_path / "cwd", tmp_path / "progs"
    for d in (tmp, cwd, progs):
        d.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.chdir(cwd)
    target = tmp_path / "pwned"
    yield progs / "p.dfx", target
    assert not list(tmp.iterdir()) and not list(cwd.iterdir())
    assert [p.name for p in progs.iterdir()] == ["p.dfx"]
    assert not target.exists()


def _refused(p, message: str, regex: bool = False, **kw) -> str:
    """load_program(p) raises one ProgramError line: exactly `message` after the program's path."""
    with pytest.raises(ProgramError) as e:
        load_program(p, **kw)
    msg = str(e.value)
    assert "\n" not in msg and "\r" not in msg
    want = message if regex else re.escape(message)
    assert re.fullmatch(rf"{re.escape(str(p))}:? {want}", msg), msg
    return msg


def _no_allocation(fn, limit=4 << 20):
    """Run `fn` and check its peak Python allocation stays under `limit` bytes."""
    tracemalloc.start()
    try:
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < limit, f"peak allocation {peak:,} bytes"


# ---------------------------------------------------------------------------------------------- names
@pytest.mark.parametrize("name,why", [
    ("TRAVERSAL", TOK_REFUSED),                              # the attack of issue 23, aimed at the sandbox
    ("tokenizer/../../x", TOK_REFUSED),
    ("tokenizer/..\\..\\x", TOK_REFUSED),                    # backslash separators
    ("tokenizer/vocab.json", TOK_REFUSED),                   # another tokenizer file: only tokenizer.json is taken
    ("tokenizer/sub/tokenizer.json", TOK_REFUSED),
    ("tokenizer/", TOK_REFUSED),                             # a directory entry
    ("/tmp/dfx-security-test-x", NOT_PART),                  # absolute
    ("\\tmp\\x", NOT_PART),
    ("C:/x", NOT_PART),                                      # drive letters
    ("c:\\Windows\\x", NOT_PART),
    ("dev0/../../x", NOT_PART),
    ("dev0/hbm/../../../x", NOT_PART),
    ("../manifest.json", NOT_PART),
    ("./manifest.json", NOT_PART),
    ("notes.txt", NOT_PART),                                 # unknown member
    ("dev0/prefill.bin\n", NOT_PART),                        # a newline (the message stays one line)
    ("dev00/prefill.bin", NOT_PART),
])
def test_traversal_and_unknown_names_are_refused(sandbox, name, why):
    p, target = sandbox
    if name == "TRAVERSAL":
        name = "tokenizer/" + "../" * 40 + str(target).lstrip("/")
    save_program(_prog(tokenizer=b"{}"), p)
    members = read_members(p)
    members[name] = b"echo pwned\n"
    reseal(p, members)
    _refused(p, f"member {ascii(name)} {why}")


def test_nul_byte_in_a_name_is_refused(sandbox):
    """zipfile cuts a name at NUL (its `filename`); the loader checks the name as stored."""
    p, _ = sandbox
    save_program(_prog(tokenizer=b"{}"), p)
    members = read_members(p)
    members["tokenizer/tokenizer.jsonQ/../../x"] = b"pwned"
    reseal(p, members)
    p.write_bytes(p.read_bytes().replace(b"tokenizer.jsonQ", b"tokenizer.json\0"))
    _refused(p, f"member {ascii('tokenizer/tokenizer.json' + chr(0) + '/../../x')} {TOK_REFUSED}")


@pytest.mark.parametrize("kind,what", [(stat.S_IFLNK, "a symbolic link"), (stat.S_IFDIR, "a directory"),
                                       (stat.S_IFIFO, "a special file")])
def test_links_and_special_members_are_refused(sandbox, kind, what):
    p, target = sandbox
    save_program(_prog(tokenizer=b"{}"), p)
    members = read_members(p)
    link = zipfile.ZipInfo(TOKENIZER)
    link.external_attr = (kind | 0o777) << 16
    members[link] = str(target).encode()
    del members[TOKENIZER]
    reseal(p, members)
    _refused(p, f"member {TOKENIZER} is {what}; a dfx program holds regular files only")


def test_duplicate_members_are_refused(sandbox):
    p, _ = sandbox
    save_program(_prog(), p)
    members = read_members(p)
    with pytest.warns(UserWarning, match="Duplicate name"):
        with zipfile.ZipFile(p, "a") as z:
            z.writestr("dev0/decode.bin", members["dev0/decode.bin"])
    _refused(p, "member dev0/decode.bin appears twice")


def test_a_member_of_another_program_shape_is_refused(sandbox):
    p, _ = sandbox
    save_program(_prog(), p)
    members = read_members(p)
    members["dev1/prefill.bin"] = members["dev0/prefill.bin"]
    reseal(p, members)
    _refused(p, "member dev1/prefill.bin does not belong to this program (1 device(s), streams prefill, decode, "
                "with weights, tokenizer bytes)")
    members = read_members(p)
    del members["dev1/prefill.bin"]
    members[TOKENIZER] = b"{}"                                 # the manifest says: byte-level, no tokenizer
    reseal(p, members)
    _refused(p, f"member {TOKENIZER} does not belong to this program (1 device(s), streams prefill, decode, with "
                "weights, tokenizer bytes)")


def test_checksum_table_naming_a_traversal_path_is_refused(sandbox):
    p, target = sandbox
    save_program(_prog(), p)
    name = "tokenizer/../" + str(target).lstrip("/")
    reseal(p, read_members(p), edit=lambda m: m["checksums"].update({name: "0" * 64}))
    _refused(p, f"the manifest's checksum table names {ascii(name)}, which is not a member of this program")


# ---------------------------------------------------------------------------------------------- resources
@pytest.mark.parametrize("n", [5_000, 100_000])
def test_many_tiny_members_are_refused_before_the_directory_is_parsed(sandbox, n):
    p, _ = sandbox
    p.write_bytes(raw_zip([f"m{i}" for i in range(n)], zip64=n > 0xFFFF))
    _no_allocation(lambda: _refused(p, f"has {n:,} members; a dfx program has at most {MAX_MEMBERS:,}"), 1 << 20)


def test_a_huge_directory_is_refused(sandbox):
    p, _ = sandbox
    data = raw_zip(["x" * 60_000 for _ in range(10)])
    p.write_bytes(data)
    _refused(p, f"its ZIP directory is {10 * 60_046:,} bytes; a dfx program's is at most {MAX_DIRECTORY_BYTES:,}")


def test_more_members_than_the_program_can_have_are_refused(sandbox):
    p, _ = sandbox
    save_program(_prog(), p)
    members = read_members(p)
    for k in range(1, 11):
        members[f"dev{k}/decode.bin"] = b""
    reseal(p, members)
    _refused(p, f"has {len(members):,} members; a program of 1 device(s) and streams prefill, decode has at most 10")


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_LZMA, zipfile.ZIP_BZIP2])
def test_zip_bomb_is_refused_without_inflating(sandbox, method):
    """A compressed member (32 MiB of zeros in a few kB), its SHA-256 in the manifest: refused unread."""
    p, _ = sandbox
    save_program(_prog(), p)
    add_compressed(p, "dev0/ddr.bin", 32, method)
    assert p.stat().st_size < 4 << 20
    _no_allocation(lambda: _refused(p, f"member dev0/ddr.bin is compressed (ZIP method {method}); a dfx program "
                                       "stores its members uncompressed (method 0)"))


@pytest.mark.parametrize("name,size,why", [
    (TOKENIZER, MAX_TOKENIZER_BYTES + 1, "a tokenizer.json"),
    ("dev0/decode.bin", MAX_STREAM_INSTRS * 16 + 16, f"{MAX_STREAM_INSTRS:,} instructions of 16 bytes"),
    ("dev0/hbm/ch00.bin", (1 << 20) + 16, "the HBM channel capacity of config 'small'"),
    ("dev0/ddr.bin", (1 << 20) + 1, "the DDR capacity of config 'small'"),
])
def test_members_larger_than_their_capacity_are_refused(sandbox, name, size, why):
    """Real bytes, checksums and digest recomputed: the limit is checked from the directory."""
    p, _ = sandbox
    save_program(_prog(SMALL, tokenizer=b"{}"), p)
    members = read_members(p)
    members[name] = bytes(size)
    reseal(p, members)
    del members
    limit = {TOKENIZER: MAX_TOKENIZER_BYTES, "dev0/decode.bin": MAX_STREAM_INSTRS * 16}.get(name, 1 << 20)
    _no_allocation(lambda: _refused(p, f"member {name} is {size:,} bytes; a program accepts at most {limit:,} "
                                       f"({why})"), 1 << 20)


@pytest.mark.parametrize("name,limit,why", [
    ("manifest.json", MAX_MANIFEST_BYTES, "a dfx manifest"),
    (TOKENIZER, MAX_TOKENIZER_BYTES, "a tokenizer.json"),
    ("digest.json", 1024, "digest.json"),
])
def test_declared_sizes_are_checked_before_reading(sandbox, name, limit, why):
    """The directory claims 4 GB: refused from the directory, nothing that size allocated."""
    p, _ = sandbox
    save_program(_prog(tokenizer=b"{}"), p)
    patch_entry(p, name, size=0xFFFFFFF0)
    _no_allocation(lambda: _refused(p, f"member {name} is {0xFFFFFFF0:,} bytes; a program accepts at most "
                                       f"{limit:,} ({why})"))


def test_a_declared_size_beyond_the_archive_is_refused(sandbox):
    p, _ = sandbox
    save_program(_prog(), p)
    patch_entry(p, "dev0/hbm/ch00.bin", size=60 << 20)          # within tiny's 64 MiB channel, not in the file
    _no_allocation(lambda: _refused(p, "member dev0/hbm/ch00.bin lies outside the archive (truncated program?)"))


def test_image_sizes_must_match_the_memory_map(sandbox):
    p, _ = sandbox
    save_program(_prog(), p)
    members = read_members(p)
    members["dev0/hbm/ch01.bin"] += bytes(64)                  # one channel longer than the others
    reseal(p, members)
    _refused(p, "member dev0/hbm/ch01.bin is 320 bytes; the manifest's memory map of device 0 makes it 256")


def test_ddr_image_and_streams_must_fit_the_ddr(sandbox):
    """The host puts the streams in DDR after the image: together they fit the config's DDR."""
    p, _ = sandbox
    save_program(_prog(SMALL, ddr=(1 << 20) - 64), p)           # 1 MiB - 64 of DDR image + 48 bytes of streams
    load_program(p)
    members = read_members(p)
    members["dev0/decode.bin"] = isa.encode_stream([Instr("NOP")] * 4 + [Instr("HALT")])
    reseal(p, members)
    _refused(p, "device 0's DDR image and streams are 1,048,608 bytes; config 'small' has 1,048,576 bytes of DDR")


def test_writer_refuses_what_the_reader_refuses(tmp_path):
    prog = _prog(SMALL)
    prog.devices[0].streams["decode"] = [Instr("NOP")] * (MAX_STREAM_INSTRS + 1)
    with pytest.raises(ProgramError, match=rf"member dev0/decode.bin is {(MAX_STREAM_INSTRS + 1) * 16:,} bytes; a "
                                           rf"program accepts at most {MAX_STREAM_INSTRS * 16:,}"):
        save_program(prog, tmp_path / "a.dfx")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------- container shape
def test_encrypted_member_is_refused(sandbox):
    p, _ = sandbox
    save_program(_prog(), p)
    patch_entry(p, "dev0/ddr.bin", flags=0x1)
    _refused(p, "member dev0/ddr.bin is encrypted; a dfx program is not")


def test_unsupported_zip_version_is_refused(sandbox):
    p, _ = sandbox
    save_program(_prog(), p)
    patch_entry(p, "dev0/ddr.bin", version=96)                 # zipfile raises NotImplementedError for it
    _refused(p, "is not a dfx program (zip file version 9.6)")


@pytest.mark.parametrize("how", ["comment", "prepended", "appended"])
def test_data_around_the_archive_is_refused(sandbox, how):
    p, _ = sandbox
    save_program(_prog(), p)
    if how == "comment":
        with zipfile.ZipFile(p, "a") as z:
            z.comment = b"hello"
    else:
        data = p.read_bytes()
        p.write_bytes(b"#!/bin/sh\n" + data if how == "prepended" else data + b"\0" * 10)
    _refused(p, "is not a dfx program (truncated or not a ZIP container)")


def test_zip64_program_round_trip(tmp_path, monkeypatch):
    """A program over 2 GiB has zip64 end records (zipfile writes them past ZIP64_LIMIT): the loader reads them."""
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 256)
    p = save_program(_prog(tokenizer=b"{}"), tmp_path / "a.dfx")
    monkeypatch.undo()
    assert b"PK\x06\x06" in p.read_bytes()[-98:]
    q = load_program(p)
    assert q.tokenizer_json == b"{}" and bytes(q.devices[0].ddr) == bytes(128)


# ---------------------------------------------------------------------------------------------- integrity
def test_program_layout_and_digest(tmp_path):
    p = save_program(_prog(tokenizer=b'{"model": {}}'), tmp_path / "a.dfx")
    members = read_members(p)
    assert list(members)[:2] == ["manifest.json", "digest.json"] and TOKENIZER in members
    assert all(i.compress_type == zipfile.ZIP_STORED for i in zipfile.ZipFile(p).infolist())
    assert json.loads(members["digest.json"]) == {"format": "dfx-digest",
                                                  "sha256": hashlib.sha256(members["manifest.json"]).hexdigest()}
    assert set(json.loads(members["manifest.json"])["checksums"]) == set(members) - {"manifest.json", "digest.json"}
    assert load_program(p).tokenizer_json == b'{"model": {}}'


def test_edited_manifest_with_checksums_recomputed_is_refused(sandbox):
    p, _ = sandbox
    save_program(_prog(), p)
    old_digest = read_members(p)["digest.json"]

    def edit(m):
        m["max_seq"] = 8
    reseal(p, read_members(p), edit=edit, digest=False)
    assert read_members(p)["digest.json"] == old_digest
    _refused(p, "the program was modified after it was written (manifest.json does not match its digest)")


def test_edited_member_with_checksum_recomputed_is_refused(sandbox):
    p, _ = sandbox
    save_program(_prog(), p)
    members = read_members(p)
    members["dev0/decode.bin"] = isa.encode_stream([Instr("HALT")])
    reseal(p, members, digest=False)
    _refused(p, "the program was modified after it was written (manifest.json does not match its digest)")


def test_edited_member_is_refused(sandbox):
    p, _ = sandbox
    save_program(_prog(), p)
    members = read_members(p)
    members["dev0/ddr.bin"] = bytes([1]) + members["dev0/ddr.bin"][1:]
    write_members(p, members)
    _refused(p, "checksum mismatch in dev0/ddr.bin (the file is corrupted)")


@pytest.mark.parametrize("blob", [b"", b"{}", b"[" * 1000, b'{"format": "dfx-digest", "sha256": "AB"}',
                                  b'{"format": "dfx-digest", "sha256": "' + b"g" * 64 + b'"}'])
def test_malformed_digest_is_refused(sandbox, blob):
    p, _ = sandbox
    save_program(_prog(), p)
    members = read_members(p)
    members["digest.json"] = blob
    write_members(p, members)
    _refused(p, 'digest.json is malformed; expected {"format": "dfx-digest", "sha256": <64 hex digits>}')


def test_missing_digest_is_refused(sandbox):
    p, _ = sandbox
    save_program(_prog(), p)
    members = read_members(p)
    del members["digest.json"]
    write_members(p, members)
    _refused(p, "has no digest.json; it was not written by dfx compile")


def test_a_fully_rewritten_unsigned_program_loads(tmp_path):
    """What the digest cannot do: anyone may rewrite an unsigned program wholesale (docs/security.md)."""
    p = save_program(_prog(), tmp_path / "a.dfx")
    reseal(p, read_members(p), edit=lambda m: m.update(max_seq=8))
    assert load_program(p).manifest.max_seq == 8


# ---------------------------------------------------------------------------------------------- signatures
@pytest.fixture(scope="module")
def keys():
    return Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()


def test_signed_program_round_trip(tmp_path, keys):
    key, _ = keys
    p = save_program(_prog(), tmp_path / "a.dfx", signing_key=key)
    sig = json.loads(read_members(p)["signature.json"])
    assert sig["algorithm"] == "ed25519" and len(sig["signature"]) == 128
    assert load_program(p, trusted_key=key.public_key()).manifest.max_seq == 16
    assert load_program(p).manifest.max_seq == 16                  # a signed program runs without a trusted key


def test_unsigned_program_is_refused_with_a_trusted_key(sandbox, keys):
    p, _ = sandbox
    save_program(_prog(), p)
    fp = key_fingerprint(keys[0].public_key())
    _refused(p, f"is not signed; only a program signed with key {fp} (dfx compile --sign) is accepted",
             trusted_key=keys[0].public_key())


def test_program_signed_by_another_key_is_refused(sandbox, keys):
    p, _ = sandbox
    save_program(_prog(), p, signing_key=keys[1])
    mine, theirs = (key_fingerprint(k.public_key()) for k in keys)
    _refused(p, f"is signed by key {theirs}, not by the trusted key {mine}", trusted_key=keys[0].public_key())


@pytest.mark.parametrize("how", ["resealed", "forged"])
def test_signature_that_does_not_verify_is_refused(sandbox, keys, how):
    """resealed: edited, checksums and digest recomputed, the signature kept (it loads without a trusted key);
    forged: a signature.json naming the trusted key with a made-up signature."""
    p, _ = sandbox
    save_program(_prog(), p, signing_key=keys[0])
    members = read_members(p)
    if how == "resealed":
        reseal(p, members, edit=lambda m: m.update(max_seq=8))
        assert load_program(p).manifest.max_seq == 8
    else:
        sig = json.loads(members["signature.json"])
        members["signature.json"] = json.dumps({**sig, "signature": "00" * 64}).encode()
        write_members(p, members)
    fp = key_fingerprint(keys[0].public_key())
    _refused(p, f"the signature does not verify with key {fp}; the program was modified after it was signed",
             trusted_key=keys[0].public_key())


def test_malformed_signature_is_refused(sandbox, keys):
    p, _ = sandbox
    save_program(_prog(), p, signing_key=keys[0])
    members = read_members(p)
    members["signature.json"] = b'{"algorithm": "rsa"}'
    write_members(p, members)
    _refused(p, 'signature.json is malformed; expected {"algorithm": "ed25519", "format": "dfx-signature", '
                '"public_key": <64 hex digits>, "signature": <128 hex digits>}')


def test_key_files(tmp_path, keys):
    key = keys[0]
    priv, pub = tmp_path / "key.pem", tmp_path / "key.pub.pem"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    assert key_fingerprint(load_signing_key(priv).public_key()) == key_fingerprint(load_trusted_key(pub))
    locked = tmp_path / "locked.pem"
    locked.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"pw")))
    for path, load, what in [(pub, load_signing_key, "private"), (priv, load_trusted_key, "public"),
                             (locked, load_signing_key, "private")]:
        with pytest.raises(UsageError, match=rf"^{re.escape(str(path))} is not an unencrypted Ed25519 {what} key in "
                                             r"PEM form; make one with: openssl "):
            load(path)
    with pytest.raises(UsageError, match=r"^key file \S+missing.pem cannot be read \(No such file or directory\)"):
        load_trusted_key(tmp_path / "missing.pem")


def test_config_name_is_never_a_path(sandbox, tmp_path):
    """The config's name names the RTL harness's build directory: a program cannot make it a path."""
    p, target = sandbox
    with pytest.raises(ProgramError, match=r"p\.dfx: manifest field config\.name: got str '\.\./\.\./x'; expected a "
                                           r"plain name"):
        save_program(_prog(replace(TINY, name="../../x")), p)
    save_program(_prog(), p)
    name = "../" * 40 + str(target).lstrip("/")

    def edit(m):
        m["config"]["name"] = name
        m["config_hash"] = replace(TINY, name=name).config_hash
    reseal(p, read_members(p), edit=edit)
    msg = _refused(p, r"manifest field config\.name: got str '\.\./.*; expected a plain name .*", regex=True)
    assert "\n" not in msg


def test_manifest_describing_billions_of_members_is_refused_at_once(sandbox):
    """A forged config with 2**40 HBM channels: the loader stops at the first member that is not there."""
    p, _ = sandbox
    save_program(_prog(), p)
    big = replace(TINY, hbm_channels=1 << 40)

    def edit(m):
        m["config"] = big.to_dict()
        m["config_hash"] = big.config_hash
    reseal(p, read_members(p), edit=edit)
    _no_allocation(lambda: _refused(p, "member dev0/hbm/ch04.bin is missing (truncated program?)"))


@pytest.fixture(scope="module")
def good_program(tmp_path_factory, keys) -> bytes:
    p = tmp_path_factory.mktemp("good") / "p.dfx"
    return save_program(_prog(tokenizer=b'{"model": {}}'), p, signing_key=keys[0]).read_bytes()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(1, 255)), max_size=4),
       cut=st.none() | st.integers(0, 1 << 20), junk=st.binary(max_size=8))
def test_mutated_programs_load_or_are_refused_in_one_line(tmp_path, good_program, keys, flips, cut, junk):
    """Fuzz: flipped bytes anywhere (ZIP headers, directory, manifest, members), truncation, junk at the end: the
    loader returns a program or raises one ProgramError line, never another exception."""
    data = bytearray(good_program)
    for at, x in flips:
        data[at % len(data)] ^= x
    if cut is not None:
        data = data[:cut % (len(data) + 1)]
    p = tmp_path / "m.dfx"
    p.write_bytes(bytes(data) + junk)
    for key in (None, keys[0].public_key()):
        try:
            load_program(p, trusted_key=key)
        except ProgramError as e:
            assert "\n" not in str(e) and str(e).startswith(str(p)), str(e)
