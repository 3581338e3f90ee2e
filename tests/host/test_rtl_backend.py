"""The rtl transport outside a simulation: it refuses in one line (the session inside the simulation is
tests/verify/test_session.py)."""
from pathlib import Path

import pytest

from dfx.errors import DeviceError
from dfx.host.rtl_backend import RtlTransport
from dfx.host.session import Session
from dfx.program import load_program

FIX = Path(__file__).parent / "fixtures"


def test_rtl_transport_needs_the_simulation():
    prog = load_program(FIX / "tiny_1dev.dfx")
    with pytest.raises(DeviceError, match="the rtl backend runs inside a cocotb simulation of the core"):
        Session(prog, "rtl")
    with pytest.raises(DeviceError, match="the program needs 2 cores; the simulation has 1"):
        RtlTransport.open_all(prog.config, 2, cores=[object()])
