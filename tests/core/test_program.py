import json
import zipfile

import numpy as np
import pytest

from dfx import isa
from dfx.config import PRESETS
from dfx.errors import ProgramError
from dfx.isa import Instr
from dfx.manifest import MANIFEST_VERSION, DeviceMemory, HostSymbols, Manifest, ModelConfig, Quantization
from dfx.program import (DeviceImage, Program, load_program, save_program, stripe, tile_matrix, unstripe,
                         untile_matrix)
from dfx.symbols import Space, SymbolTable

TINY = PRESETS["tiny"]


@pytest.mark.parametrize("k,n", [(8, 4), (13, 9), (64, 5), (1, 1)])
@pytest.mark.parametrize("rowmajor", [False, True])
def test_tile_inverse_and_layout(k, n, rowmajor):
    rng = np.random.default_rng(k * n)
    w = rng.standard_normal((k, n)).astype(np.float16)
    flat = tile_matrix(w, 8, 4, rowmajor)
    kt, nt = -(-k // 8), -(-n // 4)
    assert flat.size == kt * nt * 32
    np.testing.assert_array_equal(untile_matrix(flat, k, n, 8, 4, rowmajor), w)
    # tile (i, j), lane c, row r holds w[i*8 + r, j*4 + c]
    i, j, c, r = kt - 1, nt - 1, (n - 1) % 4, (k - 1) % 8
    t = (i * nt + j) if rowmajor else (j * kt + i)
    assert flat[t * 32 + c * 8 + r] == w[k - 1, n - 1]


def test_stripe_roundtrip_and_channel_order():
    img = np.arange(3 * TINY.beat_bytes + 5, dtype=np.uint32).astype(np.uint8).tobytes()
    chans = stripe(img, TINY)
    assert len(chans) == TINY.hbm_channels
    cb = TINY.channel_beat_bytes
    assert chans[1][:cb] == img[cb:2 * cb]            # beat 0 of channel 1 is bytes cb..2cb of the striped space
    assert bytes(unstripe(chans, TINY))[:len(img)] == img


def _prog():
    streams = {"prefill": [Instr("HALT")], "decode": [Instr("VADD", n=8), Instr("HALT")]}
    dev = DeviceImage(streams, bytearray(range(256)) * 4, bytearray(b"\x01" * 128))
    manifest = Manifest(
        isa_version=isa.ISA_VERSION, config=TINY, devices=1, ring=(0,), overlap=1, weights=True, max_seq=16,
        model=ModelConfig(vocab_size=64, n_positions=16, n_embd=8, n_layer=1, n_head=1, layer_norm_epsilon=1e-5),
        streams=("prefill", "decode"), symbols=HostSymbols(0, 64, (((0, 64),),), None),
        quantization=Quantization("fp16", "rtn", {}, {}, ({},)), tokenizer="bytes", node_pcs={},
        memory=(DeviceMemory(1024, 128, 0, None, SymbolTable(Space.HBM), SymbolTable(Space.DDR)),))
    return Program(manifest, [dev])


def test_save_load_roundtrip(tmp_path):
    p = save_program(_prog(), tmp_path / "a.dfx")
    q = load_program(p, expect=TINY)
    assert q.devices[0].streams == _prog().devices[0].streams
    assert bytes(q.devices[0].hbm[:1024]) == bytes(_prog().devices[0].hbm)
    assert q.devices[0].ddr == _prog().devices[0].ddr
    assert {f"dev0/hbm/ch{c:02}.bin" for c in range(4)} <= set(zipfile.ZipFile(p).namelist())


def test_truncated(tmp_path):
    p = save_program(_prog(), tmp_path / "a.dfx")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ProgramError, match="truncated or not a ZIP"):
        load_program(p)


def test_corrupted_member(tmp_path):
    p = save_program(_prog(), tmp_path / "a.dfx")
    data = bytearray(p.read_bytes())
    at = data.find(bytes(range(64, 80)))             # inside an HBM channel image
    data[at] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ProgramError, match="checksum mismatch|cannot be read"):
        load_program(p)


def _rewrite_manifest(p, **changes):
    with zipfile.ZipFile(p) as z:
        members = {n: z.read(n) for n in z.namelist()}
    m = json.loads(members["manifest.json"])
    m.update(changes)
    members["manifest.json"] = json.dumps(m).encode()
    with zipfile.ZipFile(p, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)


def test_wrong_isa_version(tmp_path):
    p = save_program(_prog(), tmp_path / "a.dfx")
    _rewrite_manifest(p, isa_version=99)
    with pytest.raises(ProgramError, match=f"built for ISA version 99.*implements ISA version {isa.ISA_VERSION}"):
        load_program(p)


def test_wrong_config(tmp_path):
    p = save_program(_prog(), tmp_path / "a.dfx")
    with pytest.raises(ProgramError, match=r"built for config 'tiny'.*not for 'dfx'"):
        load_program(p, expect=PRESETS["dfx"])
    _rewrite_manifest(p, config=PRESETS["dfx"].to_dict())
    with pytest.raises(ProgramError, match="does not match its config"):
        load_program(p)


def test_program_of_an_older_dfx_is_refused(tmp_path):
    """A container whose manifest has an older format version (the untyped manifest) says to recompile."""
    p = save_program(_prog(), tmp_path / "a.dfx")
    _rewrite_manifest(p, format_version=1)
    with pytest.raises(ProgramError, match=f"a.dfx: manifest format version int 1 is from an older dfx \\(it reads "
                                           f"version {MANIFEST_VERSION}\\); recompile with dfx compile$"):
        load_program(p)


def test_bad_manifest_field_names_the_file_and_field(tmp_path):
    p = save_program(_prog(), tmp_path / "a.dfx")
    _rewrite_manifest(p, max_seq="16")
    with pytest.raises(ProgramError, match=r"a\.dfx: manifest field max_seq: got str '16'; expected an integer"):
        load_program(p)


def test_deeply_nested_manifest_is_a_program_error(tmp_path):
    p = save_program(_prog(), tmp_path / "a.dfx")
    with zipfile.ZipFile(p) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members["manifest.json"] = b"[" * 200_000 + b"]" * 200_000
    with zipfile.ZipFile(p, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    with pytest.raises(ProgramError, match="nests too deeply"):
        load_program(p)


def test_saved_manifest_is_canonical(tmp_path):
    """manifest.json is `Manifest.to_json` of the loaded manifest, byte for byte (sorted keys)."""
    p = save_program(_prog(), tmp_path / "a.dfx")
    q = load_program(p)
    with zipfile.ZipFile(p) as z:
        text = z.read("manifest.json").decode()
    assert text == q.manifest.to_json()
    keys = list(json.loads(text))
    assert keys == sorted(keys)


def test_not_a_program(tmp_path):
    (tmp_path / "x.dfx").write_text("hello")
    with pytest.raises(ProgramError, match="not a dfx program"):
        load_program(tmp_path / "x.dfx")
    with pytest.raises(ProgramError, match="does not exist"):
        load_program(tmp_path / "missing.dfx")


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    """A save that fails half-way (disk full, say) keeps the old file and leaves no partial one."""
    target = save_program(_prog(), tmp_path / "a.dfx")
    before = target.read_bytes()
    real, calls = zipfile.ZipFile.open, []

    def flaky(self, name, mode="r", *a, **kw):          # every member is written through ZipFile.open(..., "w")
        if mode == "w":
            calls.append(name)
            if len(calls) == 3:
                raise OSError("No space left on device")
        return real(self, name, mode, *a, **kw)

    monkeypatch.setattr(zipfile.ZipFile, "open", flaky)
    with pytest.raises(OSError, match="No space"):
        save_program(_prog(), target)
    assert [p.name for p in tmp_path.iterdir()] == ["a.dfx"]
    assert target.read_bytes() == before
