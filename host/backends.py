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

    def __init__(self, program: Program, devices: int | None = None):
        from dfx.sim.ring import Ring
        if devices is not None and devices != program.n_devices:
            raise DeviceError(f"the program was compiled for {program.n_devices} device(s) but {devices} were "
                              f"opened; recompile with --devices {devices} or open {program.n_devices}")
        self.program = program
        self.ring = Ring(program)
        self.devices = self.ring.devices

    def run(self, stream: str, token: int, pos: int) -> None:
        if len(self.devices) == 1:
            self.devices[0].run(stream, token, pos)
        else:
            self.ring.run(stream, token, pos)

    def read_logits(self) -> np.ndarray:
        """Join the logits slices the devices stored in their DDR."""
        sym = self.program.symbols
        base, out = sym["logits"], np.empty(sym["vocab_size"], np.float16)
        for dev, pieces in zip(self.devices, sym["logits_pieces"]):
            for a, b in pieces:
                out[a:b] = dev.ddr[base + 2 * a:base + 2 * b].view(np.float16)
        return out

    def counters(self) -> dict:
        total = {}
        for dev in self.devices:
            for k, v in dev.counts.items():
                total[k] = total.get(k, 0) + v
        return total


def open_backend(program: Program, backend: str = "sim", devices: int | None = None):
    if backend == "sim":
        return SimBackend(program, devices)
    if backend in ("rtl", "pynq"):
        raise DeviceError(f"backend {backend!r} is not available yet; accepted: {', '.join(BACKENDS)}")
    raise DeviceError(f"unknown backend {backend!r}; accepted: sim, rtl, pynq")
