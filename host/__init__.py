"""dfx.host: one host API over the simulator, the RTL and Alveo boards."""
