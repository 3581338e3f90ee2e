"""The `pynq` transport: Alveo U280 boards through PYNQ 3.0.1 (the last PYNQ with Alveo support) on XRT.

The whole surface of PYNQ this uses (the fakes in `host/fakepynq.py` and `host/recording.py` implement exactly
this, and nothing else):

    pynq.Device.devices                          the cards XRT sees
    ol = pynq.Overlay(xclbin, device=dev)        program a card with the xclbin of `dfx build`
    ol.ip_dict, ol.mem_dict                      kernel instances; memory banks ("HBM[3]": {"size", "used"})
    ip = getattr(ol, "dfx_core_1")               the kernel's AXI4-Lite slave: ip.read(off), ip.write(off, v)
    mem = getattr(ol, "HBM3")                    a bank as an allocation target
    buf = pynq.allocate((n,), "u1", target=mem)  buf.device_address -> the kernel's pointer argument
    v = buf[a:b]; v[:] = data; v.sync_to_device()       host -> card
    v = buf[a:b]; v.sync_from_device(); v.tobytes()     card -> host
    buf.freebuffer(); ol.free()

`pynq` is imported only when this backend is opened. Every PYNQ exception becomes a one-line DeviceError
naming the device and the operation; a card that stops answering ends the session with its buffers freed.
"""
from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import numpy as np

from dfx.errors import DeviceError

from .recording import Recorder, ReplayMismatch, bank_key
from .transport import Buffer, Transport, board_xclbin

KERNEL = "dfx_core"


def import_pynq():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pynq  # lazy: PYNQ is the optional `board` extra, needed only where Alveo cards are
    except ImportError:
        raise DeviceError("the pynq backend needs PYNQ: pip install 'dfx[board]' (pynq==3.0.1) on the host "
                          "with the Alveo cards and XRT") from None
    return pynq


class PynqTransport(Transport):
    backend = "pynq"

    def __init__(self, pynq, dev, index: int, xclbin: Path, kernel: str | None = None):
        self.pynq, self.index = pynq, index
        self.label = f"pynq device {index} ({getattr(dev, 'name', '?')})"
        self.gone = False
        self.ol = self._guard(f"loading {xclbin.name}", lambda: pynq.Overlay(str(xclbin), device=dev))
        ips = list(self._guard("reading ip_dict", lambda: self.ol.ip_dict))
        name = kernel or next((k for k in ips if k == KERNEL or k.startswith(KERNEL + "_")), None)
        if name is None or name not in ips:
            self._release()
            raise DeviceError(f"{self.label}: {xclbin.name} holds no {kernel or KERNEL} kernel (kernels: "
                              f"{', '.join(ips) or 'none'}); load the xclbin of `dfx build --board u280`")
        self.ip = self._guard("opening the kernel", lambda: getattr(self.ol, name))
        mem = self._guard("reading mem_dict", lambda: self.ol.mem_dict)
        self.banks = {bank_key(k): v for k, v in mem.items() if v.get("used")}

    @classmethod
    def open_all(cls, n: int, xclbin: str | os.PathLike | None = None, kernel: str | None = None, pynq=None,
                 record: str | os.PathLike | None = None) -> list["PynqTransport"]:
        xclbin = board_xclbin("pynq", xclbin)
        mod = pynq if pynq is not None else import_pynq()
        record = record or os.environ.get("DFX_PYNQ_RECORD")
        if record:
            mod = Recorder(mod, record)
        try:
            devs = list(mod.Device.devices)
        except Exception as e:   # noqa: BLE001 - XRT missing or broken reads as no device
            raise DeviceError(f"no Alveo device found ({type(e).__name__}: {e}); check XRT with `xbutil "
                              "examine`") from None
        if not devs:
            raise DeviceError("no Alveo device found (pynq.Device.devices is empty); check XRT with `xbutil "
                              "examine`, or run with --backend sim")
        if len(devs) < n:
            raise DeviceError(f"the program needs {n} devices; pynq found {len(devs)}")
        out = []
        try:
            for i in range(n):
                out.append(cls(mod, devs[i], i, xclbin, kernel))
        except BaseException:
            for t in out:
                t.close()
            raise
        return out

    # ---------------------------------------------------------------- plumbing
    def _guard(self, what: str, fn):
        if self.gone:
            raise DeviceError(f"{self.label}: the board stopped answering earlier; {what} was not attempted")
        try:
            return fn()
        except (DeviceError, ReplayMismatch):       # a replay mismatch is a test failure, not a board fault
            raise
        except Exception as e:   # noqa: BLE001 - any PYNQ/XRT failure becomes one line
            self.gone = True
            raise DeviceError(f"{self.label}: {what} failed ({type(e).__name__}: {e}); the board is not "
                              "answering, the session was closed") from None

    def read32(self, offset):
        return int(self._guard(f"register read at 0x{offset:03x}", lambda: self.ip.read(offset)))

    def write32(self, offset, value):
        self._guard(f"register write at 0x{offset:03x}", lambda: self.ip.write(offset, value))

    def bank_bytes(self, bank):
        if bank not in self.banks:
            raise DeviceError(f"{self.label}: the xclbin connects nothing to memory bank {bank} (used banks: "
                              f"{', '.join(self.banks) or 'none'}); build it with `dfx build`")
        return int(self.banks[bank]["size"])

    def alloc(self, bank, nbytes):
        target = self._guard(f"opening bank {bank}", lambda: getattr(self.ol, bank))
        b = self._guard(f"allocating {nbytes} bytes in {bank}",
                        lambda: self.pynq.allocate((nbytes,), "u1", target=target))
        return Buffer(bank, nbytes, int(b.device_address), b)

    def upload(self, buf, offset, data):
        if offset < 0 or offset + len(data) > buf.nbytes:
            raise DeviceError(f"{self.label}: write of {len(data)} bytes at {offset} is outside {buf}")

        def go():
            v = buf.handle[offset:offset + len(data)]
            v[:] = np.frombuffer(data, np.uint8)
            v.sync_to_device()
        self._guard(f"copying {len(data)} bytes to {buf.bank}", go)

    def download(self, buf, offset, nbytes):
        if offset < 0 or offset + nbytes > buf.nbytes:
            raise DeviceError(f"{self.label}: read of {nbytes} bytes at {offset} is outside {buf}")

        def go():
            v = buf.handle[offset:offset + nbytes]
            v.sync_from_device()
            return v.tobytes()
        return self._guard(f"copying {nbytes} bytes from {buf.bank}", go)

    def free(self, buf):
        if buf.freed:
            return
        buf.freed = True
        try:
            buf.handle.freebuffer()
        except Exception:   # noqa: BLE001 - freeing on a vanished card: the handle is dropped anyway
            pass

    def _release(self):
        try:
            self.ol.free()
        except Exception:   # noqa: BLE001
            pass

    def close(self):
        self._release()
        if isinstance(self.pynq, Recorder):
            self.pynq.save()

    def pause(self, waited):
        time.sleep(0 if waited < 1e-3 else min(1e-3, waited / 10))
