"""A host session on the RTL core: `run_session(program, prompt, ...)` runs `Session.generate` over the `rtl`
transport inside one cocotb simulation of the core (`dfx.verify.session.run_host_job`: Icarus by default,
`SIM=verilator`), and returns the tokens and the session's statistics. `dfx run --backend rtl` and
`dfx generate --backend rtl` call it.
"""
from __future__ import annotations

import time
from pathlib import Path

from dfx.errors import DeviceError, DfxError
from dfx.program import load_program
from dfx.verify.session import run_host_job
from dfx.verify.toolchain import missing_simulator

from .device import refuse_batched
from .sampling import Sampling
from .session import Session

ENTRY = "dfx.host.rtl_session:generate_in_simulation"
RTL_TIMEOUT_S = 600.0      # default wait for ap_done per token step (wall time of the simulation)


def run_session(program_path, prompt: list[int], max_new_tokens: int, sampling: dict | None = None,
                sim: str | None = None, timeout: float = RTL_TIMEOUT_S) -> dict:
    """Run `Session.generate` on the RTL core in one simulation; returns {"tokens", "summary", "wall_s"}."""
    program_path = Path(program_path).resolve()
    prog = load_program(program_path)
    refuse_batched(prog, "the rtl backend")
    if prog.n_devices != 1:
        raise DeviceError(f"the rtl backend simulates one core; this program needs {prog.n_devices} (compile with "
                          "--devices 1)")
    why = missing_simulator(sim)
    if why:
        raise DeviceError(f"the rtl backend cannot run here: {why}")
    t0 = time.time()
    res = run_host_job(prog.config, ENTRY, {"program": str(program_path), "prompt": list(prompt),
                                            "max_new": max_new_tokens, "sampling": dict(sampling or {}),
                                            "timeout": timeout}, sim)
    if res.get("error"):
        raise DeviceError(res["error"])
    res["wall_s"] = time.time() - t0
    return res


def generate_in_simulation(cores, args: dict) -> dict:
    """(In the simulator process.) The session of `run_session` on the simulated `cores`: {"tokens", "summary"},
    or {"error": message} for a DfxError."""
    try:
        with Session(load_program(args["program"]), "rtl", cores=cores, timeout=args["timeout"]) as s:
            tokens = list(s.generate(args["prompt"], args["max_new"], Sampling(**args["sampling"])))
            return {"tokens": tokens, "summary": s.summary()}
    except DfxError as e:
        return {"error": str(e)}
