"""The `xrt` transport: Alveo U280 cards through XRT's own Python binding, pyxrt (docs/board_flow.md).

What it calls (`host/xrt_api.py` lists each signature with its source; the strict fake `host/fakexrt.py`
implements exactly that):

    pyxrt.enumerate_devices()                              how many cards XRT sees
    dev = pyxrt.device(i); xb = pyxrt.xclbin(path)         a card; the xclbin of `dfx build --board u280`
    xb.get_kernels(), xb.get_mems()                        the kernel's name; memory banks (tag, size, index)
    uuid = dev.load_xclbin(xb)                             program the card
    bo = pyxrt.bo(dev, n, pyxrt.bo.normal, mem.get_index())  a buffer in a bank; bo.address() -> pointer arg
    bo.write(data, off); bo.sync(TO_DEVICE, n, off)        host -> card
    bo.sync(FROM_DEVICE, n, off); bo.read(n, off)          card -> host

Registers: pyxrt has no register access (see `host/xrt_api.py`), so the kernel's AXI4-Lite block is read and
written through XRT's C API in libxrt_coreutil.so (ctypes): xrtDeviceOpen, xrtDeviceGetXclbinUUID,
xrtDeviceLoadXclbinUUID, xrtPLKernelOpenExclusive, xrtKernelRead/WriteRegister. The host then drives the core
by `dfx.regmap`, exactly as on every other backend (ap_ctrl_hs: the kernel is started by writing CTRL).

pyxrt is imported and libxrt_coreutil loaded only when this backend is opened. Every XRT failure becomes a
one-line DeviceError naming the card and the operation; a card that stops answering ends the session.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import time
from pathlib import Path

from dfx.errors import DeviceError

from .transport import Buffer, Transport, board_xclbin
from .xrt_api import C_API, C_LIBRARY, XUID

KERNEL = "dfx_core"


def import_pyxrt():
    """XRT's Python binding; it ships with XRT (source /opt/xilinx/xrt/setup.sh puts it on PYTHONPATH)."""
    try:
        import pyxrt  # lazy: XRT's binding exists only on a host with XRT installed
    except ImportError:
        raise DeviceError("the xrt backend needs XRT's Python binding pyxrt: install XRT and run `source "
                          "/opt/xilinx/xrt/setup.sh` on the host with the Alveo cards") from None
    return pyxrt


def load_c_api():
    """libxrt_coreutil with the argument and result types of `host/xrt_api.C_API` declared."""
    where = [Path(os.environ["XILINX_XRT"]) / "lib" / C_LIBRARY] if os.environ.get("XILINX_XRT") else []
    found = ctypes.util.find_library("xrt_coreutil")
    for path in [*map(str, where), *([found] if found else []), C_LIBRARY]:
        try:
            lib = ctypes.CDLL(path)
            break
        except OSError:
            continue
    else:
        raise DeviceError(f"the xrt backend needs XRT's {C_LIBRARY} for register access; install XRT and run "
                          "`source /opt/xilinx/xrt/setup.sh`")
    return bind_c_api(lib)


def bind_c_api(lib):
    for name, (res, args) in C_API.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, list(args)
    return lib


def bank_tag(tag: str) -> str | None:
    """XRT's memory tag ("HBM[3]", "DDR[0]") as the host's bank name ("HBM3", "DDR0"); None for others."""
    m = re.fullmatch(r"(HBM|DDR)\[(\d+)\]", tag)
    return f"{m[1]}{m[2]}" if m else None


class XrtTransport(Transport):
    backend = "xrt"

    def __init__(self, xrt, capi, index: int, xclbin: Path, kernel: str | None = None):
        self.xrt, self.capi, self.index = xrt, capi, index
        self.label = f"xrt device {index}"
        self.gone = False
        self.dhdl = self.khdl = None
        self.dev = self._guard("opening the card", lambda: xrt.device(index))
        info = xrt.xrt_info_device
        self.label = f"xrt device {index} ({self._guard('reading its name', lambda: self.dev.get_info(info.name))})"
        self.xb = self._guard(f"reading {xclbin.name}", lambda: xrt.xclbin(str(xclbin)))
        names = [k.get_name() for k in self._guard("listing its kernels", self.xb.get_kernels)]
        name = kernel or next((k for k in names if k == KERNEL or k.startswith(KERNEL + "_")), None)
        if name is None or name not in names:
            raise DeviceError(f"{self.label}: {xclbin.name} holds no {kernel or KERNEL} kernel (kernels: "
                              f"{', '.join(names) or 'none'}); load the xclbin of `dfx build --board u280`")
        self.uuid = self._guard(f"loading {xclbin.name}", lambda: self.dev.load_xclbin(self.xb))
        self.banks = {}
        for m in self._guard("listing its memories", self.xb.get_mems):
            key = bank_tag(m.get_tag())
            if key and m.get_used():
                self.banks[key] = (int(m.get_index()), int(m.get_size_kb()) * 1024)
        self._open_registers(name)

    def _open_registers(self, name: str) -> None:
        c = self.capi
        self.dhdl = self._guard("opening its register interface (xrtDeviceOpen)", lambda: c.xrtDeviceOpen(self.index))
        if not self.dhdl:
            raise self._fail("xrtDeviceOpen returned no handle")
        uid = XUID()
        self._check("xrtDeviceGetXclbinUUID", c.xrtDeviceGetXclbinUUID(self.dhdl, uid))
        self._check("xrtDeviceLoadXclbinUUID", c.xrtDeviceLoadXclbinUUID(self.dhdl, uid))
        self.khdl = c.xrtPLKernelOpenExclusive(self.dhdl, uid, name.encode())
        if not self.khdl:
            raise self._fail(f"opening kernel {name} for exclusive register access failed (another process may "
                             "hold it: check `xbutil examine -d <bdf> -r dynamic-regions`)")

    @classmethod
    def open_all(cls, n: int, xclbin: str | os.PathLike | None = None, kernel: str | None = None, xrt=None,
                 capi=None) -> list["XrtTransport"]:
        xclbin = board_xclbin("xrt", xclbin)
        xrt = xrt if xrt is not None else import_pyxrt()
        capi = capi if capi is not None else load_c_api()
        try:
            found = int(xrt.enumerate_devices())
        except Exception as e:   # noqa: BLE001 - XRT missing or broken reads as no device
            raise DeviceError(f"no Alveo device found ({type(e).__name__}: {e}); check XRT with `xbutil "
                              "examine`") from None
        if found == 0:
            raise DeviceError("no Alveo device found (pyxrt.enumerate_devices() is 0); check XRT with `xbutil "
                              "examine`, or run with --backend sim")
        if found < n:
            raise DeviceError(f"the program needs {n} devices; XRT found {found}")
        out = []
        try:
            for i in range(n):
                out.append(cls(xrt, capi, i, xclbin, kernel))
        except BaseException:
            for t in out:
                t.close()
            raise
        return out

    # ---------------------------------------------------------------- plumbing
    def _fail(self, what: str) -> DeviceError:
        self.close()
        return DeviceError(f"{self.label}: {what}")

    def _check(self, fn: str, rc: int) -> None:
        if rc != 0:
            self.gone = True
            raise DeviceError(f"{self.label}: {fn} failed (error {rc}); the board is not answering, the session "
                              "was closed")

    def _guard(self, what: str, fn):
        if self.gone:
            raise DeviceError(f"{self.label}: the board stopped answering earlier; {what} was not attempted")
        try:
            return fn()
        except DeviceError:
            raise
        except Exception as e:   # noqa: BLE001 - any XRT failure becomes one line
            self.gone = True
            raise DeviceError(f"{self.label}: {what} failed ({type(e).__name__}: {e}); the board is not "
                              "answering, the session was closed") from None

    def read32(self, offset):
        if self.gone:
            raise DeviceError(f"{self.label}: the board stopped answering earlier; no register read")
        v = ctypes.c_uint32()
        self._check(f"xrtKernelReadRegister at 0x{offset:03x}",
                    self.capi.xrtKernelReadRegister(self.khdl, offset, ctypes.byref(v)))
        return int(v.value)

    def write32(self, offset, value):
        if self.gone:
            raise DeviceError(f"{self.label}: the board stopped answering earlier; no register write")
        self._check(f"xrtKernelWriteRegister at 0x{offset:03x}",
                    self.capi.xrtKernelWriteRegister(self.khdl, offset, value & 0xFFFF_FFFF))

    def bank_bytes(self, bank):
        if bank not in self.banks:
            raise DeviceError(f"{self.label}: the xclbin connects nothing to memory bank {bank} (used banks: "
                              f"{', '.join(self.banks) or 'none'}); build it with `dfx build`")
        return self.banks[bank][1]

    def alloc(self, bank, nbytes):
        group = self.banks[bank][0] if bank in self.banks else self.bank_bytes(bank)
        bo = self._guard(f"allocating {nbytes} bytes in {bank}",
                         lambda: self.xrt.bo(self.dev, nbytes, self.xrt.bo.normal, group))
        return Buffer(bank, nbytes, int(self._guard("reading a buffer address", bo.address)), bo)

    def upload(self, buf, offset, data):
        if offset < 0 or offset + len(data) > buf.nbytes:
            raise DeviceError(f"{self.label}: write of {len(data)} bytes at {offset} is outside {buf}")
        to_dev = self.xrt.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE

        def go():
            buf.handle.write(bytes(data), offset)
            buf.handle.sync(to_dev, len(data), offset)
        self._guard(f"copying {len(data)} bytes to {buf.bank}", go)

    def download(self, buf, offset, nbytes):
        if offset < 0 or offset + nbytes > buf.nbytes:
            raise DeviceError(f"{self.label}: read of {nbytes} bytes at {offset} is outside {buf}")
        from_dev = self.xrt.xclBOSyncDirection.XCL_BO_SYNC_BO_FROM_DEVICE

        def go():
            buf.handle.sync(from_dev, nbytes, offset)
            return buf.handle.read(nbytes, offset).tobytes()
        return self._guard(f"copying {nbytes} bytes from {buf.bank}", go)

    def free(self, buf):
        buf.freed = True
        buf.handle = None                 # an xrt.bo is released when its last reference goes

    def close(self):
        for attr, fn in (("khdl", "xrtKernelClose"), ("dhdl", "xrtDeviceClose")):
            h = getattr(self, attr, None)
            if h:
                setattr(self, attr, None)
                try:
                    getattr(self.capi, fn)(h)
                except Exception:   # noqa: BLE001 - closing on a vanished card
                    pass

    def pause(self, waited):
        time.sleep(0 if waited < 1e-3 else min(1e-3, waited / 10))
