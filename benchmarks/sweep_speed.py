"""How fast `dfx sweep` runs on this machine (docs/dse.md, "Sweep speed"):

1. points per minute of a real sweep (perf + resources of GPT-2 124M on one device over d, l and the clock)
   with 1 and with 2 local Ray workers, measured in one run, and their ratio;
2. Ray's overhead over a plain loop for 1-second points (each point busy for one second of wall time):
   the same points through `dfx.sweep.execute` with engine "loop" and with Ray (1 worker), and Ray's start-up
   (one no-op task) on its own.

    python benchmarks/sweep_speed.py                   # prints the figures, writes docs/dse/sweep_speed.json
    python benchmarks/sweep_speed.py --points 6 --busy 6
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from dfx.sweep import Task, execute, grid_spec, run_sweep

ROOT = Path(__file__).resolve().parents[1]


def busy(seconds: float) -> dict:
    """A point that keeps a core busy for `seconds` of wall time."""
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < seconds:
        n += 1
    return {"status": "ok", "spins": n}


def noop() -> dict:
    return {"status": "ok"}


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def real_points(n: int) -> list[str]:
    """A grid of about n points of 124M on one device (d x l x clock)."""
    clocks = [150, 200, 250, 300, 350, 400][:max(1, n // 4)]
    return ["model=124M", "devices=1", "d=32,64", "l=8,16", "vpu_width=32", "output_tokens=32",
            "clock_mhz=" + ",".join(map(str, clocks))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=16, help="real sweep points (rounded to the grid)")
    ap.add_argument("--busy", type=int, default=8, help="1-second points for the overhead measurement")
    ap.add_argument("--out", default=str(ROOT / "docs" / "dse" / "sweep_speed.json"))
    a = ap.parse_args(argv)
    spec = grid_spec(real_points(a.points), {"name": "speed", "stages": ["perf", "resources"]})
    n = len(spec.points())
    start = timed(lambda: execute([Task("noop", "0", noop, ())], lambda t, r: None, "ray", 1, progress=False))
    walls = {}
    with tempfile.TemporaryDirectory() as tmp:
        for w in (1, 2):
            walls[w] = timed(lambda: run_sweep(spec, Path(tmp) / f"w{w}", "ray", w, progress=False))
            print(f"{n} points, {w} Ray worker(s): {walls[w]:.1f} s, {60 * n / walls[w]:.1f} points/min", flush=True)
    tasks = [Task("busy", str(i), busy, (1.0,)) for i in range(a.busy)]
    loop = timed(lambda: execute(tasks, lambda t, r: None, "loop", progress=False))
    ray1 = timed(lambda: execute(tasks, lambda t, r: None, "ray", 1, progress=False))
    per = (ray1 - start - loop) / a.busy
    load = os.getloadavg()[0]
    lines = [
        f"real points (GPT-2 124M, 1 device, perf + resources; {n} points, Ray start-up included): "
        f"{60 * n / walls[1]:.1f} points/min with 1 worker, {60 * n / walls[2]:.1f} with 2; "
        f"2 workers / 1 worker = {walls[1] / walls[2]:.2f}x; after Ray's start-up (measured on its own, below): "
        f"{60 * n / (walls[1] - start):.1f} and {60 * n / (walls[2] - start):.1f} points/min, "
        f"{(walls[1] - start) / (walls[2] - start):.2f}x",
        f"{a.busy} one-second points: plain loop {loop:.1f} s, Ray with 1 worker {ray1:.1f} s; Ray's start-up "
        f"and shutdown (one no-op task) {start:.1f} s; the rest, {per * 1e3:+.0f} ms per point, is Ray's "
        "per-task overhead",
        f"load average at the end: {load:.1f} on {os.cpu_count()} cores (a machine shared with other sessions)",
    ]
    for line in lines:
        print(line)
    out = {"command": "python benchmarks/sweep_speed.py" + (f" --points {a.points}" if a.points != 16 else "")
                      + (f" --busy {a.busy}" if a.busy != 8 else ""),
           "machine": f"{os.cpu_count()} cores, load {load:.1f}", "lines": lines,
           "points": n, "wall_s": walls, "busy_points": a.busy, "loop_s": loop, "ray1_s": ray1, "ray_start_s": start,
           "ray_overhead_ms_per_point": per * 1e3}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
