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
from dfx.sim.ring import Ring

from .difftest_gen import RandomProgram, generate
from .fast_core import STREAM_ALIGN, FastCore, FastJob, stream_images

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


def _images(p: RandomProgram, instrs=None) -> tuple[list[bytes], int]:
    """Each device's DDR image as the harness loads it (its data, then the stream 4 KiB aligned) and the stream's
    ENTRY (the same on every device)."""
    return stream_images(p.images, isa.encode_stream(p.instrs if instrs is None else instrs))


def settings(seed: int) -> tuple[int, int]:
    """The memory model's (read latency, back-pressure) for a seed: mostly gentle, sometimes harsh."""
    rng = np.random.default_rng([seed, 0x5EED])
    return int(rng.choice([0, 1, 4, 20, 60])), int(rng.choice([0, 0, 3, 8, 14]))


def _simulate(cfg: AccelConfig, p: RandomProgram, ddrs: list[bytes], streams: dict, steps) -> list[dict]:
    """The functional simulator's end state per device (a `dfx.sim.ring.Ring` for a program of several)."""
    devs = [Device.of_image(cfg, DeviceImage(dict(streams), bytearray(hbm), bytearray(ddr)), device=k,
                            ring=p.devices) for k, (ddr, (_, hbm)) in enumerate(zip(ddrs, p.images))]
    runner = devs[0] if len(devs) == 1 else Ring.of_devices(devs, range(len(devs)))
    for stream, token, pos in steps:
        runner.run(stream, token, pos)
    return [{"vbuf": dev.vbuf.copy(), "s": dev.s.copy(), "ddr": bytes(dev.ddr), "hbm": bytes(dev.hbm)}
            for dev in devs]


def reference(cfg: AccelConfig, p: RandomProgram, instrs=None, steps=None) -> list[dict]:
    """The functional simulator's end state of the program (optionally another instruction list / steps), one
    dict per device."""
    ddrs, _ = _images(p, instrs)
    return _simulate(cfg, p, ddrs, {"main": p.instrs if instrs is None else instrs},
                     p.steps if steps is None else steps)


def _job(p: RandomProgram, ddrs: list[bytes], entries: dict, steps) -> FastJob:
    latency, stall = settings(p.seed)
    return FastJob([{"ddr": ddr, "hbm": bytes(hbm)} for ddr, (_, hbm) in zip(ddrs, p.images)],
                   [dict(entries) for _ in ddrs], [list(s) for s in steps], latency=latency, stall=stall,
                   timeout=400_000, vbuf=p.vbuf, sregs=True, read_ddr=len(ddrs[0]), read_hbm=len(p.hbm),
                   ring=(0, p.devices))


def job(cfg: AccelConfig, p: RandomProgram, instrs=None, steps=None) -> FastJob:
    ddrs, entry = _images(p, instrs)
    return _job(p, ddrs, {"main": entry}, p.steps if steps is None else steps)


def compare(cfg: AccelConfig, p: RandomProgram, refs: list[dict], res: dict) -> str | None:
    """None when the RTL's end state equals the simulator's on every device, else one line naming the first
    difference."""
    for i, run in enumerate(res["runs"]):
        for k, dev in enumerate(run.get("devices") or [run]):
            at = f"device {k} " if p.devices > 1 else ""
            if dev.get("timeout"):
                return f"{at}run {i} did not finish (no ap_done within the cycle limit)"
            if dev["status"] != HALTED:
                pc = dev["error_pc"]
                return (f"{at}run {i} ended with STATUS 0x{dev['status']:x} at pc {pc} "
                        f"(`{isa.disassemble(p.instrs[pc]) if pc < len(p.instrs) else '?'}`)")
    if res["mem_error"]:
        return f"the memory model flagged error bits 0x{res['mem_error']:x} (1: out of range, 2: AXI protocol)"
    for k, ref in enumerate(refs):
        why = _differs(cfg, p, ref, res, k)
        if why:
            return f"device {k}: {why}" if p.devices > 1 else why
    return None


def _differs(cfg: AccelConfig, p: RandomProgram, ref: dict, res: dict, k: int) -> str | None:
    d = cfg.d
    got = res["vbuf"][k].view(np.uint16)
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
    gs, ws = res["sregs"][k].view(np.uint32), ref["s"].view(np.uint32)
    bad = np.flatnonzero(gs != ws)
    if bad.size:
        r = int(bad[0])
        return f"S{r} is 0x{gs[r]:08x} on the RTL, 0x{ws[r]:08x} in the simulator"
    for name in ("ddr", "hbm"):
        g = np.frombuffer(res[name][k], np.uint8)
        w = np.frombuffer(ref[name], np.uint8)
        bad = np.flatnonzero(g != w[:len(g)]) if len(g) == len(w) else np.array([min(len(g), len(w))])
        if bad.size:
            b = int(bad[0])
            return (f"{name.upper()} byte {b} is 0x{int(g[b]) if b < len(g) else -1:02x} on the RTL, "
                    f"0x{int(w[b]) if b < len(w) else -1:02x} in the simulator ({bad.size} bytes differ)")
    return None


def reproducer(cfg: AccelConfig, p: RandomProgram, what: str, first: str | None, path: Path,
               wformats: tuple[str, ...] = ()) -> Path:
    latency, stall = settings(p.seed)
    b64 = lambda b: base64.b64encode(bytes(b)).decode()       # noqa: E731
    path.write_text(json.dumps({
        "seed": p.seed, "config": cfg.to_dict(), "latency": latency, "stall": stall, "steps": p.steps,
        "mismatch": what, "first": first, "asm": [isa.disassemble(i) for i in p.instrs],
        "ddr": b64(p.ddr), "hbm": b64(p.hbm), "vbuf": p.vbuf,
        "peers": [[b64(ddr), b64(hbm)] for ddr, hbm in p.peers], "wformats": list(wformats)}, indent=1))
    return path


def load_reproducer(path) -> tuple[AccelConfig, RandomProgram]:
    """The config and program of a reproducer file (its core's weight families: `reproducer_wformats`)."""
    spec = json.loads(Path(path).read_text())
    b = lambda s: bytearray(base64.b64decode(s))              # noqa: E731
    p = RandomProgram(spec["seed"], isa.assemble("\n".join(spec["asm"])), b(spec["ddr"]), b(spec["hbm"]),
                      [tuple(s) for s in spec["steps"]], [tuple(v) for v in spec["vbuf"]],
                      peers=[(b(ddr), b(hbm)) for ddr, hbm in spec.get("peers", [])])
    return AccelConfig.from_dict(spec["config"]), p


def reproducer_wformats(path) -> tuple[str, ...]:
    return tuple(json.loads(Path(path).read_text()).get("wformats", ()))


class DiffTest:
    """Differential testing on one fast-harness build (see the module docstring): `devices` cores in a ring,
    built with the quantized weight families `wformats`; `batched`: draw BATCH / CHUNK / SLOT (None: the
    generator's default, `difftest_gen.BATCHED`)."""

    def __init__(self, cfg: AccelConfig, sim: str | None = None, out_dir: str | Path = "build/difftest",
                 subnormals: bool = True, devices: int = 1, wformats: tuple[str, ...] = (),
                 batched: bool | None = None):
        self.cfg, self.subnormals = cfg, subnormals
        self.devices, self.wformats, self.batched = devices, tuple(wformats), batched
        self.core = FastCore(cfg, sim, devices=devices, wformats=self.wformats)
        self.out = Path(out_dir)
        self.report = Report()

    def generate(self, seed: int) -> RandomProgram:
        return generate(self.cfg, seed, self.subnormals, self.devices, self.wformats, self.batched)

    def bisect(self, p: RandomProgram) -> str:
        """The first instruction after which the RTL's state differs from the simulator's: every prefix of every
        run (the runs before it complete) runs on both; the first that differs names it."""
        end = next(pc for pc, ins in enumerate(p.instrs) if ins.op.mnemonic == "HALT")
        cases = [(s, pc) for s in range(len(p.steps)) for pc in range(end)]
        progs = [_TwoStream(RandomProgram(p.seed, p.instrs, p.ddr, p.hbm, p.steps[:s + 1], p.vbuf, peers=p.peers),
                            p.instrs[:pc + 1] + [isa.Instr("HALT")]) for s, pc in cases]
        outs = self.core.run([c.job() for c in progs], "bisect.log")
        for (s, pc), c, res in zip(cases, progs, outs):
            try:
                why = compare(self.cfg, c.p, c.reference(self.cfg), res)
            except SimError:                 # a prefix the simulator refuses (a BATCH cut from its LINEAR, ...)
                continue
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
                self._batch(rep, pool, [self.generate(seed) for seed in seeds[i:i + batch]])
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
                path = reproducer(self.cfg, p, why, first, self.out / f"mismatch_{p.seed}.json", self.wformats)
                rep.mismatches.append(Mismatch(p.seed, why, first, str(path)))


class _TwoStream:
    """A bisection case: runs 0..s-1 execute the full stream `main`, the last run the prefix `cut` (+ HALT)."""

    def __init__(self, p: RandomProgram, cut: list):
        self.p, self.cut = p, cut

    def _ddr(self) -> tuple[list[bytes], dict]:
        code = {"main": isa.encode_stream(self.p.instrs), "cut": isa.encode_stream(self.cut)}
        out, entries = [], {}
        for ddr, _ in self.p.images:
            ddr = bytearray(ddr)
            for name, blob in code.items():
                off = -(-len(ddr) // STREAM_ALIGN) * STREAM_ALIGN
                ddr.extend(b"\0" * (off - len(ddr)))
                ddr.extend(blob)
                entries[name] = off
            out.append(bytes(ddr))
        return out, entries

    def _steps(self) -> list:
        steps = [list(s) for s in self.p.steps]
        steps[-1][0] = "cut"
        return steps

    def job(self) -> FastJob:
        ddrs, entries = self._ddr()
        return _job(self.p, ddrs, entries, self._steps())

    def reference(self, cfg) -> list[dict]:
        ddrs, _ = self._ddr()
        return _simulate(cfg, self.p, ddrs, {"main": self.p.instrs, "cut": self.cut}, self._steps())


def replay(path, sim: str | None = None) -> str | None:
    """Run a reproducer again on the fast harness (a core built as it names); None when the RTL now agrees with
    the simulator."""
    cfg, p = load_reproducer(path)
    dt = DiffTest(cfg, sim, devices=p.devices, wformats=reproducer_wformats(path))
    [res] = dt.core.run([job(cfg, p)])
    return compare(cfg, p, reference(cfg, p), res)


__all__ = ["DiffTest", "Mismatch", "Report", "compare", "load_reproducer", "replay", "reproducer",
           "reproducer_wformats", "settings"]
