"""The host session inside the cocotb simulation of the integrated core (`dfx.verify.session` launched by the
host's `rtl` backend): tokens equal the sim backend's. Slow (the core's Verilog and an Icarus run): it runs
with `-m slow` and DFX_RTL=1, or when the RTL harness has already cached the tiny-config build."""
import pytest
from verify_helpers import FIX, need_rtl

from dfx.errors import DeviceError
from dfx.host.rtl_session import run_session
from dfx.host.session import Session
from dfx.program import load_program


@pytest.mark.cocotb
@pytest.mark.slow
@pytest.mark.parametrize("harness", ["fast", "axi"])
def test_rtl_and_sim_generate_identical_tokens(harness, monkeypatch):
    """On both harnesses: the fast one (memories inside the design, the default) and cocotbext-axi's."""
    need_rtl()
    monkeypatch.setenv("DFX_RTL_HARNESS", harness)
    prog_path = FIX / "tiny_1dev.dfx"
    prompt, n = [1, 2, 3, 4], 4
    res = run_session(prog_path, prompt, n)
    with Session(load_program(prog_path), "sim") as s:
        want = list(s.generate(prompt, n))
    assert res["tokens"] == want
    assert res["summary"]["decode_cycles"] > 0


@pytest.mark.cocotb
@pytest.mark.slow
def test_timeout_applies_as_given():
    """--timeout on the rtl backend is the given wall time per token step (no longer raised to an hour): a
    step cannot finish in 1 ms of simulation wall time."""
    need_rtl()
    with pytest.raises(DeviceError, match="0.001 s"):
        run_session(FIX / "tiny_1dev.dfx", [1, 2], 2, timeout=0.001)
