"""The PYNQ surface of the pynq backend, recorded and replayed: a recording, and a strict fake `pynq` that answers
from one, so the board path's host logic runs in CI without a board (`dfx.host.replay` runs whole sessions).

A recording is the sequence of PYNQ calls the pynq transport made (the surface listed in
`host/pynq_backend.py`) with their arguments and results: register reads/writes with values, allocations with
the device addresses they returned, `sync_to_device` with the SHA-256 of the bytes sent, `sync_from_device`
with the bytes received (base64), and any exception raised. `Recorder(pynq_module, path)` wraps any pynq-like
module (the real one on a board host: `DFX_PYNQ_RECORD=session.json dfx run ... --backend pynq`), and
`ReplayPynq(path)` is a `pynq` that answers from the recording and fails at the first call that differs from
it (`ReplayMismatch`, naming the call number, what was recorded and what was asked).
"""
from __future__ import annotations

import base64
import builtins
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

FORMAT = "dfx-pynq-recording"
VERSION = 1


class ReplayMismatch(AssertionError):
    """The host made a call the recording does not have at this point."""


def bank_key(tag: str) -> str:
    """The overlay attribute pynq makes of a memory bank's tag: "HBM[3]" -> "HBM3"."""
    return re.sub("[^A-Za-z0-9_]", "", tag)


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ------------------------------------------------------------------------------------------------ channels
class RecordChannel:
    def __init__(self, path):
        self.path = Path(path) if path else None
        self.calls: list[dict] = []
        self.meta: dict = {}

    def call(self, op: str, args: dict, fn, encode=lambda r: r):
        try:
            r = fn()
        except Exception as e:
            self.calls.append({"op": op, **args, "raise": [type(e).__name__, str(e)]})
            raise
        self.calls.append({"op": op, **args, "result": encode(r)})
        return r

    def save(self):
        if self.path is not None:
            doc = {"format": FORMAT, "version": VERSION, **self.meta, "calls": self.calls}
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            tmp.write_text(json.dumps(doc, indent=None, separators=(",", ":")).replace('},{"op"', '},\n{"op"'))
            os.replace(tmp, self.path)


class ReplayChannel:
    def __init__(self, doc: dict):
        self.calls = doc["calls"]
        self.i = 0

    def call(self, op: str, args: dict, fn=None, encode=None):
        if self.i >= len(self.calls):
            raise ReplayMismatch(f"call {self.i}: the host called {op}({_fmt(args)}) after the end of the recording "
                                 f"({len(self.calls)} calls)")
        rec = self.calls[self.i]
        got = {"op": op, **args}
        want = {k: v for k, v in rec.items() if k not in ("result", "raise")}
        if got != want:
            raise ReplayMismatch(f"call {self.i}: recorded {rec['op']}({_fmt(want, 'op')}), the host called "
                                 f"{op}({_fmt(args)})")
        self.i += 1
        if "raise" in rec:
            name, msg = rec["raise"]
            exc = getattr(builtins, name, None)
            raise (exc if isinstance(exc, type) and issubclass(exc, Exception) else RuntimeError)(msg)
        return rec.get("result")

    def done(self):
        if self.i != len(self.calls):
            rec = self.calls[self.i]
            raise ReplayMismatch(f"the host stopped after {self.i} of {len(self.calls)} recorded calls; next was "
                                 f"{rec['op']}({_fmt(rec, 'op', 'result', 'raise')})")


def _fmt(d: dict, *skip) -> str:
    return ", ".join(f"{k}={v!r}"[:80] for k, v in d.items() if k not in skip)


# ------------------------------------------------------------------------------------------------ proxies
class _Devices:
    def __init__(self, mod):
        self._mod = mod

    @property
    def devices(self):
        m = self._mod
        inner = []

        def fn():
            inner.extend(m._inner.Device.devices)
            return [str(getattr(d, "name", d)) for d in inner]
        names = m._chan.call("devices", {}, fn if m._inner is not None else None)
        return [_Dev(i, n, inner[i] if inner else None) for i, n in enumerate(names)]


class _Dev:
    def __init__(self, index, name, inner):
        self.index, self.name, self._inner = index, name, inner


class _Overlay:
    def __init__(self, mod, dev: _Dev, inner, info):
        self._mod, self._dev, self._inner = mod, dev, inner
        self.ip_dict = {k: {} for k in info["ip"]}
        self.mem_dict = info["mem"]

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self.ip_dict:
            return _IP(self, name, getattr(self._inner, name) if self._inner is not None else None)
        if any(k == name and v.get("used") for k, v in self._mem_keys().items()):
            return _Mem(self, name, getattr(self._inner, name) if self._inner is not None else None)
        raise AttributeError(f"overlay has no attribute {name!r}")

    def _mem_keys(self):
        return {bank_key(k): v for k, v in self.mem_dict.items()}

    def free(self):
        inner = self._inner
        self._mod._chan.call("free", {"dev": self._dev.index}, (lambda: inner.free()) if inner is not None else None)


class _IP:
    def __init__(self, ol, name, inner):
        self._ol, self._name, self._inner = ol, name, inner

    def read(self, offset=0):
        inner = self._inner
        return self._ol._mod._chan.call("read", {"dev": self._ol._dev.index, "off": int(offset)},
                                        (lambda: int(inner.read(offset))) if inner is not None else None)

    def write(self, offset, value):
        inner = self._inner
        self._ol._mod._chan.call("write", {"dev": self._ol._dev.index, "off": int(offset), "value": int(value)},
                                 (lambda: inner.write(offset, value)) if inner is not None else None)


class _Mem:
    def __init__(self, ol, name, inner):
        self._ol, self._name, self._inner = ol, name, inner


class _Buffer:
    def __init__(self, mod, dev, bid, address, host, inner, start=0, parent=None):
        self._mod, self._dev, self._bid, self._inner = mod, dev, bid, inner
        self._host, self._start, self._parent = host, start, parent or self
        self.device_address = address + start

    def __getitem__(self, s):
        if not isinstance(s, slice) or s.step not in (None, 1):
            raise TypeError("recorded buffers support contiguous slices only")
        a, b, _ = s.indices(self._host.size)
        inner = self._inner[a:b] if self._inner is not None else None
        return _Buffer(self._mod, self._dev, self._bid, self.device_address - self._start, self._host[a:b], inner,
                       self._start + a, self._parent)

    def __setitem__(self, s, value):
        if s != slice(None):
            raise TypeError("recorded buffers support `view[:] = data` only")
        value = np.asarray(value, np.uint8)
        self._host[:] = value
        if self._inner is not None:
            self._inner[:] = value

    def _args(self):
        return {"dev": self._dev, "buf": self._bid, "start": self._start, "stop": self._start + self._host.size}

    def sync_to_device(self):
        inner = self._inner
        self._mod._chan.call("sync_to_device", {**self._args(), "sha256": _sha(self._host.tobytes())},
                             (lambda: inner.sync_to_device()) if inner is not None else None)

    def sync_from_device(self):
        inner = self._inner

        def fn():
            inner.sync_from_device()
            return inner.tobytes()
        data = self._mod._chan.call("sync_from_device", self._args(), fn if inner is not None else None,
                                    lambda b: base64.b64encode(b).decode())
        if isinstance(data, str):
            data = base64.b64decode(data)
        self._host[:] = np.frombuffer(data, np.uint8)

    def tobytes(self):
        return self._host.tobytes()

    def freebuffer(self):
        if self._parent is not self:
            raise TypeError("freebuffer() on a slice")
        inner = self._inner
        self._mod._chan.call("freebuffer", {"dev": self._dev, "buf": self._bid},
                             (lambda: inner.freebuffer()) if inner is not None else None)


class _PynqProxy:
    """The recorded PYNQ surface, answered by `_chan` (recording around `_inner`, or replaying)."""

    def __init__(self, chan, inner=None):
        self._chan, self._inner = chan, inner
        self.Device = _Devices(self)
        self._next_buf = 0

    def Overlay(self, bitfile_name, dtbo=None, download=True, ignore_version=False, device=None,  # noqa: N802
                gen_cache=False):                 # pynq 3.0.1's name and parameters (host/pynq_api.py)
        path = bitfile_name
        if not isinstance(device, _Dev):
            raise TypeError("Overlay needs device= one of pynq.Device.devices")
        holder = []

        def fn():
            ol = self._inner.Overlay(path, device=device._inner)
            holder.append(ol)
            return {"ip": sorted(ol.ip_dict),
                    "mem": {k: {"used": int(bool(v.get("used"))), "size": int(v.get("size", 0))}
                            for k, v in ol.mem_dict.items()}}
        info = self._chan.call("Overlay", {"xclbin": Path(path).name, "dev": device.index},
                               fn if self._inner is not None else None)
        return _Overlay(self, device, holder[0] if holder else None, info)

    def allocate(self, shape, dtype="u4", target=None, **kwargs):
        if kwargs:
            raise TypeError(f"allocate: the transport passes no {', '.join(kwargs)}")
        if not isinstance(target, _Mem) or np.dtype(dtype) != np.uint8 or len(shape) != 1:
            raise TypeError("recorded allocate takes ((n,), 'u1', target=<overlay bank>)")
        n, dev, bid = int(shape[0]), target._ol._dev.index, self._next_buf
        holder = []

        def fn():
            b = self._inner.allocate((n,), "u1", target=target._inner)
            holder.append(b)
            return int(b.device_address)
        addr = self._chan.call("allocate", {"dev": dev, "bank": target._name, "n": n, "buf": bid},
                               fn if self._inner is not None else None)
        self._next_buf += 1
        return _Buffer(self, dev, bid, addr, np.zeros(n, np.uint8), holder[0] if holder else None)


class Recorder(_PynqProxy):
    """Wrap a pynq module; every call is logged and the log written to `path` by `save()`."""

    def __init__(self, inner, path=None, **meta):
        chan = RecordChannel(path)
        chan.meta.update(meta)
        super().__init__(chan, inner)

    @property
    def calls(self) -> list[dict]:
        return self._chan.calls

    @property
    def meta(self) -> dict:
        return self._chan.meta

    def save(self):
        self._chan.save()


class ReplayPynq(_PynqProxy):
    """A `pynq` answering from a recording, strictly in order; `done()` checks every call was made."""

    def __init__(self, recording: str | os.PathLike | dict):
        doc = recording if isinstance(recording, dict) else json.loads(Path(recording).read_text())
        if doc.get("format") != FORMAT or doc.get("version") != VERSION:
            raise ValueError(f"not a {FORMAT} v{VERSION} recording")
        self.doc = doc
        super().__init__(ReplayChannel(doc))

    def done(self):
        self._chan.done()
