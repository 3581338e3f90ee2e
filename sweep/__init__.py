"""dfx.sweep: design-space exploration over the performance model, resource estimates, the quantization report
and the RTL (`dfx sweep SPEC`, docs/dse.md).

    from dfx.sweep import load_spec, run_sweep
    res = run_sweep(load_spec("sweeps/u280.toml"), "build/sweep/u280")      # Ray, local, resumable

Modules, bottom up: spec (TOML/YAML/--grid specs and their points), stages (perf, resources, accuracy, rtl
for one point), store (the journal and the Parquet/CSV table), engine (tasks on Ray or in a loop, with a
progress bar), runner (spec -> tasks -> rows), pareto (fronts, plots and the markdown report), cli
(`dfx sweep`).
"""
from .engine import ENGINES, Task, execute
from .runner import SweepResult, run_sweep
from .spec import DEFAULTS, PARAMS, STAGES, Spec, from_dict, grid_spec, load_spec, point_hash
from .store import Journal, git_revision, read_table, write_table

__all__ = ["ENGINES", "Task", "execute", "SweepResult", "run_sweep", "DEFAULTS", "PARAMS", "STAGES", "Spec",
           "from_dict", "grid_spec", "load_spec", "point_hash", "Journal", "git_revision", "read_table",
           "write_table"]
