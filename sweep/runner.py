"""A sweep from spec to results table: the tasks each point needs, those the journal already has skipped
(resumable), the rest run on the engine, and one row per point assembled from the journal.

    from dfx.sweep import load_spec, run_sweep
    res = run_sweep(load_spec("sweeps/u280.toml"), "build/sweep/u280")
    res.rows, res.table, res.computed, res.reused
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from dfx.errors import DfxError
from dfx.formats import FormatError

import sys

from tqdm import tqdm

from . import stages
from .engine import Task, execute, ray_held
from .spec import CONFIG_FIELDS, Spec, point_hash
from .store import Journal, git_revision, write_table
from .tpe import TpeSearch, budget, objective

GiB = 2**30
REPO = Path(__file__).resolve().parents[1]


@dataclass
class SweepResult:
    rows: list[dict]
    table: Path
    computed: int                        # tasks run by this call
    reused: int                          # tasks found in the journal
    tasks: dict = field(default_factory=dict)    # kind -> tasks run by this call


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def hw_fields(point: dict) -> dict:
    """The parameters the hardware config depends on (resources, Yosys and RTL results are keyed by them)."""
    return {"config": point["config"], **{f: point.get(f) for f in CONFIG_FIELDS}}


def accuracy_key(point: dict, spec: Spec) -> tuple[str, str, str]:
    fmt = point["weights"]
    try:
        method = stages.default_method(fmt, point.get("method"))
    except (DfxError, FormatError):       # a bad format: the perf stage names it; the key stays unique
        method = point.get("method") or "rtn"
    return fmt, method, _key("accuracy", fmt, method, spec.accuracy_windows, stages.ACCURACY_VERSION)


def plan(spec: Spec, points: list[dict], build_dir: Path) -> list[Task]:
    """Every task the points need, once each (shared work keyed once: a config's resources, a format's
    accuracy)."""
    tasks: dict[tuple[str, str], Task] = {}

    def add(t: Task):
        tasks.setdefault((t.kind, t.key), t)
    for p in points:
        hw = hw_fields(p)
        if "perf" in spec.stages:
            add(Task("perf", point_hash(p), stages.guard, (stages.perf, p), 1, 2 * GiB))
        if "resources" in spec.stages:
            add(Task("resources", _key("resources", hw, p["board"]), stages.guard,
                     (stages.resources, {**hw, "board": p["board"]}), 0.5, GiB // 2))
            if spec.yosys:
                k = _key("yosys", hw, spec.yosys)
                add(Task("yosys", k, stages.guard, (stages.yosys_units, hw, spec.yosys, str(build_dir / "yosys" / k)),
                         1, 6 * GiB))
        if "accuracy" in spec.stages:
            fmt, method, k = accuracy_key(p, spec)
            add(Task("accuracy", k, stages.guard, (stages.accuracy, fmt, method, spec.accuracy_windows), 1, 3 * GiB))
            base = accuracy_key({"weights": "fp16", "method": "rtn"}, spec)
            add(Task("accuracy", base[2], stages.guard, (stages.accuracy, "fp16", "rtn", spec.accuracy_windows),
                     1, 3 * GiB))
        if "rtl" in spec.stages:
            add(Task("rtl", _key("rtl", hw, p["weights"]), stages.guard, (stages.rtl_check, hw, p["weights"]),
                     1, 4 * GiB))
    return list(tasks.values())


def _merge(row: dict, stage: str, res: dict | None, drop=("status", "reason", "seconds", "git_rev")):
    if res is None:
        row["status"] = "error"
        row["reason"] = (row["reason"] + "; " if row["reason"] else "") + f"{stage}: not run (interrupted)"
        return
    if res.get("status") != "ok":
        row["status"] = "error"
        row["reason"] = (row["reason"] + "; " if row["reason"] else "") + f"{stage}: {res.get('reason', '?')}"
    row.update({k: v for k, v in res.items() if k not in drop})
    row[f"{stage}_seconds"] = res.get("seconds", 0.0)


def assemble(spec: Spec, points: list[dict], journal: Journal, revision: str) -> list[dict]:
    """One row per point: its parameters, config hash, git revision (the one its perf stage ran at; else
    `revision`) and every stage's columns; `status` is "ok" or "error" with `reason` naming the stage(s) and
    why."""
    rows = []
    base = journal.get("accuracy", accuracy_key({"weights": "fp16", "method": "rtn"}, spec)[2])
    for p in points:
        hw = hw_fields(p)
        row = {"config_hash": point_hash(p), "git_rev": revision, "sweep": spec.name, **p,
               "status": "ok", "reason": ""}
        if "perf" in spec.stages:
            perf = journal.get("perf", point_hash(p))
            _merge(row, "perf", perf)
            row["git_rev"] = (perf or {}).get("git_rev", revision)     # the revision that computed the point
        if "resources" in spec.stages:
            _merge(row, "resources", journal.get("resources", _key("resources", hw, p["board"])))
            if spec.yosys:
                _merge(row, "yosys", journal.get("yosys", _key("yosys", hw, spec.yosys)))
        if "accuracy" in spec.stages:
            fmt, method, k = accuracy_key(p, spec)
            row["method"] = method
            acc = journal.get("accuracy", k)
            _merge(row, "accuracy", acc)
            if acc and base and acc.get("status") == base.get("status") == "ok":
                row["bits_per_byte_delta"] = acc["bits_per_byte"] - base["bits_per_byte"]
        if "rtl" in spec.stages:
            _merge(row, "rtl", journal.get("rtl", _key("rtl", hw, p["weights"])))
        rows.append(row)
    return rows


class _Recorder:
    """The engine's result callback: each finished task into the journal (with the git revision), counted per
    stage; KeyboardInterrupt after `stop_after` tasks (the tests' interruption)."""

    def __init__(self, journal: Journal, revision: str, stop_after: int | None):
        self.journal, self.revision, self.stop_after = journal, revision, stop_after
        self.counts: dict[str, int] = {}
        self.done = 0

    def __call__(self, t: Task, res: dict):
        self.journal.add(t.kind, t.key, {**res, "git_rev": self.revision})
        self.counts[t.kind] = self.counts.get(t.kind, 0) + 1
        self.done += 1
        if self.stop_after is not None and self.done >= self.stop_after:
            raise KeyboardInterrupt


def run_sweep(spec: Spec, out: str | Path, engine: str = "ray", workers: int = 2, address: str | None = None,
              progress: bool = True, stop_after: int | None = None, table_name: str = "results.parquet") \
        -> SweepResult:
    """Run (or resume) `spec` into the folder `out`: journal.jsonl, and the results table (`table_name`,
    Parquet or CSV). `stop_after` N: stop as if interrupted after N tasks (for tests); the journal keeps them."""
    if spec.search == "tpe":
        return run_tpe(spec, out, engine, workers, address, progress, stop_after, table_name)
    out = Path(out)
    journal = Journal(out)
    points = spec.points()
    todo = [t for t in plan(spec, points, out / "build") if not journal.done(t.kind, t.key)]
    total = len(plan(spec, points, out / "build"))
    revision = git_revision(REPO)
    rec = _Recorder(journal, revision, stop_after)
    try:
        execute(todo, rec, engine, workers, address, desc=f"sweep {spec.name}", progress=progress)
    finally:
        journal.close()
    rows = assemble(spec, points, journal, revision)
    table = write_table(rows, out / table_name)
    return SweepResult(rows, table, rec.done, total - len(todo), rec.counts)


def run_tpe(spec: Spec, out: str | Path, engine: str = "ray", workers: int = 2, address: str | None = None,
            progress: bool = True, stop_after: int | None = None, table_name: str = "results.parquet") \
        -> SweepResult:
    """`search = "tpe"` (sweep/tpe.py): batches of `workers` suggestions, each batch's tasks run on the engine
    (those in the journal skipped), each point's objective told to the searcher, until `spec.samples` distinct
    points are evaluated. Rows in the order the search first reached them, with `trial`, `objective` and
    `objective_reason`."""
    out = Path(out)
    journal = Journal(out)
    search = TpeSearch(spec)
    want, max_asks = budget(search, spec.samples)
    revision = git_revision(REPO)
    rows: dict[str, dict] = {}
    planned: set = set()
    on_result = _Recorder(journal, revision, stop_after)
    bar = tqdm(total=want, desc=f"sweep {spec.name} (tpe)", unit="point", file=sys.stderr, disable=not progress,
               dynamic_ncols=True)
    try:
        with ray_held(engine, workers, address) as start_ray:
            while len(rows) < want and search.asked < max_asks:
                batch = search.ask(min(workers, want - len(rows)))
                points = list({point_hash(p): p for _, p in batch}.values())
                tasks = plan(spec, points, out / "build")
                todo = [t for t in tasks if not journal.done(t.kind, t.key)]
                planned.update((t.kind, t.key) for t in tasks)
                if todo:
                    start_ray()
                    execute(todo, on_result, engine, workers, address, progress=False)
                for tid, p in batch:
                    row = assemble(spec, [p], journal, revision)[0]
                    value, why = objective(row, spec)
                    search.tell(tid, value)
                    if row["config_hash"] not in rows:
                        rows[row["config_hash"]] = {**row, "trial": len(rows), "objective": value,
                                                    "objective_reason": why}
                        bar.update()
    finally:
        bar.close()
        journal.close()
    table = write_table(list(rows.values()), out / table_name)
    return SweepResult(list(rows.values()), table, on_result.done, len(planned) - on_result.done, on_result.counts)
