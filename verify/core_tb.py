"""The simulator side of the core's harness: the cocotb testbench of one core (or a ring of cores) and the cocotb
test `dfx_job` that `dfx.verify.rtl_core.RtlCore` launches.

`CoreTB` gives one core its clock and reset, one cocotbext-axi `AxiRam` per HBM pseudo-channel and one for DDR
(loaded from the job folder's images), and the control port driven by `AxiLiteMaster` with the host protocol of
`dfx.regmap` (ENTRY/TOKEN/POS, ap_start, wait for ap_done, STATUS/ERROR_PC/CYCLES/BUSY_*). `dfx_job` reads the
job file named by $DFX_RTL_JOB, runs its steps (or a greedy generation), attributes cycles to instruction
classes from the core's retire pulse, optionally records every VBUF / scalar-register write with its PC, and
writes result.json into the job folder.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from dfx import isa, regmap
from dfx.config import AccelConfig
from dfx.hw.slr import MAX_RESET_STAGES
from dfx.perf import CLASS_OF

from .retire_events import record_retires

CLOCK_NS = 5
JOB_ENV = "DFX_RTL_JOB"            # the job file of `dfx_job`


def class_of(code: int) -> str:
    """The performance model's instruction class of an opcode ("illegal" for a code the ISA lacks)."""
    op = isa.BY_CODE.get(code)
    return CLASS_OF[op.mnemonic] if op else "illegal"


class CoreTB:
    """Clock, reset, memories and the control port of one core: `CoreTB(dut, cfg, jobdir)` for the plain
    `dfx_core` top, `index=k, ring=True` for core k of a `dfx_ring<n>` (ports `dev<k>_...`). The memories
    start with the images `ddr<k>.bin` / `hbm<k>_<CC>.bin` (or `ddr.bin` / `hbm<CC>.bin` for a single core)
    found in `jobdir`, empty when absent. Stable API (`dfx.verify.bridge` builds on it): `write_reg`,
    `read_reg`, `setup`, `start`, `wait_done`, `counters`, `logits`, `clk`, `axil`, and the `ddr` / `hbm`
    AxiRams."""

    def __init__(self, dut, cfg: AccelConfig, jobdir: Path, index: int = 0, ring: bool = False):
        # lazy: cocotb and cocotbext-axi exist only inside the simulator process (the optional `sim` extra)
        import cocotb
        from cocotb.clock import Clock
        from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam
        self.dut, self.cfg = dut, cfg
        self.regs = regmap.by_name(cfg)
        prefix = f"dev{index}_" if ring else ""
        clk, rst = getattr(dut, "ap_clk"), getattr(dut, "ap_rst_n")
        self.clk = clk
        if index == 0:
            cocotb.start_soon(Clock(clk, CLOCK_NS, unit="ns").start())
        self.ddr = AxiRam(AxiBus.from_prefix(dut, f"{prefix}m_axi_ddr"), clk, rst, reset_active_level=False,
                          size=cfg.ddr_bytes)
        self.hbm = [AxiRam(AxiBus.from_prefix(dut, f"{prefix}{regmap.hbm_port_name(c)}"), clk, rst,
                           reset_active_level=False, size=cfg.hbm_channel_mb << 20)
                    for c in range(cfg.hbm_channels)]
        for ram in [self.ddr] + self.hbm:
            for log in (ram.write_if.log, ram.read_if.log):
                log.setLevel("WARNING")
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, f"{prefix}s_axi_control"), clk, rst,
                                  reset_active_level=False)
        self.axil.write_if.log.setLevel("WARNING")
        self.axil.read_if.log.setLevel("WARNING")

        def image(name: str, single: str) -> bytes:
            """Device `index`'s image file; a one-core job may also name them ddr.bin / hbmCC.bin."""
            p = jobdir / name
            if not p.exists() and index == 0:
                p = jobdir / single
            return p.read_bytes() if p.exists() else b""

        self.ddr.write(0, image(f"ddr{index}.bin", "ddr.bin"))
        for c, ram in enumerate(self.hbm):
            ram.write(0, image(f"hbm{index}_{c:02d}.bin", f"hbm{c:02d}.bin"))
        self.core = getattr(dut, f"dev{index}").core if ring else dut.core

    async def write_reg(self, name: str, value: int):
        r = self.regs[name]
        for k in range(r.words):
            await self.axil.write_dword(r.offset + 4 * k, (value >> (32 * k)) & 0xFFFFFFFF)

    async def read_reg(self, name: str) -> int:
        r = self.regs[name]
        v = 0
        for k in range(r.words):
            v |= await self.axil.read_dword(r.offset + 4 * k) << (32 * k)
        return v

    async def setup(self, ring_pos: int = 0, ring_size: int = 1):
        for c in range(self.cfg.hbm_channels):
            await self.write_reg(f"HBM{c:02d}", 0)
        await self.write_reg("DDR", 0)
        await self.write_reg("RING_POS", ring_pos)
        await self.write_reg("RING_SIZE", ring_size)

    async def start(self, entry: int, token: int, pos: int):
        await self.write_reg("ENTRY", entry)
        await self.write_reg("TOKEN", token)
        await self.write_reg("POS", pos)
        await self.write_reg("CTRL", regmap.AP_START)

    async def wait_done(self, timeout: int, poll: int = 64):
        from cocotb.triggers import ClockCycles  # lazy: cocotb exists only inside the simulator process
        waited = 0
        while True:
            ctrl = await self.read_reg("CTRL")
            if ctrl & regmap.AP_DONE:
                return
            if waited > timeout:
                raise AssertionError(f"no ap_done after {timeout} cycles (CTRL=0x{ctrl:x})")
            await ClockCycles(self.clk, poll)
            waited += poll

    async def counters(self) -> dict:
        out = {"status": await self.read_reg("STATUS"), "error_pc": await self.read_reg("ERROR_PC"),
               "cycles": await self.read_reg("CYCLES")}
        out["busy"] = {u: await self.read_reg(f"BUSY_{u}") for u in regmap.COUNTER_UNITS}
        return out

    def logits(self, addr: int, pieces) -> dict:
        """This device's slices of the logits, as float16 bytes at their vocabulary positions."""
        out = {}
        for a, b in pieces:
            out[(a, b)] = self.ddr.read(addr + 2 * a, 2 * (b - a))
        return out


# cycles after ap_rst_n rises before the first register access: the core's reset pipeline (`hw.top.Top`
# reset_stages, at most MAX_RESET_STAGES registers: `hw.slr.ResetPipe`) holds the core in reset that long after it
RESET_SETTLE = 2 + MAX_RESET_STAGES


async def reset(dut, clk, single: bool = True):
    """Hold ap_rst_n low for 4 cycles, then RESET_SETTLE more cycles; a single core's ring inputs are tied off."""
    from cocotb.triggers import ClockCycles  # lazy: cocotb exists only inside the simulator process
    dut.ap_rst_n.value = 0
    if single:
        for sig in ("ring_tx_tready", "ring_rx_tvalid", "ring_rx_tdata", "ring_rx_tlast"):
            getattr(dut, sig).value = 0
    await ClockCycles(clk, 4)
    dut.ap_rst_n.value = 1
    await ClockCycles(clk, RESET_SETTLE)


def attribute(events, t0: int) -> tuple[dict, dict]:
    """Cycles per instruction class and per mnemonic, as the performance model counts exposed time: the
    completions `events` [(pc, opcode, cycle)] taken in program order, each charged with how far it moves
    the latest completion so far (from `t0`, the run's start) forward."""
    classes, ops = {}, {}
    frontier = t0
    for pc, code, t in sorted(events):
        dt = max(0, t - frontier)
        frontier = max(frontier, t)
        cls = class_of(code)
        classes[cls] = classes.get(cls, 0) + dt
        mn = isa.BY_CODE[code].mnemonic if code in isa.BY_CODE else "?"
        c, k = ops.get(mn, (0, 0))
        ops[mn] = (c + dt, k + 1)
    return classes, ops


async def _monitor_classes(tb: CoreTB, record: dict, trace: list | None):
    """Completion events (PC, opcode, cycle) of every instruction, from the core's debug event outputs
    (`attribute` turns them into cycles per class); with `trace`, every VBUF / scalar write with the PC of the
    instruction that made it."""
    # lazy: cocotb exists only inside the simulator process
    import cocotb
    from cocotb.triggers import ReadOnly, RisingEdge
    core = tb.core

    async def writes():
        while True:
            await RisingEdge(tb.clk)
            await ReadOnly()
            en = int(core.dbg_vw_en.value)
            if en:
                trace.append([int(core.dbg_vw_pc.value), "v", int(core.dbg_vw_addr.value), en,
                              f"{int(core.dbg_vw_data.value):x}"])
            if int(core.dbg_sw_en.value):
                trace.append([int(core.dbg_sw_pc.value), "s", int(core.dbg_sw_addr.value), 1,
                              f"{int(core.dbg_sw_data.value):x}"])

    tasks = [cocotb.start_soon(record_retires(core, CLOCK_NS, record["events"]))]
    if trace is not None:
        tasks.append(cocotb.start_soon(writes()))
    return tasks, None


def _job_main():
    import cocotb  # lazy: cocotb exists only inside the simulator process

    @cocotb.test()
    async def dfx_job(dut):
        from cocotb.utils import get_sim_time  # lazy: cocotb exists only inside the simulator process
        spec = json.loads(Path(os.environ[JOB_ENV]).read_text())
        cfg = AccelConfig.from_dict(spec["cfg"])
        jobdir = Path(spec["dir"])
        n = spec.get("devices", 1)
        tbs = [CoreTB(dut, cfg, jobdir, k, ring=n > 1) for k in range(n)]
        tb = tbs[0]
        await reset(dut, tb.clk, single=n == 1)
        first, size = spec.get("ring", [0, 1])
        for k, t in enumerate(tbs):
            await t.setup(first + k if n > 1 else 0, size)
        result = {"runs": [], "trace": [],
                  "identity": {k: await tb.read_reg(k) for k in ("ID", "ISA_VERSION", "CONFIG_HASH")}}

        async def one(stream, token, pos, read_logits):
            record = {"events": [], "t0": 0}
            trace = [] if spec.get("trace") else None
            for k, t in enumerate(tbs):
                await t.start(spec["entries"][k][stream], token, pos)
                if k == 0:
                    record["t0"] = get_sim_time("ns") // CLOCK_NS
                    tasks, _ = await _monitor_classes(tb, record, trace)
            for t in tbs:
                await t.wait_done(spec["timeout"])
            for task in tasks:
                task.cancel()
            classes, ops = attribute(record["events"], record["t0"])
            run = {"stream": stream, "token": token, "pos": pos, **(await tb.counters()),
                   "classes": classes, "ops": ops, "instructions": len(record["events"]), "logits": None}
            if n > 1:
                run["devices"] = [await t.counters() for t in tbs]
                run["status"] = max(d["status"] for d in run["devices"])
            if read_logits and stream == "decode":
                buf = np.zeros(spec["vocab"], np.float16)
                for t, pieces in zip(tbs, spec["pieces"]):
                    for (a, b), blob in t.logits(spec["logits_addr"], pieces).items():
                        buf[a:b] = np.frombuffer(blob, np.float16)
                run["logits"] = buf.tobytes().hex()
            result["runs"].append(run)
            result["trace"].append(trace or [])
            return run

        t_start = get_sim_time("ns") // CLOCK_NS
        if "generate" in spec:
            prompt, tokens = spec["generate"], []
            pos = 0
            for i, t in enumerate(prompt):
                last = i == len(prompt) - 1
                run = await one("decode" if last else "prefill", t, pos, last)
                pos += 1
            for i in range(spec["max_new"]):
                logits = np.frombuffer(bytes.fromhex(run["logits"]), np.float16)
                tok = int(np.argmax(logits))
                tokens.append(tok)
                if i + 1 < spec["max_new"]:
                    run = await one("decode", tok, pos, True)
                    pos += 1
            result["tokens"] = tokens
        else:
            for stream, token, pos in spec["steps"]:
                await one(stream, token, pos, spec.get("logits"))
        result["sim_cycles"] = get_sim_time("ns") // CLOCK_NS - t_start
        Path(jobdir / "result.json").write_text(json.dumps(result))

    return dfx_job


if "cocotb" in sys.modules and os.environ.get(JOB_ENV):     # loaded by cocotb as the test module of a job
    dfx_job = _job_main()
