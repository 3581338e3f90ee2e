"""The rtl backend: the same host session (Device, DeviceGroup, Session) inside the cocotb simulation of the
integrated core; tokens equal the sim backend's. Slow (the core's Verilog and an Icarus run): it runs with
`-m cocotb` and DFX_RTL=1, or when the RTL harness has already cached the tiny-config build."""
import os
from pathlib import Path

import pytest

from dfx.errors import DeviceError
from dfx.host.rtl_backend import RtlTransport
from dfx.host.session import Session
from dfx.program import load_program

FIX = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parents[2]


def test_rtl_transport_needs_the_simulation():
    with pytest.raises(DeviceError, match="the rtl backend runs inside a cocotb simulation of the core"):
        Session(load_program(FIX / "tiny_1dev.dfx"), "rtl")
    with pytest.raises(DeviceError, match="the program needs 2 cores; the simulation has 1"):
        RtlTransport.open_all(None, 2, tbs=[object()])


@pytest.mark.cocotb
@pytest.mark.slow
def test_rtl_and_sim_generate_identical_tokens():
    cached = list(REPO.glob("build/rtl_core/tiny_*_icarus/stamp.txt"))
    if not (os.environ.get("DFX_RTL") or cached):
        pytest.skip("set DFX_RTL=1 to build and simulate the core (minutes; see sim/rtl_core.py)")
    from dfx.host.rtl_backend import run_session
    from dfx.sim import rtl_core
    why = rtl_core.missing_simulator()
    if why:
        pytest.skip(why)
    prog_path = FIX / "tiny_1dev.dfx"
    prompt, n = [1, 2, 3, 4], 4
    res = run_session(prog_path, prompt, n)
    with Session(load_program(prog_path), "sim") as s:
        want = list(s.generate(prompt, n))
    assert res["tokens"] == want
    assert res["summary"]["decode_cycles"] > 0
