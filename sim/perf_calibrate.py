"""Calibration of the performance model (sim/perf.py) against the integrated core's RTL cycle counts.

The RTL core (hw/core.py, first version) executes one instruction at a time, so a run's cycles are the sum of
per-instruction costs; the harness (`dfx.sim.rtl_core`) attributes to every instruction the cycles from the
previous instruction's retirement to its own, and sums them per instruction class (`perf.CLASSES`). The model
side is the same sum of `perf.isolated_cycles` over the instructions the run executed (program order up to
HALT), on the board `rtl_board(cfg)`: the U280 board file with the constants that the RTL and its simulated
memories fix replaced (operator latencies from hw/'s default pipeline stages, one beat per cycle per AXI
port, the `AxiRam` models' latency). What remains different is what the model does not describe of this RTL;
`compare` puts the two side by side and benchmarks/rtl_calibration.py writes the table to docs/rtl_core.md.
"""
from __future__ import annotations

from collections import Counter

from dfx import isa
from dfx.config import AccelConfig
from dfx.program import Program

from .perf import CLASS_OF, CLASSES, isolated_cycles
from .perf_board import load_board

# cocotbext-axi AxiRam, as the harness runs it: cycles from AR accepted to the first R beat, AW+W to B.
AXIRAM_READ_CYCLES = 2
AXIRAM_WRITE_CYCLES = 2


def rtl_overrides(cfg: AccelConfig) -> dict:
    """Board constants the RTL and the simulated memories fix (hw/fp.py default stages; one beat per cycle on
    every AXI port; AxiRam latency)."""
    ns = 1e3 / cfg.clock_mhz
    ghz = cfg.clock_mhz / 1e3
    return {
        "core.fp16_mul_cycles": 1,            # hw/fp.py fp16_mul, 1 stage (MPU mul_stages=1)
        "core.fp_add_cycles": 2,              # fp32_add, add_stages=2
        "core.fp32_mul_cycles": 2,            # fp32_mul, mul_stages=2
        "core.fp_round_cycles": 1,
        "core.rom_cycles": 1,                 # lib.memory synchronous read port
        "core.vbuf_cycles": 1,
        "hbm.channel_peak_gbps": cfg.channel_beat_bytes * ghz,
        "hbm.efficiency": 1.0,
        "hbm.read_latency_ns": AXIRAM_READ_CYCLES * ns,
        "hbm.write_latency_ns": AXIRAM_WRITE_CYCLES * ns,
        "ddr.axi_port_bits": 16 * cfg.d,
        "ddr.channel_peak_gbps": 2 * cfg.d * ghz,
        "ddr.efficiency": 1.0,
        "ddr.read_latency_ns": AXIRAM_READ_CYCLES * ns,
    }


def rtl_board(cfg: AccelConfig):
    return load_board("u280", rtl_overrides(cfg))


def executed(program: Program, stream: str, device: int = 0) -> list[isa.Instr]:
    """The instructions one run of `stream` executes (program order up to and including HALT)."""
    out = []
    for ins in program.devices[device].streams[stream]:
        out.append(ins)
        if ins.op.mnemonic == "HALT":
            break
    return out


def model_classes(program: Program, stream: str, pos: int, board=None, device: int = 0) -> Counter:
    """The model's cycles per class for one run, instruction by instruction (`perf.isolated_cycles`)."""
    cfg = program.config
    board = board or rtl_board(cfg)
    out = Counter()
    for ins in executed(program, stream, device):
        if ins.op.unit is isa.Unit.CTRL:
            c = 1
        else:
            c = isolated_cycles(ins, cfg, board, pos)["total"]
        out[CLASS_OF[ins.op.mnemonic]] += c
    return out


# ------------------------------------------------------------------------------------------ the RTL's own costs
# What the in-order core (hw/core.py and its engines) spends per instruction, from its structure: the
# controller's FETCH and DECODE states, each engine's setup states, its pipeline latency (read off the hw
# components) and its beat / tile / piece counts. These are the terms perf.py lacks (docs/rtl_core.md).
ISSUE = 2                 # controller: FETCH + DECODE (the engine starts in DECODE)
SETUP = {"MPU": 3, "VPU": 2, "DMA": 3}   # engine states before the first beat (SETUP.., CHECK)
VPU_FEED = 2              # VBUF read + operand FIFO before the VPU's input
MPU_FEED = 2              # channel R FIFO before the MPU's weight input
LOAD_DRAIN = 3            # piece-descriptor FIFO after the last R beat


def _hw_latencies(cfg: AccelConfig) -> tuple[int, int]:
    from dfx.hw.mpu import MPU
    from dfx.hw.vpu import VPU
    mpu, vpu = MPU(cfg), VPU(cfg)
    for u in (mpu, vpu):
        u._MustUse__silence = True
    return mpu.latency, vpu.latency


def dma_pieces(ins: isa.Instr, cfg: AccelConfig, token: int, pos: int) -> tuple[int, int]:
    """(runs, pieces) of a DMA instruction exactly as hw/dma.py cuts it (a piece: one memory beat x one
    VBUF entry)."""
    f = ins.fields()
    d, l = cfg.d, cfg.l
    beat = cfg.channel_beat_bytes if f["hbm"] else 2 * d
    base = f["addr"] * isa.HBM_UNIT if f["hbm"] else f["addr"]
    n, v0 = f["n"], f["vaddr"] * d
    m = ins.op.mnemonic
    if m == "STORE_K":
        kt = -(-n // d)
        tb = (pos // l) * kt
        runs = [(base + 2 * ((tb + i) * cfg.tile_elems + (pos % l) * d), min(d, n - i * d), v0 + i * d)
                for i in range(kt)]
    elif m == "STORE_VT":
        nt = -(-n // l)
        tb = (pos // d) * nt
        runs = [(base + 2 * ((tb + c // l) * cfg.tile_elems + (c % l) * d + pos % d), 1, v0 + c) for c in range(n)]
    else:
        idx = {0: 0, 1: token, 2: pos}.get(f["index"], 0)
        runs = [(base + idx * f["stride"], n, v0)]
    pieces = 0
    for a, cnt, v in runs:
        while cnt:
            c = min(cnt, (beat - a % beat) // 2, d - v % d)
            a, v, cnt = a + 2 * c, v + c, cnt - c
            pieces += 1
    return len(runs), pieces


def rtl_cycles(ins: isa.Instr, cfg: AccelConfig, token: int, pos: int, lat=None) -> int:
    """The cycles the in-order RTL core spends on one instruction (retire to retire)."""
    mpu_lat, vpu_lat = lat or _hw_latencies(cfg)
    u = ins.op.unit
    f = ins.fields()
    if u is isa.Unit.CTRL:
        return ISSUE
    if u is isa.Unit.VPU:
        if ins.op.fmt is isa.SCALAR:
            beats = 1
        else:
            n = pos + 1 if f["dyn_n"] else f["n"]
            beats = max(1, -(-n // cfg.vpu_width))
        return ISSUE + SETUP["VPU"] + VPU_FEED + vpu_lat + beats
    if u is isa.Unit.MPU:
        k = pos + 1 if f["dyn_k"] else f["k"]
        n = pos + 1 if f["dyn_n"] else f["n"]
        tiles = max(1, -(-k // cfg.d)) * -(-n // cfg.l)
        return ISSUE + SETUP["MPU"] + AXIRAM_READ_CYCLES + MPU_FEED + mpu_lat + tiles
    if u is isa.Unit.DMA:
        runs, pieces = dma_pieces(ins, cfg, token, pos)
        if ins.op.mnemonic == "LOAD":
            return ISSUE + SETUP["DMA"] + runs + pieces + AXIRAM_READ_CYCLES + LOAD_DRAIN
        return ISSUE + SETUP["DMA"] + runs + 2 * pieces + AXIRAM_WRITE_CYCLES + 1
    return ISSUE + 1            # ROUTER: ALLGATHER of one device (the ring is not modelled here)


def rtl_classes(program: Program, stream: str, token: int, pos: int, device: int = 0) -> Counter:
    cfg = program.config
    lat = _hw_latencies(cfg)
    out = Counter()
    for ins in executed(program, stream, device):
        out[CLASS_OF[ins.op.mnemonic]] += rtl_cycles(ins, cfg, token, pos, lat)
    return out


def compare(program: Program, runs: list[dict], board=None, device: int = 0) -> list[dict]:
    """Per class (and `total`), summed over `runs` (the harness's run records): the RTL's measured cycles,
    perf.py's (`isolated_cycles` on `rtl_board`), and the RTL cost model above (`rtl_cycles`);
    ratio = model / RTL for both."""
    rtl, model, struct = Counter(), Counter(), Counter()
    for r in runs:
        for k, v in r["classes"].items():
            rtl[k] += v
        model.update(model_classes(program, r["stream"], r["pos"], board, device))
        struct.update(rtl_classes(program, r["stream"], r["token"], r["pos"], device))
    rows = []
    for cls in list(CLASSES) + ["total"]:
        vals = [sum(c.values()) if cls == "total" else c.get(cls, 0) for c in (rtl, model, struct)]
        if not any(vals):
            continue
        a, b, c = vals
        rows.append({"class": cls, "rtl": int(a), "perf": int(b), "perf_ratio": b / a if a else float("inf"),
                     "struct": int(c), "struct_ratio": c / a if a else float("inf")})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| class | RTL cycles | perf.py (RTL constants) | perf.py / RTL | RTL cost model | model / RTL |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['class']} | {r['rtl']} | {r['perf']} | {r['perf_ratio']:.3f} | {r['struct']} | "
                     f"{r['struct_ratio']:.3f} |")
    return "\n".join(lines) + "\n"
