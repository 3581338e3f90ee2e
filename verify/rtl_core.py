"""The core's harness, host side: run compiled programs on the integrated core (hw/top.py) in a cocotb
simulation, from pytest, benchmarks or a script.

`RtlCore` builds the Verilog of `dfx.hw.top.Top` for the program's config (`dfx.verify.core_build`: cached
under build/rtl_core/), writes the memory images (the program's striped HBM image split per channel with
`dfx.program.stripe`, its DDR image at 0 and the instruction streams after it), launches the simulator through
`cocotb_tools.runner` (Icarus by default, `SIM=verilator` or `sim=`) with the cocotb test
`dfx.verify.core_tb.dfx_job`, and returns what the runs produced.

API (stable):

    core = RtlCore(program, device=0, sim=None)        # sim: "icarus" | "verilator" | None ($SIM, icarus)
    core = RtlCore(program, in_order=True)             # the core dispatching one instruction at a time
    res = core.run_steps([("prefill", tok, pos), ..., ("decode", tok, pos)], logits=True, trace=False)
    res = core.generate(prompt_tokens, max_new_tokens)  # greedy, argmax on the RTL's logits
    res.runs[i]: {"stream", "token", "pos", "status", "error_pc", "cycles", "busy": {unit: cycles},
                  "classes": {class: cycles}, "instructions": n, "logits": np.float16 array (decode runs)}
    res.tokens (generate), res.wall_s, res.sim_cycles
    core.run_words(words, ...)                            # a raw instruction stream (bad-input tests)

`trace=True` also records every VBUF and scalar-register write with the PC that made it; `bisect` (below)
compares that trace with the functional simulator and names the first instruction (PC, device) and the
buffer whose contents differ.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dfx import isa
from dfx.program import Program, stripe
from dfx.sim.functional import Device

from .core_build import build, top_name, weight_families
from .core_tb import JOB_ENV
from .toolchain import log_text, missing_simulator, run_module, sim_env, simulator

STREAM_ALIGN = 4096


@dataclass
class RtlResult:
    runs: list = field(default_factory=list)
    tokens: list = field(default_factory=list)
    wall_s: float = 0.0
    sim_cycles: int = 0
    trace: list = field(default_factory=list)
    identity: dict = field(default_factory=dict)


def _append_stream(ddr: bytearray, blob: bytes) -> int:
    """Append `blob` to the DDR image at the next 4 KiB boundary; returns its offset (the stream's ENTRY)."""
    off = -(-len(ddr) // STREAM_ALIGN) * STREAM_ALIGN
    ddr.extend(b"\0" * (off - len(ddr)))
    ddr.extend(blob)
    return off


def ddr_layout(program: Program, device: int = 0) -> tuple[bytes, dict[str, int]]:
    """The DDR image the harness loads: the program's DDR image at 0, then every stream (4 KiB aligned).
    Returns (image, {stream: ENTRY})."""
    img = program.devices[device]
    ddr = bytearray(img.ddr)
    entries = {name: _append_stream(ddr, isa.encode_stream(instrs)) for name, instrs in img.streams.items()}
    return bytes(ddr), entries


class RtlCore:
    """One core of `program` (device `device`) in an RTL simulation; see the module docstring."""

    def __init__(self, program: Program, device: int = 0, sim: str | None = None, waves: bool = False,
                 in_order: bool = False):
        self.program, self.device = program, device
        self.cfg = program.config
        self.sim = simulator(sim)
        self.waves = waves
        why = missing_simulator(self.sim)
        if why:
            raise RuntimeError(why)
        self.n = program.n_devices
        self.devs = list(range(self.n)) if self.n > 1 else [device]
        self.wformats = weight_families(program)           # a core built for the program's weight formats
        self.runner, self.bdir = build(self.cfg, self.sim, waves, self.n, in_order=in_order, wformats=self.wformats)

    # ---------------------------------------------------------------- jobs
    def _images(self, extra_streams: dict | None = None):
        """Write every simulated device's memory images; returns (job folder, [per device {stream: ENTRY}])."""
        jobdir = self.bdir / "job"
        jobdir.mkdir(exist_ok=True)
        all_entries = []
        for k, dev in enumerate(self.devs):
            ddr, entries = ddr_layout(self.program, dev)
            ddr = bytearray(ddr)
            for name, words in (extra_streams or {}).items():
                entries[name] = _append_stream(ddr, b"".join(int(w).to_bytes(isa.WORD_BYTES, "little")
                                                             for w in words))
            (jobdir / f"ddr{k}.bin").write_bytes(bytes(ddr))
            for c, blob in enumerate(stripe(self.program.devices[dev].hbm, self.cfg)):
                (jobdir / f"hbm{k}_{c:02d}.bin").write_bytes(blob)
            all_entries.append(entries)
        return jobdir, all_entries

    def _job(self, jobdir, entries, **kw) -> dict:
        sym = self.program.symbols
        return {"dir": str(jobdir), "cfg": self.cfg.to_dict(), "entries": entries, "devices": len(self.devs),
                "logits_addr": sym.logits, "pieces": [sym.logits_pieces[d] for d in self.devs],
                "vocab": sym.vocab_size, "ring": [self.devs[0], self.n], "trace": False, "logits": True,
                "timeout": 5_000_000, **kw}

    def _launch(self, job: dict) -> dict:
        jobdir = Path(job["dir"])
        spec = jobdir / "job.json"
        out = jobdir / "result.json"
        log = jobdir / "test.log"
        spec.write_text(json.dumps(job))
        out.unlink(missing_ok=True)
        _, fails = run_module(self.runner, "dfx.verify.core_tb", top_name(self.n), self.bdir, jobdir,
                              sim_env(**{JOB_ENV: str(spec)}), log, testcase="dfx_job", waves=self.waves)
        if fails or not out.exists():
            raise RuntimeError(f"RTL simulation ({self.sim}) failed: {log_text(log)[-3000:]}")
        return json.loads(out.read_text())

    def _result(self, raw: dict, t0: float) -> RtlResult:
        res = RtlResult(wall_s=time.time() - t0, tokens=raw.get("tokens", []), trace=raw.get("trace", []),
                        identity=raw.get("identity", {}))
        for r in raw["runs"]:
            if r.get("logits") is not None:
                r["logits"] = np.frombuffer(bytes.fromhex(r["logits"]), np.float16).copy()
            res.runs.append(r)
        res.sim_cycles = raw.get("sim_cycles", 0)
        return res

    def run_steps(self, steps, logits: bool = True, trace: bool = False, timeout_cycles: int = 5_000_000
                  ) -> RtlResult:
        """Run `steps` = [(stream, token, pos)] in one simulation; read the logits after decode runs."""
        t0 = time.time()
        jobdir, entries = self._images()
        job = self._job(jobdir, entries, steps=[list(x) for x in steps], logits=logits, trace=trace,
                        timeout=timeout_cycles)
        return self._result(self._launch(job), t0)

    def generate(self, prompt: list[int], max_new_tokens: int, trace: bool = False) -> RtlResult:
        """Greedy generation on the RTL (prefill the prompt, then decode; argmax of the RTL's logits)."""
        t0 = time.time()
        jobdir, entries = self._images()
        job = self._job(jobdir, entries, generate=list(prompt), max_new=max_new_tokens, trace=trace)
        return self._result(self._launch(job), t0)

    def run_words(self, streams: dict[str, list[int]], token: int = 0, pos: int = 0,
                  timeout_cycles: int = 100_000) -> RtlResult:
        """Run raw instruction streams ({name: 128-bit words as ints}) once each, in order, with the
        program's memory images (bad-input tests). Every run's STATUS / ERROR_PC / counters come back."""
        t0 = time.time()
        jobdir, entries = self._images(streams)
        job = self._job(jobdir, entries, steps=[[name, token, pos] for name in streams], logits=False,
                        timeout=timeout_cycles)
        return self._result(self._launch(job), t0)


# ================================================================================================ bisection
def bisect(program: Program, steps, rtl: RtlResult, device: int = 0) -> str | None:
    """Compare the RTL's write trace (`run_steps(..., trace=True)`) with the functional simulator executing
    the same steps instruction by instruction. Returns None when they agree, else one line naming the first
    instruction (step, stream, PC, device) and the buffer (VBUF entry and lanes, or scalar register) whose
    contents differ, with both values."""
    ref = Device(program, device)
    d = program.config.d
    for step_i, ((stream, token, pos), events) in enumerate(zip(steps, rtl.trace)):
        by_pc: dict[int, list] = {}
        for ev in events:
            by_pc.setdefault(ev[0], []).append(ev)
        for pc, ins, _ in _functional_steps(ref, stream, token, pos):
            for ev in by_pc.get(pc, []):
                _, kind, where, mask, value = ev
                if kind == "v":
                    got = np.frombuffer(int(value, 16).to_bytes(2 * d, "little"), np.float16)
                    want = ref.vbuf[where * d:(where + 1) * d]
                    for r in range(d):
                        if mask >> r & 1 and got[r].view(np.uint16) != want[r].view(np.uint16):
                            return (f"device {device} step {step_i} ({stream}, token {token}, pos {pos}) pc {pc} "
                                    f"`{isa.disassemble(ins)}`: VBUF entry {where} lane {r} (element "
                                    f"{where * d + r}) is {got[r]!r} (0x{int(got[r].view(np.uint16)):04x}) on the "
                                    f"RTL, {want[r]!r} (0x{int(want[r].view(np.uint16)):04x}) in the simulator")
                else:
                    got = np.uint32(int(value, 16)).view(np.float32)
                    want = ref.s[where]
                    if got.view(np.uint32) != np.float32(want).view(np.uint32):
                        return (f"device {device} step {step_i} ({stream}, token {token}, pos {pos}) pc {pc} "
                                f"`{isa.disassemble(ins)}`: scalar register S{where} is {got!r} on the RTL, "
                                f"{want!r} in the simulator")
    return None


def _functional_steps(dev, stream, token, pos):
    """Execute a stream on a functional Device one instruction at a time, yielding after each."""
    dev.regs["TOKEN"], dev.regs["POS"] = int(token), int(pos)
    with np.errstate(all="ignore"):
        for pc, (handler, f, ins, _) in enumerate(dev._streams[stream]):
            if handler is None:                          # router: single device, ALLGATHER of 1
                yield pc, ins, dev
                continue
            stop = handler(f)
            yield pc, ins, dev
            if stop:
                return
