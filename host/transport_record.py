"""Any transport's session recorded and replayed at the transport boundary: register reads and writes with
their values, allocations with the addresses they returned, uploads by SHA-256, downloads with their bytes.

    DFX_RECORD=session.json dfx run prog.dfx --backend xrt --xclbin ...     # on a board host: record
    Session(prog, "xrt", replay="session.json")                            # anywhere: replay strictly

The recording's format is `host/recording.py`'s (`dfx-pynq-recording` calls with a `dev` field), so
`ReplayChannel` fails at the first call the host makes differently (`ReplayMismatch`, naming both calls). The
pynq backend records one level lower, its PYNQ calls (`DFX_PYNQ_RECORD`); this wrapper serves the xrt backend
(and any other transport).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from .recording import RecordChannel, ReplayChannel
from .transport import Buffer, Transport

RECORD_ENV = "DFX_RECORD"


class RecordedTransport(Transport):
    """`inner` (None on replay) behind `chan`, device `k` of the session."""

    def __init__(self, chan, k: int, inner: Transport | None, label: str, backend: str):
        self.chan, self.k, self.inner = chan, k, inner
        self.label, self.backend = label, backend
        self.batched_prefill = inner.batched_prefill if inner is not None else False

    def _call(self, op, args, fn, encode=lambda r: r):
        return self.chan.call(op, {"dev": self.k, **args}, fn if self.inner is not None else None, encode)

    def read32(self, offset):
        return int(self._call("read32", {"off": offset}, lambda: self.inner.read32(offset)))

    def write32(self, offset, value):
        self._call("write32", {"off": offset, "value": int(value)}, lambda: self.inner.write32(offset, value))

    def bank_bytes(self, bank):
        return int(self._call("bank_bytes", {"bank": bank}, lambda: self.inner.bank_bytes(bank)))

    def alloc(self, bank, nbytes):
        held = []

        def go():
            held.append(self.inner.alloc(bank, nbytes))
            return held[0].address
        addr = self._call("alloc", {"bank": bank, "n": nbytes}, go)
        return Buffer(bank, nbytes, int(addr), held[0] if held else None)

    def upload(self, buf, offset, data):
        self._call("upload", {"addr": buf.address, "off": offset, "sha256": hashlib.sha256(data).hexdigest()},
                   lambda: self.inner.upload(buf.handle, offset, data))

    def download(self, buf, offset, nbytes):
        r = self._call("download", {"addr": buf.address, "off": offset, "n": nbytes},
                       lambda: self.inner.download(buf.handle, offset, nbytes), lambda b: base64.b64encode(b).decode())
        return base64.b64decode(r) if isinstance(r, str) else r

    def free(self, buf):
        if not buf.freed:
            buf.freed = True
            self._call("free", {"addr": buf.address}, lambda: self.inner.free(buf.handle))

    def close(self):
        if self.inner is not None:
            self.inner.close()

    def set_deadline(self, deadline):
        if self.inner is not None:
            self.inner.set_deadline(deadline)

    def pause(self, waited):
        if self.inner is not None:
            self.inner.pause(waited)

    def attach(self, program, entries):
        if self.inner is not None:
            self.inner.attach(program, entries)


def record(transports: list[Transport], path) -> list[Transport]:
    """Wrap the opened `transports`; the recording is written to `path` when the last one closes."""
    chan = RecordChannel(path)
    chan.meta.update(backend=transports[0].backend, labels=[t.label for t in transports])
    out = [RecordedTransport(chan, k, t, t.label, t.backend) for k, t in enumerate(transports)]
    last = out[-1]
    close = last.close

    def close_and_save():
        close()
        chan.save()
    last.close = close_and_save
    return out


def replay(path, n: int) -> tuple[list[Transport], ReplayChannel]:
    """`n` transports answering from the recording at `path`; `channel.done()` checks every call was made."""
    doc = json.loads(Path(path).read_text())
    chan = ReplayChannel(doc)
    return [RecordedTransport(chan, k, None, lab, doc.get("backend", "?")) for k, lab in
            enumerate(doc.get("labels") or [f"replayed device {k}" for k in range(n)])][:n], chan


def maybe_record(transports: list[Transport], path=None) -> list[Transport]:
    path = path or os.environ.get(RECORD_ENV)
    return record(transports, path) if path else transports
