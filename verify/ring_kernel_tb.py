"""The simulator side of the ring-kernel pair test: cocotb test `ring_pair` on `dfx.hw.ring_top.KernelPair`.

Independent clocks for the core side (`ap_clk`) and the links (`user_clk`); a cocotbext-axi `AxiStreamSource`
on kernel A's `s_axis_tx` sends random messages (random lengths, random gaps), an `AxiStreamSink` on kernel B's
`m_axis_rx` takes them with random back-pressure (long stalls included), and every message must arrive whole,
in order and bit-exact. The status registers of both kernels are read through AXI4-Lite at the end and written
to result.json with the link models' own drop / flip counts. The job file is named by $DFX_RING_PAIR_JOB.

`ring_counters` (with $DFX_RING_COUNTERS): after a whole ring's job (`dfx.hw.ring_top.KernelRing`, driven by
`dfx.verify.core_tb`), every kernel's and link's counters, as JSON to the file that variable names.
"""
from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

from dfx.hw.ring_kernel import STATUS_REGS

JOB_ENV = "DFX_RING_PAIR_JOB"
COUNTERS_ENV = "DFX_RING_COUNTERS"          # where `ring_counters` writes its JSON


def _pauses(rnd: random.Random, p: float, burst: int):
    """A pause generator: with probability p per cycle, pause for 1..burst cycles."""
    while True:
        if rnd.random() < p:
            for _ in range(rnd.randint(1, burst)):
                yield True
        yield False


def _main():
    import cocotb  # lazy: cocotb exists only inside the simulator process

    @cocotb.test()
    async def ring_pair(dut):
        # lazy: cocotb and cocotbext-axi exist only inside the simulator process (the optional `sim` extra)
        from cocotb.clock import Clock
        from cocotb.triggers import ClockCycles, Timer, with_timeout
        from cocotbext.axi import (AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame, AxiStreamSink,
                                   AxiStreamSource)
        spec = json.loads(Path(os.environ[JOB_ENV]).read_text())
        rnd = random.Random(spec["seed"])
        dut.ap_rst_n.value = 0
        dut.user_rst.value = 1
        for name in ("s_axis_tx_tvalid", "s_axis_tx_tlast", "s_axis_tx_tdata", "m_axis_rx_tready"):
            getattr(dut, name).value = 0
        # clocks from 2 ns: Icarus runs the `always @*` blocks once at 1 ns (dfx.verify.core_build), and a clock
        # edge before that would load X into the FIFOs' pointer synchronisers
        await Timer(2, unit="ns")
        cocotb.start_soon(Clock(dut.ap_clk, spec["ap_ns"], unit="ns").start())
        cocotb.start_soon(Clock(dut.user_clk, spec["user_ns"], unit="ns").start())
        await ClockCycles(dut.ap_clk, 16)
        dut.ap_rst_n.value = 1
        dut.user_rst.value = 0
        src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_tx"), dut.ap_clk, dut.ap_rst_n,
                              reset_active_level=False)
        sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_rx"), dut.ap_clk, dut.ap_rst_n,
                             reset_active_level=False)
        for x in (src, sink):
            x.log.setLevel("WARNING")
        src.set_pause_generator(_pauses(rnd, spec["src_gap"], 4))
        sink.set_pause_generator(_pauses(rnd, spec["sink_stall"], spec["sink_burst"]))
        nbytes = spec["core_bits"] // 8
        msgs = [rnd.randbytes(nbytes * rnd.randint(1, spec["max_beats"])) for _ in range(spec["messages"])]

        async def send():
            for msg in msgs:
                await src.send(AxiStreamFrame(msg))

        cocotb.start_soon(send())
        got = []
        for i in range(len(msgs)):
            frame = await with_timeout(sink.recv(), spec["timeout_us"], "us")
            got.append(bytes(frame.tdata))
            if got[-1] != msgs[i]:
                raise AssertionError(f"message {i}: {len(got[-1])} bytes received, {len(msgs[i])} sent; "
                                     f"first difference at byte "
                                     f"{next((k for k, (a, b) in enumerate(zip(got[-1], msgs[i])) if a != b), None)}")
        await ClockCycles(dut.ap_clk, 64)
        status = {}
        for p in ("a", "b"):
            axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, f"{p}_s_axi_control"), dut.ap_clk, dut.ap_rst_n,
                                 reset_active_level=False)
            axil.write_if.log.setLevel("WARNING")
            axil.read_if.log.setLevel("WARNING")
            status[p] = {name: await axil.read_dword(off) for off, name, _ in STATUS_REGS}
        links = {n: {"dropped": int(getattr(dut, n).dropped.value), "flipped": int(getattr(dut, n).flipped.value)}
                 for n in ("link0", "ack0")}
        Path(spec["dir"], "result.json").write_text(json.dumps({
            "messages": len(got), "beats": sum(len(g) for g in got) // nbytes, "status": status, "links": links,
            "sim_ns": int(cocotb.utils.get_sim_time("ns"))}))

    return ring_pair


def _counters_main():
    import cocotb  # lazy: cocotb exists only inside the simulator process

    @cocotb.test()
    async def ring_counters(dut):
        """After the job (`dfx.verify.core_tb.dfx_job`, the test module before this one): every kernel's
        counters (`dfx.hw.ring_top.KernelRing` ports `ring<k>_<counter>`) and every link's drops and flips."""
        kernels, links, k = [], {}, 0
        while hasattr(dut, f"ring{k}_tx_frames"):
            kernels.append({name: int(getattr(dut, f"ring{k}_{name.lower()}").value)
                            for _, name, src in STATUS_REGS if src})
            for link in ("link", "ack"):
                links[f"{link}{k}"] = {c: int(getattr(dut, f"{link}{k}_{c}").value) for c in ("dropped", "flipped")}
            k += 1
        Path(os.environ[COUNTERS_ENV]).write_text(json.dumps({"kernels": kernels, "links": links}))

    return ring_counters


if "cocotb" in sys.modules and os.environ.get(JOB_ENV):     # loaded by cocotb as the test module of a job
    ring_pair = _main()
if "cocotb" in sys.modules and os.environ.get(COUNTERS_ENV):    # a whole ring's job: its counters at the end
    ring_counters = _counters_main()
