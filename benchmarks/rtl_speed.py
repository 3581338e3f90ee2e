"""RTL simulation speed of the MPU at the tiny config (d=8, l=4): simulated clock cycles per wall-clock second
on Icarus and on Verilator (cocotb 2.x runner, the same stream testbench and scoreboard as the tests), and in
amaranth.sim for reference. Medians of --repeat runs; build and simulator start-up are excluded (cocotb's
own per-test wall time and simulated time, from its results file; for amaranth.sim the `Simulator.run`).

    python benchmarks/rtl_speed.py [--beats 20000] [--pysim-beats 300] [--repeat 3] [--update-docs]

With --update-docs the table replaces the <!-- rtl-speed --> blocks of README.md and docs/rtl.md.

The workload is a stream of random matrices (K, N up to 4d x 4l: all tiles, bias, scale, GELU, mask), one
tile per cycle when the sinks are always ready (stall 0), checked bit for bit against `dfx.numerics`.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests" / "hw"
sys.path.insert(0, str(TESTS))

from hw_helpers import run_streams  # noqa: E402
from test_cocotb import mpu_program  # noqa: E402

from dfx.config import PRESETS  # noqa: E402
from dfx.hw.mpu import MPU  # noqa: E402
from dfx.verify.stream_tb import VECTORS_ENV  # noqa: E402
from dfx.verify.toolchain import missing_simulator, run_module, sim_env  # noqa: E402
from dfx.verify.units import build_unit, write_vectors  # noqa: E402

CFG = PRESETS["tiny"]
CLOCK_NS = 5                     # dfx.verify.stream_tb's clock


def workload(beats: int, seed: int = 0):
    """(x words, w words, expected outputs) of at least `beats` input beats."""
    rng = np.random.default_rng(seed)
    xs, ws, want = [], [], []
    while len(xs) < beats:
        x, w, o = mpu_program(rng, 8)
        xs += x
        ws += w
        want += o
    return xs, ws, want


def cocotb_speed(runner, bdir: Path, sim: str, xs, ws, want) -> tuple[float, int, float]:
    """(cycles/s, cycles, seconds) of one cocotb run of the stream testbench on the built MPU."""
    vec = write_vectors(bdir / "vectors.json", {"x": xs, "w": ws}, {"o": want}, seed=0, stall=0.0, timeout=100000)
    xml = bdir / "results.xml"
    run_module(runner, "dfx.verify.stream_tb", "mpu_speed", bdir, bdir,
               sim_env(**{VECTORS_ENV: str(vec)}, COCOTB_LOG_LEVEL="WARNING"), bdir / "test.log",
               results_xml=str(xml))
    case = ET.parse(xml).getroot().find(".//testcase")
    if case.find("failure") is not None:
        raise SystemExit(f"{sim}: the MPU's outputs differ from the reference (see {bdir / 'test.log'})")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    cycles = int(float(props["sim_time_duration"]) / CLOCK_NS)
    secs = float(case.get("time"))
    return cycles / secs, cycles, secs


def pysim_speed(xs, ws, want) -> tuple[float, int, float]:
    from amaranth.sim import Simulator
    dut = MPU(CFG)
    n_out = len(want)
    t = [0.0]
    orig_run = Simulator.run

    def timed_run(self):
        t0 = time.perf_counter()
        orig_run(self)
        t[0] = time.perf_counter() - t0
    Simulator.run = timed_run
    try:
        out = run_streams(dut, {"x": xs, "w": ws}, {"o": n_out}, stall=0.0)["o"]
    finally:
        Simulator.run = orig_run
    assert out == want, "amaranth.sim MPU output differs from the reference"
    cycles = len(xs) + dut.latency
    return cycles / t[0], cycles, t[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--beats", type=int, default=20000, help="input beats per Icarus/Verilator run")
    ap.add_argument("--pysim-beats", type=int, default=300, help="input beats per amaranth.sim run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sims", default="icarus,verilator,amaranth")
    ap.add_argument("--update-docs", action="store_true", help="write the table into README.md and docs/rtl.md")
    args = ap.parse_args(argv)
    xs, ws, want = workload(args.beats)
    rows = []
    for sim in args.sims.split(","):
        if sim == "amaranth":
            px, pw, pwant = workload(args.pysim_beats, seed=1)
            runs = [pysim_speed(px, pw, pwant) for _ in range(args.repeat)]
            label = "amaranth.sim (Python)"
        else:
            why = missing_simulator(sim, axi=False)
            if why:
                print(f"{sim}: skipped ({why})", file=sys.stderr)
                continue
            runner, bdir = build_unit(MPU(CFG), "mpu_speed", sim)      # build once, outside the timing
            runs = [cocotb_speed(runner, bdir, sim, xs, ws, want) for _ in range(args.repeat)]
            label = {"icarus": "Icarus 11 (cocotb 2)", "verilator": "Verilator 5.048 (cocotb 2)"}[sim]
        rate = statistics.median(r[0] for r in runs)
        rows.append((label, rate, runs[0][1], statistics.median(r[2] for r in runs)))
        print(f"{label}: {rate:,.0f} cycles/s", file=sys.stderr, flush=True)
    lines = ["| simulator (MPU, tiny config) | cycles/s | cycles per run | s per run |", "|---|---|---|---|"]
    lines += [f"| {label} | {rate:,.0f} | {cycles:,} | {secs:.2f} |" for label, rate, cycles, secs in rows]
    text = "\n".join(lines)
    print(text)
    if args.update_docs:
        for doc in (HERE.parent / "README.md", HERE.parent / "docs" / "rtl.md"):
            src = doc.read_text()
            begin, end = "<!-- rtl-speed -->", "<!-- /rtl-speed -->"
            if begin not in src:
                raise SystemExit(f"{doc} has no {begin} ... {end} block")
            head, rest = src.split(begin, 1)
            doc.write_text(f"{head}{begin}\n{text}\n{end}{rest.split(end, 1)[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
