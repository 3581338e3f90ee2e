"""The HBM access model: what one HBM pseudo-channel delivers to the core for a given access pattern.

The core has one AXI port per pseudo-channel (`AccelConfig.hbm_width` bits at the core clock: 512 bit at 200 MHz
in DFX's design). The U280's HBM controller offers 256-bit AXI3 ports at 450 MHz (PG276), one per pseudo-channel;
the platform's width and clock converters join the two. A stream of AXI read transactions on one channel
(`Access`: bytes per transaction, transactions in flight, address stride) gets, per channel:

    interval per transaction = max(burst / core port rate,                  the core's port (512 bit x clock)
                                   burst / (channel peak x sequential eff), the HBM side, refresh included
                                   row misses x tRC / banks in flight,      row cycles when every access opens a row
                                   round-trip latency / outstanding)        Little's law
    latency = page-hit latency (Shuhai) + row misses x (page-miss - page-hit latency) + the converters
              + the burst's own transfer time

and bytes per transaction / interval is the channel's throughput (`channel_rate`). The constants are the board's
(`boards/u280/board.json`, section hbm), each with its source:

- channel peak 14.375 GB/s per pseudo-channel (UG1393), 256-bit AXI3 ports at 450 MHz (PG276);
- idle read latency on the U280 measured by Shuhai (Wang et al., FCCM 2020, DOI 10.1109/FCCM48280.2020.00024,
  its idle-latency table): 48 / 55 / 62 cycles of the 450 MHz AXI clock = 106.7 ns page hit, 122.2 ns page
  closed, 137.8 ns page miss;
- the sequential efficiency Shuhai measured, 425 of 460.8 GB/s = 0.922, and the refresh bound it should not
  exceed: 1 - tRFC / tREFI with JEDEC HBM2 (JESD235) tREFI = 3.9 us and tRFC = 260 ns at 4 Gb per channel (the
  U280's 4-high stacks, PG276), = 0.933, so refresh explains all but 1.2 points of Shuhai's figure;
- page 1 KiB and 16 banks per pseudo-channel (PG276's address map of a 4H stack: CA[5:1] x 32 B, 4 bank
  groups x 4 banks); tRC = 48 ns (JESD235, as Ramulator's HBM preset has it);
- the converters' latency, in core cycles: an assumption (no document gives it).

Sequential page changes are hidden (a 1 KiB page takes 71 ns to read at the channel peak, more than tRP + tRCD =
28 ns, so the controller opens the next row in the shadow of the current one); their latency is counted. A core
burst longer than the AXI3 port's 16 beats of 256 bit is split by the converter into back-to-back AXI3 bursts,
which costs nothing here (transfers are pipelined).

A tile is one beat from every channel, so the MPU's stream is in lockstep across the 32 channels. With the
channels refreshing at the same moments (`Access.refresh == "aligned"`) refresh costs its own share, inside the
measured efficiency; with their phases spread (`"staggered"`) every channel's refresh stalls the whole stream
unless each channel can run `buffer_beats` ahead by more than tRFC's worth of beats (`lockstep_rate` simulates
it). Which phasing the U280's controllers have is not published.

The access pattern is read from the program and from hw/ (`rtl_weight_access`, `rtl_dma_access`), or given for a
design that is not ours (`dfx_access`: DFX's one 64-byte beat per channel per tile). docs/perf.md, "The HBM
model", has the tables.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from dfx.config import AccelConfig
from dfx.errors import PerfError
from dfx.hw import core_mpu as hw_core_mpu
from dfx.hw import dma as hw_dma

from .board import Board

AXI_4K = 4096                 # an AXI burst never crosses a 4 KiB boundary (AMBA AXI spec, A3.4.1)
REFRESH = ("aligned", "staggered")
LOCKSTEP_CHANNELS = 32        # the channels whose refresh phases a lockstep stream meets (the U280's)


@dataclass(frozen=True)
class Access:
    """A stream of AXI reads on every channel, as the core issues it.

    burst_bytes: bytes per transaction on one channel (beats x the port's beat); outstanding: transactions in
    flight per channel (None: the master does not limit it, the controller's queues do); stride_bytes: address
    step from one transaction to the next on one channel (None: sequential, = burst_bytes)."""
    burst_bytes: int
    outstanding: int | None = None
    stride_bytes: int | None = None
    label: str = ""
    refresh: str = "aligned"        # the channels' refresh phases: "aligned" or "staggered" (`lockstep_rate`)
    buffer_beats: int | None = None  # beats each channel may run ahead of the lockstep consumer (None: unlimited)

    def __post_init__(self):
        if not isinstance(self.burst_bytes, int) or self.burst_bytes < 1:
            raise PerfError(f"HBM access: burst_bytes must be an integer >= 1, not {self.burst_bytes!r}")
        if self.outstanding is not None and (not isinstance(self.outstanding, int) or self.outstanding < 1):
            raise PerfError(f"HBM access: outstanding must be None (unlimited) or an integer >= 1, "
                            f"not {self.outstanding!r}")
        if self.stride_bytes is not None and (not isinstance(self.stride_bytes, int) or self.stride_bytes < 1):
            raise PerfError(f"HBM access: stride_bytes must be None (sequential) or an integer >= 1, "
                            f"not {self.stride_bytes!r}")
        if self.refresh not in REFRESH:
            raise PerfError(f"HBM access: refresh must be one of {', '.join(REFRESH)}, not {self.refresh!r}")
        if self.buffer_beats is not None and (not isinstance(self.buffer_beats, int) or self.buffer_beats < 1):
            raise PerfError(f"HBM access: buffer_beats must be None (unlimited) or an integer >= 1, "
                            f"not {self.buffer_beats!r}")

    @property
    def stride(self) -> int:
        return self.burst_bytes if self.stride_bytes is None else max(self.stride_bytes, self.burst_bytes)


class Rate(NamedTuple):
    """One channel's figures for an `Access`."""
    gbps: float               # GB/s delivered to the core on this channel
    latency_ns: float         # round trip of one transaction (request out to its last beat in)
    first_ns: float           # request out to its first beat in (what a matrix instruction's start sees)
    limit: str                # which term set the interval: port, hbm, rows, outstanding
    efficiency: float         # gbps / the core port's rate


@dataclass(frozen=True)
class HbmSpec:
    """The board's HBM constants the access model needs (`from_board`)."""
    channel_gbps: float       # peak per pseudo-channel, GB/s
    seq_efficiency: float     # measured sequential efficiency (Shuhai)
    refresh_ns: float         # tREFI
    refresh_cycle_ns: float   # tRFC
    hit_ns: float             # idle read latency, page hit (Shuhai)
    miss_ns: float            # ... page miss (Shuhai)
    page_bytes: int
    banks: int
    row_cycle_ns: float       # tRC
    converter_cycles: int     # core-clock cycles through the width / clock converters, request + response

    @classmethod
    def from_board(cls, board: Board) -> "HbmSpec":
        v = board.value
        return cls(v("hbm", "channel_peak_gbps"), v("hbm", "efficiency"), v("hbm", "refresh_interval_ns"),
                   v("hbm", "refresh_cycle_ns"), v("hbm", "read_latency_ns"), v("hbm", "page_miss_latency_ns"),
                   int(v("hbm", "page_bytes")), int(v("hbm", "banks")), v("hbm", "row_cycle_ns"),
                   int(v("hbm", "converter_cycles")))

    @property
    def refresh_bound(self) -> float:
        """Share of time a pseudo-channel is not refreshing: 1 - tRFC / tREFI."""
        return 1.0 - self.refresh_cycle_ns / self.refresh_ns

    @property
    def sequential_efficiency(self) -> float:
        """What a long sequential stream gets of the channel peak: the measured figure, never above refresh's
        bound."""
        return min(self.seq_efficiency, self.refresh_bound)


def channel_rate(spec: HbmSpec, access: Access, port_bytes: int, clock_mhz: float) -> Rate:
    """One pseudo-channel's throughput and latency for `access` through a core port of `port_bytes` per beat
    at `clock_mhz` (the module docstring has the formula)."""
    b = access.burst_bytes
    cycle_ns = 1e3 / clock_mhz
    port_gbps = port_bytes / cycle_ns                                   # bytes per ns = GB/s
    hbm_gbps = spec.channel_gbps * spec.sequential_efficiency
    miss = min(1.0, access.stride / spec.page_bytes)                    # row changes per transaction
    transfer = max(b / port_gbps, b / spec.channel_gbps)
    first = spec.hit_ns + miss * (spec.miss_ns - spec.hit_ns) + spec.converter_cycles * cycle_ns
    latency = first + transfer
    terms = {"port": b / port_gbps, "hbm": b / hbm_gbps}
    if access.stride >= spec.page_bytes:                               # every transaction opens rows
        in_flight = spec.banks if access.outstanding is None else min(spec.banks, access.outstanding)
        terms["rows"] = access.stride / spec.page_bytes * spec.row_cycle_ns / in_flight
    if access.outstanding is not None:
        terms["outstanding"] = latency / access.outstanding
    limit = max(terms, key=terms.get)
    gbps = b / terms[limit]
    if access.refresh == "staggered":
        lock = lockstep_rate(spec, access, port_bytes, clock_mhz)
        if lock < gbps * (1 - 1e-9):
            gbps, limit = lock, "refresh (lockstep)"
    return Rate(gbps, latency, first, limit, gbps / port_gbps)


@functools.lru_cache(maxsize=256)
def lockstep_rate(spec: HbmSpec, access: Access, port_bytes: int, clock_mhz: float, tiles: int = 4000,
                  seed: int = 0) -> float:
    """GB/s per channel of a stream that takes one beat from every channel at a time (a tile, as the MPU
    consumes it) when each channel's refresh blocks it for tRFC every tREFI at its own phase (`staggered`:
    uniformly spread, seeded; the controllers of PG276 refresh their channels independently, and no document
    says they are aligned). A channel may run `buffer_beats` ahead of the consumer and has `outstanding`
    transactions in flight; while one channel refreshes, the others stop once their buffers are full or their
    reads in flight are used up, so with small buffers every channel's refresh stalls the stream. Simulated beat by
    beat (one request per beat: issue no faster than the port, at the HBM side's rate without refresh, half the
    round-trip latency each way)."""
    rng = np.random.default_rng(seed)
    cb = port_bytes
    n = LOCKSTEP_CHANNELS
    beat = cb / (port_bytes * clock_mhz / 1e3)                                 # ns per beat at the port
    service = cb / (spec.channel_gbps * spec.sequential_efficiency / spec.refresh_bound)
    half = channel_rate(spec, replace(access, refresh="aligned"), port_bytes, clock_mhz).first_ns / 2
    per = max(1, access.burst_bytes // cb)
    window = None if access.outstanding is None else access.outstanding * per
    phase = rng.uniform(0.0, spec.refresh_ns, n)
    consume = np.zeros(tiles)
    done = np.full(n, -1e18)
    issue = -beat
    for t in range(tiles):
        issue += beat
        if window is not None and t >= window and consume[t - window] > issue:
            issue = consume[t - window]
        start = np.maximum(issue + half, done)
        off = np.mod(start - phase, spec.refresh_ns)
        start = np.where(off < spec.refresh_cycle_ns, start + spec.refresh_cycle_ns - off, start)
        done = start + service
        if access.buffer_beats is not None and t >= access.buffer_beats:
            done = np.maximum(done, consume[t - access.buffer_beats])
        c = float(done.max()) + half
        consume[t] = max(c, consume[t - 1] + beat) if t else c
    k = tiles // 2
    return cb * (tiles - 1 - k) / (consume[-1] - consume[k])


def stream_bytes_per_cycle(spec: HbmSpec, access: Access, cfg: AccelConfig) -> float:
    """What the core's `hbm_channels` ports receive per core cycle together, every channel in lockstep."""
    r = channel_rate(spec, access, cfg.channel_beat_bytes, cfg.clock_mhz)
    return cfg.hbm_channels * r.gbps * 1e3 / cfg.clock_mhz


# ------------------------------------------------------------------------------------ access patterns, from hw/
WEIGHT_FIFO_BEATS = hw_core_mpu.WEIGHT_FIFO_BEATS    # each channel's R FIFO of the weight streamer


def rtl_weight_access(cfg: AccelConfig, refresh: str = "aligned") -> Access:
    """The RTL matrix engine's weight stream (hw/core_mpu.py): every channel in lockstep, column-major tiles as
    consecutive beats in INCR bursts by the weight streamer's rule (up to 256 beats, never across 4 KiB), no limit
    of its own on reads in flight (the AR generator does not wait for R data), and an R
    FIFO of `WEIGHT_FIFO_BEATS` per channel that a channel may run ahead of the tile stream."""
    cb = cfg.channel_beat_bytes
    beats = min(256, max(1, AXI_4K // cb))          # hw/dma.py's AXI_* constants describe the DMA, not this stream
    if hw_core_mpu.MatrixEngine.mpu_params(cfg).get("acc_stages"):     # the deep MPU: chunks of ROB_BURST rows
        beats = min(beats, hw_core_mpu.ROB_BURST)
    return Access(beats * cb, None, None, f"RTL weight stream, {refresh} refresh", refresh, WEIGHT_FIFO_BEATS)


def rtl_dma_access(cfg: AccelConfig) -> Access:
    """The RTL DMA engine's HBM reads (hw/dma.py): INCR bursts of `AXI_BURST_BEATS` beats per channel (a long run's
    bursts; never across 4 KiB), at most `AXI_MAX_OUTSTANDING_READS` of them in flight per channel."""
    return Access(hw_dma.AXI_BURST_BEATS * cfg.channel_beat_bytes, hw_dma.AXI_MAX_OUTSTANDING_READS, None, "RTL DMA")


def dfx_access(cfg: AccelConfig, outstanding: int | None, refresh: str = "aligned") -> Access:
    """DFX's weight stream as far as it is published (Hong et al., MICRO'22): a d x l FP16 tile is one 64-byte
    beat per channel, fetched per tile, tiles in the zig-zag order they are stored in (sequential per channel),
    every channel in lockstep. Not published: the reads in flight per channel (`outstanding`, each with its beat's
    buffer) and the channels' refresh phases (docs/perf.md has the sensitivity)."""
    if cfg.tile_bytes != cfg.beat_bytes:
        raise PerfError(f"DFX's access pattern is one beat per channel per tile; config {cfg.name!r} has "
                        f"{cfg.tile_bytes}-byte tiles and {cfg.beat_bytes}-byte beats")
    return Access(cfg.channel_beat_bytes, outstanding, None,
                  f"DFX: one beat per tile, {'unlimited' if outstanding is None else outstanding} in flight, "
                  f"{refresh} refresh", refresh, outstanding)


def describe(spec: HbmSpec, accesses: list[Access], cfg: AccelConfig) -> list[dict]:
    """One row per access pattern: per-channel GB/s, all channels' GB/s, latency, efficiency, limit."""
    rows = []
    for a in accesses:
        r = channel_rate(spec, a, cfg.channel_beat_bytes, cfg.clock_mhz)
        rows.append({"access": a.label or repr(a), "burst_bytes": a.burst_bytes, "outstanding": a.outstanding,
                     "stride_bytes": a.stride, "channel_gbps": r.gbps, "total_gbps": r.gbps * cfg.hbm_channels,
                     "latency_ns": r.latency_ns, "efficiency": r.efficiency, "limit": r.limit})
    return rows

