"""A strict stand-in for XRT on a host with Alveo cards: the `pyxrt` module and the C API of libxrt_coreutil,
whose cards are emulated boards (`host/emu.py`: the functional simulator behind the register map).

It implements the calls `host/xrt_api.py` lists, with their overloads, and nothing else: any other method is an
AttributeError, any other argument count, a keyword argument or an int where pyxrt wants an enum member is a
TypeError (as pybind11 raises), and a C function called before its `argtypes`/`restype` were declared as the
header declares them is a TypeError. No board is reachable from CI; this is what the xrt transport's tests run on.

    fake = FakeXrt(2)                                    # two cards
    write_fake_xclbin(path, cfg)                         # what `pyxrt.xclbin(path)` accepts here
    XrtTransport.open_all(2, xclbin=path, xrt=fake.pyxrt, capi=fake.capi)

Faults: `FakeXrt(0)` (no card), `hang=True` (the kernel never raises ap_done), `vanish_after=N` (the card stops
answering after N operations: pyxrt raises RuntimeError, the C API returns -ENODEV), an xclbin of another design
(`write_fake_xclbin(kernel=, magic=)`), `hbm_bank_bytes=` (small banks).
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import weakref
from enum import IntEnum
from pathlib import Path

import numpy as np

from dfx.config import AccelConfig

from .emu import DDR_BANK_BYTES, HBM_BANK_BYTES, EmuCluster
from .fakepynq import FORMAT
from .image import DDR_BANK, device_image, hbm_bank
from .xrt_api import C_API, PYXRT, PYXRT_ENUMS

ENODEV = 19
SyncDirection = IntEnum("xclBOSyncDirection", list(PYXRT_ENUMS["xclBOSyncDirection"]), start=0)
InfoDevice = IntEnum("xrt_info_device", list(PYXRT_ENUMS["xrt_info_device"]), start=0)
BoFlags = IntEnum("flags", list(PYXRT_ENUMS["bo.flags"]), start=0)


def _overload(cls: str, method: str, args: tuple, kwargs: dict) -> tuple[str, ...]:
    """The overload of `cls.method` (xrt_api.PYXRT) that `args` select, or TypeError as pybind11 gives."""
    if kwargs:
        raise TypeError(f"{cls}.{method}(): the fake takes positional arguments only (got {', '.join(kwargs)})")
    for params in PYXRT[cls][method]:
        if len(params) == len(args):
            return params
    raise TypeError(f"{cls}.{method}(): incompatible function arguments ({len(args)} given; accepted: "
                    + " | ".join("(" + ", ".join(p) + ")" for p in PYXRT[cls][method]) + ")")


def _need(value, kind, what: str):
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise TypeError(f"{what}: incompatible argument {value!r}")
    return value


class _Obj:
    """Base of the fake pyxrt classes: attribute access limited to xrt_api.PYXRT's methods."""
    _cls = ""

    def __getattr__(self, name):
        raise AttributeError(f"'pyxrt.{self._cls}' object has no attribute {name!r}")


class FakeXrt:
    """`n` emulated Alveo cards behind a fake `pyxrt` module (`.pyxrt`) and a fake libxrt_coreutil (`.capi`)."""

    def __init__(self, n: int = 1, *, hang: bool = False, vanish_after: int | None = None,
                 hbm_bank_bytes: int = HBM_BANK_BYTES, program=None):
        self.n, self.hang, self.vanish_after, self.hbm = n, hang, vanish_after, hbm_bank_bytes
        self.program = program
        self.ops = 0
        self.cluster = None
        self.desc = None
        self.loaded: dict[int, tuple[bytes, dict]] = {}     # card -> (uuid, xclbin description)
        self.boards: dict[int, object] = {}
        self.live = 0                                      # buffer objects not yet released
        self.open_kernels: dict[int, tuple[int, object]] = {}
        self._handles = 0
        self.pyxrt = _make_module(self)
        self.capi = FakeCApi(self)

    # ---------------------------------------------------------------- card state
    def tick(self):
        self.ops += 1
        return self.vanish_after is None or self.ops <= self.vanish_after

    def live_tick(self):
        if not self.tick():
            raise RuntimeError("xclDeviceHandle: device not found (the card was removed or reset)")

    def program_card(self, index: int, xb: "_XclbinBase") -> bytes:
        desc = xb.desc
        if self.cluster is None or self.desc != desc:
            self.desc = desc
            cfg = AccelConfig.from_dict(desc["config"])
            self.cluster = EmuCluster(cfg, self.n, hang=self.hang, hbm_bank_bytes=self.hbm, magic=desc["magic"],
                                      isa_version=desc["isa_version"])
        board = self.cluster.boards[index]
        self.boards[index] = board
        if self.program is not None:
            board.attach(self.program, device_image(self.program, index).entries)
        self.loaded[index] = (xb.uid, desc)
        return xb.uid

    def handle(self) -> int:
        self._handles += 1
        return 0x1000 * self._handles


class _XclbinBase(_Obj):
    _cls = "xclbin"

    def __init__(self, *args, **kw):
        params = _overload("xclbin", "__init__", args, kw)
        if params != ("filename",):
            raise RuntimeError("the fake reads xclbins from files only")
        path = Path(_need(args[0], str, "xclbin(filename)"))
        try:
            raw = path.read_bytes()
            desc = json.loads(raw)
        except (OSError, ValueError) as e:
            raise RuntimeError(f"xclbin: failed to load {path} ({e})") from None
        if not isinstance(desc, dict) or desc.get("format") != FORMAT:
            raise RuntimeError(f"xclbin: {path} is not a valid xclbin (bad magic)")
        self.desc, self.uid = desc, hashlib.sha256(raw).digest()[:16]
        self.cfg = AccelConfig.from_dict(desc["config"])

    def get_kernels(self, *a, **kw):
        _overload("xclbin", "get_kernels", a, kw)
        return [_Named("xclbinkernel", self.desc["kernel"].rsplit("_", 1)[0], 6 + self.cfg.hbm_channels)]

    def get_xsa_name(self, *a, **kw):
        _overload("xclbin", "get_xsa_name", a, kw)
        return "xilinx_u280_gen3x16_xdma_1_202211_1"

    def get_uuid(self, *a, **kw):
        _overload("xclbin", "get_uuid", a, kw)
        return self._fake.pyxrt.uuid(self.uid.hex())

    def get_mems(self, *a, **kw):
        _overload("xclbin", "get_mems", a, kw)
        ch = self.cfg.hbm_channels
        mems = [_Mem(f"HBM[{c}]", c * HBM_BANK_BYTES, self._fake.hbm // 1024, True, c) for c in range(ch)]
        ddr_kb = DDR_BANK_BYTES // 1024
        return mems + [_Mem("DDR[0]", 0x40_0000_0000, ddr_kb, True, ch),
                       _Mem("DDR[1]", 0x50_0000_0000, ddr_kb, False, ch + 1)]


class _Named(_Obj):
    def __init__(self, cls, name, nargs):
        self._cls, self._name, self._nargs = cls, name, nargs

    def get_name(self, *a, **kw):
        _overload(self._cls, "get_name", a, kw)
        return self._name

    def get_num_args(self, *a, **kw):
        _overload(self._cls, "get_num_args", a, kw)
        return self._nargs


class _Mem(_Obj):
    _cls = "xclbinmem"

    def __init__(self, tag, base, size_kb, used, index):
        self._v = {"get_tag": tag, "get_base_address": base, "get_size_kb": size_kb, "get_used": used,
                   "get_index": index}

    def __getattr__(self, name):
        if name in self._v:
            def get(*a, **kw):
                _overload("xclbinmem", name, a, kw)
                return self._v[name]
            return get
        return super().__getattr__(name)


class _UuidBase(_Obj):
    _cls = "uuid"

    def __init__(self, *args, **kw):
        _overload("uuid", "__init__", args, kw)
        self._s = _need(args[0], str, "uuid(uuid_str)")

    def to_string(self, *a, **kw):
        _overload("uuid", "to_string", a, kw)
        return self._s


class _DeviceBase(_Obj):
    _cls = "device"

    def __init__(self, *args, **kw):
        params = _overload("device", "__init__", args, kw)
        f = self._fake
        if params != ("index",):
            raise RuntimeError("the fake opens cards by index only")
        self.index = _need(args[0], int, "device(index)")
        f.live_tick()
        if not 0 <= self.index < f.n:
            raise RuntimeError(f"Could not open device with index '{self.index}'")

    def load_xclbin(self, *args, **kw):
        _overload("device", "load_xclbin", args, kw)
        self._fake.live_tick()
        xb = args[0] if isinstance(args[0], _XclbinBase) else self._fake.pyxrt.xclbin(_need(args[0], str, "path"))
        return self._fake.pyxrt.uuid(self._fake.program_card(self.index, xb).hex())

    def get_xclbin_uuid(self, *a, **kw):
        _overload("device", "get_xclbin_uuid", a, kw)
        uid = self._fake.loaded.get(self.index, (bytes(16), None))[0]
        return self._fake.pyxrt.uuid(uid.hex())

    def get_info(self, *args, **kw):
        _overload("device", "get_info", args, kw)
        key = _need(args[0], InfoDevice, "get_info(key)")
        return {"name": "xilinx_u280_gen3x16_xdma_base_1", "bdf": f"0000:{0x3b + self.index:02x}:00.1"}.get(
            key.name, "NA")


class _BoBase(_Obj):
    _cls = "bo"

    def __init__(self, *args, **kw):
        params = _overload("bo", "__init__", args, kw)
        f = self._fake
        if params != ("device", "size", "flags", "group"):
            raise RuntimeError("the fake creates buffers on a device (no hw_context, no sub-buffers)")
        dev, size, flags, group = args
        _need(dev, _DeviceBase, "bo(device)"), _need(size, int, "bo(size)"), _need(flags, BoFlags, "bo(flags)")
        _need(group, int, "bo(group)")
        f.live_tick()
        board = f.boards.get(dev.index)
        if board is None:
            raise RuntimeError("bo: no xclbin loaded on the device (load_xclbin first)")
        ch = board.cfg.hbm_channels
        bank = hbm_bank(group) if group < ch else DDR_BANK if group == ch else None
        if bank is None:
            raise RuntimeError(f"bo: memory group {group} is not used by the loaded xclbin")
        self._board, self._alloc = board, board.alloc(bank, size)
        self._host = np.zeros(size, np.uint8)
        f.live += 1
        weakref.finalize(self, _release, f, board, self._alloc)

    def _range(self, size, offset, what):
        _need(size, int, what), _need(offset, int, what)
        if offset < 0 or size < 0 or offset + size > self._host.size:
            raise RuntimeError(f"{what}: size {size} at offset {offset} is outside the {self._host.size}-byte bo")

    def write(self, *args, **kw):
        _overload("bo", "write", args, kw)
        data, seek = np.frombuffer(memoryview(args[0]).cast("B"), np.uint8), args[1]
        self._range(data.size, seek, "bo.write")
        self._host[seek:seek + data.size] = data

    def read(self, *args, **kw):
        _overload("bo", "read", args, kw)
        size, skip = args
        self._range(size, skip, "bo.read")
        return self._host[skip:skip + size].view(np.int8).copy()

    def sync(self, *args, **kw):
        params = _overload("bo", "sync", args, kw)
        d = _need(args[0], SyncDirection, "bo.sync(direction)")
        size, off = (args[1], args[2]) if len(params) == 3 else (self._host.size, 0)
        self._range(size, off, "bo.sync")
        self._fake.live_tick()
        if d.name == "XCL_BO_SYNC_BO_TO_DEVICE":
            self._board.write_mem(self._alloc, off, self._host[off:off + size].tobytes())
        elif d.name == "XCL_BO_SYNC_BO_FROM_DEVICE":
            self._host[off:off + size] = np.frombuffer(self._board.read_mem(self._alloc, off, size), np.uint8)
        else:
            raise RuntimeError(f"bo.sync: {d.name} needs an AIE device")

    def size(self, *a, **kw):
        _overload("bo", "size", a, kw)
        return int(self._host.size)

    def address(self, *a, **kw):
        _overload("bo", "address", a, kw)
        return int(self._alloc.address)


def _release(fake, board, alloc):
    fake.live -= 1
    board.free(alloc)


class _Module:
    """The fake `pyxrt` module: only the names xrt_api lists."""

    def __init__(self, fake):
        self._fake = fake

    def enumerate_devices(self, *a, **kw):
        _overload("", "enumerate_devices", a, kw)
        return self._fake.n

    def __getattr__(self, name):
        raise AttributeError(f"module 'pyxrt' has no attribute {name!r}")


def _make_module(fake) -> _Module:
    m = _Module(fake)
    ns = {"_fake": fake}
    m.uuid = type("uuid", (_UuidBase,), ns)
    m.xclbin = type("xclbin", (_XclbinBase,), ns)
    m.device = type("device", (_DeviceBase,), ns)
    m.bo = type("bo", (_BoBase,), ns)
    for name in BoFlags.__members__:
        setattr(m.bo, name, BoFlags[name])
    m.bo.flags = BoFlags
    m.xclBOSyncDirection = SyncDirection
    m.xrt_info_device = InfoDevice
    return m


class _CFunction:
    """One C function of the fake libxrt_coreutil: callable once its ctypes prototype matches the header."""

    def __init__(self, name, impl):
        self.name, self._impl = name, impl
        self.argtypes = self.restype = None

    def __call__(self, *args):
        res, argtypes = C_API[self.name]
        if self.restype is not res or list(self.argtypes or ()) != list(argtypes):
            raise TypeError(f"{self.name}: argtypes/restype not declared as xrt_api.C_API gives them")
        if len(args) != len(argtypes):
            raise TypeError(f"this function takes {len(argtypes)} arguments ({len(args)} given)")
        for t, a in zip(argtypes, args):
            t.from_param(a)                     # what ctypes itself checks; raises ctypes.ArgumentError-like
        return self._impl(*args)


class FakeCApi:
    """The fake libxrt_coreutil: the functions of xrt_api.C_API, nothing else."""

    def __init__(self, fake: FakeXrt):
        self._fake = fake
        self._devs: dict[int, int] = {}         # device handle -> card
        self._kernels: dict[int, int] = {}      # kernel handle -> card
        for name in C_API:
            object.__setattr__(self, name, _CFunction(name, getattr(self, "_" + name)))

    def __getattr__(self, name):
        raise AttributeError(f"libxrt_coreutil has no symbol {name!r}")

    def _xrtDeviceOpen(self, index):
        f = self._fake
        if not f.tick() or not 0 <= index < f.n:
            return None
        h = f.handle()
        self._devs[h] = index
        return h

    def _xrtDeviceClose(self, h):
        return 0 if self._devs.pop(h, None) is not None else -22

    def _uuid_of(self, h):
        return self._fake.loaded.get(self._devs.get(h, -1), (None,))[0]

    def _xrtDeviceGetXclbinUUID(self, h, out):
        uid = self._uuid_of(h)
        if uid is None or not self._fake.tick():
            return -ENODEV
        ctypes.memmove(out, uid, 16)
        return 0

    def _xrtDeviceLoadXclbinUUID(self, h, uid):
        want = self._uuid_of(h)
        return 0 if want is not None and bytes(uid[:16]) == want and self._fake.tick() else -ENODEV

    def _xrtPLKernelOpenExclusive(self, h, uid, name):
        card = self._devs.get(h)
        loaded = self._fake.loaded.get(card)
        if loaded is None or bytes(uid[:16]) != loaded[0] or not self._fake.tick():
            return None
        if name.decode().split(":")[0] != loaded[1]["kernel"].rsplit("_", 1)[0]:
            return None
        if card in self._kernels.values():
            return None                         # already opened (exclusive)
        k = self._fake.handle()
        self._kernels[k] = card
        return k

    def _xrtKernelClose(self, k):
        return 0 if self._kernels.pop(k, None) is not None else -22

    def _xrtKernelReadRegister(self, k, offset, datap):
        if k not in self._kernels or not self._fake.tick():
            return -ENODEV
        datap._obj.value = self._fake.boards[self._kernels[k]].read32(int(offset))
        return 0

    def _xrtKernelWriteRegister(self, k, offset, value):
        if k not in self._kernels or not self._fake.tick():
            return -ENODEV
        self._fake.boards[self._kernels[k]].write32(int(offset), int(value))
        return 0
