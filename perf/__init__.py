"""dfx.perf: the cycle-level performance model of DFX-style appliances (docs/perf.md).

    from dfx.perf import PerfModel
    report = PerfModel(program, "u280").run(input_tokens=128, output_tokens=256)
    print(report.format())

Modules, bottom up: board (board constants as data, with their sources), timing (cycle costs of single
instructions from the board and hw/), trace (stream pre-decode), schedule (the scoreboard / serial scheduler of
one token step), model (PerfModel: steps and whole generations), report (PerfReport), resources (DSP
estimate), calibrate (against RTL cycle counts), tune (overlap "auto"), tables and plots (docs/perf.md), cli
(`dfx perf`); hbm (the HBM access model the timing's weight stream uses).
"""
from .board import Board, available_boards, load_board, parse_override, source_problem, with_overrides
from .calibrate import compare, compare_rtl, rtl_board, rtl_overrides
from .hbm import Access, HbmSpec, channel_rate
from .model import PerfModel, Run, simulate
from .report import Phase, PerfReport
from .resources import estimate_resources
from .schedule import DeviceStep, simulate_step
from .timing import SerialCosts, Timing, isolated_cycles, serial_costs
from .trace import CLASS_OF, CLASSES, MNEMONICS, UNIT_NAMES, layer_bins
from .tune import compile_tuned, tune_overlap

__all__ = [
    "Board", "available_boards", "load_board", "parse_override", "source_problem", "with_overrides",
    "compare", "compare_rtl", "rtl_board", "rtl_overrides", "Access", "HbmSpec", "channel_rate",
    "PerfModel", "Run", "simulate", "Phase", "PerfReport", "estimate_resources",
    "DeviceStep", "simulate_step", "SerialCosts", "Timing", "isolated_cycles", "serial_costs",
    "CLASS_OF", "CLASSES", "MNEMONICS", "UNIT_NAMES", "layer_bins",
    "compile_tuned", "tune_overlap",
]
