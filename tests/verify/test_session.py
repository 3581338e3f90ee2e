"""The host session inside the cocotb simulation of the integrated core (`dfx.verify.session` launched by the
host's `rtl` backend): tokens equal the sim backend's. Slow (the core's Verilog and an Icarus run): it runs
with `-m slow` and DFX_RTL=1, or when the RTL harness has already cached the tiny-config build."""
import pytest
from verify_helpers import FIX, need_rtl

from dfx.host.rtl_session import run_session
from dfx.host.session import Session
from dfx.program import load_program


@pytest.mark.cocotb
@pytest.mark.slow
def test_rtl_and_sim_generate_identical_tokens():
    need_rtl()
    prog_path = FIX / "tiny_1dev.dfx"
    prompt, n = [1, 2, 3, 4], 4
    res = run_session(prog_path, prompt, n)
    with Session(load_program(prog_path), "sim") as s:
        want = list(s.generate(prompt, n))
    assert res["tokens"] == want
    assert res["summary"]["decode_cycles"] > 0
