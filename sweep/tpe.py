"""TPE search (`search = "tpe"`, docs/dse.md): Optuna's Tree-structured Parzen Estimator through Ray Tune's
`OptunaSearch`, over the same space as the grid (each `[[group]]`'s axes over the top-level ones) and the
same stages, minimising latency subject to fit.

Ray Tune's searcher interface is used directly (`suggest` / `on_trial_complete`, as Tune's own trial loop
calls it): the sweep's engine evaluates each batch of suggestions (the stages as Ray tasks, journalled), so a
TPE sweep resumes like the others. A rerun asks the seeded searcher the same questions in the same order, finds
the answers in the journal and computes only what it lacks.

The objective of a point (`objective`): its latency in ms when every stage completed, it fits the board (the
resources stage's LUT and DSP lane counts within the usable fraction) and its weights are within the spec's
accuracy budget (where the accuracy stage ran); else `PENALTY_MS` and the reason, which the results keep in
`objective` and `objective_reason`.

The space is define-by-run: with more than one group, a categorical `group` first, then that group's axes
(named `g<i>:<key>`); each axis is categorical over its listed values. TPE's first `startup_trials(samples)`
suggestions are random (Optuna's default is 10, too many for a sweep of a few dozen points).
"""
from __future__ import annotations

import math

from dfx.errors import UsageError

from .spec import CONFIG_FIELDS, DEFAULTS, Spec

PENALTY_MS = 1e9                  # the objective (ms) of a point that does not fit or complete


def startup_trials(samples: int) -> int:
    """Random suggestions before TPE models the results: a quarter of the budget, 2..10."""
    return max(2, min(10, samples // 4))


def objective(row: dict, spec: Spec) -> tuple[float, str]:
    """(latency in ms, "") for a point that completed and fits; (PENALTY_MS, why) otherwise."""
    if row.get("status") != "ok":
        return PENALTY_MS, row.get("reason") or "error"
    if "resources" in spec.stages and not (row.get("fits_lut") and row.get("fits_dsp")):
        return PENALTY_MS, (f"does not fit the board's usable LUTs and DSPs: LUT {row.get('lut_pct', 0):.1f}%, DSP "
                            f"{row.get('dsp_pct', 0):.1f}% of the device")
    delta = row.get("bits_per_byte_delta")
    if "accuracy" in spec.stages and delta is not None and delta > spec.accuracy_budget:
        return PENALTY_MS, f"over the accuracy budget: {delta:+.4f} bits/byte over FP16 > {spec.accuracy_budget:+g}"
    lat = row.get("latency_ms")
    if not isinstance(lat, (int, float)) or not math.isfinite(lat):
        return PENALTY_MS, "no latency"
    return float(lat), ""


class TpeSearch:
    """Ray Tune's OptunaSearch with Optuna's seeded TPESampler over `spec`'s space; `ask(n)` suggests n
    points, `tell(trial_id, value)` reports one's objective."""

    def __init__(self, spec: Spec):
        try:
            # lazy: optional (the `sweep` extra); grid and random sweeps need neither
            import optuna
            from ray.tune.search.optuna import OptunaSearch
        except ImportError as e:
            raise UsageError(f"search 'tpe' needs Ray Tune and Optuna (pip install 'ray[tune]==2.60.0' optuna; "
                             f"scripts/bootstrap.sh installs them): {e}") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.spec = spec
        self.groups = [{k: (v if isinstance(v, list) else [v]) for k, v in g.items()} for g in spec.groups]
        self.size = sum(math.prod(len(v) for v in g.values()) for g in self.groups)
        sampler = optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=startup_trials(spec.samples))
        self.searcher = OptunaSearch(space=self._space, metric="objective", mode="min", sampler=sampler)
        self.asked = 0

    def _space(self, trial):
        g = trial.suggest_categorical("group", list(range(len(self.groups)))) if len(self.groups) > 1 else 0
        pre = f"g{g}:" if len(self.groups) > 1 else ""
        for k, vals in self.groups[g].items():
            if len(vals) > 1:
                trial.suggest_categorical(pre + k, vals)
        return None

    def point(self, params: dict) -> dict:
        """The sweep point (as `Spec.points` makes it) of the searcher's parameters."""
        g = params.get("group", 0)
        pre = f"g{g}:" if len(self.groups) > 1 else ""
        chosen = {k: (params[pre + k] if len(v) > 1 else v[0]) for k, v in self.groups[g].items()}
        return {**DEFAULTS, **{f: None for f in CONFIG_FIELDS}, **chosen}

    def ask(self, n: int) -> list[tuple[str, dict]]:
        out = []
        for _ in range(n):
            tid = f"t{self.asked}"
            self.asked += 1
            out.append((tid, self.point(self.searcher.suggest(tid))))
        return out

    def tell(self, trial_id: str, value: float):
        self.searcher.on_trial_complete(trial_id, {"objective": value})


def budget(search: TpeSearch, samples: int) -> tuple[int, int]:
    """(distinct points to evaluate, most suggestions to ask for them): TPE repeats points of a small space."""
    n = min(samples, search.size)
    return n, 20 * n + 20


__all__ = ["PENALTY_MS", "TpeSearch", "budget", "objective", "startup_trials"]
