"""The fast harness's lean AXI4-Lite master (`dfx.verify.fast_axil`) when a transaction starts exactly on a
rising clock edge (the host's first access after a poll pause of whole clock periods): every access is one
transaction with the right data. Before the master counted a handshake only where its own valid was seen high,
a read begun on an edge under Icarus took the slave's ready at that edge for its own (the valid written in the
same time step had not reached the design yet), dropped ARVALID, and waited for a response that never came:
the rtl backend's ring of cores stalled at the host's first poll of CTRL (docs/rtl_core.md, "Several devices")."""
from pathlib import Path

import pytest
from test_fast_verilator import SLAVE

from dfx.verify.fast_verilator import verilator_build
from dfx.verify.toolchain import missing_simulator, run_module, runner_build, sim_env

HERE = Path(__file__).parent


@pytest.mark.cocotb
@pytest.mark.parametrize("sim", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)])  # C++ build: minutes
def test_transactions_that_start_on_a_clock_edge(sim, tmp_path):
    why = missing_simulator(sim, axi=False)
    if why:
        pytest.skip(why)
    bdir = tmp_path / "build"
    bdir.mkdir()
    src = bdir / "fvtop.v"
    src.write_text(SLAVE)
    if sim == "verilator":
        runner = verilator_build(src, "fvtop", bdir, fresh=True, waves=False)
    else:
        runner = runner_build(sim, src, "fvtop", bdir, fresh=True, waves=False)
    log = tmp_path / "test.log"
    tests, fails = run_module(runner, "cocotb_axil_edge", "fvtop", bdir, tmp_path, sim_env(PYTHONPATH=str(HERE)),
                              log)
    assert tests == 1 and fails == 0, log.read_text()[-3000:]
