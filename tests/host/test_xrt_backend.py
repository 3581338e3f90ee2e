"""The xrt transport (XRT's pyxrt + its C API for registers) on the strict fake XRT: the same host tests the sim
and pynq backends pass (logits bit-exact to the simulator, generate, handshake, faults), and the fake's
strictness: it accepts only the calls `dfx.host.xrt_api` lists from XRT's own sources."""
import ctypes
from pathlib import Path

import numpy as np
import pytest

from dfx.errors import DeviceError
from dfx.host.device import KernelError
from dfx.host.fakepynq import write_fake_xclbin
from dfx.host.fakexrt import FakeXrt
from dfx.host.image import DDR_BANK
from dfx.host.session import Session
from dfx.host.xrt_api import C_API, PYXRT
from dfx.host.xrt_backend import XrtTransport, bank_tag, bind_c_api
from dfx.program import load_program

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def prog1():
    return load_program(FIX / "tiny_1dev.dfx")


@pytest.fixture(scope="module")
def prog2():
    return load_program(FIX / "tiny_2dev.dfx")


def _xrt(prog, tmp_path, fake=None, **kw):
    xkw = {k: kw.pop(k) for k in ("kernel", "magic") if k in kw}
    fake = fake or FakeXrt(prog.n_devices, program=prog, **kw)
    x = write_fake_xclbin(tmp_path / "dfx.xclbin", prog.config, **xkw)
    return fake, dict(xclbin=x, xrt=fake.pyxrt, capi=bind_c_api(fake.capi))


@pytest.mark.parametrize("n", [1, 2])
def test_xrt_generates_what_the_sim_backend_does(n, prog1, prog2, tmp_path):
    prog = prog1 if n == 1 else prog2
    ids = [1, 2, 3, 4, 5]
    fake, opts = _xrt(prog, tmp_path)
    with Session(prog, "xrt", **opts) as s:
        got_x = s.feed(ids)
        gen_x = list(s.generate(ids, 6))
        assert s.steps[-1].max_cycles > 0
    with Session(prog, "sim") as s:
        got_s = s.feed(ids)
        gen_s = list(s.generate(ids, 6))
    np.testing.assert_array_equal(got_x.view(np.uint16), got_s.view(np.uint16))
    assert gen_x == gen_s
    assert fake.live == 0 and not fake.capi._kernels and not fake.capi._devs    # every buffer and handle released


def test_xrt_handshake_and_kernel_errors(prog1, tmp_path):
    fake, opts = _xrt(prog1, tmp_path)
    with Session(prog1, "xrt", **opts) as s:
        dev = s.backend.devices[0]
        assert dev.identify()["config_hash"] > 0
        img_entry = dev.image.entries["decode"]
        dev.write_memory(DDR_BANK, img_entry + 16 * 3, b"\xff" * 16)
        with pytest.raises(KernelError, match=r"xrt device 0 \(xilinx_u280.*\): the kernel stopped with error "
                                              r"illegal_opcode \(STATUS 0x1\) at pc 3 of the decode stream"):
            dev.start("decode", 1, 0)
            dev.wait(5.0)


def test_xrt_faults(prog1, tmp_path):
    _, opts = _xrt(prog1, tmp_path, FakeXrt(0))
    with pytest.raises(DeviceError, match=r"^no Alveo device found \(pyxrt.enumerate_devices\(\) is 0\)"):
        Session(prog1, "xrt", **opts)
    _, opts = _xrt(prog1, tmp_path, kernel="vadd_1")
    with pytest.raises(DeviceError, match=r"xrt device 0 \(.*\): dfx.xclbin holds no dfx_core kernel \(kernels: "
                                          r"vadd\)"):
        Session(prog1, "xrt", **opts)
    fake, opts = _xrt(prog1, tmp_path, vanish_after=40)
    with pytest.raises(DeviceError, match=r"the board is not answering, the session was closed"):
        with Session(prog1, "xrt", **opts) as s:
            s.feed([1, 2, 3])
    _, opts = _xrt(prog1, tmp_path, hang=True)
    with pytest.raises(DeviceError, match="timed out|did not finish|ap_done"):
        with Session(prog1, "xrt", timeout=0.2, **opts) as s:
            s.feed([1])
    with pytest.raises(DeviceError, match="the xrt backend needs an xclbin"):
        XrtTransport.open_all(1, xrt=FakeXrt(1).pyxrt, capi=FakeXrt(1).capi)


def test_bank_tags():
    assert bank_tag("HBM[3]") == "HBM3" and bank_tag("DDR[0]") == "DDR0" and bank_tag("PLRAM[0]") is None


# ------------------------------------------------------------------------------------------------ strictness
def _public(obj):
    return {n for n in dir(obj) if not n.startswith("_")}


def test_fake_pyxrt_has_only_the_listed_surface(tmp_path, prog1):
    fake, opts = _xrt(prog1, tmp_path)
    x = fake.pyxrt
    assert _public(type(x)) | {"uuid", "xclbin", "device", "bo", "xclBOSyncDirection", "xrt_info_device"} \
        >= _public(x)
    listed = {"device": x.device, "xclbin": x.xclbin, "uuid": x.uuid, "bo": x.bo}
    enums = {"normal", "cacheable", "device_only", "host_only", "p2p", "svm", "flags"}
    for cls, obj in listed.items():
        extra = _public(obj) - set(PYXRT[cls]) - (enums if cls == "bo" else set())
        assert not extra, f"the fake's pyxrt.{cls} has {extra}, which XRT's pyxrt does not list"
    assert _public(type(x)) - {"enumerate_devices"} == set()


def test_fake_pyxrt_refuses_what_pyxrt_lacks(tmp_path, prog1):
    fake, opts = _xrt(prog1, tmp_path)
    x = fake.pyxrt
    dev = x.device(0)
    xb = x.xclbin(str(opts["xclbin"]))
    dev.load_xclbin(xb)
    with pytest.raises(AttributeError):
        x.kernel                                        # noqa: B018 - not used, not faked
    with pytest.raises(AttributeError):
        x.ip                                            # noqa: B018 - pyxrt binds no xrt::ip
    with pytest.raises(TypeError):
        x.device(index=0)                               # keywords: not in the table
    bo = x.bo(dev, 64, x.bo.normal, 0)
    with pytest.raises(AttributeError):
        bo.read_register                                # noqa: B018
    with pytest.raises(TypeError):
        bo.sync(x.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE, 64)       # no (direction, size) overload
    with pytest.raises(TypeError):
        bo.sync(0, 64, 0)                               # an int is not an xclBOSyncDirection
    with pytest.raises(TypeError):
        x.bo(dev, 64, 0, 0)                             # nor a bo.flags
    bo.write(b"\x01\x02", 4)
    bo.sync(x.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE, 2, 4)
    bo.sync(x.xclBOSyncDirection.XCL_BO_SYNC_BO_FROM_DEVICE)
    assert bo.read(2, 4).dtype == np.int8 and bo.read(2, 4).tobytes() == b"\x01\x02"


def test_fake_c_api_checks_prototypes():
    fake = FakeXrt(1)
    with pytest.raises(TypeError, match="argtypes/restype not declared"):
        fake.capi.xrtDeviceOpen(0)                      # ctypes would pass untyped arguments: refused
    capi = bind_c_api(fake.capi)
    assert capi.xrtDeviceOpen(0)
    with pytest.raises(AttributeError):
        capi.xrtKernelRun                               # noqa: B018 - not in the table, not faked
    with pytest.raises(TypeError):
        capi.xrtKernelWriteRegister(1, 2)               # arity
    assert set(C_API) == {n for n in vars(capi) if n.startswith("xrt")}
    assert capi.xrtKernelReadRegister(123, 0, ctypes.byref(ctypes.c_uint32())) != 0     # no such kernel handle


def test_doctor_names_the_board_transport(monkeypatch):
    import sys

    from click.testing import CliRunner

    from dfx.cli import main
    monkeypatch.setitem(sys.modules, "pyxrt", FakeXrt(4).pyxrt)      # a board host's XRT binding seeing 4 cards
    r = CliRunner().invoke(main, ["doctor"])
    assert r.exit_code == 0
    assert "pyxrt, 4 device(s)" in r.stdout and "board transport: xrt" in r.stdout
    monkeypatch.setitem(sys.modules, "pyxrt", FakeXrt(0).pyxrt)
    r = CliRunner().invoke(main, ["doctor"])
    assert "board transport: none" in r.stdout or "board transport: pynq" in r.stdout


# ------------------------------------------------------------------------------------------------ record/replay
def test_an_xrt_session_records_and_replays(prog2, tmp_path):
    import json

    from dfx.host.recording import ReplayMismatch
    rec = tmp_path / "board_session.json"
    fake, opts = _xrt(prog2, tmp_path)
    with Session(prog2, "xrt", record=rec, **opts) as s:
        want = list(s.generate([1, 2, 3], 5))
    doc = json.loads(rec.read_text())
    assert doc["backend"] == "xrt" and {c["op"] for c in doc["calls"]} >= {"read32", "write32", "alloc", "upload",
                                                                           "download", "free"}
    with Session(prog2, "xrt", replay_from=rec) as s:
        assert list(s.generate([1, 2, 3], 5)) == want
    with pytest.raises(ReplayMismatch, match=r"call \d+: recorded .*, the host called"):
        with Session(prog2, "xrt", replay_from=rec) as s:
            list(s.generate([1, 2, 4], 5))                   # another prompt: another TOKEN write
