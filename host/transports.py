"""The transports by backend name: `open_transports(program, "sim" | "rtl" | "pynq", n, **opts)` opens the n
transports a program needs (`resolve_backend` picks the name)."""
from __future__ import annotations

from dfx.program import Program

from .pynq_backend import PynqTransport
from .rtl_backend import RtlTransport
from .sim_backend import SimTransport
from .transport import Transport
from .transport_record import maybe_record, replay
from .xrt_backend import XrtTransport


def _open_sim(program: Program, n: int, **opts) -> list[Transport]:
    return SimTransport.open_all(program.config, n, program.manifest.ring, **opts)


def _open_rtl(program: Program, n: int, **opts) -> list[Transport]:
    return RtlTransport.open_all(program.config, n, **opts)


def _open_pynq(program: Program, n: int, **opts) -> list[Transport]:
    return PynqTransport.open_all(n, **opts)


def _open_xrt(program: Program, n: int, record=None, replay_from=None, **opts) -> list[Transport]:
    if replay_from is not None:                  # a recorded board session, answered strictly (CI)
        return replay(replay_from, n)[0]
    return maybe_record(XrtTransport.open_all(n, **opts), record)


OPENERS = {"sim": _open_sim, "rtl": _open_rtl, "xrt": _open_xrt, "pynq": _open_pynq}         # one per name of dfx.host.BACKENDS


def open_transports(program: Program, backend: str, n: int, **opts) -> list[Transport]:
    """The transports of `n` devices of `backend` (a name `resolve_backend` accepted) for `program`; `opts` go
    to the backend (sim: EmuBoard options; xrt: xclbin, kernel, xrt, capi, record, replay_from; pynq: xclbin, kernel, pynq, record; rtl: cores)."""
    return OPENERS[backend](program, n, **opts)
