"""Host code against the RTL core, across processes: `run_host_job` builds the core for a config, starts a
cocotb simulation of it, and the cocotb test `dfx_host_job` below (in the simulator process) resets the core and
calls a host function in a thread bridged into the simulation (`dfx.verify.bridge`) with the core as
`BlockingCore`s; what the function returns (a JSON-able dict) comes back. A multi-device job runs on a ring of
cores (`devices=n`; on the fast harness the cocotb test `dfx_fast_ring_host_job`, one `FastBlockingCore` each).

The function is named as "module:function" and imported in the simulator process, so this package does not
depend on its caller: the host `rtl` backend (`dfx.host.rtl_session`) passes the function that runs
`Session.generate` over `RtlTransport`s.

    res = run_host_job(cfg, "dfx.host.rtl_session:generate_in_simulation", {"program": ..., ...})
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
from pathlib import Path

from dfx.config import AccelConfig
from dfx.errors import DeviceError
from dfx.hw.dma import ddr_data_bits

from .bridge import BlockingCore, bridge_api
from .core_build import TOP, build
from .core_tb import CoreTB, reset
from .fast_bridge import FAST_HOST_ENV, FastBlockingCore
from .fast_tb import FastTB
from .fast_top import DDR_ABITS, HBM_ABITS, build_fast, program_abits
from .ring_harness import build_fast_ring
from .toolchain import log_text, run_module, sim_env, simulator
from .waves import dump_path

HOST_JOB_ENV = "DFX_HOST_JOB"      # the job file of `dfx_host_job`
RING_HOST_ENV = "DFX_RING_HOST_JOB"    # the job file of `dfx_fast_ring_host_job`


def run_host_job(cfg: AccelConfig, entry: str, args: dict, sim: str | None = None, fast: bool | None = None,
                 wformats: tuple[str, ...] = (), waves: str | Path | None = None, devices: int = 1,
                 program=None) -> dict:
    """Call `entry` ("module:function", called as function(cores, args) with one `BlockingCore` per device)
    inside a simulation of `devices` cores built for `cfg` (more than one: a ring, `dfx.hw.ring_top.PlainRing`);
    returns its result. The memories start empty: the host code uploads what it needs. DeviceError (one line)
    when the simulation ends without a result. `fast` (default: unless $DFX_RTL_HARNESS is `axi`): the memories
    are models inside the design (`dfx.verify.fast_bridge`; a ring: `dfx.verify.ring_harness`), else
    cocotbext-axi `AxiRam`s (one core only). `wformats`: the quantized weight families the core is built with.
    `waves`: write the run's FST there (the fast harness, one device, `dfx.verify.waves`). `program`: the
    program the job runs, if any: the fast harness's memories (one core) are sized to hold its images
    (`dfx.verify.fast_top.program_abits`; a one-line DeviceError above the harness's maximum)."""
    if fast is None:
        fast = os.environ.get("DFX_RTL_HARNESS", "fast") != "axi"
    if waves is not None and (not fast or devices > 1):
        raise DeviceError("waveforms come from the fast harness of one device only; unset DFX_RTL_HARNESS (if "
                          "it is 'axi') and run a 1-device program")
    if fast:
        abits = program_abits(program) if program is not None and devices == 1 else (DDR_ABITS, HBM_ABITS)
        return _run_fast_host_job(cfg, entry, args, sim, wformats, waves, devices, abits)
    if devices > 1:
        raise DeviceError(f"the cocotbext-axi harness runs one core; a program of {devices} devices runs on the fast "
                          "harness's ring: unset DFX_RTL_HARNESS (it is 'axi')")
    runner, bdir = build(cfg, sim, wformats=wformats)
    jobdir = bdir / "host_job"
    jobdir.mkdir(exist_ok=True)
    for c in range(cfg.hbm_channels):                   # no images: the host code uploads them itself
        (jobdir / f"hbm{c:02d}.bin").write_bytes(b"")
    (jobdir / "ddr.bin").write_bytes(b"")
    spec = jobdir / "job.json"
    out = jobdir / "result.json"
    log = jobdir / "test.log"
    out.unlink(missing_ok=True)
    spec.write_text(json.dumps({"cfg": cfg.to_dict(), "entry": entry, "args": args, "dir": str(jobdir),
                                "out": str(out)}))
    _, fails = run_module(runner, "dfx.verify.session", TOP, bdir, jobdir, sim_env(**{HOST_JOB_ENV: str(spec)}),
                          log, testcase="dfx_host_job")
    return _result(out, fails, log)


def _result(out: Path, fails: int, log: Path) -> dict:
    if not out.exists():
        raise DeviceError(f"the RTL simulation ended without a result ({fails} failed test(s)); last log line: "
                          f"{(log_text(log).strip().splitlines() or ['-'])[-1][:200]}")
    return json.loads(out.read_text())


def _run_fast_host_job(cfg: AccelConfig, entry: str, args: dict, sim: str | None, wformats=(), waves=None,
                       devices: int = 1, abits: tuple[int, int] = (DDR_ABITS, HBM_ABITS)) -> dict:
    if devices > 1:
        runner, bdir, top = build_fast_ring(cfg, devices, simulator(sim), wformats)
    else:
        runner, bdir, top = build_fast(cfg, sim, ddr_abits=abits[0], hbm_abits=abits[1], waves=waves is not None,
                                       wformats=wformats)
    jobdir = bdir / "host_job"
    jobdir.mkdir(exist_ok=True)
    spec, out, log = jobdir / "job.json", jobdir / "result.json", jobdir / "test.log"
    out.unlink(missing_ok=True)
    wb = {"ddr": ddr_data_bits(cfg) // 8, "hbm": cfg.hbm_width // 8}
    spec.write_text(json.dumps({"cfg": cfg.to_dict(), "entry": entry, "args": args, "out": str(out), "word_bytes": wb,
                                "ddr_bytes": wb["ddr"] << abits[0], "hbm_bytes": wb["hbm"] << abits[1],
                                "devices": devices}))
    dump = dump_path(simulator(sim), bdir, jobdir, top)
    dump.unlink(missing_ok=True)
    if devices > 1:
        module, env, test = "dfx.verify.session", {RING_HOST_ENV: str(spec)}, "dfx_fast_ring_host_job"
    else:
        module, env, test = "dfx.verify.fast_bridge", {FAST_HOST_ENV: str(spec)}, "dfx_fast_host_job"
    _, fails = run_module(runner, module, top, bdir, jobdir, sim_env(**env), log, testcase=test,
                          waves=waves is not None)
    if waves is not None and dump.exists():
        shutil.move(dump, waves)
    res = _result(out, fails, log)
    if waves is not None and not Path(waves).exists():
        raise DeviceError(f"the simulator wrote no waveforms (looked for {dump})")
    return res


def resolve_entry(entry: str):
    """The function named by "module:function"."""
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


def _cocotb_test():
    import cocotb  # lazy: cocotb exists only inside the simulator process

    @cocotb.test()
    async def dfx_host_job(dut):
        spec = json.loads(Path(os.environ[HOST_JOB_ENV]).read_text())
        fn = resolve_entry(spec["entry"])
        tb = CoreTB(dut, AccelConfig.from_dict(spec["cfg"]), Path(spec["dir"]))
        await reset(dut, tb.clk)
        core = BlockingCore(tb)
        result = await bridge_api()[0](lambda: fn([core], spec["args"]))()
        Path(spec["out"]).write_text(json.dumps(result))

    return dfx_host_job


def _ring_cocotb_test():
    import cocotb  # lazy: cocotb exists only inside the simulator process

    @cocotb.test()
    async def dfx_fast_ring_host_job(dut):
        """`dfx_fast_host_job` (`dfx.verify.fast_bridge`) on a ring: one `FastBlockingCore` per device."""
        spec = json.loads(Path(os.environ[RING_HOST_ENV]).read_text())
        cfg, n = AccelConfig.from_dict(spec["cfg"]), spec["devices"]
        tb = FastTB(dut, cfg, n, spec["word_bytes"])
        await tb.start()
        await tb.load({})
        await tb.reset()
        cores = [FastBlockingCore(tb, k, spec["ddr_bytes"], spec["hbm_bytes"]) for k in range(n)]
        fn = resolve_entry(spec["entry"])
        result = await bridge_api()[0](lambda: fn(cores, spec["args"]))()
        Path(spec["out"]).write_text(json.dumps(result))

    return dfx_fast_ring_host_job


if "cocotb" in sys.modules and os.environ.get(HOST_JOB_ENV):  # loaded by cocotb as the test module of a job
    dfx_host_job = _cocotb_test()
if "cocotb" in sys.modules and os.environ.get(RING_HOST_ENV):  # a ring's job on the fast harness
    dfx_fast_ring_host_job = _ring_cocotb_test()
