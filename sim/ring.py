"""N simulated devices joined by ring links, executed in event order.

Each device runs until it reaches a router instruction; the ring then resolves what it can: an ALLGATHER
completes when every device has reached it (with the same shape), a RECV when its link holds a message (SEND
never blocks: links are queues). When no device can move, that is a deadlock, reported with every blocked
device's PC and what it waits for.

The devices that can move run at the same time, each on a thread of its own (the matrix kernel releases the
GIL: `dfx.fastmpu.tiled_matvec`), up to the cores the process has; every device only touches its own state, and
the ring resolves router instructions between rounds, so the results are those of running them one by one.
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from dfx import fastmpu as fm
from dfx import isa
from dfx.errors import SimError
from dfx.program import Program

from .functional import DeadlineExceeded, Device

_UNBATCHED = isa.Batch(1, 0, 0)


class Ring:
    def __init__(self, program: Program, check_fences: bool = True, budget: int | None = None):
        self._join([Device(program, k, check_fences, budget=budget) for k in range(program.n_devices)],
                   program.manifest.ring)

    @classmethod
    def of_devices(cls, devices: list[Device], order) -> Ring:
        """A ring of devices built without a program (`Device.of_image`), joined in `order`."""
        ring = cls.__new__(cls)
        ring._join(devices, order)
        return ring

    def _join(self, devices: list[Device], order):
        self.devices = devices
        self.order = list(order)
        n = len(self.devices)
        if sorted(self.order) != list(range(n)):
            raise SimError(f"ring order {self.order} is not a permutation of the devices 0..{n - 1}")
        self.position = {dev: i for i, dev in enumerate(self.order)}
        self.d = devices[0].cfg.d
        cores = fm.cpu_count()
        for dev in devices:                     # the cores are shared out among the devices
            dev.threads = max(1, cores // n)
        self.parallel = n > 1 and cores > 1
        self._threads: list[ThreadPoolExecutor] | None = None     # one per device, made on first use

    def _advance(self, gens, ks: list[int]) -> list[tuple]:
        """next() of the generators of devices `ks`, concurrently when the ring is parallel; per device, in order:
        ("step", (pc, instr, fields)), ("done", None) or ("error", exception). A device's generator always runs on
        its own thread (its numpy error state is set there)."""
        def step(k):
            try:
                return "step", next(gens[k])
            except StopIteration:
                return "done", None
            except BaseException as e:          # noqa: BLE001 - handed to the caller, which raises it
                return "error", e
        if not self.parallel:
            return [step(k) for k in ks]
        if self._threads is None:
            self._threads = [ThreadPoolExecutor(1, thread_name_prefix=f"dfx-device{k}")
                             for k in range(len(self.devices))]
        futs = [self._threads[k].submit(step, k) for k in ks]
        return [f.result() for f in futs]

    def neighbour(self, dev: int, direction: int) -> int:
        i = self.position[dev]
        return self.order[(i + (1 if direction == 0 else -1)) % len(self.order)]

    def run(self, stream: str, token: int, pos: int, deadline: float | None = None) -> None:
        """One run of `stream` on every device; `DeadlineExceeded` once `time.monotonic()` passes `deadline`."""
        with fm.torch_single_thread():
            self._run(stream, token, pos, deadline)

    def _run(self, stream: str, token: int, pos: int, deadline: float | None) -> None:
        n = len(self.devices)
        self._deadline = deadline
        gens = [dev.steps(stream, token, pos, deadline) for dev in self.devices]
        waiting: dict[int, tuple] = {}            # device -> (pc, instr, fields) it is blocked on
        done: set[int] = set()
        links: dict[tuple[int, int], deque] = {}  # (src, dst) -> messages

        def advance(ks):
            for k, (what, v) in zip(ks, self._advance(gens, ks)):
                if what == "error":
                    raise v
                if what == "done":
                    waiting.pop(k, None)
                    done.add(k)
                else:
                    waiting[k] = v

        advance(list(range(n)))
        while len(done) < n:
            moved = []
            for k in list(waiting):
                pc, ins, f = waiting[k]
                m = ins.op.mnemonic
                if m == "SEND":
                    dst = self.neighbour(k, f["dir"])
                    links.setdefault((k, dst), deque()).append(
                        self.devices[k].vector(f["vaddr"], f["n"]).copy())
                    moved.append(k)
                elif m == "RECV":
                    src = self.neighbour(k, 1 - f["dir"])       # data travelling forward comes from behind
                    q = links.get((src, k))
                    if q:
                        msg = q.popleft()
                        if msg.size != f["n"]:
                            raise SimError(f"device {k} pc {pc} `{isa.disassemble(ins)}`: received {msg.size} "
                                           f"elements from device {src}, expected {f['n']}")
                        self.devices[k].vector(f["vaddr"], f["n"])[:] = msg
                        moved.append(k)
            gathers = {k: w for k, w in waiting.items() if w[1].op.mnemonic == "ALLGATHER"}
            if not moved and len(gathers) == n:
                self._allgather(gathers)
                moved = list(range(n))
            if not moved:
                raise SimError(self._deadlock(waiting, done, stream))
            advance(moved)

    def _allgather(self, gathers: dict[int, tuple]):
        """One ALLGATHER on every device, or under a BATCH prefix m of them (vectors `dst_stride` entries apart)."""
        shapes = {(f["n"], f["devices"], f["gran"], f.get("batch", _UNBATCHED)) for _, _, f in gathers.values()}
        if len(shapes) != 1:
            detail = "; ".join(f"device {k} pc {pc} `{isa.disassemble(i)}`" + (" batched %s" % (f["batch"],)
                               if "batch" in f else "") for k, (pc, i, f) in gathers.items())
            raise SimError(f"ALLGATHER shapes differ between devices: {detail}")
        n, devices, gran, batch = shapes.pop()
        if devices != len(self.devices):
            k, (pc, ins, _) = next(iter(gathers.items()))
            raise SimError(f"device {k} pc {pc} `{isa.disassemble(ins)}`: ALLGATHER over {devices} devices, "
                           f"but the ring has {len(self.devices)}")
        bounds = isa.chunk_bounds(n, devices, gran * self.d)
        for j in range(batch.m):
            if self._deadline is not None and time.monotonic() > self._deadline:
                k, (pc, ins, _) = next(iter(gathers.items()))
                raise DeadlineExceeded(f"device {k} pc {pc} `{isa.disassemble(ins)}`: the run did not finish by "
                                       "its deadline")
            full = {}
            for k, (pc, ins, f) in gathers.items():
                try:
                    full[k] = self.devices[k].vector(f["vaddr"] + j * batch.dst_stride, n)
                except SimError as e:
                    raise SimError(f"device {k} pc {pc} `{isa.disassemble(ins)}`: {e}") from None
            for i, owner in enumerate(self.order):
                a, b = bounds[i]
                for k in full:
                    if k != owner:
                        full[k][a:b] = full[owner][a:b]

    def _deadlock(self, waiting, done, stream) -> str:
        parts = []
        for k, (pc, ins, f) in sorted(waiting.items()):
            m = ins.op.mnemonic
            if m == "RECV":
                what = f"a message from device {self.neighbour(k, 1 - f['dir'])} that was never sent"
            else:
                others = [j for j in range(len(self.devices)) if j not in waiting or
                          waiting[j][1].op.mnemonic != "ALLGATHER"]
                what = "devices " + ", ".join(
                    f"{j} ({'halted' if j in done else 'at pc %d' % waiting[j][0]})" for j in others)
            parts.append(f"device {k} pc {pc} `{isa.disassemble(ins)}` waits for {what}")
        return f"deadlock in stream {stream}: " + "; ".join(parts)
