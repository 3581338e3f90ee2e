"""`search = "tpe"`: Optuna's TPE through Ray Tune's OptunaSearch over a tiny space on local Ray, the penalty and
reason of points that do not fit, the same points after an interruption and resume with nothing recomputed,
and the objective's rules."""
import math

import pytest

from dfx.errors import UsageError
from dfx.sweep import from_dict, read_table, run_sweep
from dfx.sweep.tpe import PENALTY_MS, TpeSearch, objective, startup_trials

pytest.importorskip("ray.tune.search.optuna")
pytest.importorskip("optuna")

# 8 points (2 invalid: vpu_width > d; d=64, l=16, vpu_width=64 over the board's usable LUTs); 124M on one
# device, a few tokens: about a second per point
SPACE = {"name": "tpe", "search": "tpe", "samples": 6, "seed": 7, "stages": ["perf", "resources"],
         "model": "124M", "devices": 1, "d": [32, 64], "l": [8, 16], "vpu_width": [32, 64],
         "input_tokens": 8, "output_tokens": 4}
COLS = ("trial", "config_hash", "status", "objective", "objective_reason", "latency_ms")


def test_tpe_sweep_on_ray_resumes_without_recomputing(tmp_path):
    spec = from_dict(SPACE)
    out = tmp_path / "tpe"
    with pytest.raises(KeyboardInterrupt):          # interrupted after 3 tasks: one batch of 2 points, half done
        run_sweep(spec, out, engine="loop", workers=2, progress=False, stop_after=3)
    journal = (out / "journal.jsonl").read_text().splitlines()
    assert len(journal) == 3
    res = run_sweep(spec, out, engine="ray", workers=2, progress=False)
    assert res.reused == 3 and res.computed > 0
    assert res.computed + res.reused == len((out / "journal.jsonl").read_text().splitlines())
    again = run_sweep(spec, out, engine="ray", workers=2, progress=False)          # all in the journal
    assert again.computed == 0 and again.reused == res.computed + res.reused
    rows = read_table(res.table)
    assert res.table.suffix == ".parquet" and len(rows) == 6
    assert [r["trial"] for r in rows] == list(range(6)) and len({r["config_hash"] for r in rows}) == 6
    for r in rows:
        if r["status"] == "ok" and r["fits_lut"] and r["fits_dsp"]:
            assert r["objective"] == r["latency_ms"] > 0 and r["objective_reason"] == ""
        else:
            assert r["objective"] == PENALTY_MS and r["objective_reason"] and "\n" not in r["objective_reason"]
        if r["status"] != "ok":
            assert "vpu_width must be <= d" in r["objective_reason"]
    # the seeded search asks the same questions however often it is interrupted: an uninterrupted run in the
    # plain loop reaches the same points in the same order, with the same objectives
    loop = run_sweep(spec, tmp_path / "loop", engine="loop", workers=2, progress=False)
    assert [{k: r.get(k) for k in COLS} for r in loop.rows] == [{k: r.get(k) for k in COLS} for r in rows]


def test_tpe_finds_the_fastest_fitting_point_of_a_small_space(tmp_path):
    """With the whole space as budget, the best objective is the fastest point that fits (found by a grid)."""
    spec = from_dict({**SPACE, "samples": 8, "stages": ["perf", "resources"]})
    res = run_sweep(spec, tmp_path / "t", engine="loop", workers=1, progress=False)
    grid = run_sweep(from_dict({**SPACE, "search": "grid", "samples": 0}), tmp_path / "t", engine="loop",
                     progress=False)
    assert grid.computed == 0                       # the grid's points are all in the TPE sweep's journal
    fits = [r for r in grid.rows if r["status"] == "ok" and r["fits_lut"] and r["fits_dsp"]]
    assert min(r["objective"] for r in res.rows) == min(r["latency_ms"] for r in fits)


def test_objective_rules():
    spec = from_dict({**SPACE, "stages": ["perf", "resources", "accuracy"]})
    ok = {"status": "ok", "latency_ms": 12.5, "fits_lut": True, "fits_dsp": True, "bits_per_byte_delta": 0.0}
    assert objective(ok, spec) == (12.5, "")
    big = {**ok, "fits_lut": False, "lut_pct": 91.4, "dsp_pct": 18.0}
    assert objective(big, spec)[0] == PENALTY_MS and "LUT 91.4%" in objective(big, spec)[1]
    lossy = {**ok, "bits_per_byte_delta": 0.5}
    assert objective(lossy, spec)[0] == PENALTY_MS and "accuracy budget" in objective(lossy, spec)[1]
    bad = {"status": "error", "reason": "perf: does not compile"}
    assert objective(bad, spec) == (PENALTY_MS, "perf: does not compile")
    assert objective({**ok, "latency_ms": math.nan}, spec)[0] == PENALTY_MS


def test_space_and_settings():
    groups = from_dict({"search": "tpe", "samples": 4, "stages": ["perf"], "d": [32, 64],
                        "group": [{"model": "124M", "l": [8, 16]}, {"model": "355M"}]})
    s = TpeSearch(groups)
    assert s.size == 4 + 2
    pts = [p for _, p in s.ask(6)]
    assert {p["model"] for p in pts} <= {"124M", "355M"} and all(p["d"] in (32, 64) for p in pts)
    assert all(p["l"] is None for p in pts if p["model"] == "355M")
    assert startup_trials(6) == 2 and startup_trials(400) == 10
    with pytest.raises(UsageError, match="needs samples"):
        from_dict({"search": "tpe", "d": [32, 64]})
    with pytest.raises(UsageError, match="must include perf"):
        from_dict({"search": "tpe", "samples": 3, "stages": ["resources"], "d": [32, 64]})
