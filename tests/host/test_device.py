"""The device API over the sim backend (functional simulator behind the emulated register block) and the pynq
backend on the strict fake pynq: handshake, memory, runs, counters, faults. Same host code on both."""
from pathlib import Path

import numpy as np
import pytest

from dfx import regmap
from dfx.errors import DeviceError
from dfx.host.backends import open_devices
from dfx.host.device import Device, KernelError
from dfx.host.fakepynq import FakePynq, write_fake_xclbin
from dfx.host.image import DDR_BANK, device_image
from dfx.host.pynq_backend import PynqTransport
from dfx.host.session import Session
from dfx.host.sim_backend import SimTransport
from dfx.program import load_program
from dfx.sim.ring import Ring

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def prog1():
    return load_program(FIX / "tiny_1dev.dfx")


@pytest.fixture(scope="module")
def prog2():
    return load_program(FIX / "tiny_2dev.dfx")


def _ref_logits(prog, ids):
    """The functional simulator driven directly (no register block)."""
    ring = Ring(prog)
    for pos, t in enumerate(ids):
        s = "decode" if pos == len(ids) - 1 else "prefill"
        (ring.devices[0].run if prog.n_devices == 1 else ring.run)(s, t, pos) if prog.n_devices > 1 else \
            ring.devices[0].run(s, t, pos)
    sym = prog.symbols
    out = np.empty(sym.vocab_size, np.float16)
    for dev, pieces in zip(ring.devices, sym.logits_pieces):
        for a, b in pieces:
            out[a:b] = dev.ddr[sym.logits + 2 * a:sym.logits + 2 * b].view(np.float16)
    return out


def _pynq(prog, tmp_path, fake=None, **kw):
    fake = fake or FakePynq(prog.n_devices, program=prog, **kw)
    x = write_fake_xclbin(tmp_path / "dfx.xclbin", prog.config)
    return fake, dict(xclbin=x, pynq=fake)


@pytest.mark.parametrize("backend", ["sim", "pynq"])
@pytest.mark.parametrize("n", [1, 2])
def test_logits_equal_the_direct_simulator(backend, n, prog1, prog2, tmp_path):
    prog = prog1 if n == 1 else prog2
    ids = [1, 2, 3, 4, 5]
    opts = _pynq(prog, tmp_path)[1] if backend == "pynq" else {}
    with Session(prog, backend, **opts) as s:
        got = s.feed(ids)
        assert s.steps[-1].max_cycles > 0 and s.steps[-1].stream == "decode"
    np.testing.assert_array_equal(got.view(np.uint16), _ref_logits(load_program(FIX / f"tiny_{n}dev.dfx"),
                                                                   ids).view(np.uint16))


def test_device_api_round_trip(prog1):
    (dev,) = open_devices(prog1, "sim")
    assert dev.identify() == {"id": regmap.DFX_MAGIC, "isa_version": prog1.manifest.isa_version,
                              "config_hash": regmap.config_hash_word(prog1.config)}
    img = dev.load(prog1)
    board = dev.t.board
    assert set(dev.buffers) == set(img.banks())
    assert dev.read("DDR") == dev.buffers[DDR_BANK].address and dev.read("HBM01") == dev.buffers["HBM1"].address
    assert dev.read_memory("HBM2", 0, 64) == img.hbm[2][:64]
    dev.write_memory(DDR_BANK, len(img.ddr) - 16, b"\x5a" * 16)
    assert dev.read_memory(DDR_BANK, len(img.ddr) - 16, 16) == b"\x5a" * 16
    assert dev.idle()
    dev.start("prefill", 7, 0)
    dev.wait(5.0)
    st = dev.status()
    assert st["flags"] == ["halted"] and st["idle"]
    c = dev.counters()
    assert c["cycles"] > 0 and c["mpu"] > 0 and c["vpu"] > 0 and c["router"] == 0
    dev.close()
    assert not dev.buffers and all(not b.allocs for b in board.banks.values())


def test_streams_are_placed_after_the_ddr_image(prog1):
    img = device_image(prog1, 0)
    assert min(img.entries.values()) >= len(prog1.devices[0].ddr)
    assert all(e % 4096 == 0 for e in img.entries.values())
    assert len(img.hbm) == prog1.config.hbm_channels and len({len(h) for h in img.hbm}) == 1


def test_illegal_instruction_reports_status_and_pc(prog1):
    (dev,) = open_devices(prog1, "sim")
    img = dev.load(prog1)
    dev.write_memory(DDR_BANK, img.entries["decode"] + 16 * 5, b"\xff" * 16)
    with pytest.raises(KernelError, match=r"sim device 0: the kernel stopped with error illegal_opcode "
                                          r"\(STATUS 0x1\) at pc 5 of the decode stream"):
        dev.start("decode", 1, 0)
        dev.wait(5.0)
    dev.close()


def _sim_device(prog, **board_kw):
    (t,) = SimTransport.open_all(prog.config, 1, None, **board_kw)
    return Device(t, prog.config)


def test_handshake_refuses_another_config(prog1):
    other = prog1.config.replace(clock_mhz=250.0)
    (t,) = SimTransport.open_all(other, 1)
    dev = Device(t, prog1.config)
    want, got = regmap.config_hash_word(prog1.config), regmap.config_hash_word(other)
    with pytest.raises(DeviceError, match=f"core was built for config hash 0x{got:x}, the program for config "
                                          f"'tiny' \\(hash 0x{want:x}\\)"):
        dev.load(prog1)
    assert not dev.buffers


def test_handshake_refuses_another_isa_and_another_kernel(prog1):
    with pytest.raises(DeviceError, match=f"core decodes ISA version 9, the program was built for ISA version "
                                          f"{prog1.manifest.isa_version}"):
        _sim_device(prog1, isa_version=9).load(prog1)
    with pytest.raises(DeviceError, match=r"ID register \(0x[0-9a-f]+\) reads 0x00000000, not 0x44465831"):
        _sim_device(prog1, magic=0).load(prog1)


# ------------------------------------------------------------------------------------------------ faults (pynq)
def test_no_device_found(prog1, tmp_path):
    fake, opts = _pynq(prog1, tmp_path, FakePynq(0))
    with pytest.raises(DeviceError, match=r"^no Alveo device found \(pynq.Device.devices is empty\)"):
        Session(prog1, "pynq", **opts)


def test_real_pynq_here_finds_no_device(prog1, tmp_path):
    pytest.importorskip("pynq")
    x = write_fake_xclbin(tmp_path / "dfx.xclbin", prog1.config)
    with pytest.raises(DeviceError, match="no Alveo device found"):
        PynqTransport.open_all(1, xclbin=x)


def test_missing_xclbin(prog1, tmp_path, monkeypatch):
    monkeypatch.delenv("DFX_XCLBIN", raising=False)
    with pytest.raises(DeviceError, match="the pynq backend needs an xclbin: pass --xclbin or set DFX_XCLBIN"):
        Session(prog1, "pynq", pynq=FakePynq(1))
    with pytest.raises(DeviceError, match="xclbin .*nope.xclbin does not exist"):
        Session(prog1, "pynq", pynq=FakePynq(1), xclbin=tmp_path / "nope.xclbin")


def test_wrong_xclbin(prog1, tmp_path):
    fake = FakePynq(1)
    x = write_fake_xclbin(tmp_path / "vadd.xclbin", prog1.config, kernel="vadd_1")
    with pytest.raises(DeviceError, match=r"pynq device 0 \(.*\): vadd.xclbin holds no dfx_core kernel \(kernels: "
                                          r"vadd_1\)"):
        Session(prog1, "pynq", xclbin=x, pynq=fake)
    x = write_fake_xclbin(tmp_path / "other.xclbin", prog1.config, magic=0x12345678)
    with pytest.raises(DeviceError, match="ID register .* reads 0x12345678, not 0x44465831"):
        Session(prog1, "pynq", xclbin=x, pynq=fake)
    assert fake.live_buffers() == 0


def test_kernel_timeout_releases_everything(prog1, tmp_path):
    fake, opts = _pynq(prog1, tmp_path, hang=True)
    s = Session(prog1, "pynq", timeout=0.2, **opts)
    with pytest.raises(DeviceError, match=r"pynq device 0 .*: the kernel did not finish the decode stream within "
                                          r"0.2 s \(ap_done never rose\)"):
        s.feed([1])
    assert fake.live_buffers() == 0


def test_program_larger_than_its_hbm_bank(prog1, tmp_path):
    fake, opts = _pynq(prog1, tmp_path, hbm_bank_bytes=4096)
    with pytest.raises(DeviceError, match=r"device 0: each HBM channel image is 0.0\d MiB, larger than the 0.00 MiB "
                                          r"HBM bank of pynq device 0"):
        Session(prog1, "pynq", **opts)
    assert fake.live_buffers() == 0


@pytest.mark.parametrize("after", [3, 12, 40, 120])
def test_board_disappears(prog2, tmp_path, after):
    """The second board stops answering after `after` operations: one line, all buffers freed, no hang."""
    fake, opts = _pynq(prog2, tmp_path, vanish_after=after)
    with pytest.raises(DeviceError) as e:
        with Session(prog2, "pynq", timeout=2.0, **opts) as s:
            list(s.generate([1, 2, 3], 4))
    msg = str(e.value)
    assert "\n" not in msg and "is not answering" in msg and "RemovedError" in msg, msg
    assert fake.live_buffers() == 0
