"""RTL verification harnesses: the Amaranth RTL of dfx.hw driven from Python, checked against the functional
simulator and dfx.numerics (docs/design.md, Layout and layering: above hw/, sim/ and the performance model;
below host/).

- toolchain: the Verilog simulator ($SIM), building a Verilog file and running a cocotb test module on it
- units, stream_tb: stream-in/stream-out units in a Verilog simulator against reference payloads
- cosim: compiled programs with their MPU/VPU instructions on the Amaranth units (amaranth.sim or cocotb)
- core_build, core_tb, rtl_core: the integrated core (hw/top.py) under cocotb: its cached Verilog build, the
  cocotb testbench, and `RtlCore` (run steps, generate, raw streams; `bisect`)
- bridge, session: blocking host code inside a simulation of the core (the host `rtl` backend)

cocotb and cocotbext-axi (the `sim` extra) are imported only where a simulation runs.
"""
