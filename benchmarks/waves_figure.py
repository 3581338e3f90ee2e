"""The model's timeline beside the RTL's waves, for one tiny program (docs/dse.md, "Timelines"): the last decode
step of a short generation, as the performance model schedules it (`dfx perf --trace`, perf/chrome_trace.py)
and as the RTL core runs it (`dfx run --backend rtl --waves`, the dbg_* signals of verify/waves.py), one row per
unit, in core cycles from the step's start: the model's bars run from an instruction's start to its result
(the chrome trace's `done_us`), the RTL's are the units' dbg_busy_* (the BUSY counters' condition).

    python benchmarks/waves_figure.py            # Icarus (SIM=verilator for Verilator); writes
                                                 # docs/img/waves_vs_model.png, build/waves/tiny.fst, .json
    python benchmarks/waves_figure.py --fst F    # draw from an FST written before (same program and prompt)

It prints each unit's busy cycles in the model and in the RTL, and the step's cycles in both.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

from dfx import regmap
from dfx.host.rtl_session import run_session
from dfx.perf import PerfModel
from dfx.perf.chrome_trace import TRACKS, chrome_trace
from dfx.program import load_program
from dfx.verify.fast_tb import CLOCK_NS
from dfx.verify.waves import read_fst

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = ROOT / "tests" / "host" / "fixtures" / "tiny_1dev.dfx"      # the embedded model at the tiny config
UNITS = tuple(u.lower() for u in regmap.COUNTER_UNITS)
COLOURS = {"mpu": "#4c72b0", "vpu": "#dd8452", "dma": "#8172b3", "router": "#55a868"}


def intervals(times: list[int], values: list[int], end: int) -> list[tuple[int, int]]:
    """[start, stop) of each stretch where a 1-bit signal is 1 (`end` closes one still open)."""
    out, start = [], None
    for t, v in zip(times, values):
        if v and start is None:
            start = t
        elif not v and start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, end))
    return out


def rtl_step(fst: Path) -> dict:
    """The last run (ap_start .. ap_done) in the FST: its index, cycles, and per unit the busy stretches and
    issue cycles relative to its start."""
    names = ["dbg_running", "dbg_pc"] + [f"dbg_{k}_{u}" for u in UNITS for k in ("busy", "issue")]
    sig = read_fst(fst, names)
    end = max(t[-1] for t, _ in sig.values() if t) + 1
    runs = intervals(*sig["dbg_running"], end)
    if not runs:
        raise SystemExit(f"{fst}: dbg_running is never 1 (no run in the waves)")
    t0, t1 = runs[-1]
    ps = CLOCK_NS * 1000

    def rel(t):
        return (t - t0) / ps
    out = {"runs": len(runs), "cycles": round(rel(t1)), "busy": {}, "issue": {},
           "pcs": sorted({v for t, v in zip(*sig["dbg_pc"]) if t0 <= t < t1})}
    for u in UNITS:
        out["busy"][u] = [(rel(a), rel(b)) for a, b in intervals(*sig[f"dbg_busy_{u}"], end) if b > t0 and a < t1]
        out["issue"][u] = [rel(t) for t, v in zip(*sig[f"dbg_issue_{u}"]) if v and t0 <= t < t1]
    return out


def model_step(prog, pos: int) -> dict:
    """The performance model's schedule of the decode step at `pos`, in cycles: per unit each instruction from
    its start to its result (`done_us`: what the RTL's busy covers), and its occupancy (the slice's `dur`)."""
    m = PerfModel(prog, "u280")
    t = chrome_trace(m, "decode", pos)
    mhz = t["otherData"]["clock_mhz"]
    out = {"trace": t, "cycles": t["otherData"]["cycles"], "busy": {u: [] for u in UNITS},
           "occupancy": {u: 0.0 for u in UNITS}}
    for e in t["traceEvents"]:
        u = TRACKS[e["tid"]].lower() if e["ph"] == "X" and e["pid"] == 0 else None
        if u in out["busy"]:
            out["busy"][u].append((e["ts"] * mhz, e["args"]["done_us"] * mhz))
            out["occupancy"][u] += e["dur"] * mhz
    return out


def union(stretches) -> list[tuple[float, float]]:
    """Overlapping [a, b) stretches merged (a pipelined unit's instructions overlap)."""
    out = []
    for a, b in sorted(stretches):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def draw(model: dict, rtl: dict, pos: int, out: Path) -> None:
    fig, axes = plt.subplots(2, 1, figsize=(12, 4.6), sharex=True)
    span = max(model["cycles"], rtl["cycles"])
    for ax, (label, busy) in zip(axes, (("model", model["busy"]), ("RTL", rtl["busy"]))):
        for y, u in enumerate(UNITS):
            bars = [(a, max(b - a, span * 1e-3)) for a, b in union(busy[u])]
            ax.broken_barh(bars, (y - 0.4, 0.8), color=COLOURS[u])
            if label == "RTL":
                ax.plot(rtl["issue"][u], [y - 0.45] * len(rtl["issue"][u]), "|", color="black", ms=4, mew=0.6)
        ax.set_yticks(range(len(UNITS)), [f"{label} {u.upper()}" for u in UNITS], fontsize=8)
        ax.invert_yaxis()
    axes[0].set_title(f"tiny config, decode step at position {pos}: the performance model ({model['cycles']:,} "
                      f"cycles, `dfx perf --trace`) and the RTL core ({rtl['cycles']:,} cycles, dbg_busy_* of "
                      "`--waves`; ticks: dbg_issue_*)", fontsize=9)
    axes[1].set_xlabel("core cycles from the step's start")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def busy_cycles(stretches) -> int:
    return round(sum(b - a for a, b in union(stretches)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--program", default=str(PROGRAM))
    ap.add_argument("--prompt", default="1,2,3", help="token ids, comma-separated")
    ap.add_argument("-n", "--new-tokens", type=int, default=2)
    ap.add_argument("--fst", default=str(ROOT / "build" / "waves" / "tiny.fst"),
                    help="the waves: written by this run unless --reuse and the file exists")
    ap.add_argument("--reuse", action="store_true", help="draw from --fst as it is (no simulation)")
    ap.add_argument("--json", default=str(ROOT / "build" / "waves" / "tiny_step.json"),
                    help="the model's step as a Perfetto trace (ui.perfetto.dev)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "waves_vs_model.png"))
    a = ap.parse_args(argv)
    prog = load_program(a.program)
    prompt = [int(t) for t in a.prompt.split(",")]
    fst = Path(a.fst)
    if not (a.reuse and fst.exists()):
        fst.parent.mkdir(parents=True, exist_ok=True)
        res = run_session(a.program, prompt, a.new_tokens, waves=fst)
        print(f"rtl: tokens {res['tokens']}, {res['wall_s']:.1f} s of simulation; wrote {fst} "
              f"({fst.stat().st_size / 2**20:.1f} MiB)")
    rtl = rtl_step(fst)
    pos = rtl["runs"] - 1                     # token-serial: run i is the step at position i
    model = model_step(prog, pos)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(model["trace"], separators=(",", ":")))
    draw(model, rtl, pos, Path(a.out))
    print(f"decode step at position {pos}: model {model['cycles']:,} cycles, RTL {rtl['cycles']:,} cycles; "
          f"RTL PCs {rtl['pcs'][0]}..{rtl['pcs'][-1]} ({len(rtl['pcs'])} distinct)")
    for u in UNITS:
        print(f"  {u.upper():<6} busy (start to result): model {busy_cycles(model['busy'][u]):>6,} cycles "
              f"({len(model['busy'][u])} instructions; occupancy {model['occupancy'][u]:,.0f}), RTL "
              f"{busy_cycles(rtl['busy'][u]):>6,} cycles ({len(rtl['issue'][u])} issued)")
    print(f"wrote {a.out} and {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
