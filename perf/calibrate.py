"""Calibration of the performance model against RTL cycle counts.

`compare_rtl`: RTL cycles measured per instruction (any RTL, e.g. the DFX-style target's) beside the model's
cost of the same instruction alone (`timing.isolated_cycles`); `dfx perf --rtl-cycles` prints it.

`compare`: the integrated core's runs. The RTL harness records when every instruction completes and charges each,
in program order, with how far it moves the latest completion so far forward (the model's exposed time; for the
core built in order this is the time from the previous retirement to its own), summed per instruction class
(`trace.CLASSES`). The model side is the schedule of the same run (program order up to HALT, `PerfModel.step`),
per class, on the board `rtl_board(cfg)`: the U280 board file with the constants that the RTL and its simulated
memories fix replaced (operator latencies from hw/'s default pipeline stages, one beat per cycle per AXI port,
the `AxiRam` models' latency, the controller's queue depth). In serial-issue mode (`timing.serial_costs`: the
RTL's own cycle counts, read from hw/) it describes the core built in order (`Core(in_order=True)`); the
overlapped mode (DFX-style, pipelined units) bounds the scoreboard core (hw/core.py) from below. `compare` puts
them side by side and benchmarks/rtl_calibration.py writes the table to docs/rtl_core.md.
"""
from __future__ import annotations

import inspect
from collections import Counter

from dfx import isa
from dfx.config import AccelConfig
from dfx.errors import PerfError
from dfx.hw import fp
from dfx.hw.core import QUEUE_DEPTH
from dfx.program import Program

from .board import Board, load_board
from .model import PerfModel
from .timing import isolated_cycles
from .trace import CLASS_OF, CLASSES, MNEMONICS

# cocotbext-axi AxiRam, as the harness runs it: cycles from AR accepted to the first R beat, AW+W to B.
AXIRAM_READ_CYCLES = 2
AXIRAM_WRITE_CYCLES = 2


def compare_rtl(records: list[dict], config: AccelConfig, board: str | Board | None = "u280",
                engines: str = "rtl") -> list[dict]:
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
            m = isolated_cycles(r["asm"], config, board, int(r.get("pos", 0)), engines=engines)
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


def _default_stages() -> dict:
    """The hw/fp.py operators' default pipeline stages (what the core instantiates)."""
    return {nm: inspect.signature(getattr(fp, nm)).parameters["stages"].default
            for nm in ("fp16_mul", "fp32_add", "fp32_mul", "fp32_to_fp16")}


def rtl_overrides(cfg: AccelConfig) -> dict:
    """Board constants the RTL and the simulated memories fix (hw/fp.py default stages; one beat per cycle on
    every AXI port; AxiRam latency)."""
    ns = 1e3 / cfg.clock_mhz
    ghz = cfg.clock_mhz / 1e3
    st = _default_stages()
    return {
        "core.fp16_mul_cycles": st["fp16_mul"],
        "core.fp_add_cycles": st["fp32_add"],
        "core.fp32_mul_cycles": st["fp32_mul"],
        "core.fp_round_cycles": st["fp32_to_fp16"],
        "core.rom_cycles": 1,                 # lib.memory synchronous read port
        "core.vbuf_cycles": 1,
        "core.queue_depth": QUEUE_DEPTH,      # the controller's per-unit queues
        "hbm.channel_peak_gbps": cfg.channel_beat_bytes * ghz,
        "hbm.efficiency": 1.0,
        "hbm.read_latency_ns": AXIRAM_READ_CYCLES * ns,
        "hbm.page_closed_latency_ns": AXIRAM_READ_CYCLES * ns,      # AxiRam: no rows, refresh or converters
        "hbm.page_miss_latency_ns": AXIRAM_READ_CYCLES * ns,
        "hbm.refresh_cycle_ns": 0,
        "hbm.converter_cycles": 0,
        "hbm.write_latency_ns": AXIRAM_WRITE_CYCLES * ns,
        "ddr.axi_port_bits": 16 * cfg.d,
        "ddr.channel_peak_gbps": 2 * cfg.d * ghz,
        "ddr.efficiency": 1.0,
        "ddr.read_latency_ns": AXIRAM_READ_CYCLES * ns,
    }


def rtl_board(cfg: AccelConfig):
    return load_board("u280", rtl_overrides(cfg))


def model_classes(model: PerfModel, stream: str, pos: int, device: int = 0) -> Counter:
    """The model's cycles per class for one run: each instruction's exposed cycles in `model`'s schedule
    (in serial-issue mode, retirement to retirement, as the harness counts the RTL's)."""
    out = Counter()
    for mn, c in zip(MNEMONICS, model.step(stream, pos)[device].by_op):
        if c:
            out[CLASS_OF[mn]] += c
    return out


def compare(program: Program, runs: list[dict], board=None, device: int = 0) -> list[dict]:
    """Per class (and `total`), summed over `runs` (the harness's run records): the RTL's measured cycles,
    the model in serial-issue mode and the model's overlapped schedule (both on `rtl_board`); ratio = model / RTL."""
    board = board or rtl_board(program.config)
    models = {"serial": PerfModel(program, board, serial_issue=True),
              "scoreboard": PerfModel(program, board, engines="rtl"),
              "overlap": PerfModel(program, board, engines="pipelined")}
    sums = {k: Counter() for k in ("rtl", *models)}
    for r in runs:
        for k, v in r["classes"].items():
            sums["rtl"][k] += v
        for name, m in models.items():
            sums[name].update(model_classes(m, r["stream"], r["pos"], device))
    rows = []
    for cls in list(CLASSES) + ["total"]:
        vals = {k: sum(c.values()) if cls == "total" else c.get(cls, 0) for k, c in sums.items()}
        if not any(vals.values()):
            continue
        a = vals["rtl"]
        row = {"class": cls, "rtl": int(a)}
        for name in models:
            row[name] = int(vals[name])
            row[f"{name}_ratio"] = vals[name] / a if a else float("inf")
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| class | RTL cycles | model, RTL engines (scoreboard) | / RTL | model, in-order issue | / RTL | "
             "model, pipelined units (not built) | / RTL |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['class']} | {r['rtl']} | {r['scoreboard']} | {r['scoreboard_ratio']:.3f} | {r['serial']} | "
                     f"{r['serial_ratio']:.3f} | {r['overlap']} | {r['overlap_ratio']:.3f} |")
    return "\n".join(lines) + "\n"
