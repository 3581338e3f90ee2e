"""dfx.host: one host API over the simulator, the RTL and Alveo boards (docs/host.md).

Modules, bottom to top (each imports only those before it): image, sampling, transport, emu, fakepynq,
recording, xrt_api, fakexrt; the transports sim_backend, pynq_backend, xrt_backend, rtl_backend and their
registry transports; device; backends; session; then the entry points replay (record/replay CLI), rtl_session (a session inside the RTL
simulation) and build (the Vitis build tree).

Which backend runs is decided in one place, `resolve_backend`: the argument, else $DFX_BACKEND, else sim.
"""
from __future__ import annotations

import os

from dfx.errors import DeviceError

BACKENDS = ("sim", "rtl", "xrt", "pynq")
BACKEND_ENV = "DFX_BACKEND"


def resolve_backend(name: str | None = None, accepted: tuple[str, ...] = BACKENDS) -> str:
    """The backend to use: `name`, else $DFX_BACKEND, else "sim". DeviceError (one line, naming where the name
    came from and the `accepted` ones) for any other name."""
    chosen = name or os.environ.get(BACKEND_ENV) or "sim"
    if chosen not in accepted:
        where = "backend" if name else BACKEND_ENV
        raise DeviceError(f"unknown {where} {chosen!r}; accepted: {', '.join(accepted)}")
    return chosen
