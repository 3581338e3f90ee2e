"""The fast harness's lean AXI4-Lite master (`dfx.verify.fast_axil`) when a transaction starts exactly on a
rising clock edge (the host's first access after a poll pause of whole clock periods): every access is one
transaction with the right data. Before the master counted a handshake only where its own valid was seen high,
a read begun on an edge under Icarus took the slave's ready at that edge for its own (the valid written in the
same time step had not reached the design yet), dropped ARVALID, and waited for a response that never came:
the rtl backend's ring of cores stalled at the host's first poll of CTRL (docs/rtl_core.md, "Several devices")."""

import pytest
from test_fast_verilator import run_on_slave


@pytest.mark.cocotb
@pytest.mark.parametrize("sim", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)])  # C++ build: minutes
def test_transactions_that_start_on_a_clock_edge(sim, tmp_path):
    run_on_slave(sim, "cocotb_axil_edge", tmp_path)
