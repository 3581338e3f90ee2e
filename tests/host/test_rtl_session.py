"""The rtl backend's session (`dfx.host.rtl_session.run_session`) on programs of several devices: a ring of as
many simulated cores (`dfx.hw.ring_top.PlainRing` in the fast harness) runs them, with the same contract as one
device: tokens equal the sim backend's, the logits each token was sampled from bit-exact. The ring runs are
slow (the core's Verilog, an Icarus build of the ring, then the simulation: see docs/rtl_core.md, "Several
devices", for the times); they run with `-m slow` and DFX_RTL=1, or when the ring's build is cached."""
import os
from pathlib import Path

import numpy as np
import pytest

from dfx.errors import DeviceError
from dfx.host.rtl_session import run_session
from dfx.host.session import Session

FIX = Path(__file__).parent / "fixtures"


def test_waves_of_a_ring_are_refused_in_one_line():
    """--waves records one core: a 2-device program with it is refused before anything is built."""
    with pytest.raises(DeviceError, match=r"--waves records one core; this program runs on 2") as e:
        run_session(FIX / "tiny_2dev.dfx", [1, 2], 1, waves="x.fst")
    assert "\n" not in str(e.value)


def test_pieces_that_start_mid_group_are_accepted():
    """The embedded model compiled for 4 devices with int4-ic-g128: the 64-column pieces of its 256-wide
    matrices start mid-group (phase 64); the core's tile fetcher reads them, so the backend no longer refuses
    the program (it used to: "regions of phase 0 only")."""
    from dfx import isa
    from dfx.compiler import compile_model
    from dfx.formats import DESC_BYTES, read_descriptor
    from dfx.models.checkpoint import load_default
    from dfx.verify.core_build import quantized_refusal
    prog = compile_model(load_default(), "tiny", devices=4, weights="int4-ic-g128")
    phases = {read_descriptor(bytes(dev.hbm[i.fields()["w"] * isa.HBM_UNIT:][:DESC_BYTES]))["phase"]
              for dev in prog.devices for instrs in dev.streams.values() for i in instrs if i.fields().get("wfmt")}
    assert 64 in phases
    assert quantized_refusal(prog) is None


def _need_ring_rtl():
    from dfx.verify.ring_harness import BUILD
    from dfx.verify.toolchain import missing_simulator
    if not (os.environ.get("DFX_RTL") or list(BUILD.glob("tiny_*_ring2*/stamp.txt"))):
        pytest.skip("set DFX_RTL=1 to build and simulate a ring of cores (tens of minutes; verify/ring_harness.py)")
    why = missing_simulator()
    if why:
        pytest.skip(why)


def _sim_reference(prog, prompt, new):
    with Session(prog, "sim") as s:
        toks, logits = [], []
        for t in s.generate(prompt, new):
            toks.append(t)
            logits.append(s.backend.read_logits())
    return toks, logits


def test_rings_are_refused_in_one_line_until_they_finish(monkeypatch):
    """A ring run stalls at the host's first status poll (docs/rtl_core.md, "Several devices"): without
    DFX_RTL_RING=1 the backend refuses a program of several devices before anything is built."""
    monkeypatch.delenv("DFX_RTL_RING", raising=False)
    with pytest.raises(DeviceError, match=r"ring of 2 cores does not finish a run yet.*DFX_RTL_RING=1") as e:
        run_session(FIX / "tiny_2dev.dfx", [1, 2], 1)
    assert "\n" not in str(e.value)


@pytest.mark.cocotb
@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="the ring's first CTRL poll gets no AXI4-Lite response (docs/rtl_core.md, "
                   "Several devices): open")
@pytest.mark.parametrize("weights", ["fp16", "int4-oc-g128"])
def test_two_devices_match_sim(weights, tmp_path, monkeypatch):
    """The embedded default model compiled for 2 devices (`dfx compile --devices 2 [--weights W]`) on the rtl
    backend: tokens equal the sim backend's and the logits bit-exact."""
    _need_ring_rtl()
    monkeypatch.setenv("DFX_RTL_RING", "1")
    from dfx.compiler import compile_model
    from dfx.models.checkpoint import load_default
    from dfx.program import save_program
    prog = compile_model(load_default(), "tiny", devices=2, weights=weights)
    prompt, new = [100, 101, 102, 32], 2
    want, want_logits = _sim_reference(prog, prompt, new)
    res = run_session(save_program(prog, tmp_path / "p.dfx"), prompt, new, logits=True)
    assert res["tokens"] == want
    assert len(res["logits"]) == new
    for i, (a, b) in enumerate(zip(res["logits"], want_logits)):
        assert np.array_equal(a.view(np.uint16), b.view(np.uint16)), f"token {i}: logits differ"
    assert res["summary"]["decode_cycles"] > 0
