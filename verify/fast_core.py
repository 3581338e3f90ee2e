"""The fast RTL harness, host side: run many jobs (programs) on the core with its memories inside the simulated
design (`dfx.verify.fast_top`), in one simulator process per `FastCore.run` call, with no Python per bus beat.

    fc = FastCore(cfg, sim="verilator", devices=1)            # builds (cached) build/rtl_fast/...
    job = FastCore.job_for(program, steps=[("prefill", tok, 0), ("decode", tok, 1)], logits=True)
    [res] = fc.run([job])
    res["runs"][i]: {"stream", "token", "pos", "status", "error_pc", "cycles", "busy": {unit: cycles},
                     "devices": [...]}
    res["logits"]: float16 arrays after each decode step (with logits=True), res["vbuf"], res["sregs"],
    res["mem"]: {memory name: bytes}, res["mem_error"], res["sim_cycles"], res["wall_s"]

A `FastJob` names its memory images (per device: the DDR image with the streams appended, as
`dfx.verify.rtl_core.ddr_layout` places them for every backend, and the striped HBM image), the steps, the
memory model's latency and back-pressure (`dfx.verify.axi_mem`), a cycle limit per run and what to read back
at the end (VBUF entry ranges, the scalar registers, bytes of each memory). The cocotbext-axi harness
(`dfx.verify.rtl_core.RtlCore`) stays the protocol-checking path; this one is for speed (benchmarks/
rtl_core_speed.py compares them).
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dfx.config import AccelConfig
from dfx.hw.dma import ddr_data_bits
from dfx.program import Program, stripe, unstripe
from dfx.sim.functional import Device

from .fast_tb import FAST_JOB_ENV
from .fast_top import DDR_ABITS, HBM_ABITS, build_fast, mem_names
from .rtl_core import ddr_layout
from .toolchain import log_text, missing_simulator, run_module, sim_env, simulator
from .waves import dump_path


@dataclass
class FastJob:
    """One program's run on the fast harness (see the module docstring). `images`: per device {"ddr": bytes,
    "hbm": striped bytes}; `entries`: per device {stream: ENTRY}; `read_ddr` / `read_hbm`: bytes of each
    device's DDR / striped HBM read back at the end; `vbuf`: VBUF entry ranges [(lo, hi)) read back."""
    images: list[dict]
    entries: list[dict]
    steps: list
    latency: int = 0
    stall: int = 0
    refresh: tuple = (0, 0, 0)           # (every, cycles, memory mask): `dfx.verify.axi_mem` refresh stalls
    timeout: int = 2_000_000
    vbuf: list = field(default_factory=list)
    sregs: bool = False
    read_ddr: int = 0
    read_hbm: int = 0
    logits: tuple | None = None          # (DDR byte address, per device [(a, b)] vocabulary pieces)
    ring: tuple = (0, 1)


def greedy_steps(program: Program, prompt: list[int], new: int) -> tuple[list, list, list]:
    """The token steps of a greedy generation on the functional simulator (device 0; prefill `prompt`, then
    `new` decode steps), the tokens it picks and each decode step's logits: the steps a job replays on the RTL,
    whose logits must equal these bit for bit."""
    dev, sym = Device(program, 0), program.symbols
    steps, tokens, logits = [], [], []
    for i, t in enumerate(prompt[:-1]):
        steps.append(("prefill", t, i))
        dev.run("prefill", t, i)
    tok, pos = prompt[-1], len(prompt) - 1
    for _ in range(new):
        steps.append(("decode", tok, pos))
        dev.run("decode", tok, pos)
        logits.append(np.frombuffer(bytes(dev.ddr[sym.logits:sym.logits + 2 * sym.vocab_size]), np.float16).copy())
        tok, pos = int(np.argmax(logits[-1])), pos + 1
        tokens.append(tok)
    return steps, tokens, logits


class FastCore:
    """One build of the fast design for `cfg` (a ring of `devices` cores when > 1; `in_order`: the core
    dispatching one instruction at a time); `run` runs jobs on it."""

    def __init__(self, cfg: AccelConfig, sim: str | None = None, devices: int = 1, ddr_abits: int = DDR_ABITS,
                 hbm_abits: int = HBM_ABITS, workdir: str | Path | None = None, in_order: bool = False,
                 waves: str | Path | None = None, wformats: tuple[str, ...] = ()):
        """`waves`: each `run` writes its FST there (a build of its own; `dfx.verify.waves` names the signals);
        `wformats`: the quantized weight families the core reads (`dfx.hw.qfetch.CORE_FAMILIES`)."""
        self.cfg, self.devices, self.sim = cfg, devices, simulator(sim)
        why = missing_simulator(self.sim)
        if why:
            raise RuntimeError(why)
        self.ddr_abits, self.hbm_abits = ddr_abits, hbm_abits
        self.word_bytes = {"ddr": ddr_data_bits(cfg) // 8, "hbm": cfg.hbm_width // 8}
        self.waves = Path(waves) if waves is not None else None
        self.runner, self.bdir, self.top = build_fast(cfg, self.sim, devices, ddr_abits, hbm_abits,
                                                      waves=self.waves is not None, in_order=in_order,
                                                      wformats=tuple(wformats))
        self.workdir = Path(workdir) if workdir else self.bdir / "jobs"
        self.names = mem_names(cfg, devices)

    @property
    def ddr_capacity(self) -> int:
        return self.word_bytes["ddr"] << self.ddr_abits

    @property
    def hbm_capacity(self) -> int:
        """Bytes of striped HBM the memories hold (every pseudo-channel's depth)."""
        return (self.word_bytes["hbm"] << self.hbm_abits) * self.cfg.hbm_channels

    @staticmethod
    def job_for(program: Program, steps, logits: bool = False, **kw) -> FastJob:
        """A job running `steps` [(stream, token, pos)] of `program` on all its devices, its images as every
        backend lays them out."""
        images, entries = [], []
        for k in range(program.n_devices):
            ddr, ent = ddr_layout(program, k)
            images.append({"ddr": ddr, "hbm": bytes(program.devices[k].hbm)})
            entries.append(ent)
        sym = program.symbols
        lg = (sym.logits, [sym.logits_pieces[k] for k in range(program.n_devices)]) if logits else None
        return FastJob(images, entries, [list(s) for s in steps], logits=lg, ring=(0, program.n_devices), **kw)

    def _check(self, job: FastJob) -> None:
        for img in job.images:
            if len(img["ddr"]) > self.ddr_capacity or len(img["hbm"]) > self.hbm_capacity:
                raise ValueError(f"a job's images ({len(img['ddr'])} B DDR, {len(img['hbm'])} B HBM) exceed the "
                                 f"fast harness's memories ({self.ddr_capacity} B DDR, {self.hbm_capacity} B HBM): "
                                 "build it with larger ddr_abits / hbm_abits")
        if len(job.images) != self.devices:
            raise ValueError(f"a job for {len(job.images)} device(s) on a harness of {self.devices}")

    def run(self, jobs: list[FastJob], log_name: str = "test.log") -> list[dict]:
        """Run `jobs` in one simulation, in order; returns one result per job (see the module docstring)."""
        t0 = time.time()
        wd = self.workdir
        if wd.exists():
            shutil.rmtree(wd)
        wd.mkdir(parents=True)
        specs = []
        for i, job in enumerate(jobs):
            self._check(job)
            jid = f"j{i}"
            for k, img in enumerate(job.images):
                (wd / f"{jid}_d{k}_ddr.bin").write_bytes(bytes(img["ddr"]))
                for c, blob in enumerate(stripe(img["hbm"], self.cfg)):
                    (wd / f"{jid}_d{k}_hbm{c:02d}.bin").write_bytes(blob)
            spec = asdict(job)
            del spec["images"]
            read_mem = {}
            for k in range(self.devices):
                if job.read_ddr:
                    read_mem[f"d{k}_ddr"] = job.read_ddr
                if job.read_hbm:
                    per = -(-job.read_hbm // self.cfg.beat_bytes) * self.cfg.channel_beat_bytes
                    for c in range(self.cfg.hbm_channels):
                        read_mem[f"d{k}_hbm{c:02d}"] = per
            spec.update(id=jid, read={"vbuf": [list(r) for r in job.vbuf], "sregs": job.sregs, "mem": read_mem})
            specs.append(spec)
        jf = wd / "jobs.json"
        jf.write_text(json.dumps({"cfg": self.cfg.to_dict(), "devices": self.devices, "dir": str(wd),
                                  "word_bytes": self.word_bytes, "jobs": specs}))
        log = wd / log_name
        run_module(self.runner, "dfx.verify.fast_tb", self.top, self.bdir, wd, sim_env(**{FAST_JOB_ENV: str(jf)}),
                   log, testcase="dfx_fast_jobs", waves=self.waves is not None)
        if self.waves is not None and dump_path(self.sim, self.bdir, wd, self.top).exists():
            shutil.move(dump_path(self.sim, self.bdir, wd, self.top), self.waves)
        out = wd / "results.jsonl"
        lines = out.read_text().splitlines() if out.exists() else []
        if len(lines) != len(jobs):
            raise RuntimeError(f"fast RTL simulation ({self.sim}) ended after {len(lines)} of {len(jobs)} jobs: "
                               f"{log_text(log)[-3000:]}")
        results = [self._result(json.loads(line), job) for line, job in zip(lines, jobs)]
        self.last_wall_s = time.time() - t0
        return results

    def _result(self, raw: dict, job: FastJob) -> dict:
        cfg = self.cfg
        raw["vbuf"] = [np.frombuffer(bytes.fromhex(v), np.float16).copy() for v in raw["vbuf"]]
        raw["sregs"] = [np.array(s, np.uint32).view(np.float32) for s in raw["sregs"]]
        mem = {name: bytes.fromhex(v) for name, v in raw["mem"].items()}
        raw["ddr"] = [mem.get(f"d{k}_ddr", b"")[:job.read_ddr] for k in range(self.devices)]
        raw["hbm"] = []
        for k in range(self.devices):
            chans = [mem.get(f"d{k}_hbm{c:02d}") for c in range(cfg.hbm_channels)]
            raw["hbm"].append(bytes(unstripe(chans, cfg))[:job.read_hbm] if all(chans) else b"")
        logits = []
        if job.logits:
            vocab = max(b for pieces in job.logits[1] for _, b in pieces)
            for step in raw["logits"]:
                buf = np.zeros(vocab, np.float16)
                for dev in step:
                    for a, b, blob in dev:
                        buf[a:b] = np.frombuffer(bytes.fromhex(blob), np.float16)
                logits.append(buf)
        raw["logits"] = logits
        raw["mem"] = mem
        return raw


__all__ = ["FastCore", "FastJob", "greedy_steps"]
