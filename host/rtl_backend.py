"""The `rtl` transport: the integrated core (`dfx.hw.top`) in a cocotb simulation, driven by the same host code
as the boards (`host/device.py`, `host/session.py`).

The host code is blocking Python; the simulator is cooperative. The session therefore runs inside the cocotb
test, in a thread made with `cocotb.bridge`: every register access is an AXI4-Lite transaction of
cocotbext-axi's `AxiLiteMaster` awaited through `cocotb.resume`, the memory banks are the harness's `AxiRam`
models (`dfx.sim.rtl_core.CoreTB`: one per HBM pseudo-channel, one for DDR; a host upload/download is a
direct write/read of the model, as a PCIe DMA would be), and a poll pause is 64 clock cycles.

From outside a simulator, `run_session(program, prompt, ...)` launches the simulation (cocotb_tools.runner,
Icarus by default, `SIM=verilator`) with a job file, and the cocotb test `dfx_host_session` below opens the
devices, runs `Session.generate` and writes the tokens and statistics back. `dfx run --backend rtl` and
`dfx generate --backend rtl` call it.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from dfx.config import AccelConfig
from dfx.errors import DeviceError

from .device import refuse_batched
from .image import DDR_BANK, hbm_bank
from .transport import Buffer, Transport

POLL_CYCLES = 64


def _bridge_api():
    """(bridge, resume): public as cocotb.bridge / cocotb.resume inside a simulation (cocotb 2.x)."""
    import cocotb
    if hasattr(cocotb, "bridge"):
        return cocotb.bridge, cocotb.resume
    from cocotb._bridge import bridge, resume
    return bridge, resume


class RtlTransport(Transport):
    backend = "rtl"

    def __init__(self, tb, index: int = 0):
        self.tb, self.index = tb, index
        self.label = f"rtl device {index}"
        self._resume = _bridge_api()[1]
        cfg = tb.cfg
        self.rams = {hbm_bank(c): ram for c, ram in enumerate(tb.hbm)}
        self.rams[DDR_BANK] = tb.ddr
        self.sizes = {hbm_bank(c): cfg.hbm_channel_mb << 20 for c in range(cfg.hbm_channels)}
        self.sizes[DDR_BANK] = cfg.ddr_bytes
        self.top = {b: 0 for b in self.rams}

    @classmethod
    def open_all(cls, cfg: AccelConfig, n: int, tbs=None, **_) -> list["RtlTransport"]:
        if tbs is None:
            raise DeviceError("the rtl backend runs inside a cocotb simulation of the core: use "
                              "`dfx run --backend rtl` (or dfx.host.rtl_backend.run_session)")
        if len(tbs) != n:
            raise DeviceError(f"the program needs {n} cores; the simulation has {len(tbs)}")
        return [cls(tb, k) for k, tb in enumerate(tbs)]

    def read32(self, offset):
        return int(self._resume(self.tb.axil.read_dword)(offset))

    def write32(self, offset, value):
        self._resume(self.tb.axil.write_dword)(offset, value)

    def bank_bytes(self, bank):
        if bank not in self.sizes:
            raise DeviceError(f"{self.label} has no memory bank {bank!r}")
        return self.sizes[bank]

    def alloc(self, bank, nbytes):
        start = -(-self.top[bank] // 4096) * 4096
        if start + nbytes > self.sizes[bank]:
            raise DeviceError(f"{self.label}: cannot allocate {nbytes} bytes in {bank} ({self.sizes[bank]} bytes)")
        self.top[bank] = start + nbytes
        return Buffer(bank, nbytes, start, self.rams[bank])

    def upload(self, buf, offset, data):
        buf.handle.write(buf.address + offset, bytes(data))

    def download(self, buf, offset, nbytes):
        return bytes(buf.handle.read(buf.address + offset, nbytes))

    def free(self, buf):
        pass                          # the memory models live as long as the simulation

    def pause(self, waited):
        from cocotb.triggers import ClockCycles

        async def cycles():
            await ClockCycles(self.tb.clk, POLL_CYCLES)
        self._resume(cycles)()


# ------------------------------------------------------------------------------------------------ launcher
def run_session(program_path, prompt: list[int], max_new_tokens: int, sampling: dict | None = None,
                sim: str | None = None, timeout: float = 3600.0) -> dict:
    """Run `Session.generate` on the RTL core in one simulation; returns {"tokens", "summary", "wall_s"}."""
    from dfx.program import load_program
    from dfx.sim import rtl_core

    program_path = Path(program_path).resolve()
    prog = load_program(program_path)
    refuse_batched(prog, "the rtl backend")
    if prog.n_devices != 1:
        raise DeviceError(f"the rtl backend simulates one core; this program needs {prog.n_devices} (compile with "
                          "--devices 1)")
    why = rtl_core.missing_simulator(sim)
    if why:
        raise DeviceError(f"the rtl backend cannot run here: {why}")
    t0 = time.time()
    runner, bdir = rtl_core.build(prog.config, sim)
    jobdir = bdir / "host_job"
    jobdir.mkdir(exist_ok=True)
    for c in range(prog.config.hbm_channels):                 # the host code uploads the images itself
        (jobdir / f"hbm{c:02d}.bin").write_bytes(b"")
    (jobdir / "ddr.bin").write_bytes(b"")
    spec = jobdir / "job.json"
    out = jobdir / "result.json"
    out.unlink(missing_ok=True)
    spec.write_text(json.dumps({"program": str(program_path), "prompt": list(prompt), "max_new": max_new_tokens,
                                "sampling": dict(sampling or {}), "timeout": timeout, "dir": str(jobdir),
                                "out": str(out)}))
    from cocotb_tools.runner import get_results
    env = {"PATH": rtl_core.venv_path(), "DFX_HOST_JOB": str(spec), "PYTHONWARNINGS": "ignore::DeprecationWarning",
           "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "WARNING")}
    xml = runner.test(test_module="dfx.host.rtl_backend", testcase="dfx_host_session", hdl_toplevel=rtl_core.TOP,
                      build_dir=bdir, test_dir=jobdir, extra_env=env, timescale=("1ns", "1ps"),
                      log_file=jobdir / "test.log")
    _, fails = get_results(xml)
    if not out.exists():
        log = (jobdir / "test.log").read_text(errors="replace") if (jobdir / "test.log").exists() else ""
        raise DeviceError(f"the RTL simulation ended without a result ({fails} failed test(s)); last log line: "
                          f"{(log.strip().splitlines() or ['-'])[-1][:200]}")
    res = json.loads(out.read_text())
    if res.get("error"):
        raise DeviceError(res["error"])
    res["wall_s"] = time.time() - t0
    return res


def _cocotb_test():
    import cocotb

    @cocotb.test()
    async def dfx_host_session(dut):
        from cocotb.triggers import ClockCycles

        from dfx.errors import DfxError
        from dfx.program import load_program
        from dfx.sim.rtl_core import CoreTB

        from .sampling import Sampling
        from .session import Session

        spec = json.loads(Path(os.environ["DFX_HOST_JOB"]).read_text())
        prog = load_program(spec["program"])
        tb = CoreTB(dut, prog.config, Path(spec["dir"]))
        dut.ap_rst_n.value = 0
        for sig, v in (("ring_tx_tready", 0), ("ring_rx_tvalid", 0), ("ring_rx_tdata", 0), ("ring_rx_tlast", 0)):
            getattr(dut, sig).value = v
        await ClockCycles(tb.clk, 4)
        dut.ap_rst_n.value = 1
        await ClockCycles(tb.clk, 2)

        def host():
            try:
                with Session(prog, "rtl", tbs=[tb], timeout=spec["timeout"]) as s:
                    tokens = list(s.generate(spec["prompt"], spec["max_new"], Sampling(**spec["sampling"])))
                    return {"tokens": tokens, "summary": s.summary()}
            except DfxError as e:
                return {"error": str(e)}

        result = await _bridge_api()[0](host)()
        Path(spec["out"]).write_text(json.dumps(result))

    return dfx_host_session


if "cocotb" in sys.modules and os.environ.get("DFX_HOST_JOB"):
    dfx_host_session = _cocotb_test()
