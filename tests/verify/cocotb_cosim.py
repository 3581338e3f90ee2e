"""cocotb testbench: a compiled program co-simulated with the MPU and VPU in a Verilog simulator (Icarus or
Verilator) instead of amaranth.sim. The operand collector, write-back and lock-step check are those of
`dfx.verify.cosim.RtlCosim`; only the stream driver differs (cocotb handles on `ComputeUnits`' ports).

The pytest side (`test_cosim.py`) writes a JSON spec named by $DFX_COSIM: the program file, the runs
(stream, token, pos), the PCs to run on the RTL per stream, and where to write the results: the final VBUF,
scalar registers and DDR image (.npz) and the statistics (.json), which pytest compares with its own
functional run.
"""
import json
import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from dfx.program import load_program
from dfx.verify.cosim import RtlCosim


class CosimTB:
    """Clock, reset and the stream drivers of `ComputeUnits` (ports mpu_x, mpu_w, mpu_o, vpu_i, vpu_o)."""

    def __init__(self, dut):
        self.dut, self.clk = dut, dut.clk
        self.cycles = {"MPU": 0, "VPU": 0}
        cocotb.start_soon(Clock(self.clk, 5, unit="ns").start())

    def port(self, name: str):
        return tuple(getattr(self.dut, f"{name}__{k}") for k in ("payload", "valid", "ready"))

    async def reset(self):
        for name in ("mpu_x", "mpu_w", "vpu_i"):
            self.port(name)[1].value = 0
        for name in ("mpu_o", "vpu_o"):
            self.port(name)[2].value = 0
        self.dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(self.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.clk)

    async def drive(self, unit: str, sources: list, n_out: int) -> list[int]:
        """One beat per cycle on the input streams (joined inputs move together); collect n_out beats."""
        prefix = unit.lower()
        ins = [(self.port(f"{prefix}_{name}"), words) for name, words in sources]
        o_payload, o_valid, o_ready = self.port(f"{prefix}_o")
        n_in = len(ins[0][1])
        idx, outs, cycles = 0, [], 0
        o_ready.value = 1
        for (_, valid, _), _ in ins:
            valid.value = 1
        while idx < n_in or len(outs) < n_out:
            if idx < n_in:
                for (payload, _, _), words in ins:
                    payload.value = words[idx]
            await RisingEdge(self.clk)
            cycles += 1                                   # values read at the edge are the sampled ones
            if idx < n_in and all(ready.value for (_, _, ready), _ in ins):
                idx += 1
                if idx == n_in:
                    for (_, valid, _), _ in ins:
                        valid.value = 0
            if o_valid.value:
                outs.append(int(o_payload.value))
            assert cycles < 100 * (n_in + 100), f"{unit}: {len(outs)} of {n_out} outputs after {cycles} cycles"
        o_ready.value = 0
        self.cycles[unit] += cycles
        return outs


@cocotb.test()
async def cosim(dut):
    with open(os.environ["DFX_COSIM"]) as f:
        spec = json.load(f)
    prog = load_program(spec["program"])
    sel = {stream: set(pcs) for stream, pcs in spec["rtl"].items()}
    co = RtlCosim(prog, rtl=lambda stream, pc, ins: pc in sel.get(stream, ()), check=spec.get("check", True))
    tb = CosimTB(dut)
    await tb.reset()
    t0 = time.time()

    def progress(pc, ins, on_rtl):                          # one line per matrix instruction, in the log
        if on_rtl and ins.op.unit.name == "MPU":
            print(f"[cosim] {stream} pc {pc} {ins.op.mnemonic}: {co.stats.checked} checked, "
                  f"{sum(tb.cycles.values())} cycles, {time.time() - t0:.0f} s", flush=True)

    for stream, token, pos in spec["runs"]:
        await co.execute(stream, token, pos, tb.drive, on_step=progress)
    st = co.state
    np.savez(spec["out"] + ".npz", vbuf=st.vbuf.view(np.uint16), s=st.s.view(np.uint32), ddr=st.ddr)
    with open(spec["out"] + ".json", "w") as f:
        json.dump({"rtl": dict(co.stats.rtl), "functional": dict(co.stats.functional), "cycles": tb.cycles,
                   "beats": dict(co.stats.beats), "checked": co.stats.checked}, f)
