"""A loaded program's memory images (`dfx.images`): read from the verified file when used, never held twice, and
refused if the file changed after it was loaded."""
import os

import numpy as np
import pytest

from gpt2_fixtures import make_hf_gpt2
from dfx.compiler import compile_model
from dfx.errors import ProgramError
from dfx.images import DeviceImage, discard, stripe, unstripe, zeros
from dfx.program import load_program, save_program


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    prog = compile_model(make_hf_gpt2(3, n_embd=64, n_head=2, n_layer=1, n_positions=16, vocab_size=40), "tiny",
                         devices=2)
    path = save_program(prog, tmp_path_factory.mktemp("img") / "p.dfx")
    return prog, path


def test_loaded_images_equal_the_compiled_ones(saved):
    prog, path = saved
    q = load_program(path)
    cfg = prog.config
    for a, b in zip(prog.devices, q.devices):
        assert b._hbm is None and b._ddr is None          # nothing read yet
        assert b.take_hbm().tobytes() == bytes(unstripe(stripe(a.hbm, cfg), cfg))
        assert list(b.channels(cfg)) == stripe(a.hbm, cfg) == list(a.channels(cfg))
        assert b.channels(cfg).channel_bytes == a.channels(cfg).channel_bytes == len(stripe(a.hbm, cfg)[0])
        assert b.take_ddr() == a.ddr
        assert b._hbm is None                              # taking a copy keeps none
        assert bytes(b.hbm)[:len(a.hbm)] == bytes(a.hbm) and b == b


def test_a_file_changed_after_loading_is_refused(saved, tmp_path):
    prog, path = saved
    copy = tmp_path / "c.dfx"
    copy.write_bytes(path.read_bytes())
    q = load_program(copy)
    where = q.devices[1]._source.where["dev1/hbm/ch02.bin"][0]
    with open(copy, "r+b") as f:                           # the same file, edited in place
        f.seek(where)
        b = f.read(1)
        f.seek(where)
        f.write(bytes([b[0] ^ 1]))
    with pytest.raises(ProgramError, match="dev1/hbm/ch02.bin changed after the program was loaded"):
        q.devices[1].take_hbm()
    with pytest.raises(ProgramError, match="changed after"):
        q.devices[1].channels(prog.config)[2]
    assert q.devices[0].take_hbm().tobytes()[:len(prog.devices[0].hbm)] == bytes(prog.devices[0].hbm)
    os.unlink(copy)                                        # the open file still reads: the name is not used
    assert q.devices[0].take_ddr() == prog.devices[0].ddr


def test_zeros_and_discard():
    a = zeros(3 << 16)
    assert a.size == 3 << 16 and not a.any()
    a[:] = 7
    discard(a, 1, (2 << 16) - 1)                           # whole pages inside the range only
    assert a[0] == 7 and not a[4096:4096 * 16].any() and a[-1] == 7
    discard(np.ones(10, np.uint8), 0, 10)                  # not ours: left alone


def test_device_image_needs_images_or_a_file():
    with pytest.raises(ValueError, match="give hbm and ddr"):
        DeviceImage({}, bytearray())


def test_image_file_writes_striped_members():
    """`ImageFile` (the compiler's images on disk): writes at any byte address, inside one beat, across beats, at
    either end, give the channel images `stripe` cuts from the same image in memory; unwritten bytes are zero."""
    from dfx.config import load_config
    from dfx.images import ImageFile
    cfg = load_config("dfx")
    B = cfg.beat_bytes
    sizes = [(7 * B + 192, 1000), (3 * B, 64)]
    f = ImageFile(cfg, sizes)
    mem = [(np.zeros(h, np.uint8), np.zeros(d, np.uint8)) for h, d in sizes]
    rng = np.random.default_rng(0)
    for k, a, n in [(0, 0, 64), (0, 100, 5), (0, B - 3, 7), (0, 2 * B, 3 * B), (0, 5 * B + 64, 2 * B + 128),
                    (1, 0, 3 * B), (1, B + 1, B - 1)]:
        data = rng.integers(0, 256, n, dtype=np.uint8)
        f.write_hbm(k, a, data)
        mem[k][0][a:a + n] = data
    f.write_ddr(0, 10, b"abc")
    mem[0][1][10:13] = np.frombuffer(b"abc", np.uint8)
    for k, (hbm, ddr) in enumerate(mem):
        img = DeviceImage({}, source=f, cfg=cfg, device=k)
        assert list(img.channels(cfg)) == stripe(hbm, cfg)
        assert bytes(img.ddr) == ddr.tobytes()
        assert bytes(img.take_hbm())[:len(hbm)] == hbm.tobytes()
        want = [(f"hbm/ch{c:02}.bin", len(ch)) for c, ch in enumerate(stripe(hbm, cfg))] + [("ddr.bin", len(ddr))]
        assert [(name, size) for name, size, _ in img.members(cfg)] == want
    with pytest.raises(ValueError, match="outside"):
        f.write_ddr(1, 60, b"12345")
