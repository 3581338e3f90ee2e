"""The rtl backend's session (`dfx.host.rtl_session.run_session`) on programs of several devices: a ring of as
many simulated cores (`dfx.hw.ring_top.PlainRing` in the fast harness) runs them, with the same contract as one
device: tokens equal the sim backend's, the logits each token was sampled from bit-exact. The rings run under
Verilator (Icarus takes hours per decode step of the embedded model: docs/rtl_core.md, "Several devices"): the
tiny test GPT-2's ring when DFX_RTL=1 or the ring's build is cached (seconds once built, ~4 minutes to build),
the embedded model's with `-m slow` too."""
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
    """Skip unless a ring may be built and simulated here: Verilator (the ring's simulator: Icarus runs a ring at
    ~55 cycles per CPU second), and DFX_RTL=1 or the ring's build cached."""
    from dfx.verify.ring_harness import BUILD
    from dfx.verify.toolchain import missing_simulator
    if not (os.environ.get("DFX_RTL") or list(BUILD.glob("tiny_*_verilator_ring2/stamp.txt"))):
        pytest.skip("set DFX_RTL=1 to build and simulate a ring of cores (minutes; verify/ring_harness.py)")
    why = missing_simulator("verilator")
    if why:
        pytest.skip(why)


def _sim_reference(prog, prompt, new):
    with Session(prog, "sim") as s:
        toks, logits = [], []
        for t in s.generate(prompt, new):
            toks.append(t)
            logits.append(s.backend.read_logits())
    return toks, logits


def _check_ring_run(path, prompt, new):
    from dfx.program import load_program
    want, want_logits = _sim_reference(load_program(path), prompt, new)
    res = run_session(path, prompt, new, sim="verilator", logits=True)
    assert res["tokens"] == want
    assert len(res["logits"]) == new
    for i, (a, b) in enumerate(zip(res["logits"], want_logits)):
        assert np.array_equal(a.view(np.uint16), b.view(np.uint16)), f"token {i}: logits differ"
    assert res["summary"]["devices"] == 2 and res["summary"]["decode_cycles"] > 0
    return res


@pytest.mark.cocotb
def test_tiny_ring_of_two_matches_sim():
    """The tiny test GPT-2 compiled for 2 devices runs to the end on a ring of 2 cores under Verilator (no
    DFX_RTL_RING gate any more): tokens equal the sim backend's, logits bit-exact. ~10 s once built."""
    _need_ring_rtl()
    _check_ring_run(FIX / "tiny_2dev.dfx", [1, 2, 3], 2)


@pytest.mark.cocotb
@pytest.mark.slow
@pytest.mark.parametrize("weights,prefill_batch", [("fp16", None), ("int4-oc-g128", 4)])
def test_two_devices_match_sim(weights, prefill_batch, tmp_path):
    """The embedded default model compiled for 2 devices (`dfx compile --devices 2 [--weights W
    --prefill-batch B]`) on the rtl backend: tokens equal the sim backend's and the logits bit-exact."""
    _need_ring_rtl()
    from dfx.compiler import compile_model
    from dfx.models.checkpoint import load_default
    from dfx.program import save_program
    prog = compile_model(load_default(), "tiny", devices=2, weights=weights, prefill_batch=prefill_batch)
    _check_ring_run(save_program(prog, tmp_path / "p.dfx"), [100, 101, 102, 32], 2)
