"""The scheduler: one token step of every device, instruction by instruction (docs/perf.md).

- **Controller**: one instruction stream per device, dispatched in program order, one per cycle, into four
  in-order unit queues (MPU, VPU, DMA, ROUTER) of `queue_depth` entries; a full queue stalls dispatch.
- **Scoreboard** (ISA dependency rule 1): an instruction starts when no older instruction still writes a VBUF
  entry or scalar register it reads (RAW, until that writer completes), writes one it reads (WAR, until that
  reader has consumed its operands) or writes one it writes (WAW). `FENCE` stalls dispatch until the units in
  its mask have completed every older instruction (rule 2); `HALT` drains every unit. Weights are requested at
  dispatch, so the HBM read latency is hidden when a matrix instruction is dispatched early enough.
- **Router**: ALLGATHER waits for every device to reach it (DFX's blocking sync), then N-1 ring steps; SEND /
  RECV move one message to a ring neighbour.
- **Serial issue** (`Timing.serial`): an instruction starts only when the previous one has retired, after the
  controller's issue cycles.
- **The RTL's engines** (`Timing.engines == "rtl"`, the scoreboard core of hw/core.py): an instruction reaches
  its engine the controller's issue cycles after dispatch, holds its reads against younger writers until it
  completes (the core's scoreboard keeps every running instruction), and a matrix instruction or an HBM DMA
  instruction owns the HBM ports from its start to its completion (a structural hazard, older first).

Speed, exactly: within a step, devices with identical streams are scheduled once, and repeating decoder layers
are added up instead of simulated (`simulate_step`); tests/perf/test_schedule.py checks every shortcut against
the plain simulation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from dfx.errors import PerfError

from .trace import (K_BLOCK, K_FENCE, K_GATHER, K_HALT, K_NORMAL, K_RECV, K_SEND, MNEMONICS, RING_KINDS,
                    SCOREBOARD_EXTRA, U_MPU, Trace)

HISTORY = 16                       # gathers remembered for the periodicity shortcut


@dataclass(slots=True)
class DeviceStep:
    """One device's figures for one token step."""
    cycles: int = 0
    by_op: list = field(default_factory=lambda: [0] * len(MNEMONICS))   # exposed cycles per mnemonic
    by_bin: list = field(default_factory=list)                          # exposed cycles per layer bin
    busy: list = field(default_factory=lambda: [0, 0, 0, 0])            # occupancy per unit
    hbm_bytes: int = 0
    ddr_bytes: int = 0
    link_bytes: int = 0
    sync_wait: int = 0
    ring_cycles: int = 0


class Pending(NamedTuple):
    """A ring instruction a device waits on (the coordinator completes it with `DeviceScheduler.finish`)."""
    kind: int                       # K_GATHER, K_SEND or K_RECV
    entry: int
    start: int                      # when its operands were ready and the router free
    latency: int


class Snapshot(NamedTuple):
    """A device's figures so far (`DeviceScheduler.stats`), to add up repeating periods."""
    by_op: list
    by_bin: list
    busy: list
    hbm_bytes: int
    ddr_bytes: int
    link_bytes: int
    sync_wait: int
    ring_cycles: int


@dataclass(slots=True)
class Scoreboard:
    """A device's VBUF scoreboard relative to a gather's start `go`, with times <= `clip` clipped to it; its
    `key` (bytes) is built only when two states' small parts match."""
    w_end: list | None
    r_rel: list | None
    clip: int
    go: int
    _key: bytes | None = None

    def key(self) -> bytes:
        if self._key is None:
            self._key = ((np.maximum(np.asarray(self.w_end, np.int64), self.clip) - self.go).tobytes()
                         + (np.maximum(np.asarray(self.r_rel, np.int64), self.clip) - self.go).tobytes())
            self.w_end = self.r_rel = None
        return self._key


class Mark(NamedTuple):
    """Every device's state at one ALLGATHER all of them wait on (the periodicity shortcut's history)."""
    go: int
    entries: dict                   # device -> its pending entry
    small: tuple                    # every device's small signature
    boards: dict                    # device -> Scoreboard
    stats: dict                     # device -> Snapshot


class Message(NamedTuple):
    arrive: int
    elems: int


class DeviceScheduler:
    """The scheduler of one device: runs its resolved stream until a ring instruction (which the coordinator
    completes with `finish`) or HALT. Every time in the state is an absolute cycle count."""

    def __init__(self, table: list, n_bins: int, entries: int, queue: int, hbm_lat: int, resolve,
                 issue: int | None = None, rtl_lead: int | None = None, rtl_wake: int = 0, rtl_fence: int = 0):
        self.table, self.queue, self.hbm_lat = table, queue, hbm_lat
        self.issue = issue                # serial issue: cycles from a retirement to the next start; None: overlap
        self.rtl_lead = rtl_lead          # the RTL's engines: dispatch to engine start; None: pipelined units
        self.rtl_wake = rtl_wake          # ...and a completion to the start of what waited for it
        self.rtl_fence = rtl_fence        # ...and to a FENCE / HALT waiting for it retiring
        self.hbm_free = 0                 # the RTL's engines: the HBM ports are free
        self.resolve = resolve            # entry -> its Resolved record, for the table's None entries
        self.pc = 0
        self.w_end = [0] * entries        # completion of the last writer, per VBUF entry / scalar register
        self.r_rel = [0] * entries        # time the readers so far have consumed the entry
        self.unit_free = [0, 0, 0, 0]     # the unit can start its next instruction
        self.unit_done = [0, 0, 0, 0]     # latest completion per unit (FENCE, HALT)
        self.qstart = [[], [], [], []]    # start times per unit (queue slots free up as instructions start)
        self.disp = -1                    # dispatch time of the last instruction
        self.barrier = 0                  # FENCE: no dispatch before
        self.frontier = 0                 # latest completion so far (exposed-time accounting)
        self.out = DeviceStep(by_bin=[0] * n_bins)
        self.pending: Pending | None = None
        self.halted = False
        self.log: list | None = None      # (entry, unit, op, start, release, end) per instruction (chrome_trace)

    def run(self) -> Pending | None:
        """Schedule until a ring instruction (returns it) or HALT (returns None)."""
        table, queue, hbm_lat = self.table, self.queue, self.hbm_lat
        serial = self.issue is not None
        rtl = self.rtl_lead is not None
        if serial:                        # every instruction waits for the previous one, then FETCH + DECODE
            lead = lead_mpu = ctrl = self.issue
        elif rtl:                         # the engine requests its weights when it starts
            lead = lead_mpu = self.rtl_lead
            ctrl = 1
        else:                             # weights are requested at dispatch; controls retire in a cycle
            lead, lead_mpu, ctrl = 0, hbm_lat, 1
        hbm_free, wake, fwake = self.hbm_free, self.rtl_wake, self.rtl_fence
        w_end, r_rel, unit_free, unit_done, qstart = self.w_end, self.r_rel, self.unit_free, self.unit_done, self.qstart
        out = self.out
        by_op, by_bin, busy = out.by_op, out.by_bin, out.busy
        disp, barrier, frontier = self.disp, self.barrier, self.frontier
        hbm = ddr = 0
        result = None
        pc = self.pc
        log = self.log
        for pc in range(self.pc, len(table)):
            x = table[pc]
            if x is None:
                x = table[pc] = self.resolve(pc)
            kind, unit, op, lb, reads, writes, occ, lat, mask, hb, db = x
            if serial:
                t = frontier
            else:
                t = disp + 1
                if t < barrier:
                    t = barrier
                if unit < 4:
                    qs = qstart[unit]
                    if len(qs) >= queue and qs[-queue] > t:
                        t = qs[-queue]
            disp = t
            if kind == K_NORMAL or kind in RING_KINDS:
                ready = t + lead_mpu if unit == U_MPU else t + lead
                for a, b in reads:
                    x = max(w_end[a:b]) if b - a > 1 else w_end[a]
                    if x > ready:
                        ready = x
                for a, b in writes:
                    if b - a > 1:
                        x = max(w_end[a:b])
                        y = max(r_rel[a:b])
                    else:
                        x, y = w_end[a], r_rel[a]
                    if x > ready:
                        ready = x
                    if y > ready:
                        ready = y
                start = ready if ready > unit_free[unit] else unit_free[unit]
                if rtl and hb and start < hbm_free:
                    start = hbm_free
                if kind != K_NORMAL:
                    result = self.pending = Pending(kind, pc, start, lat)
                    break
                if mask and rtl:                  # a batched instruction's vectors hold dispatch
                    disp = max(disp, start + mask)
                rel = start + occ
                unit_free[unit] = rel
                end = fin = rel + lat             # (fin: the engine's own completion, which FENCE / HALT wait for)
                held = rel                        # readers' operands are consumed
                if rtl:
                    end += wake
                    held = end                    # ...held until completion by the RTL's scoreboard
                    unit_free[unit] = rel + wake
                    if hb:
                        hbm_free = end
                if log is not None:
                    log.append((pc, unit, op, start, rel, end))
                busy[unit] += occ
                qstart[unit].append(start)
                if fin > unit_done[unit]:
                    unit_done[unit] = fin
                for a, b in writes:
                    if b - a > 1:
                        w_end[a:b] = [end] * (b - a)
                    else:
                        w_end[a] = end
                for a, b in reads:
                    if b - a > 1:
                        r_rel[a:b] = [x if x > held else held for x in r_rel[a:b]]
                    elif r_rel[a] < held:
                        r_rel[a] = held
                hbm += hb
                ddr += db
            elif kind == K_FENCE:
                end = t + ctrl
                for u in range(4):
                    if mask >> u & 1 and unit_done[u] > end:
                        end = unit_done[u] + fwake
                barrier = end
                if log is not None:
                    log.append((pc, 4, op, t, end, end))
            elif kind == K_HALT:
                end = max(t + ctrl, *unit_done) + fwake
                self.halted = True
                if log is not None:
                    log.append((pc, 4, op, t, end, end))
            elif kind == K_BLOCK:                                # CHUNK / SLOT: dispatch waits for the controller
                end = barrier = t + ctrl + occ
                ddr += db
            else:                                                # NOP (and BATCH in serial issue)
                end = t + ctrl
            if end > frontier:
                by_op[op] += end - frontier
                by_bin[lb] += end - frontier
                frontier = end
            if kind == K_HALT:
                break
        else:
            raise PerfError("stream ran off its end without HALT")
        self.pc = pc
        self.disp, self.barrier, self.frontier, self.hbm_free = disp, barrier, frontier, hbm_free
        out.hbm_bytes += hbm
        out.ddr_bytes += ddr
        if self.halted:
            out.cycles = frontier
        return result

    def finish(self, end: int):
        """Complete the pending ring instruction at `end` (it blocked the router queue since its start)."""
        p = self.pending
        x = self.table[p.entry]
        if x is None:                     # a gather a periodicity skip landed on
            x = self.table[p.entry] = self.resolve(p.entry)
        unit = x.unit
        self.pending = None
        self.unit_free[unit] = end
        if self.log is not None:
            self.log.append((p.entry, unit, x.op, p.start, end, end))
        self.out.busy[unit] += end - p.start
        self.qstart[unit].append(p.start)
        if end > self.unit_done[unit]:
            self.unit_done[unit] = end
        for a, b in x.writes:
            self.w_end[a:b] = [end] * (b - a)
        for a, b in x.reads:
            self.r_rel[a:b] = [t if t > end else end for t in self.r_rel[a:b]]
        if end > self.frontier:
            self.out.by_op[x.op] += end - self.frontier
            self.out.by_bin[x.bin] += end - self.frontier
            self.frontier = end
        self.pc = p.entry + 1

    # ---- periodicity (see simulate_step)
    def signature(self, go: int) -> tuple[tuple, Scoreboard]:
        """The state relative to `go`, with every time <= the last dispatch clipped to it (such times can no
        longer delay anything: every later start is after a later dispatch): a small part, and the VBUF
        scoreboard (compared only when the small parts match)."""
        c = self.disp
        q = self.queue

        def rel(xs):
            return tuple((x if x > c else c) - go for x in xs)

        small = (c - go, self.frontier - go, (self.barrier if self.barrier > c else c) - go,
                 rel(self.unit_free), rel(self.unit_done), tuple(rel(qs[-q:]) for qs in self.qstart),
                 self.pending.start - go, (self.hbm_free if self.hbm_free > c else c) - go)
        return small, Scoreboard(list(self.w_end), list(self.r_rel), c, go)

    def stats(self) -> Snapshot:
        o = self.out
        return Snapshot(list(o.by_op), list(o.by_bin), list(o.busy), o.hbm_bytes, o.ddr_bytes, o.link_bytes,
                        o.sync_wait, o.ring_cycles)

    def skip(self, periods: int, dpc: int, dt: int, before: Snapshot, after: Snapshot, bin_shift: int):
        """Jump `periods` repetitions of a period of `dpc` entries and `dt` cycles whose figures grew from
        `before` to `after` (snapshots one period apart)."""
        s = periods * dt
        self.w_end = [x + s for x in self.w_end]
        self.r_rel = [x + s for x in self.r_rel]
        self.unit_free = [x + s for x in self.unit_free]
        self.unit_done = [x + s for x in self.unit_done]
        self.qstart = [[x + s for x in qs[-self.queue:]] for qs in self.qstart]
        self.disp += s
        self.barrier += s
        self.hbm_free += s
        self.frontier += s
        p = self.pending
        self.pending = p._replace(entry=p.entry + periods * dpc, start=p.start + s)
        self.pc = self.pending.entry
        o = self.out
        for i in range(len(before.by_op)):
            o.by_op[i] += periods * (after.by_op[i] - before.by_op[i])
        for i in range(4):
            o.busy[i] += periods * (after.busy[i] - before.busy[i])
        for i in range(len(before.by_bin)):
            d = after.by_bin[i] - before.by_bin[i]
            if d:
                for m in range(1, periods + 1):
                    o.by_bin[min(i + m * bin_shift, len(o.by_bin) - 1)] += d
        o.hbm_bytes += periods * (after.hbm_bytes - before.hbm_bytes)
        o.ddr_bytes += periods * (after.ddr_bytes - before.ddr_bytes)
        o.link_bytes += periods * (after.link_bytes - before.link_bytes)
        o.sync_wait += periods * (after.sync_wait - before.sync_wait)
        o.ring_cycles += periods * (after.ring_cycles - before.ring_cycles)


def repeats(trace: Trace, p0: int, p1: int, limit: int) -> tuple[int, int]:
    """How many times the entry segment [p0, p1) repeats right after p1 (costs and VBUF ranges equal; layer
    bins shifted uniformly), up to `limit`; and the bin shift per period."""
    key = trace.skey
    bins = trace.bins_np
    L = p1 - p0
    seg = key[p0:p1]
    shift = int(bins[p1] - bins[p0])
    base = bins[p0:p1]
    m = 0
    while m < limit:
        a = p1 + m * L
        if a + L > len(key) or key[a:a + L] != seg or not np.all(bins[a:a + L] - base == (m + 1) * shift):
            break
        m += 1
    return m, shift


def simulate_step(traces: list[Trace], n_dyn: int, order: list[int] | None = None,
                  fast: bool = True, logs: dict | None = None) -> list[DeviceStep]:
    """Run one token step (one run of a stream on every device) at POS + 1 = n_dyn, the devices in ring
    `order`, and return each device's figures.

    Two exact shortcuts (`fast`):
    - devices whose resolved streams are identical (devices 1-3 of GPT-2 1.5B on 4 devices: 6 heads each) have
      identical schedules, because their only coupling is the ALLGATHER completion time they all share; they
      are simulated once;
    - periodicity: at an ALLGATHER where every device's state, relative to the gather's start and with times
      that can no longer delay anything clipped, equals its state p gathers earlier, and the instructions of
      the next periods repeat those of the last one (same costs, same VBUF ranges), the schedule repeats
      shifted in time: those periods are added up instead of simulated (decoder layers after the first few).
    Neither applies with SEND/RECV. `logs` (a dict, with fast=False): device -> every instruction's
    (entry, unit, op, start, release, end), for timelines (chrome_trace)."""
    t0 = traces[0].timing
    n = len(traces)
    order = list(order) if order is not None else list(range(n))
    position = {dev: i for i, dev in enumerate(order)}
    entries = t0.cfg.vbuf_entries + SCOREBOARD_EXTRA
    tables = [s.resolved(n_dyn) for s in traces]
    p2p = any(s.has_p2p for s in traces)
    rep = list(range(n))
    if fast and not p2p:
        for k in range(1, n):
            for j in range(k):
                if rep[j] == j and traces[j].skey == traces[k].skey and traces[j].bins == traces[k].bins:
                    rep[k] = j
                    break
    uniq = [k for k in range(n) if rep[k] == k]
    devs = {k: DeviceScheduler(tables[k], len(traces[k].bin_names), entries, t0.queue, t0.hbm_read_lat,
                               traces[k].resolver(n_dyn), t0.issue_cycles if t0.serial else None,
                               t0.issue_cycles if t0.rtl and not t0.serial else None,
                               t0.rtl.wake if t0.rtl and not t0.serial else 0,
                               t0.rtl.fence if t0.rtl and not t0.serial else 0) for k in uniq}
    if logs is not None:
        if fast:
            raise PerfError("instruction logs need fast=False (the shortcuts skip instructions)")
        for k in uniq:
            devs[k].log = logs.setdefault(k, [])
    links: dict[tuple[int, int], list[Message]] = {}
    history: list[Mark] = []
    periodic = fast and not p2p

    def neighbour(k, direction):
        return order[(position[k] + (1 if direction == 0 else -1)) % n]

    blocked = {k: devs[k].run() for k in uniq}
    while True:
        live = {k: v for k, v in blocked.items() if v is not None}
        if not live:
            break
        progressed = False
        for k, p in list(live.items()):
            f = traces[k].decoded[p.entry].fields
            if p.kind == K_SEND:
                occ = max(1, math.ceil(2 * f["n"] / t0.link_bpc))
                links.setdefault((k, neighbour(k, f["dir"])), []).append(Message(p.start + occ + t0.hop, f["n"]))
                devs[k].out.link_bytes += 2 * f["n"]
                devs[k].finish(p.start + occ)
                blocked[k] = devs[k].run()
                progressed = True
            elif p.kind == K_RECV:
                q = links.get((neighbour(k, 1 - f["dir"]), k))
                if q:
                    msg = q.pop(0)
                    if msg.elems != f["n"]:
                        raise PerfError(f"device {k} pc {p.entry}: RECV of {f['n']} elements gets a message of "
                                        f"{msg.elems}")
                    devs[k].finish(max(p.start, msg.arrive) + p.latency)
                    blocked[k] = devs[k].run()
                    progressed = True
        live = {k: v for k, v in blocked.items() if v is not None}
        if live and len(live) == len(uniq) and all(p.kind == K_GATHER for p in live.values()):
            shapes = set()
            for k, p in live.items():
                dec = traces[k].decoded[p.entry]
                shapes.add((dec.fields["n"], dec.fields["gran"], dec.ctx.rows))
            if len(shapes) != 1:
                raise PerfError("ALLGATHER shapes differ between devices: " + "; ".join(
                    f"device {k} pc {p.entry}" for k, p in sorted(live.items())))
            go = max(p.start for p in live.values())
            if periodic:
                go = _try_skip(devs, traces, history, go)
                live = {k: d.pending for k, d in devs.items()}
            xfer = next(iter(live.values())).latency
            nelem, _, rows = shapes.pop()
            for k, p in live.items():
                o = devs[k].out
                o.sync_wait += go - p.start
                o.ring_cycles += xfer
                o.link_bytes += rows * (2 * nelem * (n - 1) // n)
                devs[k].finish(go + xfer)
                blocked[k] = devs[k].run()
            progressed = True
        if not progressed:
            desc = "; ".join(f"device {k} pc {p.entry} ({('ALLGATHER', 'SEND', 'RECV')[p.kind - K_GATHER]})"
                             for k, p in sorted(live.items()))
            halted = sorted(k for k, v in blocked.items() if v is None)
            raise PerfError(f"deadlock: {desc}" + (f"; halted: devices {halted}" if halted else ""))
    return [devs[rep[k]].out for k in range(n)]


def _try_skip(devs: dict[int, DeviceScheduler], traces: list[Trace], history: list[Mark], go: int) -> int:
    """At an ALLGATHER every device waits on: record the state; when it repeats one of the last few records
    and the instructions repeat too, jump the repeating periods. Returns the gather's start (shifted)."""
    ks = sorted(devs)
    pcs = {k: devs[k].pending.entry for k in ks}
    sigs = {k: devs[k].signature(go) for k in ks}
    small = tuple(sigs[k][0] for k in ks)
    stats = {k: devs[k].stats() for k in ks}
    for back in range(1, min(len(history), HISTORY) + 1):
        mark = history[-back]
        if mark.small != small:
            continue
        if any(mark.entries[k] >= pcs[k] for k in ks):
            continue
        if any(mark.boards[k].key() != sigs[k][1].key() for k in ks):
            continue
        limit, shift = None, None
        for k in ks:
            m, sh = repeats(traces[k], mark.entries[k], pcs[k], 1 << 30 if limit is None else limit)
            limit = m if limit is None else min(limit, m)
            if shift is not None and sh != shift:
                limit = 0
            shift = sh
            if not limit:
                break
        if limit:
            dt = go - mark.go
            for k in ks:
                devs[k].skip(limit, pcs[k] - mark.entries[k], dt, mark.stats[k], stats[k], shift)
            history.clear()
            return go + limit * dt
    history.append(Mark(go, pcs, small, {k: sigs[k][1] for k in ks}, stats))
    if len(history) > HISTORY:
        del history[0]
    return go
