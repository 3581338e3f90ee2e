"""cocotb testbench: one `dfx.verify.axi_mem.AxiMem` (with its Verilog RAM and file backdoor) driven by
cocotbext-axi's `AxiMaster`, which checks the AXI4 protocol of every burst. Run by test_axi_mem.py; $DFX_AXI_MEM
names a JSON file with the read latency and back-pressure to use."""
import json
import os
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Timer
from cocotbext.axi import AxiBus, AxiMaster

from dfx.verify.fast_tb import from_hex, to_hex

WB = 16


@cocotb.test()
async def axi_mem_bursts(dut):
    spec = json.loads(Path(os.environ["DFX_AXI_MEM"]).read_text())
    cocotb.start_soon(Clock(dut.clk, 5, unit="ns").start())
    dut.rst.value = 1
    for sig in (dut.ctl_load, dut.ctl_clear, dut.ctl_dump):
        sig.value = 0
    dut.ctl_latency.value, dut.ctl_stall.value = spec["latency"], spec["stall"]
    for sig in (dut.ctl_refresh_every, dut.ctl_refresh_cycles, dut.ctl_refresh_phase):
        sig.value = 0                                       # no refresh (an undriven period would stall R)
    axi = AxiMaster(AxiBus.from_prefix(dut, "axi"), dut.clk, dut.rst, max_burst_len=16)
    axi.write_if.id_count = axi.read_if.id_count = 1      # ID 0 only, as the core (the model answers ID 0)
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    rng = random.Random(spec["latency"] * 16 + spec["stall"])
    image = bytes(rng.randrange(256) for _ in range(4096))
    Path("m0.hex").write_text(to_hex(image, WB))
    dut.ctl_clear.value = 1
    await Timer(1, unit="ns")
    dut.ctl_load.value = 1
    await Timer(1, unit="ns")
    dut.ctl_load.value = 0
    await ClockCycles(dut.clk, 2)
    assert bytes(await axi.read(0, 4096)) == image                     # bursts of 16 beats, back to back
    patch = bytes(rng.randrange(256) for _ in range(300))
    await axi.write(1000, patch)                                       # unaligned: partial strobes at both ends
    want = image[:1000] + patch + image[1300:]
    got = await cocotb.triggers.gather(axi.read(0, 2048), axi.read(2048, 2048)) \
        if hasattr(cocotb.triggers, "gather") else [await axi.read(0, 2048), await axi.read(2048, 2048)]
    assert b"".join(bytes(g) for g in got) == want
    dut.ctl_dump_lo.value, dut.ctl_dump_hi.value = 0, 4096 // WB - 1
    await Timer(1, unit="ns")
    dut.ctl_dump.value = 1
    await Timer(1, unit="ns")
    dut.ctl_dump.value = 0
    assert from_hex(Path("m0.out").read_text(), WB)[:4096] == want     # the backdoor sees the writes
    assert int(dut.error.value) == 0
