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


def _need_rtl():
    """Skip unless the core may be built and simulated here (DFX_RTL=1 or a cached tiny build, a simulator)."""
    from dfx.sim import rtl_core
    cached = list(REPO.glob("build/rtl_core/tiny_*_icarus/stamp.txt"))
    if not (os.environ.get("DFX_RTL") or cached):
        pytest.skip("set DFX_RTL=1 to build and simulate the core (minutes; see sim/rtl_core.py)")
    why = rtl_core.missing_simulator()
    if why:
        pytest.skip(why)


@pytest.mark.cocotb
@pytest.mark.slow
def test_rtl_and_sim_generate_identical_tokens():
    _need_rtl()
    from dfx.host.rtl_backend import run_session
    prog_path = FIX / "tiny_1dev.dfx"
    prompt, n = [1, 2, 3, 4], 4
    res = run_session(prog_path, prompt, n)
    with Session(load_program(prog_path), "sim") as s:
        want = list(s.generate(prompt, n))
    assert res["tokens"] == want
    assert res["summary"]["decode_cycles"] > 0


@pytest.mark.cocotb
@pytest.mark.slow
def test_core_stops_at_batched_prefill_ops():
    """The RTL core decodes BATCH/CHUNK/SLOT (ISA version 2) but does not implement them: each stops the run
    with STATUS.illegal_opcode at its PC instead of running the prefixed instruction unbatched."""
    _need_rtl()
    from dfx import isa, regmap
    from dfx.sim import rtl_core

    def word(text):
        return isa.assemble(text)[0].encode()
    streams = {"batch": [word("NOP"), word("BATCH m=2 src_stride=4 dst_stride=4"), word("LINEAR k=8 n=8"),
                         word("HALT")],
               "chunk": [word("CHUNK addr=0x40 cap=4"), word("HALT")],
               "slot": [word("NOP"), word("NOP"), word("SLOT i=1 skip=1"), word("NOP"), word("HALT")],
               "ok": [word("NOP"), word("HALT")]}
    res = rtl_core.RtlCore(load_program(FIX / "tiny_1dev.dfx")).run_words(streams)
    got = {name: (r["status"], r["error_pc"]) for name, r in zip(streams, res.runs)}
    ill = regmap.STATUS_BITS["illegal_opcode"]
    assert got == {"batch": (ill, 1), "chunk": (ill, 0), "slot": (ill, 2), "ok": (regmap.STATUS_BITS["halted"], 0)}
