"""The cycle-level performance model: executes DFX programs instruction by instruction, charging each one from
the micro-architecture (DESIGN.md, Performance modelling).

What it models (docs/perf.md has the full text and every constant's source):

- **Controller**: one instruction stream per device, dispatched in program order, one per cycle,
  into four in-order unit queues (MPU, VPU, DMA, ROUTER) of `queue_depth` entries; a full queue stalls dispatch.
- **Scoreboard** (ISA dependency rule 1): an instruction starts when no older instruction still writes a VBUF
  entry or scalar register it reads (RAW, until that writer completes), writes one it reads (WAR, until that
  reader has consumed its operands) or writes one it writes (WAW). `FENCE` stalls dispatch until the units in
  its mask have completed every older instruction (rule 2); `HALT` drains every unit.
- **MPU**: one d x l weight tile per cycle when HBM supplies it. Weight bytes / min(core port width x clock,
  board HBM peak x efficiency); the binary32 accumulation is in order (numerics spec), so a column block takes
  one row tile per `fp_add` latency unless >= that many column blocks are interleaved; pipeline latency = FP16
  multiply + log2(d) adder levels + accumulate + bias add + scale + rounding + GELU (as the flags ask). Weights
  are requested at dispatch, so the HBM read latency is hidden when the instruction is dispatched early enough.
- **VPU**: ceil(n / vpu_width) cycles + the operation's latency; reductions run the adder tree per group of d
  and the in-order accumulation of the groups; scalar reciprocal / rsqrt are the numerics spec's seed ROM +
  two Newton steps.
- **DMA**: DDR and HBM transfers at the port / memory bandwidth plus latency; the transposed V-cache store
  writes one element per beat.
- **Router**: ALLGATHER waits for every device to reach it (DFX's blocking sync), then N-1 ring steps, each
  moving the largest chunk over the link (QSFP lane rate, Aurora 64b/66b) plus one hop latency.
- **Host**: per token step, PCIe register writes (TOKEN, POS, start) and a done poll on each device; decode
  steps also read the logits slices and sample.

Serial issue (`serial_issue=True`): the in-order RTL core as built (hw/core.py, docs/rtl_core.md). An
instruction starts only when the previous one has retired, after `issue_cycles` (FETCH, DECODE), and its engine
then takes its setup states, the operand feed, the unit's fixed pipeline latency (`hw.mpu.MPU(cfg).latency`,
`hw.vpu.VPU(cfg).latency`: every VPU operation is padded to the slowest), one cycle per tile / chunk, and the
DMA's pieces (one memory beat x one VBUF entry each). The counts are read from the hw/ classes
(`serial_costs`), never copied; memory latencies and bandwidths stay the board's. The default (overlapped)
mode describes the DFX-style target with a scoreboard.

Speed, exactly: the stream cost of a step depends on the position POS only through ceil((POS+1)/g) for the
granules g of the dynamic operands (d, l and vpu_width: tiles, VBUF entries, VPU chunks), all multiples of
g0 = gcd(d, l, vpu_width). Every cost is a function of q = ceil((POS+1)/g0), so steps with the same (stream, q)
take exactly the same cycles and are simulated once. Within a step, devices with identical streams are
scheduled once and repeating decoder layers are added up instead of simulated (`simulate_step`).
`tests/sim/test_perf.py` checks every shortcut against the plain simulation.

Layer breakdown: a manifest entry `node_pcs` = {stream: [per device: [[start_pc, node_name], ...]]} (node names
as the compiler's graph: "embed", "h.3.ln_1", ..., "ln_f", "lm_head") makes it exact; without it a layer is
found by its first LayerNorm (`layer_bins`).
"""
from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from dfx import isa
from dfx.config import AccelConfig
from dfx.errors import DfxError, PerfError
from dfx.program import Program

from .perf_board import Board, load_board



U_MPU, U_VPU, U_DMA, U_ROUTER, U_CTRL = range(5)
UNIT_NAMES = ("mpu", "vpu", "dma", "router")
_UNIT_OF = {isa.Unit.MPU: U_MPU, isa.Unit.VPU: U_VPU, isa.Unit.DMA: U_DMA, isa.Unit.ROUTER: U_ROUTER,
            isa.Unit.CTRL: U_CTRL}
K_NORMAL, K_FENCE, K_HALT, K_NOP, K_GATHER, K_SEND, K_RECV, K_BLOCK = range(8)
# K_BLOCK: a controller instruction that holds dispatch (CHUNK's token-table read, SLOT's fetch redirect);
# BATCH is fused with the instruction it prefixes (serial issue: a control word fetched and decoded on its own)
_KINDS = {"FENCE": K_FENCE, "HALT": K_HALT, "NOP": K_NOP, "ALLGATHER": K_GATHER, "SEND": K_SEND, "RECV": K_RECV,
          "CHUNK": K_BLOCK, "SLOT": K_BLOCK, "BATCH": K_NOP}
MNEMONICS = tuple(op.mnemonic for op in isa.OPS)
_MN_INDEX = {m: i for i, m in enumerate(MNEMONICS)}
CLASSES = {
    "matrix": ("LINEAR", "QK", "SV", "LMHEAD"),
    "vector": ("VADD", "VSUB", "VMUL", "VMOV", "VADDS", "VSUBS", "VMULS", "VEXP", "VGELU", "VSUM", "VMAX", "VDOT"),
    "scalar": ("SMOVI", "SADDI", "SMULI", "SRECIP", "SRSQRT"),
    "dma": ("LOAD", "STORE", "STORE_K", "STORE_VT"),
    "ring": ("ALLGATHER", "SEND", "RECV"),
    "control": ("NOP", "FENCE", "HALT", "BATCH", "CHUNK", "SLOT"),
}
CLASS_OF = {m: c for c, ms in CLASSES.items() for m in ms}
# Quantized matrices (wfmt != 0) stream their whole HBM region (descriptor + packed codes + scale blocks, exactly
# `dfx.formats.matrix_bytes`); the program's manifest lists every region per device (quantization.regions),
# and `_Stream` puts its size into the instruction's fields as `wbytes`.


def _bcq_planes() -> dict[int, int]:
    from dfx.formats import WFMT_CODES
    return {code: bits for (kind, bits), code in WFMT_CODES.items() if kind == "bcq"}


_BCQ_PLANES = _bcq_planes()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _log2(x: int) -> int:
    return max(0, (x - 1).bit_length())


# ================================================================================================ timing constants
@dataclass(frozen=True)
class SerialCosts:
    """The in-order RTL core's own cycle counts (serial-issue mode), as hw/ defines them."""
    issue_cycles: int         # hw.core.Core.ISSUE_CYCLES: FETCH + DECODE
    setup: dict               # engine states before the first beat: {"mpu", "vpu", "dma"}
    feed: dict                # operand path into the unit: {"mpu": HBM R FIFO, "vpu": VBUF read + FIFO}
    mpu_latency: int          # hw.mpu.MPU(cfg).latency: last beat of a block to its output
    vpu_latency: int          # hw.vpu.VPU(cfg).latency: every operation (padded to rsqrt's)
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
        from dfx.hw.core import Core
        from dfx.hw.core_mpu import MatrixEngine
        from dfx.hw.core_vpu import VectorEngine
        from dfx.hw.dma import DmaEngine, ddr_data_bits
        from dfx.hw.mpu import MPU
        from dfx.hw.vpu import VPU
    except ImportError as e:
        raise PerfError(f"serial-issue mode reads the RTL's cycle counts from dfx.hw, which needs Amaranth "
                        f"(pip install -e '.[hw]'): {e}") from None
    mpu, vpu = MPU(cfg), VPU(cfg)
    for u in (mpu, vpu):
        u._MustUse__silence = True                               # built for their latency, never elaborated
    return SerialCosts(
        issue_cycles=Core.ISSUE_CYCLES,
        setup={"mpu": MatrixEngine.SETUP_CYCLES, "vpu": VectorEngine.SETUP_CYCLES, "dma": DmaEngine.SETUP_CYCLES},
        feed={"mpu": MatrixEngine.FEED_CYCLES, "vpu": VectorEngine.FEED_CYCLES},
        mpu_latency=mpu.latency, vpu_latency=vpu.latency,
        dma_run=DmaEngine.RUN_CYCLES, load_piece=DmaEngine.LOAD_PIECE_CYCLES,
        load_drain=DmaEngine.LOAD_DRAIN_CYCLES, store_piece=DmaEngine.STORE_PIECE_CYCLES,
        store_drain=DmaEngine.STORE_DRAIN_CYCLES,
        hbm_beat=cfg.channel_beat_bytes, ddr_beat=ddr_data_bits(cfg) // 8)


class Timing:
    """Cycle costs for one (config, board) pair: every number the scheduler uses, derived once.

    serial_issue: model the in-order RTL core (one instruction at a time, `SerialCosts`) instead of the
    overlapped target design."""

    def __init__(self, cfg: AccelConfig, board: Board, serial_issue: bool = False):
        self.cfg, self.board = cfg, board
        self.serial = bool(serial_issue)
        self.rtl = serial_costs(cfg) if self.serial else None
        self.issue_cycles = self.rtl.issue_cycles if self.serial else 0
        v = board.value
        self.clock_hz = cfg.clock_mhz * 1e6
        cyc_per_ns = cfg.clock_mhz / 1e3
        if cfg.hbm_channels > v("hbm", "pseudo_channels"):
            raise PerfError(f"config {cfg.name!r} uses {cfg.hbm_channels} HBM channels; board {board.name} has "
                            f"{v('hbm', 'pseudo_channels')}")
        # ---- HBM: what the core's ports can take per cycle vs what the memory delivers
        port = cfg.beat_bytes
        mem = cfg.hbm_channels * v("hbm", "channel_peak_gbps") * 1e9 * v("hbm", "efficiency") / self.clock_hz
        self.hbm_bpc = min(float(port), mem)                     # bytes per core cycle, sustained
        self.hbm_port_bound = port <= mem
        self.hbm_read_lat = math.ceil(v("hbm", "read_latency_ns") * cyc_per_ns)
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
        self.tree = _log2(d) * self.add                          # balanced binary32 tree over d products
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
    def cost(self, op: isa.Op, f: dict, n_dyn: int) -> tuple[int, int, int, int]:
        """(occupancy, latency, hbm_bytes, ddr_bytes) of one instruction; n_dyn = POS + 1.

        occupancy: cycles the unit is busy (the next instruction of the unit may start after it);
        latency: further cycles until the result is written (dependants wait for occupancy + latency).
        Serial issue: occupancy = the engine's cycles from its start to `done` (what follows waits for all of
        it), latency 0; the issue cycles before the start are the scheduler's.
        A BATCH-prefixed LINEAR / ALLGATHER carries its vector count in f["m"] (`_Stream` fuses the two):
        the LINEAR streams its weights once (HBM bytes, dequantiser) and applies each tile to the m vectors
        (m cycles per tile); the ALLGATHER moves m vectors per ring step. Controller: CHUNK's occupancy is
        its token-table read (DDR), SLOT's the fetch redirect when it skips (f["_skips"]).
        """
        cfg = self.cfg
        m = op.mnemonic
        u = op.unit
        rows = f.get("m", 1)                                     # BATCH: vectors per weight tile / gather
        if u is isa.Unit.CTRL:
            if m == "CHUNK":                                     # u32 COUNT + cap tokens, dispatch waits for it
                nbytes = isa.TOKEN_TABLE_HEADER + 4 * f["cap"]
                return self.ddr_lat + math.ceil(nbytes / self.ddr_bpc), 0, 0, nbytes
            if m == "SLOT" and f.get("_skips") and not self.serial:
                return 1, 0, 0, 0                                # redirect: fetch the branch target
            return 0, 0, 0, 0
        if u is isa.Unit.MPU:
            k = n_dyn if f["dyn_k"] else f["k"]
            n = n_dyn if f["dyn_n"] else f["n"]
            kt, nt = _cdiv(k, cfg.d), _cdiv(n, cfg.l)
            deq = 0
            if f["wfmt"] == 0:
                nbytes = kt * nt * cfg.tile_elems * 2
            else:
                nbytes = f.get("wbytes")
                if nbytes is None:
                    raise PerfError(f"{m}: a quantized matrix (wfmt {f['wfmt']}) without its region size; "
                                    "programs record it in manifest quantization.regions (recompile)")
                # the dequantiser in front of the multipliers: code -> binary16 (one exact binary32 multiply by
                # the scale, or the BCQ planes' binary32 adds, then one rounding), pipelined at a tile per cycle
                planes = _BCQ_PLANES.get(f["wfmt"], 0)
                deq = (planes * self.add if planes else self.mul32) + self.rnd
            mem = nbytes / self.hbm_bpc
            if self.serial:                                      # one tile (x m vectors) per cycle, then the pipeline
                r = self.rtl
                occ = (r.setup["mpu"] + self.hbm_read_lat + r.feed["mpu"] + deq + r.mpu_latency
                       + max(rows * kt * nt, math.ceil(mem)))
                return occ, 0, nbytes, 0
            comp = kt * max(rows * nt, self.add)                 # in-order accumulation per column block
            occ = math.ceil(max(mem, comp))
            lat = (self.vbuf + deq + self.mul16 + self.tree + self.add + (self.add if f["has_bias"] else 0)
                   + (self.mul32 if f["scale"] else 0) + self.rnd + (self.gelu_lat if f["gelu"] else 0)
                   + (1 if f["mask"] else 0) + self.vbuf)
            return occ, lat, nbytes, 0
        if u is isa.Unit.VPU:
            if self.serial:                                      # every operation: the VPU's one latency
                r = self.rtl
                beats = 1 if op.fmt is isa.SCALAR else max(1, _cdiv(n_dyn if f["dyn_n"] else f["n"],
                                                                    cfg.vpu_width))
                return r.setup["vpu"] + r.feed["vpu"] + r.vpu_latency + beats, 0, 0, 0
            if op.fmt is isa.SCALAR:
                lat = {"SMOVI": 1, "SADDI": self.add, "SMULI": self.mul32, "SRECIP": self.recip_lat,
                       "SRSQRT": self.rsqrt_lat}[m]
                return 1, lat, 0, 0
            n = n_dyn if f["dyn_n"] else f["n"]
            chunks = _cdiv(n, cfg.vpu_width)
            io = 2 * self.vbuf
            if m in ("VSUM", "VDOT"):
                groups = _cdiv(n, cfg.d)
                occ = max(chunks, groups * self.add, 1)          # groups accumulate in order (numerics spec)
                return occ, self.vbuf + (self.mul16 if m == "VDOT" else 0) + self.tree, 0, 0
            if m == "VMAX":
                occ = max(chunks, _cdiv(n, cfg.d) * self.cmp, 1)
                return occ, self.vbuf + _log2(cfg.vpu_width) * self.cmp, 0, 0
            lat = {"VADD": self.add, "VSUB": self.add, "VMUL": self.mul16, "VMOV": 0,
                   "VADDS": self.add + self.rnd, "VSUBS": self.add + self.rnd, "VMULS": self.mul32 + self.rnd,
                   "VEXP": self.exp_lat, "VGELU": self.gelu_lat}[m]
            return max(chunks, 1), lat + io, 0, 0
        if u is isa.Unit.DMA:
            n = f["n"]
            nbytes = 2 * n
            if self.serial:
                return self._serial_dma(m, f, nbytes)
            if m == "STORE_VT":                                  # one element per beat, spread over the channels
                occ = _cdiv(n, cfg.hbm_channels)
                return max(occ, 1), self.hbm_write_lat, nbytes, 0
            if m == "STORE_K":                                   # ceil(n/d) runs of 2d bytes (one per row tile)
                occ = max(_cdiv(n, cfg.d), math.ceil(nbytes / self.hbm_bpc))
                return max(occ, 1), self.hbm_write_lat, nbytes, 0
            if f["hbm"]:
                occ = math.ceil(nbytes / self.hbm_bpc)
                lat = self.hbm_read_lat if m == "LOAD" else self.hbm_write_lat
                return max(occ, 1), lat + self.vbuf, nbytes, 0
            occ = math.ceil(nbytes / self.ddr_bpc)
            return max(occ, 1), self.ddr_lat + self.vbuf, 0, nbytes
        if u is isa.Unit.ROUTER:
            if m == "ALLGATHER":
                return 0, self.gather_cycles(f["n"], f["devices"], f["gran"], rows), 0, 0
            occ = max(1, math.ceil(2 * f["n"] / self.link_bpc))
            return occ, self.vbuf, 0, 0
        return 0, 0, 0, 0

    def dma_pieces(self, m: str, f: dict) -> tuple[int, int]:
        """(runs, pieces) of a DMA instruction as hw/dma.py cuts it: LOAD / STORE one run, STORE_K ceil(n/d)
        runs (one per row tile), STORE_VT n runs of one element; a piece lies inside one memory beat and one
        VBUF entry. Taken at the instruction's base address: the TOKEN / POS term (index x stride) counts as a
        whole number of beats (the compiler's tables have beat-aligned rows), and so do the cache stores' row
        offsets (d, l and the beats are powers of two)."""
        d, n = self.cfg.d, f["n"]
        if m == "STORE_VT":
            return n, n
        beat = self.rtl.hbm_beat if f["hbm"] else self.rtl.ddr_beat
        a = self.dma_base(f) % beat
        if m == "STORE_K":
            runs = [(a, min(d, n - i * d)) for i in range(_cdiv(n, d))]   # row tiles: whole beats apart
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
        return f["addr"] * isa.HBM_UNIT if f["hbm"] else f["addr"]

    def _serial_dma(self, m: str, f: dict, nbytes: int) -> tuple[int, int, int, int]:
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
        return occ, 0, nbytes if hbm else 0, 0 if hbm else nbytes

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


# ================================================================================================ stream tables
def _operands(op: isa.Op, f: dict, vbuf_entries: int, d: int):
    """VBUF ranges (start entry, elements or None for POS+1) read and written, scalar registers as entries.
    A BATCH-fused instruction (f["m"]) reads and writes the union over its m vectors (ISA rule 5): its strided
    operands (LINEAR src / dst, ALLGATHER vaddr) m times, `*_stride` entries apart, contiguous copies merged
    into one range (the same entries); the bias and the scalar registers once."""
    def length(src: str):
        if src == "k":
            return None if f.get("dyn_k") else f["k"]
        if src.startswith("n"):
            if src.endswith("?") and not f.get("has_bias"):
                return -1
            return None if f.get("dyn_n") else f["n"]
        raise AssertionError(src)

    stride = {"src": f["src_stride"], "dst": f["dst_stride"], "vaddr": f["dst_stride"]} if "m" in f else {}

    def add(out, addr, ln):
        st = stride.get(addr, 0)
        if ln == -1:
            return
        if not st or ln is None:
            out.append((f[addr], ln))
            return
        e = _cdiv(ln, d)
        runs = []
        for i in range(f["m"]):
            a = f[addr] + i * st
            if runs and a <= runs[-1][1]:
                runs[-1][1] = max(runs[-1][1], a + e)
            else:
                runs.append([a, a + e])
        out.extend((a, ln) if b - a == e else (a, (b - a) * d) for a, b in runs)

    reads, writes = [], []
    for addr, src in op.reads:
        add(reads, addr, length(src))
    for addr, src in op.writes:
        add(writes, addr, length(src))
    for r in op.sreads:
        if r == "s?":
            if f.get("scale"):
                reads.append((vbuf_entries + f["s"], -2))
        else:
            reads.append((vbuf_entries + f[r], -2))
    for r in op.swrites:
        writes.append((vbuf_entries + f[r], -2))
    return reads, writes


def layer_bins(instrs: list[isa.Instr], n_layer: int, node_pcs=None) -> tuple[list[int], list[str]]:
    """Map each pc to a bin: 0 'embed', 1..L 'layer i', L+1 'final' (ln_f, LM head, HALT).

    With `node_pcs` (a manifest list of [start_pc, node_name]) the map is exact; otherwise a layer starts with
    the LOADs of its first LayerNorm's parameters (VDOT appears once per LayerNorm: 2 per layer, 1 for ln_f).
    """
    names = ["embed"] + [f"layer {i}" for i in range(n_layer)] + ["final"]
    starts: list[tuple[int, int]] = []
    if node_pcs:
        for pc, node in node_pcs:
            parts = str(node).split(".")
            if len(parts) >= 2 and parts[0] == "h" and parts[1].isdigit():
                b = int(parts[1]) + 1
            elif node == "embed":
                b = 0
            else:
                b = n_layer + 1
            starts.append((int(pc), b))
    else:
        ln = 0
        for pc, ins in enumerate(instrs):
            if ins.op.mnemonic != "VDOT":
                continue
            s = pc
            while s > 0 and instrs[s - 1].op.mnemonic != "VSUM" and pc - s < 4:
                s -= 1
            s -= 1                                               # the VSUM
            while s > 0 and instrs[s - 1].op.mnemonic == "LOAD" and not instrs[s - 1].fields()["index"]:
                s -= 1
            if ln % 2 == 0:
                starts.append((max(s, 0), min(ln // 2 + 1, n_layer + 1)))
            ln += 1
    out = [0] * len(instrs)
    starts.sort()
    j, cur = 0, 0
    for pc in range(len(instrs)):
        while j < len(starts) and starts[j][0] <= pc:
            cur = starts[j][1]
            j += 1
        out[pc] = cur
    return out, names


def needs_count(instrs: list[isa.Instr]) -> bool:
    """Whether a stream is a batched prefill: its run depends on COUNT (CHUNK, SLOT, BATCH +dyn_m)."""
    return any(ins.op.mnemonic in ("CHUNK", "SLOT") or (ins.op.mnemonic == "BATCH" and ins.dyn_m)
               for ins in instrs)


def _path(instrs: list[isa.Instr], count: int | None, serial: bool) -> list[tuple]:
    """What one run executes (docs/isa.md, "Batched prefill") with COUNT = `count`: [(pc, batch, slot, skips)]
    in order. batch: (m, src_stride, dst_stride) of the BATCH prefix fused into this instruction (ISA rule 5;
    the BATCH word itself is an entry of its own only in serial issue, where it is fetched and decoded); slot:
    POS - the host's POS when it runs (SLOT i sets POS = POS0 + i); skips: a SLOT whose token does not exist,
    which jumps over `skip` instructions."""
    out = []
    n = len(instrs)
    pc, slot, pos0, prefix, counted = 0, 0, 0, None, False

    def bad(msg):
        raise PerfError(f"pc {pc} `{isa.disassemble(instrs[pc])}`: {msg}")

    while pc < n:
        ins = instrs[pc]
        mn = ins.op.mnemonic
        skips = False
        if mn == "BATCH":
            nxt = instrs[pc + 1] if pc + 1 < n else None
            if nxt is None or nxt.op.mnemonic not in isa.BATCHABLE:
                bad(f"BATCH must be followed by {' or '.join(isa.BATCHABLE)}, not "
                    f"{nxt.op.mnemonic if nxt else 'the end of the stream'}")
            if ins.dyn_m:
                if not counted:
                    bad("BATCH +dyn_m before CHUNK: COUNT is 0")
                m = count
            else:
                m = ins.m
                if m < 1:
                    bad("BATCH m=0: m must be >= 1")
            if nxt.op.mnemonic == "LINEAR" and (nxt.dyn_k or nxt.dyn_n):
                bad("a batched LINEAR has static k and n (dyn_k and dyn_n must be 0)")
            if nxt.op.mnemonic == "ALLGATHER" and ins.src_stride != ins.dst_stride:
                bad("a batched ALLGATHER is in place: src_stride must equal dst_stride")
            prefix = (m, ins.src_stride, ins.dst_stride)
            if serial:
                out.append((pc, None, slot, False))
            pc += 1
            continue
        if mn == "CHUNK":
            if count is None:
                bad("a batched prefill stream: give the run's token count")
            if not 1 <= count <= ins.cap:
                bad(f"COUNT {count}; accepted: 1..{ins.cap}")
            counted, pos0 = True, slot
        elif mn == "SLOT":
            if not counted:
                bad("SLOT before CHUNK: COUNT is 0")
            if ins.skip > n - pc - 1:
                bad(f"skip={ins.skip} runs past the end of the stream ({n - pc - 1} instructions follow)")
            if ins.i >= count:
                skips = True
            else:
                slot = pos0 + ins.i
        out.append((pc, prefix, slot, skips))
        prefix = None
        if mn == "HALT":
            break
        pc += ins.skip + 1 if skips else 1
    return out


class _Stream:
    """One device's stream, predecoded: static per-instruction data, and per POS class the resolved tuples
    (kind, unit, mnemonic index, layer bin, read ranges, write ranges, occupancy, latency, fence mask,
    HBM bytes, DDR bytes) the scheduler runs on.

    A stream with BATCH, CHUNK or SLOT is predecoded along the path one run takes (`_path`) for a token count
    `count`: entries are the instructions executed, in order, with every BATCH fused into the LINEAR or
    ALLGATHER it prefixes; a dynamic instruction of token slot i runs at POS + i (`offset`)."""

    _ADDRESS_FIELDS = ("w", "addr", "stride", "index")      # never change a cost (addresses, row pitch)

    def __init__(self, instrs: list[isa.Instr], timing: Timing, n_layer: int, devices: int, node_pcs=None,
                 cache: dict | None = None, regions: dict[int, int] | None = None, count: int | None = None,
                 bins: tuple | None = None):
        cfg = timing.cfg
        self.timing = timing
        if not instrs or instrs[-1].op.mnemonic != "HALT":
            raise PerfError("stream does not end with HALT")
        pc_bins, self.bin_names = bins or layer_bins(instrs, n_layer, node_pcs)
        if any(ins.op.mnemonic in isa.BATCHED_OPS for ins in instrs):
            path = _path(instrs, count, timing.serial)
        else:
            path = [(pc, None, 0, False) for pc in range(len(instrs))]
        self.src = instrs
        self.pcs = [e[0] for e in path]   # entry -> pc
        self.n = len(path)
        self.bins = [pc_bins[pc] for pc in self.pcs]
        self.bins_np = np.asarray(self.bins, np.int64)
        self.static = []          # (kind, unit, cls, reads, writes, fence_mask): ranges as (entry, elements|None)
        self.skey = []            # static key: equal keys => equal resolved tuples for every POS (but the bin)
        self.csig = []            # cost signature: (mnemonic, fields that can change the cost)
        self.fields = []
        self.ops = []
        self.dyn = []             # entries whose cost or ranges depend on POS
        self.offset = {}          # dynamic entry -> its token slot's POS offset (batched prefill)
        cache = {} if cache is None else cache
        regions = regions or {}
        for e, (pc, batch, slot, skips) in enumerate(path):
            ins = instrs[pc]
            wbytes = None
            if ins.op.fmt is isa.MATRIX and ins.wfmt != 0:
                wbytes = regions.get(ins.w)
                if wbytes is None:
                    raise PerfError(f"pc {pc} `{isa.disassemble(ins)}`: quantized weights at HBM address {ins.w} "
                                    "have no region in the manifest (quantization.regions); recompile the program")
            key = (ins, wbytes) if batch is None and not skips else (ins, wbytes, batch, skips)
            hit = cache.get(key)
            if hit is None:
                op, f = ins.op, ins.fields()
                if wbytes is not None:
                    f["wbytes"] = wbytes
                if batch is not None:
                    f["m"], f["src_stride"], f["dst_stride"] = batch
                if skips:
                    f["_skips"] = 1
                kind = _KINDS.get(op.mnemonic, K_NORMAL)
                reads, writes = _operands(op, f, cfg.vbuf_entries, cfg.d)
                mask = 0
                if kind == K_FENCE:
                    units = f["units"]
                    mask = 0b1111 if units & isa.ALL_UNITS else units & 0b1111
                if kind == K_GATHER and f["devices"] != devices:
                    raise PerfError(f"pc {pc} `{isa.disassemble(ins)}`: ALLGATHER over {f['devices']} devices, "
                                    f"but the program has {devices}")
                st = (kind, _UNIT_OF[op.unit], _MN_INDEX[op.mnemonic], tuple(reads), tuple(writes), mask)
                csig = (op.mnemonic,) + tuple(v for k, v in f.items() if k not in self._ADDRESS_FIELDS)
                if timing.serial and op.unit is isa.Unit.DMA:   # pieces depend on the address's alignment
                    csig += (timing.dma_base(f) % max(timing.rtl.hbm_beat, timing.rtl.ddr_beat),)
                hit = cache[key] = (st, csig, st + (csig,), f, op, bool(f.get("dyn_n") or f.get("dyn_k")))
            st, csig, skey, f, op, dyn = hit
            self.static.append(st)
            self.csig.append(csig)
            self.fields.append(f)
            self.ops.append(op)
            if dyn:
                self.dyn.append(e)
                if slot:
                    self.offset[e] = slot
                    skey = skey + (slot,)
            self.skey.append(skey)
        self.has_p2p = any(st[0] in (K_SEND, K_RECV) for st in self.static)
        self._base = None
        self._resolved: dict[int, list] = {}

    def _resolve_one(self, pc: int, n_dyn: int):
        """Entry `pc`'s tuple for a run at POS + 1 = n_dyn (token slot i of a batched run: n_dyn + i)."""
        t = self.timing
        kind, unit, cls, reads, writes, mask = self.static[pc]
        n_dyn += self.offset.get(pc, 0)
        d = t.cfg.d
        E = t.cfg.vbuf_entries
        e_dyn = _cdiv(n_dyn, d)

        def ranges(spec):
            out = []
            for a, ln in spec:
                if ln == -2:
                    out.append((a, a + 1))
                elif ln is None:
                    out.append((a, a + e_dyn))
                elif ln > 0:
                    out.append((a, a + _cdiv(ln, d)))
            return tuple(out)

        rr, ww = ranges(reads), ranges(writes)
        for a, b in rr + ww:
            if b > E + 16 or (a < E and b > E):
                raise PerfError(f"pc {self.pcs[pc]} `{isa.disassemble(self.src[self.pcs[pc]])}`: VBUF "
                                f"entries {a}..{b} exceed the {E}-entry buffer")
        key = (self.csig[pc], n_dyn if pc in self._dynset else 0)
        c = t.cost_cache.get(key)
        if c is None:
            c = t.cost_cache[key] = t.cost(self.ops[pc], self.fields[pc], n_dyn)
        occ, lat, hb, db = c
        return (kind, unit, cls, self.bins[pc], rr, ww, occ, lat, mask, hb, db)

    def resolved(self, n_dyn: int) -> list:
        """Per-entry tuples for POS + 1 = n_dyn (memoised per n_dyn): None until `_Dev.run` first schedules the
        entry and resolves it (`resolver`); with the periodicity shortcut most never are."""
        r = self._resolved.get(n_dyn)
        if r is not None:
            return r
        if self._base is None:
            self._dynset = set(self.dyn)
            self._base = [None] * self.n                         # POS-independent entries, shared by every n_dyn
        r = self._resolved[n_dyn] = list(self._base)
        return r

    def resolver(self, n_dyn: int):
        """pc -> its resolved tuple at POS + 1 = n_dyn (POS-independent ones resolved once for every n_dyn)."""
        base, dyn, one = self._base, self._dynset, self._resolve_one

        def resolve(pc: int):
            if pc in dyn:
                return one(pc, n_dyn)
            x = base[pc]
            if x is None:
                x = base[pc] = one(pc, 1)
            return x
        return resolve


# ================================================================================================ scheduling
@dataclass
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


_RING = (K_GATHER, K_SEND, K_RECV)


class _Dev:
    """The scheduler of one device: runs its resolved stream until a ring instruction (which the coordinator
    completes with `finish`) or HALT. Every time in the state is an absolute cycle count."""

    def __init__(self, table: list, n_bins: int, entries: int, queue: int, hbm_lat: int, resolve=None,
                 issue: int | None = None):
        self.table, self.queue, self.hbm_lat = table, queue, hbm_lat
        self.issue = issue                # serial issue: cycles from a retirement to the next start; None: overlap
        self.resolve = resolve            # pc -> resolved tuple, for the table's None entries
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
        self.pending = None               # (kind, pc, start, lat) of the ring instruction waiting
        self.halted = False

    def run(self):
        """Schedule until a ring instruction (returns it) or HALT (returns None)."""
        table, queue, hbm_lat = self.table, self.queue, self.hbm_lat
        serial = self.issue is not None
        if serial:                        # every instruction waits for the previous one, then FETCH + DECODE
            lead = lead_mpu = ctrl = self.issue
        else:                             # weights are requested at dispatch; controls retire in a cycle
            lead, lead_mpu, ctrl = 0, hbm_lat, 1
        w_end, r_rel, unit_free, unit_done, qstart = self.w_end, self.r_rel, self.unit_free, self.unit_done, self.qstart
        out = self.out
        by_op, by_bin, busy = out.by_op, out.by_bin, out.busy
        disp, barrier, frontier = self.disp, self.barrier, self.frontier
        hbm = ddr = 0
        result = None
        pc = self.pc
        for pc in range(self.pc, len(table)):
            x = table[pc]
            if x is None:
                x = table[pc] = self.resolve(pc)
            kind, unit, cls, lb, reads, writes, occ, lat, mask, hb, db = x
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
            if kind == K_NORMAL or kind in _RING:
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
                if kind != K_NORMAL:
                    result = self.pending = (kind, pc, start, lat)
                    break
                rel = start + occ
                unit_free[unit] = rel
                end = rel + lat
                busy[unit] += occ
                qstart[unit].append(start)
                if end > unit_done[unit]:
                    unit_done[unit] = end
                for a, b in writes:
                    if b - a > 1:
                        w_end[a:b] = [end] * (b - a)
                    else:
                        w_end[a] = end
                for a, b in reads:
                    if b - a > 1:
                        r_rel[a:b] = [x if x > rel else rel for x in r_rel[a:b]]
                    elif r_rel[a] < rel:
                        r_rel[a] = rel
                hbm += hb
                ddr += db
            elif kind == K_FENCE:
                end = t + ctrl
                for u in range(4):
                    if mask >> u & 1 and unit_done[u] > end:
                        end = unit_done[u]
                barrier = end
            elif kind == K_HALT:
                end = max(t + ctrl, *unit_done)
                self.halted = True
            elif kind == K_BLOCK:                                # CHUNK / SLOT: dispatch waits for the controller
                end = barrier = t + ctrl + occ
                ddr += db
            else:                                                # NOP (and BATCH in serial issue)
                end = t + ctrl
            if end > frontier:
                by_op[cls] += end - frontier
                by_bin[lb] += end - frontier
                frontier = end
            if kind == K_HALT:
                break
        else:
            raise PerfError("stream ran off its end without HALT")
        self.pc = pc
        self.disp, self.barrier, self.frontier = disp, barrier, frontier
        out.hbm_bytes += hbm
        out.ddr_bytes += ddr
        if self.halted:
            out.cycles = frontier
        return result

    def finish(self, end: int):
        """Complete the pending ring instruction at `end` (it blocked the router queue since its start)."""
        kind, pc, start, lat = self.pending
        x = self.table[pc]
        if x is None:                     # a gather a periodicity skip landed on
            x = self.table[pc] = self.resolve(pc)
        _, unit, cls, lb, reads, writes = x[:6]
        self.pending = None
        self.unit_free[unit] = end
        self.out.busy[unit] += end - start
        self.qstart[unit].append(start)
        if end > self.unit_done[unit]:
            self.unit_done[unit] = end
        for a, b in writes:
            self.w_end[a:b] = [end] * (b - a)
        for a, b in reads:
            self.r_rel[a:b] = [x if x > end else end for x in self.r_rel[a:b]]
        if end > self.frontier:
            self.out.by_op[cls] += end - self.frontier
            self.out.by_bin[lb] += end - self.frontier
            self.frontier = end
        self.pc = pc + 1

    # ---- periodicity (see simulate_step)
    def signature(self, go: int) -> tuple:
        """The state relative to `go`, with every time <= the last dispatch clipped to it (such times can no
        longer delay anything: every later start is after a later dispatch). Small part, and the VBUF
        scoreboard as copies (compared only when the small parts match: `_big`)."""
        c = self.disp
        q = self.queue

        def rel(xs):
            return tuple((x if x > c else c) - go for x in xs)

        small = (c - go, self.frontier - go, (self.barrier if self.barrier > c else c) - go,
                 rel(self.unit_free), rel(self.unit_done), tuple(rel(qs[-q:]) for qs in self.qstart),
                 self.pending[2] - go)
        return small, [list(self.w_end), list(self.r_rel), c, go, None]

    @staticmethod
    def _big(lazy: list) -> bytes:
        if lazy[4] is None:
            w, r, c, go, _ = lazy
            lazy[4] = ((np.maximum(np.asarray(w, np.int64), c) - go).tobytes()
                       + (np.maximum(np.asarray(r, np.int64), c) - go).tobytes())
            lazy[0] = lazy[1] = None
        return lazy[4]

    def stats(self) -> tuple:
        o = self.out
        return (list(o.by_op), list(o.by_bin), list(o.busy), o.hbm_bytes, o.ddr_bytes, o.link_bytes,
                o.sync_wait, o.ring_cycles)

    def skip(self, periods: int, dpc: int, dt: int, before: tuple, after: tuple, bin_shift: int):
        """Jump `periods` repetitions of a period of `dpc` instructions and `dt` cycles whose figures grew from
        `before` to `after` (stats() snapshots one period apart)."""
        s = periods * dt
        self.w_end = [x + s for x in self.w_end]
        self.r_rel = [x + s for x in self.r_rel]
        self.unit_free = [x + s for x in self.unit_free]
        self.unit_done = [x + s for x in self.unit_done]
        self.qstart = [[x + s for x in qs[-self.queue:]] for qs in self.qstart]
        self.disp += s
        self.barrier += s
        self.frontier += s
        kind, pc, start, lat = self.pending
        self.pending = (kind, pc + periods * dpc, start + s, lat)
        self.pc = pc + periods * dpc
        o = self.out
        (op0, bin0, busy0, *sc0), (op1, bin1, busy1, *sc1) = before, after
        for i in range(len(op0)):
            o.by_op[i] += periods * (op1[i] - op0[i])
        for i in range(4):
            o.busy[i] += periods * (busy1[i] - busy0[i])
        for i in range(len(bin0)):
            d = bin1[i] - bin0[i]
            if d:
                for m in range(1, periods + 1):
                    o.by_bin[min(i + m * bin_shift, len(o.by_bin) - 1)] += d
        o.hbm_bytes += periods * (sc1[0] - sc0[0])
        o.ddr_bytes += periods * (sc1[1] - sc0[1])
        o.link_bytes += periods * (sc1[2] - sc0[2])
        o.sync_wait += periods * (sc1[3] - sc0[3])
        o.ring_cycles += periods * (sc1[4] - sc0[4])


def _periods(stream: "_Stream", p0: int, p1: int, limit: int) -> tuple[int, int]:
    """How many times the instruction segment [p0, p1) repeats right after p1 (costs and VBUF ranges equal;
    layer bins shifted uniformly), up to `limit`; and the bin shift per period."""
    key = stream.skey
    bins = stream.bins_np
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


def simulate_step(streams: list["_Stream"], n_dyn: int, order: list[int] | None = None,
                  fast: bool = True) -> list[DeviceStep]:
    """Run one token step (one run of a stream on every device) and return each device's figures.

    Two exact shortcuts (`fast`):
    - devices whose resolved streams are identical (devices 1-3 of GPT-2 1.5B on 4 devices: 6 heads each) have
      identical schedules, because their only coupling is the ALLGATHER completion time they all share; they
      are simulated once;
    - periodicity: at an ALLGATHER where every device's state, relative to the gather's start and with times
      that can no longer delay anything clipped, equals its state p gathers earlier, and the instructions of
      the next periods repeat those of the last one (same costs, same VBUF ranges), the schedule repeats
      shifted in time: those periods are added up instead of simulated (decoder layers after the first few).
    Neither applies with SEND/RECV. `tests/sim/test_perf.py` checks fast == slow."""
    t0 = streams[0].timing
    n = len(streams)
    order = list(order) if order is not None else list(range(n))
    position = {dev: i for i, dev in enumerate(order)}
    entries = t0.cfg.vbuf_entries + 16
    tables = [s.resolved(n_dyn) for s in streams]
    p2p = any(s.has_p2p for s in streams)
    rep = list(range(n))
    if fast and not p2p:
        for k in range(1, n):
            for j in range(k):
                if rep[j] == j and streams[j].skey == streams[k].skey and streams[j].bins == streams[k].bins:
                    rep[k] = j
                    break
    uniq = [k for k in range(n) if rep[k] == k]
    devs = {k: _Dev(tables[k], len(streams[k].bin_names), entries, t0.queue, t0.hbm_read_lat,
                    streams[k].resolver(n_dyn),
                    t0.issue_cycles if t0.serial else None) for k in uniq}
    links: dict[tuple[int, int], list] = {}
    history: list[tuple] = []          # per ALLGATHER: (go, {k: pc}, {k: signature}, {k: stats})
    periodic = fast and not p2p

    def neighbour(k, direction):
        return order[(position[k] + (1 if direction == 0 else -1)) % n]

    blocked = {k: devs[k].run() for k in uniq}
    while True:
        live = {k: v for k, v in blocked.items() if v is not None}
        if not live:
            break
        progressed = False
        for k, (kind, pc, start, lat) in list(live.items()):
            f = streams[k].fields[pc]
            if kind == K_SEND:
                occ = max(1, math.ceil(2 * f["n"] / t0.link_bpc))
                links.setdefault((k, neighbour(k, f["dir"])), []).append((start + occ + t0.hop, f["n"]))
                devs[k].out.link_bytes += 2 * f["n"]
                devs[k].finish(start + occ)
                blocked[k] = devs[k].run()
                progressed = True
            elif kind == K_RECV:
                q = links.get((neighbour(k, 1 - f["dir"]), k))
                if q:
                    arrive, size = q.pop(0)
                    if size != f["n"]:
                        raise PerfError(f"device {k} pc {pc}: RECV of {f['n']} elements gets a message of {size}")
                    devs[k].finish(max(start, arrive) + lat)
                    blocked[k] = devs[k].run()
                    progressed = True
        live = {k: v for k, v in blocked.items() if v is not None}
        if live and len(live) == len(uniq) and all(v[0] == K_GATHER for v in live.values()):
            shapes = {(streams[k].fields[pc]["n"], streams[k].fields[pc]["gran"], streams[k].fields[pc].get("m", 1))
                      for k, (_, pc, _, _) in live.items()}
            if len(shapes) != 1:
                raise PerfError("ALLGATHER shapes differ between devices: " + "; ".join(
                    f"device {k} pc {pc}" for k, (_, pc, _, _) in sorted(live.items())))
            go = max(v[2] for v in live.values())
            if periodic:
                go = _try_skip(devs, streams, n_dyn, history, go)
                live = {k: d.pending for k, d in devs.items()}
            xfer = next(iter(live.values()))[3]
            nelem, _, rows = shapes.pop()
            for k, (_, pc, start, _) in live.items():
                o = devs[k].out
                o.sync_wait += go - start
                o.ring_cycles += xfer
                o.link_bytes += rows * (2 * nelem * (n - 1) // n)
                devs[k].finish(go + xfer)
                blocked[k] = devs[k].run()
            progressed = True
        if not progressed:
            desc = "; ".join(f"device {k} pc {v[1]} ({('ALLGATHER', 'SEND', 'RECV')[v[0] - K_GATHER]})"
                             for k, v in sorted(live.items()))
            halted = sorted(k for k, v in blocked.items() if v is None)
            raise PerfError(f"deadlock: {desc}" + (f"; halted: devices {halted}" if halted else ""))
    return [devs[rep[k]].out for k in range(n)]


def _try_skip(devs: dict, streams, n_dyn: int, history: list, go: int) -> int:
    """At an ALLGATHER every device waits on: record the state; when it repeats one of the last few records
    and the instructions repeat too, jump the repeating periods. Returns the gather's start (shifted)."""
    ks = sorted(devs)
    pcs = {k: devs[k].pending[1] for k in ks}
    sigs = {k: devs[k].signature(go) for k in ks}
    small = tuple(sigs[k][0] for k in ks)
    stats = {k: devs[k].stats() for k in ks}
    for back in range(1, min(len(history), 16) + 1):
        go0, pcs0, small0, sigs0, stats0 = history[-back]
        if small0 != small:
            continue
        if any(pcs0[k] >= pcs[k] for k in ks):
            continue
        if any(_Dev._big(sigs0[k][1]) != _Dev._big(sigs[k][1]) for k in ks):
            continue
        limit, shift = None, None
        for k in ks:
            m, sh = _periods(streams[k], pcs0[k], pcs[k], 1 << 30 if limit is None else limit)
            limit = m if limit is None else min(limit, m)
            if shift is not None and sh != shift:
                limit = 0
            shift = sh
            if not limit:
                break
        if limit:
            dt = go - go0
            for k in ks:
                devs[k].skip(limit, pcs[k] - pcs0[k], dt, stats0[k], stats[k], shift)
            history.clear()
            return go + limit * dt
    history.append((go, pcs, small, sigs, stats))
    if len(history) > 16:
        del history[0]
    return go


# ================================================================================================ the model
@dataclass
class Phase:
    """Totals of one phase (prefill or decode) over its token steps."""
    steps: int = 0                       # runs (a batched prefill run processes several tokens)
    tokens: int = 0                      # tokens processed
    device_cycles: int = 0               # sum over steps of the slowest device's cycles
    host_s: float = 0.0
    by_op: Counter = field(default_factory=Counter)      # exposed cycles (critical device), by mnemonic
    by_bin: list = field(default_factory=list)
    busy: list = field(default_factory=lambda: [0, 0, 0, 0])   # summed over devices
    device_time: int = 0                 # sum over steps and devices of each device's cycles
    hbm_bytes: int = 0                   # summed over devices
    hbm_bytes_max: int = 0               # the busiest device's bytes
    ddr_bytes: int = 0
    link_bytes: int = 0
    sync_wait: int = 0                   # summed over devices
    ring_cycles: int = 0                 # critical device


class PerfModel:
    """The performance model for one program on one board.

        m = PerfModel(program, "u280")
        report = m.run(input_tokens=128, output_tokens=256)

    `fast=False` turns off the exact shortcuts (device deduplication, layer periodicity) for testing them;
    `serial_issue=True` models the in-order RTL core (`Timing`). A program compiled with a batched prefill
    stream (`compile_model(prefill_batch=M)`) runs its prompt through it in chunks of up to M tokens
    (`run`); `step(stream, pos, count)` models one run of it over `count` tokens.
    """

    def __init__(self, program: Program, board: str | Board | None = "u280", check_fit: bool = True,
                 fast: bool = True, serial_issue: bool = False):
        if not isinstance(program, Program):
            raise PerfError(f"expected a dfx Program, not {type(program).__name__}")
        self.fast = fast
        self.program = program
        self.cfg = program.config
        self.board = load_board(board)
        self.timing = Timing(self.cfg, self.board, serial_issue)
        self.devices = program.n_devices
        self.model = program.manifest.model
        if check_fit:
            self.check_fit()
        node_pcs = program.manifest.node_pcs
        self.n_layer = self.model.n_layer
        self.streams = {}
        self._cache: dict = {}            # Instr -> predecoded (prefill and decode share most instructions)
        regions = program.manifest.quantization.regions
        self._regions = [{a: r.bytes for a, r in regions[k].items()} for k in range(self.devices)]
        self._batched: dict[str, list] = {}           # batched stream -> per device (instrs, layer bins)
        self._traces: dict[tuple[str, int], list] = {}
        names = ["prefill", "decode"] + [s for s in program.manifest.streams if s not in ("prefill", "decode")]
        for name in names:
            per_dev = []
            for k, dev in enumerate(program.devices):
                if name not in dev.streams:
                    raise PerfError(f"device {k} has no {name!r} stream")
                np_ = node_pcs.get(name, [None] * self.devices)[k] if node_pcs else None
                instrs = dev.streams[name]
                if needs_count(instrs):
                    if not instrs or instrs[-1].op.mnemonic != "HALT":
                        raise PerfError(f"device {k} {name}: stream does not end with HALT")
                    per_dev.append((instrs, layer_bins(instrs, self.n_layer, np_)))
                else:
                    per_dev.append(_Stream(instrs, self.timing, self.n_layer, self.devices, np_, self._cache,
                                           self._regions[k]))
            if isinstance(per_dev[0], _Stream):
                self.streams[name] = per_dev
            else:
                self._batched[name] = per_dev
        self.max_seq = program.manifest.max_seq
        self._memo: dict[tuple, list[DeviceStep]] = {}
        symbols = program.manifest.symbols
        pieces = symbols.logits_pieces
        V = self.model.vocab_size
        if pieces:
            self.logits_bytes = [2 * sum(b - a for a, b in p) for p in pieces]
        else:
            self.logits_bytes = [2 * V // self.devices] * self.devices
        sym = symbols.prefill_batch
        self.batch_stream = sym.stream if sym and sym.stream in self._batched else None
        self.prefill_chunk = self.capacity(self.batch_stream) if self.batch_stream else None

    # ---- fit
    def hbm_needed(self) -> list[int]:
        return [m.hbm_bytes for m in self.program.manifest.memory]

    def check_fit(self):
        have = self.board.hbm_capacity_bytes
        for k, need in enumerate(self.hbm_needed()):
            if need > have:
                raise PerfError(f"device {k} needs {need / 2**30:.2f} GiB of HBM (weights + KV cache), board "
                                f"{self.board.name} has {have / 2**30:.2f} GiB; use more devices or a smaller "
                                "weight format")

    # ---- steps
    @property
    def batched_streams(self) -> tuple[str, ...]:
        """Streams whose runs take a token count (`step(stream, pos, count)`): batched prefill."""
        return tuple(self._batched)

    def key(self, pos: int) -> int:
        return _cdiv(pos + 1, self.timing.g0)

    def capacity(self, stream: str) -> int:
        """The most tokens one run of a batched stream takes (its CHUNK's cap)."""
        instrs = self._batched[stream][0][0]
        caps = [ins.cap for ins in instrs if ins.op.mnemonic == "CHUNK"]
        if not caps:
            raise PerfError(f"stream {stream!r} uses COUNT without a CHUNK")
        return caps[0]

    def _trace(self, stream: str, count: int) -> list[_Stream]:
        """Every device's batched stream along the path a run of `count` tokens takes (built once per count)."""
        t = self._traces.get((stream, count))
        if t is None:
            t = self._traces[(stream, count)] = [
                _Stream(instrs, self.timing, self.n_layer, self.devices, None, self._cache, self._regions[k],
                        count=count, bins=bins) for k, (instrs, bins) in enumerate(self._batched[stream])]
        return t

    def _step_key(self, stream: str, pos: int, count: int | None) -> tuple:
        """The memo key: every cost depends on POS only through ceil((POS + 1) / g0) (`key`), per token slot."""
        if stream in self._batched:
            return (stream, count) + tuple(self.key(pos + i) for i in range(count))
        return (stream, self.key(pos))

    def _check_step(self, stream: str, pos: int, count: int | None):
        if stream not in self.streams and stream not in self._batched:
            raise PerfError(f"no stream {stream!r}; the program has {', '.join([*self.streams, *self._batched])}")
        if not 0 <= pos < self.max_seq:
            raise PerfError(f"position {pos} is outside the program's context (max_seq {self.max_seq})")
        if stream in self._batched:
            cap = self.capacity(stream)
            if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= cap:
                raise PerfError(f"stream {stream!r} is a batched prefill: give its token count, an integer in "
                                f"1..{cap}, not {count!r}")
            if pos + count > self.max_seq:
                raise PerfError(f"{count} tokens from position {pos} run past the program's context "
                                f"(max_seq {self.max_seq})")
        elif count not in (None, 1):
            raise PerfError(f"stream {stream!r} runs one token per step, not count {count!r}")

    def step(self, stream: str, pos: int, count: int | None = None, memo: bool = True) -> list[DeviceStep]:
        """Every device's figures for one run of `stream` at position `pos`; a batched prefill stream runs
        `count` tokens, token i at position pos + i."""
        self._check_step(stream, pos, count)
        key = self._step_key(stream, pos, count)
        if memo and key in self._memo:
            return self._memo[key]
        streams = self._trace(stream, count) if stream in self._batched else self.streams[stream]
        r = simulate_step(streams, pos + 1, self.program.manifest.ring, fast=self.fast)
        if memo:
            self._memo[key] = r
        return r

    def step_cycles(self, stream: str, pos: int, count: int | None = None, memo: bool = True) -> int:
        return max(d.cycles for d in self.step(stream, pos, count, memo=memo))

    def schedule(self, input_tokens: int, output_tokens: int, batched: bool | None = None) -> list[tuple]:
        """The runs of a generation, in order: (phase, stream, pos, count). Token-serial: `prefill` for prompt
        tokens 0..T-2, `decode` for T-1 and each generated token but the last. With a batched prefill stream
        (`batched` None: if the program has one) the prompt tokens 0..T-2 go through it in chunks of its
        capacity, the last chunk taking the rest."""
        T, M = input_tokens, output_tokens
        if batched is None:
            batched = self.batch_stream is not None
        elif batched and self.batch_stream is None:
            raise PerfError("the program has no batched prefill stream; compile it with prefill_batch=M "
                            "(dfx compile --prefill-batch M)")
        runs = []
        if batched:
            chunk = self.prefill_chunk
            runs += [("prefill", self.batch_stream, p, min(chunk, T - 1 - p)) for p in range(0, T - 1, chunk)]
        else:
            runs += [("prefill", "prefill", p, None) for p in range(T - 1)]
        return runs + [("decode", "decode", p, None) for p in range(T - 1, T + M - 1)]

    def run(self, input_tokens: int, output_tokens: int, memo: bool = True,
            batched: bool | None = None) -> "PerfReport":
        """Generation of `output_tokens` after `input_tokens` (`schedule`: token-serial prefill, or batched
        when the program has a batched prefill stream and `batched` is not False), then decode."""
        T, M = input_tokens, output_tokens
        for name, v in (("input_tokens", T), ("output_tokens", M)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise PerfError(f"{name} must be an integer >= 1, not {v!r}")
        if T + M - 1 > self.max_seq:
            raise PerfError(f"{T} input + {M} output tokens need {T + M - 1} positions; the program's context is "
                            f"{self.max_seq} (compile with a larger max_seq)")
        groups: dict[tuple, list] = {}
        for phase, stream, pos, count in self.schedule(T, M, batched):
            groups.setdefault(self._step_key(stream, pos, count), []).append((phase, stream, pos, count))
        phases = {"prefill": Phase(), "decode": Phase()}
        nb = len(self.streams["decode"][0].bin_names)
        for ph in phases.values():
            ph.by_bin = [0] * nb
        decode_bytes = []
        for runs in groups.values():
            phase, stream, pos, count = runs[0]
            ph = phases[phase]
            if memo:
                res = [(self.step(stream, pos, count), len(runs))]
            else:
                res = [(self.step(stream, p, c, memo=False), 1) for _, _, p, c in runs]
            for devs, cnt in res:
                crit = max(range(len(devs)), key=lambda k: devs[k].cycles)
                c = devs[crit]
                ph.steps += cnt
                ph.tokens += cnt * (count or 1)
                ph.device_cycles += cnt * c.cycles
                for i, v in enumerate(c.by_op):
                    if v:
                        ph.by_op[MNEMONICS[i]] += cnt * v
                for i, v in enumerate(c.by_bin):
                    ph.by_bin[i] += cnt * v
                for dv in devs:
                    for u in range(4):
                        ph.busy[u] += cnt * dv.busy[u]
                    ph.device_time += cnt * dv.cycles
                    ph.hbm_bytes += cnt * dv.hbm_bytes
                    ph.ddr_bytes += cnt * dv.ddr_bytes
                    ph.link_bytes += cnt * dv.link_bytes
                    ph.sync_wait += cnt * dv.sync_wait
                ph.hbm_bytes_max += cnt * max(dv.hbm_bytes for dv in devs)
                ph.ring_cycles += cnt * c.ring_cycles
                if stream == "decode":
                    decode_bytes.append((max(dv.hbm_bytes for dv in devs), cnt))
            table = isa.TOKEN_TABLE_HEADER + 4 * count if count else 0
            ph.host_s += len(runs) * self.timing.host_seconds(self.devices, stream == "decode", self.logits_bytes,
                                                              table)
        return PerfReport(self, T, M, phases, decode_bytes,
                          batched=any(s == self.batch_stream for g in groups.values() for _, s, _, _ in g))


# ================================================================================================ report
class PerfReport:
    """The figures of one run: totals, prefill vs decode, breakdowns, utilisation, bandwidth, roofline."""

    def __init__(self, model: PerfModel, T: int, M: int, phases: dict[str, Phase], decode_bytes,
                 batched: bool = False):
        self.m = model
        self.input_tokens, self.output_tokens = T, M
        self.phases = phases
        self.clock_hz = model.timing.clock_hz
        self.port_peak = model.cfg.beat_bytes * self.clock_hz            # bytes/s the core's ports can take
        self.board_peak = model.board.hbm_peak_gbytes_per_s * 1e9       # bytes/s the board's HBM delivers
        self.batched = batched
        n = sum(c for _, c in decode_bytes)
        self.decode_bytes_per_token = sum(b * c for b, c in decode_bytes) / n if n else 0.0

    # ---- headline figures
    def ms(self, phase: str | None = None) -> float:
        phs = [self.phases[phase]] if phase else self.phases.values()
        return sum(p.device_cycles / self.clock_hz + p.host_s for p in phs) * 1e3

    @property
    def total_cycles(self) -> int:
        return sum(p.device_cycles for p in self.phases.values())

    @property
    def total_ms(self) -> float:
        return self.ms()

    @property
    def decode_ms_per_token(self) -> float:
        d = self.phases["decode"]
        return self.ms("decode") / d.steps if d.steps else 0.0

    @property
    def prefill_ms_per_token(self) -> float:
        """Prefill ms per prompt token (a batched run counts each of its tokens)."""
        p = self.phases["prefill"]
        return self.ms("prefill") / p.tokens if p.tokens else 0.0

    @property
    def prefill_batch(self) -> int | None:
        """Tokens per batched prefill run when the prefill was batched, else None (token-serial)."""
        return self.m.prefill_chunk if self.batched else None

    @property
    def tokens_per_s(self) -> float:
        return 1e3 / self.decode_ms_per_token if self.decode_ms_per_token else 0.0

    def roofline_ms(self, peak: str = "port") -> float:
        """Decode roofline: HBM bytes the busiest device streams per token (weights + KV cache, as tiled) /
        peak bandwidth. peak='port': the core's HBM ports (width x clock, at most the board's); 'board': the
        board's HBM peak."""
        bw = min(self.port_peak, self.board_peak) if peak == "port" else self.board_peak
        return self.decode_bytes_per_token / bw * 1e3

    def roofline_pct(self, peak: str = "port") -> float:
        return 100.0 * self.roofline_ms(peak) / self.decode_ms_per_token if self.decode_ms_per_token else 0.0

    def utilisation(self, phase: str | None = None) -> dict[str, float]:
        phs = [self.phases[phase]] if phase else list(self.phases.values())
        t = sum(p.device_time for p in phs)
        return {UNIT_NAMES[u]: (sum(p.busy[u] for p in phs) / t if t else 0.0) for u in range(4)}

    def hbm_gbps(self, phase: str | None = None) -> float:
        """Achieved HBM bandwidth per device while the devices run (bytes / device time)."""
        phs = [self.phases[phase]] if phase else list(self.phases.values())
        t = sum(p.device_time for p in phs) / self.clock_hz
        return sum(p.hbm_bytes for p in phs) / t / 1e9 if t else 0.0

    def by_class(self, phase: str | None = None) -> dict[str, float]:
        """Exposed time (ms) of the critical device per instruction class, plus the host."""
        phs = [self.phases[phase]] if phase else list(self.phases.values())
        out = {c: 0.0 for c in CLASSES}
        for p in phs:
            for mn, cyc in p.by_op.items():
                out[CLASS_OF[mn]] += cyc / self.clock_hz * 1e3
        out["host"] = sum(p.host_s for p in phs) * 1e3
        return out

    def by_op(self, phase: str | None = None) -> dict[str, float]:
        phs = [self.phases[phase]] if phase else list(self.phases.values())
        c = Counter()
        for p in phs:
            c.update(p.by_op)
        return {k: v / self.clock_hz * 1e3 for k, v in sorted(c.items(), key=lambda kv: -kv[1])}

    def by_layer(self, phase: str | None = None) -> dict[str, float]:
        phs = [self.phases[phase]] if phase else list(self.phases.values())
        names = self.m.streams["decode"][0].bin_names
        return {nm: sum(p.by_bin[i] for p in phs) / self.clock_hz * 1e3 for i, nm in enumerate(names)}

    def to_dict(self) -> dict:
        m = self.m
        ph = {}
        for name, p in self.phases.items():
            ph[name] = {"steps": p.steps, "tokens": p.tokens, "device_cycles": p.device_cycles, "ms": self.ms(name),
                        "host_ms": p.host_s * 1e3,
                        "ms_per_token": self.ms(name) / p.tokens if p.tokens else 0.0,
                        "by_class_ms": self.by_class(name), "by_op_ms": self.by_op(name),
                        "by_layer_ms": self.by_layer(name), "utilisation": self.utilisation(name),
                        "hbm_gbps_per_device": self.hbm_gbps(name), "hbm_bytes": p.hbm_bytes,
                        "ddr_bytes": p.ddr_bytes, "link_bytes": p.link_bytes,
                        "sync_wait_ms": p.sync_wait / max(m.devices, 1) / self.clock_hz * 1e3,
                        "ring_ms": p.ring_cycles / self.clock_hz * 1e3}
        return {
            "model": m.model.to_obj(), "config": m.cfg.to_dict(), "board": m.board.name,
            "devices": m.devices, "overlap": m.program.manifest.overlap,
            "prefill_batch": self.prefill_batch,
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "total_cycles": self.total_cycles, "total_ms": self.total_ms,
            "prefill_ms_per_token": self.prefill_ms_per_token, "decode_ms_per_token": self.decode_ms_per_token,
            "tokens_per_s": self.tokens_per_s,
            "decode_hbm_bytes_per_token": self.decode_bytes_per_token,
            "roofline_ms_port": self.roofline_ms("port"), "roofline_ms_board": self.roofline_ms("board"),
            "roofline_pct_port": self.roofline_pct("port"), "roofline_pct_board": self.roofline_pct("board"),
            "utilisation": self.utilisation(), "hbm_gbps_per_device": self.hbm_gbps(),
            "phases": ph,
        }

    def format(self) -> str:
        m = self.m
        lines = [
            f"model: GPT-2 n_layer={m.model.n_layer} n_embd={m.model.n_embd} on {m.devices} x "
            f"{m.board.name}, config {m.cfg.name} (d={m.cfg.d}, l={m.cfg.l}, {m.cfg.clock_mhz:g} MHz), "
            f"overlap {m.program.manifest.overlap}",
            f"tokens: {self.input_tokens} in, {self.output_tokens} out",
            f"total: {self.total_ms:.2f} ms ({self.total_cycles} device cycles + "
            f"{sum(p.host_s for p in self.phases.values()) * 1e3:.3f} ms host)",
            f"prefill: {self.phases['prefill'].steps} steps"
            + (f" (matrix-matrix, up to {self.prefill_batch} tokens each)" if self.prefill_batch else "")
            + f", {self.ms('prefill'):.2f} ms ({self.prefill_ms_per_token:.3f} ms/token)",
            f"decode: {self.phases['decode'].steps} steps, {self.ms('decode'):.2f} ms "
            f"({self.decode_ms_per_token:.3f} ms/token, {self.tokens_per_s:.1f} tokens/s)",
            f"decode roofline: {self.decode_bytes_per_token / 1e6:.1f} MB/token on the busiest device -> "
            f"{self.roofline_ms('port'):.3f} ms at {min(self.port_peak, self.board_peak) / 1e9:.1f} GB/s "
            f"({self.roofline_pct('port'):.0f}% of roofline), {self.roofline_ms('board'):.3f} ms at "
            f"{self.board_peak / 1e9:.1f} GB/s ({self.roofline_pct('board'):.0f}%)",
            f"achieved HBM bandwidth: {self.hbm_gbps():.1f} GB/s per device",
            "unit utilisation: " + ", ".join(f"{k} {v * 100:.0f}%" for k, v in self.utilisation().items()),
            "exposed time by class (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in self.by_class().items() if v),
        ]
        return "\n".join(lines)


# ================================================================================================ helpers
def simulate(program: Program, input_tokens: int, output_tokens: int, board: str | Board | None = "u280",
             serial_issue: bool = False) -> PerfReport:
    """One call: the report of `program` generating `output_tokens` after `input_tokens` on `board`."""
    return PerfModel(program, board, serial_issue=serial_issue).run(input_tokens, output_tokens)


def isolated_cycles(instr: isa.Instr | str, config: AccelConfig, board: str | Board | None = "u280",
                    pos: int = 0, serial_issue: bool = False) -> dict:
    """The model's cycles for one instruction alone on an idle core (the calibration hook's unit): occupancy,
    latency, and total = occupancy + latency (+ the HBM read latency for a matrix instruction, which nothing
    hides when it runs alone). ALLGATHER's figure is the ring transfer after every device arrived.
    serial_issue: the in-order RTL core's cost, retirement to retirement: total = issue + occupancy (a
    control instruction: issue alone), what the serial schedule charges it."""
    if isinstance(instr, str):
        instr = isa.assemble_line(instr)
        if instr is None:
            raise PerfError("empty instruction text")
    t = Timing(config, load_board(board), serial_issue)
    occ, lat, hb, db = t.cost(instr.op, instr.fields(), pos + 1)
    if t.serial:
        extra = t.issue_cycles
    else:
        extra = t.hbm_read_lat if instr.op.unit is isa.Unit.MPU else 0
    return {"occupancy": occ, "latency": lat, "total": occ + lat + extra, "hbm_bytes": hb, "ddr_bytes": db}


def compare_rtl(records: list[dict], config: AccelConfig, board: str | Board | None = "u280") -> list[dict]:
    """Calibration hook: RTL cycle counts per instruction beside the model's (docs/perf.md, Calibration).

    records: [{"asm": "LINEAR dst=4 src=0 k=64 n=32", "pos": 0, "cycles": 140}, ...], `cycles` being what the
    RTL measured for that instruction alone, from issue to its result written. Returns one row per record:
    asm, class, rtl, model, ratio = rtl / model."""
    if not isinstance(records, list):
        raise PerfError("calibration data must be a JSON list of {asm, cycles, pos} records")
    rows = []
    for i, r in enumerate(records):
        if not isinstance(r, dict) or "asm" not in r or "cycles" not in r:
            raise PerfError(f"calibration record {i} must be an object with 'asm' and 'cycles' (and optional 'pos')")
        try:
            m = isolated_cycles(r["asm"], config, board, int(r.get("pos", 0)))
        except isa.EncodeError as e:
            raise PerfError(f"calibration record {i}: {e}") from None
        try:
            rtl = float(r["cycles"])
        except (TypeError, ValueError):
            raise PerfError(f"calibration record {i}: cycles must be a number, not {r['cycles']!r}") from None
        mn = r["asm"].split()[0].upper()
        rows.append({"asm": r["asm"], "class": CLASS_OF.get(mn, "?"), "rtl": rtl, "model": m["total"],
                     "ratio": rtl / m["total"] if m["total"] else float("inf")})
    return rows


def estimate_resources(cfg: AccelConfig, board: str | Board | None = "u280") -> dict:
    """First-order DSP estimate of the datapath (MPU: l lanes x (d multipliers + d-1 tree adders + an
    accumulator and a bias adder); VPU: vpu_width x (adder + multiplier) + a d-input reduction tree) against
    the board's DSP budget. The RTL issue's Yosys estimates replace this when they exist."""
    b = load_board(board)
    mul, add = b.value("resources", "dsp_per_fp16_mul"), b.value("resources", "dsp_per_fp_add")
    mpu = cfg.l * (cfg.d * mul + (cfg.d - 1) * add + 2 * add)
    vpu = cfg.vpu_width * (add + mul) + (cfg.d - 1) * add
    total = mpu + vpu
    budget = b.value("resources", "DSP") * b.value("resources", "usable_fraction")
    return {"dsp": total, "dsp_mpu": mpu, "dsp_vpu": vpu, "dsp_budget": budget,
            "dsp_total": b.value("resources", "DSP"), "fits": total <= budget}
