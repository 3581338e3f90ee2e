# amaranth: UnusedElaboratable=no
"""Cycle costs of single instructions, from the board's constants and the hw/ classes' own cycle counts.

`Timing` turns a (config, board) pair into every number the scheduler uses: HBM / DDR bytes per cycle and
latencies, the ring's link bandwidth and hop, the operator latencies of the core, the host's PCIe costs; its
`cost` charges one instruction (occupancy of its unit, latency to its result, memory bytes). docs/perf.md
describes what each unit costs and where every constant comes from.

Serial issue (`serial_issue=True`): the in-order RTL core as built (hw/core.py, docs/rtl_core.md). An
instruction starts only when the previous one has retired, after `issue_cycles` (FETCH, DECODE), and its engine
then takes its setup states, the operand feed, the unit's fixed pipeline latency (`hw.mpu.MPU(cfg).latency`,
`hw.vpu.VPU(cfg).op_latency(op)`: each VPU operation its own), one cycle per tile / chunk, and the
DMA's pieces (one memory beat x one VBUF entry each). The counts are read from the hw/ classes
(`serial_costs`), never copied; memory latencies and bandwidths stay the board's. The default (overlapped)
mode describes the DFX-style target with a scoreboard.

(The first line of this file tells Amaranth that the MPU and VPU built here for their latency are never
elaborated, on purpose.)
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import NamedTuple

from dfx import isa
from dfx.config import AccelConfig
from dfx.errors import PerfError
from dfx.formats import WFMT_CODES
from dfx.hw.core import Core
from dfx.hw.core_mpu import MatrixEngine
from dfx.hw.core_rob import tile_cycles
from dfx.hw.core_vpu import VectorEngine
from dfx.hw.dma import DmaEngine, ddr_data_bits
from dfx.hw.fetch import DEPTH as FETCH_DEPTH
from dfx.hw.mpu import MPU
from dfx.hw.vpu import VPU

from . import hbm
from .board import Board, load_board

# What executes the instructions (`Timing` engines): the RTL's engines as built, or pipelined DFX-style units
ENGINES = ("rtl", "pipelined")

# The RTL controller's CHUNK / taken SLOT besides the DDR read latency: the read requested (1), its data latched (1),
# checked and retired (1) (hw/core_batch.py)
BATCH_READ_CYCLES = 3

# BCQ weight codes -> bit planes (the dequantiser adds one binary32 per plane)
BCQ_PLANES = {code: bits for (kind, bits), code in WFMT_CODES.items() if kind == "bcq"}


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def log2_ceil(x: int) -> int:
    return max(0, (x - 1).bit_length())


class Context(NamedTuple):
    """What a run of the program adds to an instruction's own fields."""
    batch: isa.Batch | None = None    # the BATCH prefix fused into this instruction (isa.check_batch)
    skips: bool = False               # a SLOT whose token slot does not exist: it jumps over its section
    wbytes: int | None = None         # a quantized matrix: its HBM region's bytes (manifest quantization.regions)

    @property
    def rows(self) -> int:
        """Vectors per weight tile (LINEAR) or per ring step (ALLGATHER): the BATCH prefix's m, else 1."""
        return self.batch.m if self.batch else 1


PLAIN = Context()


class Cost(NamedTuple):
    """One instruction's charge. occupancy: cycles its unit is busy (the unit's next instruction may start
    after it); latency: further cycles until its result is written (dependants wait for both)."""
    occupancy: int
    latency: int
    hbm_bytes: int
    ddr_bytes: int


@dataclass(frozen=True)
class SerialCosts:
    """The in-order RTL core's own cycle counts (serial-issue mode), as hw/ defines them."""
    issue_cycles: int         # hw.core.Core.ISSUE_CYCLES: FETCH + DECODE
    wake: int                 # hw.core.Core.WAKE_CYCLES: a completion to a waiting instruction's start
    fence: int                # hw.core.Core.FENCE_CYCLES: a completion to a waiting FENCE / HALT retiring
    setup: dict               # engine states before the first beat: {"mpu", "vpu", "dma"}
    feed: dict                # operand path into the unit: {"mpu": HBM R FIFO, "vpu": VBUF read + FIFO}
    mpu_latency: int          # the core's MPU latency (MatrixEngine.mpu_params): a block's last beat to its output
    mpu_tiles: object         # hw.core_rob.tile_cycles(kt, nt, quantized) for that MPU: its weight tiles
    vpu_op_latency: object    # VPU.op_latency(mnemonic): the core's VPU, each operation its own latency
    vpu_beat_cycles: object   # VPU.beat_cycles(mnemonic, beats): the VPU's input occupancy of an instruction
    dma_run: int              # per run (NEXT_RUN)
    load_piece: int           # per LOAD piece (pipelined ARs)
    load_drain: int           # after the last R beat
    store_piece: int          # per store piece (VBUF read, AW + W)
    store_drain: int          # after the last B response
    hbm_beat: int             # bytes per piece boundary: an HBM channel beat
    ddr_beat: int             # ...the DDR port's beat


@functools.lru_cache(maxsize=None)
def serial_costs(cfg: AccelConfig) -> SerialCosts:
    """The RTL's cycle counts for `cfg`, read from the hw/ classes (one source for the model, the calibration
    and the RTL; tests/hw/test_core.py checks them against the RTL's measured cycles)."""
    try:
        vpu = VPU(cfg, **VectorEngine.vpu_params(cfg))              # the core's VPU
        mpu = MPU(cfg, **MatrixEngine.mpu_params(cfg))              # the core's MPU
    except ValueError as e:                                         # a config the RTL core is not built for
        raise PerfError(f"no RTL cycle counts for config {cfg.name!r}: {e}") from None
    return SerialCosts(
        issue_cycles=Core.ISSUE_CYCLES, wake=Core.WAKE_CYCLES, fence=Core.FENCE_CYCLES,
        setup={"mpu": MatrixEngine.SETUP_CYCLES, "vpu": VectorEngine.SETUP_CYCLES, "dma": DmaEngine.SETUP_CYCLES},
        feed={"mpu": MatrixEngine.FEED_CYCLES, "vpu": VectorEngine.FEED_CYCLES},
        mpu_latency=mpu.latency,
        mpu_tiles=functools.partial(tile_cycles, acc_stages=mpu.acc_stages, acc_fifo=mpu.acc_fifo,
                                    lag=MatrixEngine.default_slr_stages()),
        vpu_op_latency=vpu.op_latency, vpu_beat_cycles=vpu.beat_cycles,
        dma_run=DmaEngine.RUN_CYCLES, load_piece=DmaEngine.LOAD_PIECE_CYCLES,
        load_drain=DmaEngine.LOAD_DRAIN_CYCLES, store_piece=DmaEngine.STORE_PIECE_CYCLES,
        store_drain=DmaEngine.STORE_DRAIN_CYCLES,
        hbm_beat=cfg.channel_beat_bytes, ddr_beat=ddr_data_bits(cfg) // 8)


class Timing:
    """Cycle costs for one (config, board) pair: every number the scheduler uses, derived once.

    engines: what executes each instruction (`ENGINES`): "rtl", the engines of hw/ as built (their own cycle
    counts, `SerialCosts`), issued by the scoreboard core's controller; "pipelined", the DFX-style target whose
    units are pipelined across instructions (hardware the RTL does not have; docs/perf.md labels its rows).
    serial_issue: the RTL engines issued one instruction at a time (the in-order core, `Core(in_order=True)`).
    hbm_access: the weight stream's AXI access pattern (`dfx.perf.hbm.Access`); None: the RTL's own
    (`hbm.rtl_weight_access`, read from hw/)."""

    def __init__(self, cfg: AccelConfig, board: Board, serial_issue: bool = False,
                 hbm_access: hbm.Access | None = None, engines: str = "rtl"):
        if engines not in ENGINES:
            raise PerfError(f"engines must be one of {', '.join(ENGINES)}, not {engines!r}")
        self.cfg, self.board = cfg, board
        self.serial = bool(serial_issue)
        self.engines = "rtl" if self.serial else engines
        self.rtl = serial_costs(cfg) if self.engines == "rtl" else None
        self.issue_cycles = self.rtl.issue_cycles if self.rtl else 0
        # the RTL's engines: between the vectors of a batched instruction (one dispatch each), the engine's
        # `done` to its next start (the in-order core: a dispatch when every unit is idle, then the start)
        self.vector_gap = (self.issue_cycles if self.serial else self.rtl.wake) if self.rtl else 0
        v = board.value
        self.clock_hz = cfg.clock_mhz * 1e6
        cyc_per_ns = cfg.clock_mhz / 1e3
        if cfg.hbm_channels > v("hbm", "pseudo_channels"):
            raise PerfError(f"config {cfg.name!r} uses {cfg.hbm_channels} HBM channels; board {board.name} has "
                            f"{v('hbm', 'pseudo_channels')}")
        # ---- HBM: the weight stream's access pattern through the core's ports into the HBM (dfx.perf.hbm)
        self.hbm_spec = hbm.HbmSpec.from_board(board)
        self.hbm_access = hbm_access if hbm_access is not None else hbm.rtl_weight_access(cfg)
        self.hbm_rate = hbm.channel_rate(self.hbm_spec, self.hbm_access, cfg.channel_beat_bytes, cfg.clock_mhz)
        self.hbm_bpc = cfg.hbm_channels * self.hbm_rate.gbps * 1e3 / cfg.clock_mhz   # bytes per core cycle
        self.hbm_port_bound = self.hbm_rate.limit == "port"
        self.hbm_read_lat = math.ceil(self.hbm_rate.first_ns * cyc_per_ns)
        self._rowmajor: dict[int, float] = {}                    # column tiles -> bytes per cycle (V cache)
        self.hbm_write_lat = math.ceil(v("hbm", "write_latency_ns") * cyc_per_ns)
        # ---- DDR: one AXI port of the platform's width into one bank
        ddr_port = v("ddr", "axi_port_bits") / 8
        ddr_mem = v("ddr", "channel_peak_gbps") * 1e9 * v("ddr", "efficiency") / self.clock_hz
        self.ddr_bpc = min(ddr_port, ddr_mem)
        self.ddr_lat = math.ceil(v("ddr", "read_latency_ns") * cyc_per_ns)
        # ---- ring
        self.link_bpc = board.link_gbytes_per_s * 1e9 / self.clock_hz
        self.hop = math.ceil(board.hop_latency_ns * cyc_per_ns) + int(v("link", "router_cycles"))
        # ---- core operator latencies
        self.mul16 = int(v("core", "fp16_mul_cycles"))
        self.add = int(v("core", "fp_add_cycles"))
        self.mul32 = int(v("core", "fp32_mul_cycles"))
        self.rnd = int(v("core", "fp_round_cycles"))
        self.cmp = int(v("core", "fp_cmp_cycles"))
        self.rom = int(v("core", "rom_cycles"))
        self.vbuf = int(v("core", "vbuf_cycles"))
        self.cost_cache: dict = {}
        self.queue = int(v("core", "queue_depth"))
        d = cfg.d
        self.tree = log2_ceil(d) * self.add                      # balanced binary32 tree over d products
        # SFU pipelines, stage by stage as docs/numerics.md specifies them (exact bookkeeping = 1 cycle)
        lerp = self.add + self.mul32 + self.add                  # lo + (hi - lo) * r
        self.exp_lat = self.mul32 + self.cmp + 1 + self.rom + lerp + 1 + self.rnd
        self.gelu_lat = self.add + self.mul32 + 1 + self.rom + lerp + self.rnd
        self.recip_lat = self.rom + 2 * (self.mul32 + self.add + self.mul32 + self.add) + 1
        self.rsqrt_lat = self.rom + 2 * (self.mul32 + self.mul32 + self.add + self.mul32 + self.add) + 1
        self.g0 = math.gcd(cfg.d, math.gcd(cfg.l, cfg.vpu_width))
        # ---- host (seconds per step, not cycles: the device is idle meanwhile)
        self.pcie_bps = board.pcie_gbytes_per_s * 1e9
        self.mmio_w = v("pcie", "mmio_write_ns") * 1e-9
        self.mmio_r = v("pcie", "mmio_read_ns") * 1e-9
        self.dma_setup = v("pcie", "dma_setup_us") * 1e-6
        self.sample = v("pcie", "host_sample_us") * 1e-6

    # ------------------------------------------------------------------------------------------ per instruction
    def cost(self, op: isa.Op, f: dict, n_dyn: int, ctx: Context = PLAIN) -> Cost:
        """One instruction's `Cost`; f: its fields, n_dyn = POS + 1, ctx: what the run adds (`Context`).

        Serial issue: occupancy = the engine's cycles from its start to `done` (what follows waits for all of
        it), latency 0; the issue cycles before the start are the scheduler's.
        A BATCH-prefixed LINEAR / ALLGATHER (ctx.batch) streams its weights once (HBM bytes, dequantiser) and
        applies each tile to the m vectors (m cycles per tile); the ALLGATHER moves m vectors per ring step.
        Controller: CHUNK's occupancy is its token-table read (DDR), SLOT's the fetch redirect when it skips.
        The RTL's engines (`engines="rtl"`) run what hw/core.py does instead (docs/rtl_core.md, "Batched
        prefill"): the controller dispatches a batched LINEAR / ALLGATHER as m instructions, one per vector, run
        back to back by their engine (each its own setup, weight stream and pipeline drain: m times the HBM
        bytes); CHUNK and a taken SLOT wait for one single-beat DDR read (`BATCH_READ_CYCLES` besides the DDR
        latency), a skipping SLOT drops its `skip` words one per cycle.
        """
        cfg = self.cfg
        m = op.mnemonic
        u = op.unit
        rows = ctx.rows
        if u is isa.Unit.CTRL:
            if self.rtl and m in ("CHUNK", "SLOT"):
                if m == "SLOT" and ctx.skips:
                    return Cost(f["skip"], 0, 0, 0)
                # R comes back in AR order: CHUNK, the run's first instruction, waits for the fetcher's first
                # prefetch (its FIFO's worth of beats, all requested at ap_start)
                ahead = FETCH_DEPTH - 1 if m == "CHUNK" else 0
                return Cost(self.ddr_lat + BATCH_READ_CYCLES + ahead, 0, 0, self.rtl.ddr_beat)
            if m == "CHUNK":                                     # u32 COUNT + cap tokens, dispatch waits for it
                nbytes = isa.TOKEN_TABLE_HEADER + 4 * f["cap"]
                return Cost(self.ddr_lat + math.ceil(nbytes / self.ddr_bpc), 0, 0, nbytes)
            if m == "SLOT" and ctx.skips and not self.serial:
                return Cost(1, 0, 0, 0)                          # redirect: fetch the branch target
            return Cost(0, 0, 0, 0)
        if u is isa.Unit.MPU:
            return self._matrix(m, f, n_dyn, ctx, rows)
        if u is isa.Unit.VPU:
            return self._vector(op, f, n_dyn)
        if u is isa.Unit.DMA:
            n = f["n"]
            nbytes = 2 * n
            if self.rtl:
                return self._serial_dma(m, f, nbytes)
            if m == "STORE_VT":                                  # one element per beat, spread over the channels
                occ = cdiv(n, cfg.hbm_channels)
                return Cost(max(occ, 1), self.hbm_write_lat, nbytes, 0)
            if m == "STORE_K":                                   # ceil(n/d) runs of 2d bytes (one per row tile)
                occ = max(cdiv(n, cfg.d), math.ceil(nbytes / self.hbm_bpc))
                return Cost(max(occ, 1), self.hbm_write_lat, nbytes, 0)
            if f["hbm"]:
                occ = math.ceil(nbytes / self.hbm_bpc)
                lat = self.hbm_read_lat if m == "LOAD" else self.hbm_write_lat
                return Cost(max(occ, 1), lat + self.vbuf, nbytes, 0)
            occ = math.ceil(nbytes / self.ddr_bpc)
            return Cost(max(occ, 1), self.ddr_lat + self.vbuf, 0, nbytes)
        if u is isa.Unit.ROUTER:
            if m == "ALLGATHER":
                if self.rtl:                                     # m gathers, one after the other
                    one = self.gather_cycles(f["n"], f["devices"], f["gran"])
                    return Cost(0, rows * one + (rows - 1) * self.vector_gap, 0, 0)
                return Cost(0, self.gather_cycles(f["n"], f["devices"], f["gran"], rows), 0, 0)
            occ = max(1, math.ceil(2 * f["n"] / self.link_bpc))
            return Cost(occ, self.vbuf, 0, 0)
        return Cost(0, 0, 0, 0)

    def _matrix(self, m: str, f: dict, n_dyn: int, ctx: Context, rows: int) -> Cost:
        cfg = self.cfg
        k = n_dyn if f["dyn_k"] else f["k"]
        n = n_dyn if f["dyn_n"] else f["n"]
        kt, nt = cdiv(k, cfg.d), cdiv(n, cfg.l)
        # a tile-scaled core (AccelConfig.tile_scale) multiplies every lane's tree sum by its tile's scale (one
        # binary32 multiply after the tree, on FP16 tiles too: the pipeline is the same), its codes one register
        # from the fetcher (hw.dequant.CodeTile), instead of a dequantiser in front of the multipliers
        deq = self.mul32 if cfg.tile_scale else 0
        if f["wfmt"] == 0:
            nbytes = kt * nt * cfg.tile_elems * 2
        else:
            nbytes = ctx.wbytes
            if nbytes is None:
                raise PerfError(f"{m}: a quantized matrix (wfmt {f['wfmt']}) without its region size; "
                                "programs record it in manifest quantization.regions (recompile)")
            # the dequantiser in front of the multipliers: code -> binary16 (one exact binary32 multiply by
            # the scale, or the BCQ planes' binary32 adds, then one rounding), pipelined at a tile per cycle
            planes = BCQ_PLANES.get(f["wfmt"], 0)
            deq = 1 + self.mul32 if cfg.tile_scale else (planes * self.add if planes else self.mul32) + self.rnd
        mem = nbytes / (self.rowmajor_bpc(nt) if f["rowmajor"] else self.hbm_bpc)
        if self.rtl:                                             # one tile per cycle, then the pipeline; a
            r = self.rtl                                         # batched LINEAR: m of them, back to back
            one = (r.setup["mpu"] + self.hbm_read_lat + r.feed["mpu"] + deq + r.mpu_latency
                   + max(r.mpu_tiles(kt, nt, quantized=f["wfmt"] != 0), math.ceil(mem)))
            return Cost(rows * one + (rows - 1) * self.vector_gap, 0, rows * nbytes, 0)
        comp = kt * max(rows * nt, self.add)                     # in-order accumulation per column block
        occ = math.ceil(max(mem, comp))
        lat = (self.vbuf + deq + self.mul16 + self.tree + self.add + (self.add if f["has_bias"] else 0)
               + (self.mul32 if f["scale"] else 0) + self.rnd + (self.gelu_lat if f["gelu"] else 0)
               + (1 if f["mask"] else 0) + self.vbuf)
        return Cost(occ, lat, nbytes, 0)

    def batch_hold(self, rows: int, occ: int) -> int:
        """The RTL's engines: cycles from the start of a batched instruction of `rows` vectors (occupancy `occ`)
        until the front end has dispatched its last vector, which waits for a place in its unit's queue (`queue`
        entries besides the one running): nothing younger is dispatched before."""
        per = (occ + self.vector_gap) // rows                   # one vector's start to the next one's
        return max(0, rows - 1 - self.queue) * per

    def rowmajor_bpc(self, nt: int) -> float:
        """HBM bytes per cycle of a row-major matrix (the V cache) with `nt` column tiles per row tile: the MPU
        reads tile (i, j) at i*nt + j in its order (column block j, then row tile i), so each tile is its own
        one-beat read, `nt` beats after the last (hw/core_mpu.py); reads in flight and buffering as the weight
        stream's."""
        bpc = self._rowmajor.get(nt)
        if bpc is None:
            cb = self.cfg.channel_beat_bytes
            a = replace(self.hbm_access, burst_bytes=cb, stride_bytes=nt * cb)
            r = hbm.channel_rate(self.hbm_spec, a, cb, self.cfg.clock_mhz)
            bpc = self._rowmajor[nt] = self.cfg.hbm_channels * r.gbps * 1e3 / self.cfg.clock_mhz
        return bpc

    def _vector(self, op: isa.Op, f: dict, n_dyn: int) -> Cost:
        cfg = self.cfg
        m = op.mnemonic
        if self.rtl:                                             # the operation's own VPU latency
            r = self.rtl
            beats = 1 if op.fmt is isa.SCALAR else max(1, cdiv(n_dyn if f["dyn_n"] else f["n"], cfg.vpu_width))
            beats = r.vpu_beat_cycles(m, beats)                  # slots: shared SFUs, a pipelined VSUM/VDOT
            if self.serial:
                return Cost(r.setup["vpu"] + r.feed["vpu"] + r.vpu_op_latency(m) + beats, 0, 0, 0)
            # the engine takes the next instruction once it has fed this one's last beat (IN_FLIGHT)
            return Cost(r.setup["vpu"] + beats, r.feed["vpu"] + r.vpu_op_latency(m), 0, 0)
        if op.fmt is isa.SCALAR:
            lat = {"SMOVI": 1, "SADDI": self.add, "SMULI": self.mul32, "SRECIP": self.recip_lat,
                   "SRSQRT": self.rsqrt_lat}[m]
            return Cost(1, lat, 0, 0)
        n = n_dyn if f["dyn_n"] else f["n"]
        chunks = cdiv(n, cfg.vpu_width)
        io = 2 * self.vbuf
        if m in ("VSUM", "VDOT"):
            groups = cdiv(n, cfg.d)
            occ = max(chunks, groups * self.add, 1)              # groups accumulate in order (numerics spec)
            return Cost(occ, self.vbuf + (self.mul16 if m == "VDOT" else 0) + self.tree, 0, 0)
        if m == "VMAX":
            occ = max(chunks, cdiv(n, cfg.d) * self.cmp, 1)
            return Cost(occ, self.vbuf + log2_ceil(cfg.vpu_width) * self.cmp, 0, 0)
        lat = {"VADD": self.add, "VSUB": self.add, "VMUL": self.mul16, "VMOV": 0,
               "VADDS": self.add + self.rnd, "VSUBS": self.add + self.rnd, "VMULS": self.mul32 + self.rnd,
               "VEXP": self.exp_lat, "VGELU": self.gelu_lat}[m]
        return Cost(max(chunks, 1), lat + io, 0, 0)

    def dma_pieces(self, m: str, f: dict) -> tuple[int, int]:
        """(runs, pieces) of a DMA instruction as hw/dma.py cuts it: LOAD / STORE one run, STORE_K ceil(n/d)
        runs (one per row tile), STORE_VT n runs of one element; a piece lies inside one memory beat and one
        VBUF entry. Taken at the instruction's base address: the TOKEN / POS term (index x stride) counts as a
        whole number of beats (the compiler's tables have beat-aligned rows), and so do the cache stores' row
        offsets (d, l and the beats are powers of two). Serial issue only (the beats are the RTL's)."""
        d, n = self.cfg.d, f["n"]
        if m == "STORE_VT":
            return n, n
        beat = self.rtl.hbm_beat if f["hbm"] else self.rtl.ddr_beat
        a = self.dma_base(f) % beat
        if m == "STORE_K":
            runs = [(a, min(d, n - i * d)) for i in range(cdiv(n, d))]   # row tiles: whole beats apart
        else:
            runs = [(a, n)]
        pieces = 0
        for a, cnt in runs:
            v = 0                                                # VBUF element offset in the entry
            while cnt:
                c = min(cnt, (beat - a % beat) // 2, d - v % d)
                a, v, cnt = a + 2 * c, v + c, cnt - c
                pieces += 1
        return len(runs), pieces

    @staticmethod
    def dma_base(f: dict) -> int:
        """A DMA instruction's base byte address in its memory."""
        return f["addr"] * isa.HBM_UNIT if f["hbm"] else f["addr"]

    def _serial_dma(self, m: str, f: dict, nbytes: int) -> Cost:
        r = self.rtl
        runs, pieces = self.dma_pieces(m, f)
        hbm = f["hbm"] or m in ("STORE_K", "STORE_VT")
        if m == "LOAD":
            tail = (self.hbm_read_lat if hbm else self.ddr_lat) + r.load_drain
            per = r.load_piece
        else:                                                    # the board gives one DDR latency
            tail = (self.hbm_write_lat if hbm else self.ddr_lat) + r.store_drain
            per = r.store_piece
        occ = r.setup["dma"] + r.dma_run * runs + per * pieces + tail
        return Cost(occ, 0, nbytes if hbm else 0, 0 if hbm else nbytes)

    def gather_cycles(self, n: int, devices: int, gran: int, m: int = 1) -> int:
        """Ring all-gather after every device arrived: N-1 steps, each moving the largest chunk + one hop.
        m > 1 (BATCH): m gathers back to back, one sync: each step moves m chunks, the hop latency once."""
        if devices <= 1:
            return 1
        biggest = max(b - a for a, b in isa.chunk_bounds(n, devices, max(gran, 1) * self.cfg.d))
        return (devices - 1) * (math.ceil(2 * m * biggest / self.link_bpc) + self.hop) + 2 * self.vbuf

    def host_seconds(self, devices: int, decode: bool, logits_bytes: list[int], table_bytes: int = 0) -> float:
        """Host time around one token step: TOKEN/POS/start writes and a done poll per device; decode steps
        also read every device's logits slice (one DMA each) and sample; a batched prefill run first writes
        its token table (`table_bytes`: COUNT + tokens) into every device's DDR (one DMA each)."""
        t = devices * (3 * self.mmio_w + self.mmio_r)
        if table_bytes:
            t += devices * (self.dma_setup + table_bytes / self.pcie_bps)
        if decode:
            t += sum(self.dma_setup + b / self.pcie_bps for b in logits_bytes) + self.sample
        return t


def isolated_cycles(instr: isa.Instr | str, config: AccelConfig, board: str | Board | None = "u280",
                    pos: int = 0, serial_issue: bool = False, engines: str = "rtl") -> dict:
    """The model's cycles for one instruction alone on an idle core (the calibration hook's unit): occupancy,
    latency, and total = occupancy + latency (+ the HBM read latency for a matrix instruction, which nothing
    hides when it runs alone). ALLGATHER's figure is the ring transfer after every device arrived.
    engines "rtl" (and serial_issue): the RTL's engines, total = issue + occupancy (+ latency); serial_issue is
    the in-order core's cost, retirement to retirement (a control instruction: issue alone)."""
    if isinstance(instr, str):
        instr = isa.assemble_line(instr)
        if instr is None:
            raise PerfError("empty instruction text")
    t = Timing(config, load_board(board), serial_issue, engines=engines)
    occ, lat, hb, db = t.cost(instr.op, instr.fields(), pos + 1)
    if t.rtl:                                                # FETCH + DECODE before the engine starts
        extra = t.issue_cycles
    else:
        extra = t.hbm_read_lat if instr.op.unit is isa.Unit.MPU else 0
    return {"occupancy": occ, "latency": lat, "total": occ + lat + extra, "hbm_bytes": hb, "ddr_bytes": db}
