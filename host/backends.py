"""Host backends behind one interface. `sim`: the functional simulator (here); `rtl` and `pynq` come with the
integrated core and the board flow."""
from __future__ import annotations

import numpy as np

from dfx.errors import DeviceError
from dfx.program import Program

BACKENDS = ("sim",)


class SimBackend:
    """Drives the functional simulator with the host protocol: set TOKEN/POS, start a stream, read DDR."""
    name = "sim"

    def __init__(self, program: Program):
        from dfx.sim.functional import Device
        self.program = program
        self.devices = [Device(program, k) for k in range(program.n_devices)]

    def run(self, stream: str, token: int, pos: int) -> None:
        for dev in self.devices:
            dev.run(stream, token, pos)

    def read_logits(self) -> np.ndarray:
        sym = self.program.symbols
        a, v = sym["logits"], sym["vocab_size"]
        return self.devices[0].ddr[a:a + 2 * v].view(np.float16).copy()

    def counters(self) -> dict:
        total = {}
        for dev in self.devices:
            for k, v in dev.counts.items():
                total[k] = total.get(k, 0) + v
        return total


def open_backend(program: Program, backend: str = "sim"):
    if backend == "sim":
        return SimBackend(program)
    if backend in ("rtl", "pynq"):
        raise DeviceError(f"backend {backend!r} is not available yet; accepted: {', '.join(BACKENDS)}")
    raise DeviceError(f"unknown backend {backend!r}; accepted: sim, rtl, pynq")
