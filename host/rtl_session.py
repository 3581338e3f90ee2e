"""A host session on the RTL core: `run_session(program, prompt, ...)` runs `Session.generate` over the `rtl`
transport inside one cocotb simulation of the core, or of a ring of as many cores as the program has devices
(`dfx.verify.session.run_host_job`: Icarus by default, `SIM=verilator`), and returns the tokens and the
session's statistics. `dfx run --backend rtl` and
`dfx generate --backend rtl` call it.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from dfx.errors import DeviceError, DfxError
from dfx.program import load_program
from dfx.verify.core_build import quantized_refusal, weight_families
from dfx.verify.session import run_host_job
from dfx.verify.toolchain import missing_simulator

from .sampling import Sampling
from .session import Session

ENTRY = "dfx.host.rtl_session:generate_in_simulation"
RTL_TIMEOUT_S = 600.0      # default wait for ap_done per token step (wall time of the simulation)


def run_session(program_path, prompt: list[int], max_new_tokens: int, sampling: dict | None = None,
                sim: str | None = None, timeout: float = RTL_TIMEOUT_S, on_progress=None,
                waves: str | Path | None = None, logits: bool = False) -> dict:
    """Run `Session.generate` on the RTL core (a multi-device program: on a ring of as many cores,
    `dfx.hw.ring_top.PlainRing`) in one simulation; returns {"tokens", "summary", "wall_s"}, and with `logits`
    "logits": the float16 logits each token was sampled from (one np.ndarray per generated token).
    `waves`: write the simulation's FST waveforms to this file (`dfx.verify.waves` names its signals).
    on_progress(count, cycles): called (in a thread of this process) after every token step in the simulation,
    and with (0, 0) about once a second while the core is built or the simulator starts."""
    program_path = Path(program_path).resolve()
    prog = load_program(program_path)
    if not 1 <= prog.n_devices <= prog.config.devices:
        raise DeviceError(f"the rtl backend simulates 1 to {prog.config.devices} cores (the config's devices); "
                          f"this program needs {prog.n_devices}")
    if waves is not None and prog.n_devices > 1:
        raise DeviceError(f"--waves records one core; this program runs on {prog.n_devices} (compile with "
                          "--devices 1 for waveforms)")
    why = quantized_refusal(prog)
    if why:
        raise DeviceError(f"the rtl backend: {why}; recompile with --weights fp16 or a format it reads")
    why = missing_simulator(sim)
    if why:
        raise DeviceError(f"the rtl backend cannot run here: {why}")
    t0 = time.time()
    with progress_relay(on_progress) as relay:
        res = run_host_job(prog.config, ENTRY, {"program": str(program_path), "prompt": list(prompt),
                                                "max_new": max_new_tokens, "sampling": dict(sampling or {}),
                                                "timeout": timeout, "progress": relay, "logits": logits},
                           sim, wformats=weight_families(prog), waves=waves, devices=prog.n_devices,
                           program=prog)
    if res.get("error"):
        raise DeviceError(res["error"])
    if "logits" in res:
        res["logits"] = [np.frombuffer(bytes.fromhex(h), np.float16).copy() for h in res["logits"]]
    res["wall_s"] = time.time() - t0
    return res


def generate_in_simulation(cores, args: dict) -> dict:
    """(In the simulator process.) The session of `run_session` on the simulated `cores`: {"tokens", "summary"},
    or {"error": message} for a DfxError."""
    try:
        with Session(load_program(args["program"]), "rtl", cores=cores, timeout=args["timeout"]) as s:
            if args.get("progress"):
                s.on_step = _step_writer(args["progress"])
            tokens, logits = [], []
            for tok in s.generate(args["prompt"], args["max_new"], Sampling(**args["sampling"])):
                tokens.append(tok)
                if args.get("logits"):            # the logits `tok` was sampled from (still in the devices' DDR)
                    logits.append(s.backend.read_logits().tobytes().hex())
            return {"tokens": tokens, "summary": s.summary(), **({"logits": logits} if args.get("logits") else {})}
    except DfxError as e:
        return {"error": str(e)}


# ------------------------------------------------------------------------------------------------ progress
@contextlib.contextmanager
def progress_relay(on_progress):
    """A file the simulator process appends one line per token step to ("count cycles"), read by a thread here
    that calls on_progress(count, cycles) (and (0, 0) each second as a heartbeat). Yields the file's path, or
    None without a callback. The simulator's own output goes to its log, so a file carries the progress out."""
    if on_progress is None:
        yield None
        return
    fd, path = tempfile.mkstemp(prefix="dfx-rtl-progress-", suffix=".txt")
    os.close(fd)
    done = threading.Event()

    def poll():
        pending = ""
        with open(path) as f:
            while True:
                stop = done.wait(1.0)
                pending += f.read()
                *lines, pending = pending.split("\n")          # a line still being written stays pending
                for line in lines:
                    count, cycles = (int(v) for v in line.split())
                    on_progress(count, cycles)
                on_progress(0, 0)
                if stop:
                    return

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    try:
        yield path
    finally:
        done.set()
        t.join(timeout=5)
        os.unlink(path)


def _step_writer(path: str):
    def write(rec):
        with open(path, "a") as f:
            f.write(f"{rec.count} {rec.max_cycles}\n")
    return write
