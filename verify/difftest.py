"""Random differential testing of the RTL core against the functional simulator (riscv-dv style).

    dt = DiffTest(cfg, sim="verilator")                 # one fast-harness build (dfx.verify.fast_core)
    report = dt.run(seeds, batch=200)                   # generate, run on both, compare
    report.mismatches                                   # [Mismatch(seed, what, first, reproducer path)]

Each seed's program (`dfx.verify.difftest_gen.generate`) runs on the RTL core in the fast harness, with the
memory model's read latency and back-pressure drawn from the seed too, and on `dfx.sim.functional.Device`. At
the end both must agree bit for bit on: every run's completion (STATUS halted, no memory-model error), the VBUF
entries the program defines, the scalar registers, the whole DDR image (data and stream) and the whole HBM
image. On a mismatch the program is bisected: every prefix of the failing run (the instructions up to pc p,
then HALT) runs on both, and the first p whose state differs names the first differing instruction. A
reproducer (seed, harness settings, the assembly and the images) is written as JSON; `replay(path)` runs it
again. A program the simulator refuses is a generator bug, reported as such (`invalid`).
"""
from __future__ import annotations

import base64
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dfx import isa, regmap
from dfx.config import AccelConfig
from dfx.errors import SimError
from dfx.program import DeviceImage
from dfx.sim.functional import Device

from .difftest_gen import RandomProgram, generate
from .fast_core import FastCore, FastJob

STREAM_ALIGN = 4096
HALTED = regmap.STATUS_BITS["halted"]


@dataclass
class Mismatch:
    seed: int
    what: str                  # the first difference at the end of the program
    first: str | None = None   # the first differing instruction (bisection)
    reproducer: str | None = None


@dataclass
class Report:
    programs: int = 0
    instructions: int = 0
    cycles: int = 0
    mismatches: list = field(default_factory=list)
    invalid: list = field(default_factory=list)
    bins: Counter = field(default_factory=Counter)
    wall_s: float = 0.0
    rtl_wall_s: float = 0.0


def _images(p: RandomProgram, instrs=None) -> tuple[bytes, int]:
    """The DDR image the harness loads (data, then the stream 4 KiB aligned) and the stream's ENTRY."""
    ddr = bytearray(p.ddr)
    entry = -(-len(ddr) // STREAM_ALIGN) * STREAM_ALIGN
    ddr.extend(b"\0" * (entry - len(ddr)))
    ddr.extend(isa.encode_stream(p.instrs if instrs is None else instrs))
    return bytes(ddr), entry


def settings(seed: int) -> tuple[int, int]:
    """The memory model's (read latency, back-pressure) for a seed: mostly gentle, sometimes harsh."""
    rng = np.random.default_rng([seed, 0x5EED])
    return int(rng.choice([0, 1, 4, 20, 60])), int(rng.choice([0, 0, 3, 8, 14]))


def reference(cfg: AccelConfig, p: RandomProgram, instrs=None, steps=None) -> dict:
    """The functional simulator's end state of the program (optionally another instruction list / steps)."""
    ddr, _ = _images(p, instrs)
    dev = Device.of_image(cfg, DeviceImage({"main": p.instrs if instrs is None else instrs}, bytearray(p.hbm),
                                           bytearray(ddr)))
    for stream, token, pos in (p.steps if steps is None else steps):
        dev.run(stream, token, pos)
    return {"vbuf": dev.vbuf.copy(), "s": dev.s.copy(), "ddr": bytes(dev.ddr), "hbm": bytes(dev.hbm)}


def job(cfg: AccelConfig, p: RandomProgram, instrs=None, steps=None) -> FastJob:
    ddr, entry = _images(p, instrs)
    latency, stall = settings(p.seed)
    return FastJob([{"ddr": ddr, "hbm": bytes(p.hbm)}], [{"main": entry}],
                   [list(s) for s in (p.steps if steps is None else steps)], latency=latency, stall=stall,
                   timeout=400_000, vbuf=p.vbuf, sregs=True, read_ddr=len(ddr), read_hbm=len(p.hbm))


def compare(cfg: AccelConfig, p: RandomProgram, ref: dict, res: dict) -> str | None:
    """None when the RTL's end state equals the simulator's, else one line naming the first difference."""
    for i, run in enumerate(res["runs"]):
        if run.get("devices", [{}])[0].get("timeout"):
            return f"run {i} did not finish (no ap_done within the cycle limit)"
        if run["status"] != HALTED:
            return (f"run {i} ended with STATUS 0x{run['status']:x} at pc {run['error_pc']} "
                    f"(`{isa.disassemble(p.instrs[run['error_pc']]) if run['error_pc'] < len(p.instrs) else '?'}`)")
    if res["mem_error"]:
        return f"the memory model flagged error bits 0x{res['mem_error']:x} (1: out of range, 2: AXI protocol)"
    d = cfg.d
    got = res["vbuf"][0].view(np.uint16)
    want = np.concatenate([ref["vbuf"][lo * d:hi * d] for lo, hi in p.vbuf]).view(np.uint16)
    bad = np.flatnonzero(got != want)
    if bad.size:
        i = int(bad[0])
        off = 0
        for lo, hi in p.vbuf:
            if i < off + (hi - lo) * d:
                e = lo * d + i - off
                break
            off += (hi - lo) * d
        return (f"VBUF element {e} (entry {e // d} lane {e % d}) is 0x{got[i]:04x} on the RTL, 0x{want[i]:04x} in the "
                f"simulator ({bad.size} elements differ)")
    gs, ws = res["sregs"][0].view(np.uint32), ref["s"].view(np.uint32)
    bad = np.flatnonzero(gs != ws)
    if bad.size:
        r = int(bad[0])
        return f"S{r} is 0x{gs[r]:08x} on the RTL, 0x{ws[r]:08x} in the simulator"
    for name in ("ddr", "hbm"):
        g = np.frombuffer(res[name][0], np.uint8)
        w = np.frombuffer(ref[name], np.uint8)
        bad = np.flatnonzero(g != w[:len(g)]) if len(g) == len(w) else np.array([min(len(g), len(w))])
        if bad.size:
            b = int(bad[0])
            return (f"{name.upper()} byte {b} is 0x{int(g[b]) if b < len(g) else -1:02x} on the RTL, "
                    f"0x{int(w[b]) if b < len(w) else -1:02x} in the simulator ({bad.size} bytes differ)")
    return None


def reproducer(cfg: AccelConfig, p: RandomProgram, what: str, first: str | None, path: Path) -> Path:
    latency, stall = settings(p.seed)
    path.write_text(json.dumps({
        "seed": p.seed, "config": cfg.to_dict(), "latency": latency, "stall": stall, "steps": p.steps,
        "mismatch": what, "first": first, "asm": [isa.disassemble(i) for i in p.instrs],
        "ddr": base64.b64encode(bytes(p.ddr)).decode(), "hbm": base64.b64encode(bytes(p.hbm)).decode(),
        "vbuf": p.vbuf}, indent=1))
    return path


def load_reproducer(path) -> tuple[AccelConfig, RandomProgram]:
    spec = json.loads(Path(path).read_text())
    p = RandomProgram(spec["seed"], isa.assemble("\n".join(spec["asm"])), bytearray(base64.b64decode(spec["ddr"])),
                      bytearray(base64.b64decode(spec["hbm"])), [tuple(s) for s in spec["steps"]],
                      [tuple(v) for v in spec["vbuf"]])
    return AccelConfig.from_dict(spec["config"]), p


class DiffTest:
    """Differential testing on one fast-harness build (see the module docstring)."""

    def __init__(self, cfg: AccelConfig, sim: str | None = None, out_dir: str | Path = "build/difftest",
                 subnormals: bool = True):
        self.cfg, self.subnormals = cfg, subnormals
        self.core = FastCore(cfg, sim)
        self.out = Path(out_dir)
        self.report = Report()

    def bisect(self, p: RandomProgram) -> str:
        """The first instruction after which the RTL's state differs from the simulator's: every prefix of every
        run (the runs before it complete) runs on both; the first that differs names it."""
        end = next(pc for pc, ins in enumerate(p.instrs) if ins.op.mnemonic == "HALT")
        cases = [(s, pc) for s in range(len(p.steps)) for pc in range(end)]
        progs = [_TwoStream(RandomProgram(p.seed, p.instrs, p.ddr, p.hbm, p.steps[:s + 1], p.vbuf),
                            p.instrs[:pc + 1] + [isa.Instr("HALT")]) for s, pc in cases]
        outs = self.core.run([c.job(self.cfg) for c in progs], "bisect.log")
        for (s, pc), c, res in zip(cases, progs, outs):
            why = compare(self.cfg, c.p, c.reference(self.cfg), res)
            if why:
                return f"run {s} pc {pc} `{isa.disassemble(p.instrs[pc])}`: {why}"
        return "no prefix differs (the difference needs the whole program)"

    def run(self, seeds, batch: int = 200, progress=None) -> Report:
        """Generate, run and compare the programs of `seeds`, `batch` per simulation; `progress(n)` after each
        batch. `self.report` is the report so far while it runs."""
        rep = self.report = Report()
        t0 = time.time()
        seeds = list(seeds)
        with ThreadPoolExecutor(1) as pool:
            for i in range(0, len(seeds), batch):
                self._batch(rep, pool, [generate(self.cfg, seed, self.subnormals) for seed in seeds[i:i + batch]])
                if progress:
                    progress(min(batch, len(seeds) - i))
        rep.wall_s = time.time() - t0
        return rep

    def _batch(self, rep: Report, pool, progs: list) -> None:
        """One simulation of `progs` on the RTL (in a thread: the simulator is another process) while the
        functional simulator computes their references here."""
        t1 = time.time()
        rtl = pool.submit(self.core.run, [job(self.cfg, p) for p in progs])
        rtl.add_done_callback(lambda _: setattr(rep, "rtl_wall_s", rep.rtl_wall_s + time.time() - t1))
        kept = []
        for p in progs:
            try:
                kept.append((p, reference(self.cfg, p)))
            except SimError as e:
                rep.invalid.append((p.seed, str(e)))
                kept.append((p, None))
        for (p, ref), res in zip(kept, rtl.result()):
            if ref is None:
                continue
            rep.bins.update(p.bins)
            rep.programs += 1
            rep.instructions += sum(len(p.instrs) for _ in p.steps)
            rep.cycles += sum(r["cycles"] for r in res["runs"])
            why = compare(self.cfg, p, ref, res)
            if why:
                self.out.mkdir(parents=True, exist_ok=True)
                first = self.bisect(p)
                path = reproducer(self.cfg, p, why, first, self.out / f"mismatch_{p.seed}.json")
                rep.mismatches.append(Mismatch(p.seed, why, first, str(path)))


class _TwoStream:
    """A bisection case: runs 0..s-1 execute the full stream `main`, the last run the prefix `cut` (+ HALT)."""

    def __init__(self, p: RandomProgram, cut: list):
        self.p, self.cut = p, cut

    def _ddr(self) -> tuple[bytes, dict]:
        ddr = bytearray(self.p.ddr)
        entries = {}
        for name, instrs in (("main", self.p.instrs), ("cut", self.cut)):
            off = -(-len(ddr) // STREAM_ALIGN) * STREAM_ALIGN
            ddr.extend(b"\0" * (off - len(ddr)))
            ddr.extend(isa.encode_stream(instrs))
            entries[name] = off
        return bytes(ddr), entries

    def _steps(self) -> list:
        steps = [list(s) for s in self.p.steps]
        steps[-1][0] = "cut"
        return steps

    def job(self, cfg) -> FastJob:
        ddr, entries = self._ddr()
        latency, stall = settings(self.p.seed)
        return FastJob([{"ddr": ddr, "hbm": bytes(self.p.hbm)}], [entries], self._steps(), latency=latency,
                       stall=stall, timeout=400_000, vbuf=self.p.vbuf, sregs=True, read_ddr=len(ddr),
                       read_hbm=len(self.p.hbm))

    def reference(self, cfg) -> dict:
        ddr, _ = self._ddr()
        dev = Device.of_image(cfg, DeviceImage({"main": self.p.instrs, "cut": self.cut}, bytearray(self.p.hbm),
                                               bytearray(ddr)))
        for stream, token, pos in self._steps():
            dev.run(stream, token, pos)
        return {"vbuf": dev.vbuf.copy(), "s": dev.s.copy(), "ddr": bytes(dev.ddr), "hbm": bytes(dev.hbm)}


def replay(path, sim: str | None = None) -> str | None:
    """Run a reproducer again on the fast harness; None when the RTL now agrees with the simulator."""
    cfg, p = load_reproducer(path)
    dt = DiffTest(cfg, sim)
    [res] = dt.core.run([job(cfg, p)])
    return compare(cfg, p, reference(cfg, p), res)


__all__ = ["DiffTest", "Mismatch", "Report", "compare", "load_reproducer", "replay", "reproducer", "settings"]
