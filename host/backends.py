"""Host backends behind one interface: the host protocol of a token step (set ENTRY/TOKEN/POS, start every
device of the ring, wait, read the logits slices from DDR) over `dfx.host.device`, the same code for `sim`
(the functional simulator behind an emulated register block), `rtl` (the core under cocotb) and `pynq`
(Alveo U280 boards). The backend is `dfx.host.resolve_backend`'s: the argument, else $DFX_BACKEND, else sim."""
from __future__ import annotations

import numpy as np

from dfx.errors import DeviceError
from dfx.program import Program

from . import resolve_backend
from .device import DEFAULT_TIMEOUT_S, Device, DeviceGroup, RunRecord
from .image import DDR_BANK
from .transports import open_transports

__all__ = ["DeviceBackend", "open_backend", "open_devices"]


def open_devices(program: Program, backend: str | None = None, devices: int | None = None, **opts) -> list[Device]:
    """Open the devices a program needs on a backend (`sim`, `rtl`, `pynq`; None: $DFX_BACKEND, else sim)."""
    name = resolve_backend(backend)
    n = program.n_devices if devices is None else devices
    if n != program.n_devices:
        raise DeviceError(f"the program was compiled for {program.n_devices} device(s) but {n} were opened; "
                          f"recompile with --devices {n} or open {program.n_devices}")
    return [Device(t, program.config, k) for k, t in enumerate(open_transports(program, name, n, **opts))]


class DeviceBackend:
    """A loaded program on N devices of one backend."""

    def __init__(self, program: Program, backend: str | None = None, devices: int | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S, counters: bool = True, **opts):
        self.name = resolve_backend(backend)
        self.program = program
        self.group = DeviceGroup(open_devices(program, self.name, devices, **opts), timeout)
        self.group.load(program)
        self.devices = self.group.devices
        self.read_counters = counters
        self.last: RunRecord | None = None

    def run(self, stream: str, token: int, pos: int) -> RunRecord:
        rec = self.group.run(stream, token, pos)
        if self.read_counters:
            self.group.counters(rec)
        self.last = rec
        return rec

    def run_batch(self, tokens: list[int], pos: int) -> RunRecord:
        """One run of the batched prefill stream over `tokens` at positions pos.. (docs/isa.md "Batched
        prefill"): COUNT and the tokens into every device's token table, then the stream with POS = pos."""
        sym = self.program.symbols.prefill_batch
        if sym is None:
            raise DeviceError("the program has no batched prefill stream; compile it with --prefill-batch M")
        if not 1 <= len(tokens) <= sym.max_tokens:
            raise DeviceError(f"a batched prefill run takes 1..{sym.max_tokens} tokens, not {len(tokens)}")
        self.group.write_all(DDR_BANK, sym.tokens, np.array([len(tokens), *tokens], "<u4").tobytes())
        rec = self.run(sym.stream, tokens[0], pos)
        rec.count = len(tokens)
        return rec

    def read_logits(self) -> np.ndarray:
        return self.group.read_logits()

    def counters(self) -> list[dict]:
        return self.group.counters()

    def close(self) -> None:
        self.group.close()


def open_backend(program: Program, backend: str | None = None, devices: int | None = None, **opts) -> DeviceBackend:
    """`DeviceBackend(program, backend, devices, **opts)`; backend None: $DFX_BACKEND, else sim."""
    return DeviceBackend(program, backend, devices, **opts)
