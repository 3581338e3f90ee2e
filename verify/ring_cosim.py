"""The ring kernel in RTL simulation, host side: two kernels over a lossy link (`run_pair`), and whole rings of
cores with ring kernels between them (`KernelRingCore`).

    res = run_pair(128, LinkModel(drop=300, flip=300, stall=3000), messages=40, seed=1)   # -> PairResult
    core = KernelRingCore(program, LinkModel(drop=200, flip=200), sim="icarus")           # an RtlCore
    res = core.generate(prompt, 2)

`run_pair` builds `dfx.hw.ring_top.KernelPair` (cached under build/ring_kernel/, rebuilt when its Verilog
changes) and runs the cocotb test `dfx.verify.ring_kernel_tb.ring_pair`. `KernelRingCore` is
`dfx.verify.rtl_core.RtlCore` with `dfx.hw.ring_top.KernelRing` as the design: the same ports and top name as
the plain ring, so the same job driver (`dfx.verify.core_tb`) loads the memories, runs and reads the logits.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dfx.config import AccelConfig
from dfx.hw.ring_top import PAIR_NAME, LinkModel, pair_verilog, ring_wrapper_verilog, shell_verilog
from dfx.hw.top import ring_name
from dfx.hw.top import verilog as core_verilog
from dfx.program import Program

from .core_build import kick_comb_processes, source_hash
from .core_tb import JOB_ENV as CORE_JOB_ENV
from .fast_verilator import verilator_build
from .ring_kernel_tb import COUNTERS_ENV, JOB_ENV
from .rtl_core import RtlCore, RtlResult
from .toolchain import log_text, missing_simulator, run_module, runner_build, sim_env, simulator

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build" / "ring_kernel"


@dataclass
class PairResult:
    messages: int
    beats: int
    status: dict = field(default_factory=dict)      # {"a"|"b": {register: value}} (dfx.hw.ring_kernel)
    links: dict = field(default_factory=dict)       # {"link0"|"ack0": {"dropped", "flipped"}}
    wall_s: float = 0.0
    sim_ns: int = 0


def _key(*parts) -> str:
    """Hash of every hw/ module, the core package files the RTL reads, and `parts` (the design's parameters)."""
    h = hashlib.sha256(repr(parts).encode())
    for p in sorted([*(REPO / "hw").glob("*.py"), *(REPO / "dfx" / f for f in ("isa.py", "regmap.py", "config.py",
                                                                               "numerics.py"))]):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


def _module_text(name: str, make) -> str:
    """A generated Verilog module set, kept under build/ring_kernel/modules/<name>.v (`name` carries its key)."""
    path = BUILD / "modules" / f"{name}.v"
    if not path.exists():
        t0 = time.time()
        print(f"generating {name}.v (Amaranth + Yosys, minutes)", file=sys.stderr, flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(make())
        tmp.replace(path)
        print(f"generated {name}.v in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return path.read_text()


def core_module_text(cfg: AccelConfig, wformats: tuple[str, ...] = ()) -> str:
    """The Verilog of one core (module `dfx.hw.top.TOP_NAME`, `dfx.hw.top.verilog(cfg)`; `wformats`: the quantized
    weight families it reads), generated once per config, families and RTL sources (`core_build.source_hash`)."""
    tag = "".join(f"_{f}" for f in wformats)
    return _module_text(f"core_{cfg.name}_{cfg.config_hash}{tag}_{source_hash()}",
                        lambda: core_verilog(cfg, **({"wformats": tuple(wformats)} if wformats else {})))


def kernel_ring_text(cfg: AccelConfig, n: int, model: LinkModel, kernel: dict | None = None) -> str:
    """The ring of `KernelRingCore` as one Verilog text: the core's module (`dfx.hw.top.verilog(cfg)`) and the
    kernel's (`dfx.hw.ring_top.shell_verilog`), each generated once and cached by what it is made from, then
    the small wrapper that instantiates them n times with the links between them."""
    kernel = dict(kernel or {})
    core = core_module_text(cfg)
    h = hashlib.sha256(repr((16 * cfg.d, sorted(kernel.items()))).encode())
    for f in ("ring_kernel.py", "ring_link.py", "ring_top.py", "regs.py"):
        h.update((REPO / "hw" / f).read_bytes())
    shell = _module_text(f"kernel_{16 * cfg.d}_{h.hexdigest()[:16]}", lambda: shell_verilog(16 * cfg.d, **kernel))
    return "\n".join((core, shell, ring_wrapper_verilog(cfg, n, model, kernel)))


def build_text(make_text, key: str, top: str, bdir: Path, sim: str, verilator_args=(), fast: bool = False):
    """bdir/<top>.v from `make_text()` (only when `key` changed: the Verilog takes minutes), built for `sim`
    (recompiled only when the text changed; `fast`: Verilator builds the fast harness's way,
    `dfx.verify.fast_verilator`). Returns the runner."""
    bdir.mkdir(parents=True, exist_ok=True)
    src, stamp = bdir / f"{top}.v", bdir / "stamp.txt"
    fresh = False
    if not src.exists() or not stamp.exists() or stamp.read_text() != key:
        text = make_text()
        text = kick_comb_processes(text) if sim == "icarus" else text
        fresh = not src.exists() or src.read_text() != text
        if fresh:
            src.write_text(text)
    if fast and sim == "verilator":
        runner = verilator_build(src, top, bdir, fresh=fresh, waves=False)
    else:
        runner = runner_build(sim, src, top, bdir, fresh=fresh, waves=False, verilator_args=verilator_args)
    stamp.write_text(key)
    return runner


def run_pair(core_bits: int, model: LinkModel, messages: int = 40, max_beats: int = 12, seed: int = 1,
             src_gap: float = 0.2, sink_stall: float = 0.05, sink_burst: int = 200, sim: str | None = None,
             kernel: dict | None = None, timeout_us: float = 2000.0) -> PairResult:
    """Random messages through two ring kernels over `model` (both directions); raises if any is lost, cut,
    reordered or altered."""
    sim = simulator(sim)
    why = missing_simulator(sim)
    if why:
        raise RuntimeError(why)
    t0 = time.time()
    kernel = dict(kernel or {})
    bdir = BUILD / f"pair{core_bits}_{sim}"
    runner = build_text(lambda: pair_verilog(core_bits, model, **kernel), _key(core_bits, model, kernel, sim),
                        PAIR_NAME, bdir, sim)
    jobdir = bdir / "job"
    jobdir.mkdir(exist_ok=True)
    spec = {"dir": str(jobdir), "core_bits": core_bits, "messages": messages, "max_beats": max_beats,
            "seed": seed, "src_gap": src_gap, "sink_stall": sink_stall, "sink_burst": sink_burst,
            "ap_ns": 5, "user_ns": 2.56, "timeout_us": timeout_us}
    (jobdir / "job.json").write_text(json.dumps(spec))
    out = jobdir / "result.json"
    out.unlink(missing_ok=True)
    log = jobdir / "test.log"
    _, fails = run_module(runner, "dfx.verify.ring_kernel_tb", PAIR_NAME, bdir, jobdir,
                          sim_env(**{JOB_ENV: str(jobdir / "job.json")}), log, testcase="ring_pair")
    if fails or not out.exists():
        raise RuntimeError(f"ring-kernel pair simulation ({sim}) failed: {log_text(log)[-3000:]}")
    r = json.loads(out.read_text())
    return PairResult(r["messages"], r["beats"], r["status"], r["links"], time.time() - t0, r["sim_ns"])


class KernelRingCore(RtlCore):
    """`RtlCore` on a ring of cores joined through ring kernels and lossy links (`dfx.hw.ring_top.KernelRing`);
    the program must be a multi-device one. `sim`: $SIM, else Icarus (on the 2-core development machine
    Icarus finishes first: Verilator 5 emits every instance's logic into one C++ class, 220 MB of C++ for 2
    cores + 2 kernels, whose compile alone outlasts the whole Icarus run; docs/board_flow.md)."""

    def __init__(self, program: Program, model: LinkModel = LinkModel(), sim: str | None = None,
                 kernel: dict | None = None):
        if program.n_devices < 2:
            raise ValueError(f"a ring needs a program of 2 or more devices, not {program.n_devices}")
        self.program, self.device = program, 0
        self.cfg: AccelConfig = program.config
        self.sim = simulator(sim)
        self.waves = False
        why = missing_simulator(self.sim)
        if why:
            raise RuntimeError(why)
        self.n = program.n_devices
        self.devs = list(range(self.n))
        top = ring_name(self.n)
        self.bdir = BUILD / f"{self.cfg.name}_{self.cfg.config_hash}_{self.sim}_kring{self.n}"
        self.runner = build_text(lambda: kernel_ring_text(self.cfg, self.n, model, kernel),
                                 _key(self.cfg.config_hash, self.n, model, kernel, self.sim), top, self.bdir,
                                 self.sim, verilator_args=("-O3",))

    def _launch(self, job: dict) -> dict:
        """`RtlCore._launch`, then the kernels' and links' counters (cocotb test `ring_counters`, after the job
        in the same simulation)."""
        jobdir = Path(job["dir"])
        spec, out, log, counters = (jobdir / f for f in ("job.json", "result.json", "test.log", "counters.json"))
        spec.write_text(json.dumps(job))
        for f in (out, counters):
            f.unlink(missing_ok=True)
        _, fails = run_module(self.runner, ["dfx.verify.core_tb", "dfx.verify.ring_kernel_tb"], ring_name(self.n),
                              self.bdir, jobdir, sim_env(**{CORE_JOB_ENV: str(spec), COUNTERS_ENV: str(counters)}),
                              log)
        if fails or not out.exists() or not counters.exists():
            raise RuntimeError(f"RTL simulation ({self.sim}) failed: {log_text(log)[-3000:]}")
        return {**json.loads(out.read_text()), "counters": json.loads(counters.read_text())}

    def _result(self, raw: dict, t0: float) -> RtlResult:
        res = super()._result(raw, t0)
        res.counters = raw["counters"]
        return res
