"""Choosing the Verilog simulator (`dfx.verify.toolchain`)."""
from dfx.verify.toolchain import missing_simulator, simulator


def test_simulator_choice(monkeypatch):
    monkeypatch.delenv("SIM", raising=False)
    assert simulator() == "icarus"
    monkeypatch.setenv("SIM", "Verilator")
    assert simulator() == "verilator" and simulator("icarus") == "icarus"
    why = missing_simulator("modelsim", axi=False)
    assert why == "SIM must be icarus or verilator, not 'modelsim'" or why.startswith("cocotb not installed"), why
