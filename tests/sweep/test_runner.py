"""A tiny sweep end to end on local Ray (CI's sweep test): rows with config hash and git revision, a point
that does not fit recorded with its reason, and resuming after an interruption recomputes nothing."""
import pytest

from dfx.sweep import grid_spec, read_table, run_sweep

pytest.importorskip("ray")

# 4 points, one invalid (vpu_width > d); 124M on one device, 8 generated tokens: seconds per point.
GRID = ["model=124M", "devices=1", "d=32,64", "vpu_width=32,64", "input_tokens=16", "output_tokens=8"]


@pytest.fixture(scope="module")
def spec():
    return grid_spec(GRID, {"name": "tiny", "stages": ["perf", "resources"]})


def test_tiny_sweep_on_ray_resumes_without_recomputing(spec, tmp_path):
    out = tmp_path / "sw"
    with pytest.raises(KeyboardInterrupt):             # interrupted after 3 of its tasks (in-process: quick)
        run_sweep(spec, out, engine="loop", progress=False, stop_after=3)
    journal = (out / "journal.jsonl").read_text().splitlines()
    assert len(journal) >= 3
    res = run_sweep(spec, out, engine="ray", workers=2, progress=False)
    total = res.computed + res.reused
    assert res.reused == len(journal) and res.computed == total - len(journal) > 0
    again = run_sweep(spec, out, engine="ray", workers=2, progress=False)        # nothing left: Ray not started
    assert again.computed == 0 and again.reused == total
    rows = read_table(res.table)
    assert res.table.suffix == ".parquet" and len(rows) == 4
    assert all(len(r["config_hash"]) == 16 and r["git_rev"] for r in rows)
    bad = [r for r in rows if r["status"] != "ok"]
    assert len(bad) == 1 and bad[0]["d"] == 32 and bad[0]["vpu_width"] == 64
    assert "vpu_width must be <= d" in bad[0]["reason"] and "\n" not in bad[0]["reason"]
    good = [r for r in rows if r["status"] == "ok"]
    assert all(r["latency_ms"] > 0 and r["tokens_per_s"] > 0 and r["lut"] > 0 and r["dsp_est"] > 0 for r in good)
    # a wider MPU row (d=64) is faster and bigger than d=32 at the same VPU width
    by = {(r["d"], r["vpu_width"]): r for r in good}
    assert by[64, 32]["latency_ms"] < by[32, 32]["latency_ms"] and by[64, 32]["lut"] > by[32, 32]["lut"]
    # the plain loop computes the same figures as the Ray workers did (the model is deterministic)
    cols = ("config_hash", "status", "latency_ms", "lut", "dsp")
    loop = run_sweep(spec, tmp_path / "loop", engine="loop", progress=False)
    assert [{k: r.get(k) for k in cols} for r in loop.rows] == [{k: r.get(k) for k in cols} for r in res.rows]
