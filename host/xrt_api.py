"""The part of XRT's host API that the `xrt` transport (`host/xrt_backend.py`) calls, written down once as data.

Two XRT interfaces are used, both shipped with every XRT install (/opt/xilinx/xrt):
- **pyxrt**, XRT's own Python binding (pybind11): devices, xclbins, buffer objects and their DMA.
- **XRT's native C API** in `libxrt_coreutil.so`, through ctypes, for the kernel's AXI4-Lite registers only:
  pyxrt has had no register access since XRT 2.12 (`kernel.read_register`/`write_register` were dropped from
  the binding in August 2021), and it does not bind `xrt::ip`. The C functions `xrtKernelReadRegister` and
  `xrtKernelWriteRegister` remain, on a kernel opened with exclusive access.

Source of every signature below: github.com/Xilinx/XRT at commit 963c58ee (2026-08-20):
`src/python/pybind11/pyxrt.pyi` and `src/python/pybind11/src/pyxrt.cpp` (pyxrt), and
`src/runtime_src/core/include/xrt/xrt_device.h`, `xrt_kernel.h` (C API). The strict fake (`host/fakexrt.py`)
implements exactly these, and `tests/host/test_xrt_api.py` fails if it accepts any call this table does not
list: a call the real binding lacks cannot pass CI against the fake.

PYXRT lists, per class, each method and the positional parameter lists of its overloads (pybind11 overloads
are tried in order; most take no keywords). C_API lists each function as (return type, argument types) in
ctypes terms.
"""
from __future__ import annotations

import ctypes

# class -> method -> overloads (tuples of parameter names, self excluded). "" is the module itself.
PYXRT: dict[str, dict[str, tuple[tuple[str, ...], ...]]] = {
    "": {
        "enumerate_devices": ((),),
    },
    "device": {
        "__init__": ((), ("index",), ("bdf",)),
        "load_xclbin": (("xclbin_path",), ("xclbin",)),     # deprecated shim in the newest XRT; kept there
        "get_xclbin_uuid": ((),),
        "get_info": (("key",),),
    },
    "xclbin": {
        "__init__": ((), ("filename",), ("axlf_data",)),
        "get_kernels": ((),),
        "get_xsa_name": ((),),
        "get_uuid": ((),),
        "get_mems": ((),),
    },
    "xclbinkernel": {"get_name": ((),), "get_num_args": ((),)},
    "xclbinmem": {"get_tag": ((),), "get_base_address": ((),), "get_size_kb": ((),), "get_used": ((),),
                  "get_index": ((),)},
    "uuid": {"__init__": (("uuid_str",),), "to_string": ((),)},
    "bo": {
        "__init__": (("device", "size", "flags", "group"), ("hwctx", "size", "flags", "group"),
                     ("hwctx", "size", "group"), ("parent", "size", "offset")),
        "write": (("data", "seek"),),
        "read": (("size", "skip"),),
        "sync": (("direction", "size", "offset"), ("direction",)),
        "map": ((),),
        "size": ((),),
        "address": ((),),
    },
}

# Enumerations the transport uses, with their member names (pyxrt.pyi).
PYXRT_ENUMS: dict[str, tuple[str, ...]] = {
    "xclBOSyncDirection": ("XCL_BO_SYNC_BO_TO_DEVICE", "XCL_BO_SYNC_BO_FROM_DEVICE",
                           "XCL_BO_SYNC_BO_GMIO_TO_AIE", "XCL_BO_SYNC_BO_AIE_TO_GMIO"),
    "xrt_info_device": ("bdf", "interface_uuid", "kdma", "max_clock_frequency_mhz", "m2m", "name", "nodma",
                        "offline", "electrical", "thermal", "mechanical", "memory", "platform", "pcie_info",
                        "host", "dynamic_regions", "vmr"),
    "bo.flags": ("normal", "cacheable", "device_only", "host_only", "p2p", "svm"),
}

XUID = ctypes.c_ubyte * 16          # xuid_t: unsigned char[16]; as a parameter it decays to unsigned char*
UUID_PTR = ctypes.POINTER(ctypes.c_ubyte)

# function -> (restype, argtypes), from xrt_device.h and xrt_kernel.h. Handles are `void*`.
C_API: dict[str, tuple[object, tuple[object, ...]]] = {
    "xrtDeviceOpen": (ctypes.c_void_p, (ctypes.c_uint,)),
    "xrtDeviceClose": (ctypes.c_int, (ctypes.c_void_p,)),
    "xrtDeviceGetXclbinUUID": (ctypes.c_int, (ctypes.c_void_p, UUID_PTR)),
    "xrtDeviceLoadXclbinUUID": (ctypes.c_int, (ctypes.c_void_p, UUID_PTR)),
    "xrtPLKernelOpenExclusive": (ctypes.c_void_p, (ctypes.c_void_p, UUID_PTR, ctypes.c_char_p)),
    "xrtKernelClose": (ctypes.c_int, (ctypes.c_void_p,)),
    "xrtKernelReadRegister": (ctypes.c_int, (ctypes.c_void_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32))),
    "xrtKernelWriteRegister": (ctypes.c_int, (ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32)),
}

C_LIBRARY = "libxrt_coreutil.so"       # in $XILINX_XRT/lib
