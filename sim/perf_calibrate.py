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


def compare(program: Program, runs: list[dict], board=None, device: int = 0) -> list[dict]:
    """Per class (and `total`): RTL cycles (summed over `runs`, the harness's run records) beside the model's
    for the same runs; ratio = model / rtl."""
    rtl, model = Counter(), Counter()
    for r in runs:
        for k, v in r["classes"].items():
            rtl[k] += v
        model.update(model_classes(program, r["stream"], r["pos"], board, device))
    rows = []
    for cls in list(CLASSES) + ["total"]:
        a = sum(rtl.values()) if cls == "total" else rtl.get(cls, 0)
        b = sum(model.values()) if cls == "total" else model.get(cls, 0)
        if a == 0 and b == 0:
            continue
        rows.append({"class": cls, "rtl": int(a), "model": int(b), "ratio": (b / a) if a else float("inf")})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| class | RTL cycles | model cycles | model / RTL |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['class']} | {r['rtl']} | {r['model']} | {r['ratio']:.3f} |")
    return "\n".join(lines) + "\n"
