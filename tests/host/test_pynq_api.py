"""The pynq fakes follow PYNQ 3.0.1's real signatures (`dfx.host.pynq_api`), and that table matches the installed
pynq where the `board` extra is installed (README's test command installs it)."""
import inspect
import warnings

import pytest

from dfx.config import load_config
from dfx.host.fakepynq import FakePynq, write_fake_xclbin
from dfx.host.pynq_api import PYNQ, PYNQ_VERSION
from dfx.host.recording import Recorder


def _surface(pynq_like, xclbin) -> dict:
    """The methods the pynq transport calls, taken from live objects of `pynq_like` (as the transport gets them)."""
    dev = pynq_like.Device.devices[0]
    ol = pynq_like.Overlay(str(xclbin), device=dev)
    ip = getattr(ol, next(iter(ol.ip_dict)))
    buf = pynq_like.allocate((64,), "u1", target=getattr(ol, "HBM0"))
    return {"Overlay": pynq_like.Overlay, "Overlay.free": ol.free, "allocate": pynq_like.allocate,
            "DefaultIP.read": ip.read, "DefaultIP.write": ip.write, "PynqBuffer.sync_to_device": buf.sync_to_device,
            "PynqBuffer.sync_from_device": buf.sync_from_device, "PynqBuffer.freebuffer": buf.freebuffer}


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    x = write_fake_xclbin(tmp_path_factory.mktemp("x") / "dfx.xclbin", load_config("tiny"))
    return {"fake": _surface(FakePynq(1), x), "recorder": _surface(Recorder(FakePynq(1)), x)}


def _params(fn) -> tuple[str, ...]:
    out = []
    for p in inspect.signature(fn).parameters.values():                    # bound: no self
        if p.kind is p.VAR_KEYWORD:
            out.append("**")
        else:
            out.append(p.name + ("=" if p.default is not p.empty else ""))
    return tuple(out)


@pytest.mark.parametrize("which", ["fake", "recorder"])
def test_fakes_take_exactly_pynqs_parameters(which, fakes):
    for name, fn in fakes[which].items():
        assert _params(fn) == PYNQ[name], f"{which} {name}{_params(fn)} differs from pynq {PYNQ_VERSION}'s"
    assert set(fakes[which]) == set(PYNQ)


def test_fake_refuses_a_call_pynq_lacks():
    fake = FakePynq(1)
    with pytest.raises(TypeError):
        fake.Overlay(path="x.xclbin")                   # pynq's parameter is bitfile_name
    with pytest.raises(AttributeError):
        fake.allocate_buffer                            # noqa: B018


def test_the_table_is_pynq_3_0_1s():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pynq = pytest.importorskip("pynq")
    if pynq.__version__ != PYNQ_VERSION:
        pytest.skip(f"pynq {pynq.__version__} installed, the table is {PYNQ_VERSION}'s")
    unbound = {"Overlay": pynq.Overlay.__init__, "Overlay.free": pynq.Overlay.free,
               "DefaultIP.read": pynq.overlay.DefaultIP.read, "DefaultIP.write": pynq.overlay.DefaultIP.write,
               "PynqBuffer.sync_to_device": pynq.buffer.PynqBuffer.sync_to_device,
               "PynqBuffer.sync_from_device": pynq.buffer.PynqBuffer.sync_from_device,
               "PynqBuffer.freebuffer": pynq.buffer.PynqBuffer.freebuffer}
    for name, fn in unbound.items():
        assert _params(fn)[1:] == PYNQ[name], name                        # [1:]: self
    assert _params(pynq.allocate) == PYNQ["allocate"]
    assert isinstance(pynq.Device.devices, list)
