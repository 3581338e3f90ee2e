"""The part of PYNQ that the `pynq` transport (`host/pynq_backend.py`) calls, written down once as data.

PYNQ 3.0.1 is the last PYNQ release that drives Alveo cards (from 3.1 on `XrtDevice._probe_` finds none, and
4.x's XrtDevice has no register access), so the pynq transport targets 3.0.1. Source of each signature: the
pynq 3.0.1 sdist on PyPI: `pynq/overlay.py` (Overlay.__init__, Overlay.free, DefaultIP.read/write),
`pynq/buffer.py` (allocate, PynqBuffer.sync_to_device/sync_from_device/freebuffer, device_address) and
`pynq/pl_server/device.py` (Device.devices). The strict fake (`host/fakepynq.py`) and the recording proxy
(`host/recording.py`) follow these; `tests/host/test_pynq_api.py` fails where they accept a parameter the real
call does not have, or lack one it requires.

Each entry: parameter names in order (self excluded), with "=" marking those that have a default, and "**"
a trailing **kwargs.
"""
from __future__ import annotations

PYNQ_VERSION = "3.0.1"

PYNQ: dict[str, tuple[str, ...]] = {
    "Overlay": ("bitfile_name", "dtbo=", "download=", "ignore_version=", "device=", "gen_cache="),
    "Overlay.free": (),
    "allocate": ("shape", "dtype=", "target=", "**"),
    "DefaultIP.read": ("offset=",),
    "DefaultIP.write": ("offset", "value"),
    "PynqBuffer.sync_to_device": (),
    "PynqBuffer.sync_from_device": (),
    "PynqBuffer.freebuffer": (),
}

# Attributes (not calls) the transport reads.
PYNQ_ATTRIBUTES = ("Device.devices", "Overlay.ip_dict", "Overlay.mem_dict", "PynqBuffer.device_address")
