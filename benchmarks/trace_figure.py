"""The timeline figure of docs/dse.md: `dfx perf`'s Chrome/Perfetto trace of one decode step (GPT-2 1.5B on
4 x U280, DFX config, position 127) drawn with matplotlib, a window of the first decoder layer: one row per
unit per device, a bar per instruction (coloured by class), and the ring syncs.

    python benchmarks/trace_figure.py            # writes docs/dse/timeline.png (and prints the step's figures)

The same JSON opens at ui.perfetto.dev (`dfx perf 1.5B --trace step.json`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

from dfx.perf import PerfModel, compile_tuned
from dfx.perf.chrome_trace import TRACKS, chrome_trace

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COLOURS = {"matrix": "#4c72b0", "vector": "#dd8452", "scalar": "#c44e52", "dma": "#8172b3", "ring": "#55a868",
           "control": "#937860"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="1.5B")
    ap.add_argument("--devices", type=int, default=4)
    ap.add_argument("--pos", type=int, default=127)
    ap.add_argument("--layer", default="layer 0", help="the layer bin to show (args.layer of the slices)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "dse" / "timeline.png"))
    a = ap.parse_args(argv)
    m = PerfModel(compile_tuned(a.model, "dfx", devices=a.devices), "u280")
    t = chrome_trace(m, "decode", a.pos)
    xs = [e for e in t["traceEvents"] if e["ph"] == "X"]
    sel = [e for e in xs if e["args"]["layer"] == a.layer]
    if not sel:
        raise SystemExit(f"no slices in layer {a.layer!r}; layers: {sorted({e['args']['layer'] for e in xs})[:8]}")
    t0, t1 = min(e["ts"] for e in sel), max(e["ts"] + e["dur"] for e in sel)
    rows = [(k, u) for k in range(a.devices) for u in range(len(TRACKS))]
    fig, ax = plt.subplots(figsize=(12, 0.32 * len(rows) + 1.2))
    for e in xs:
        if e["ts"] + e["dur"] < t0 or e["ts"] > t1:
            continue
        y = rows.index((e["pid"], e["tid"]))
        ax.broken_barh([(e["ts"] - t0, max(e["dur"], (t1 - t0) * 2e-4))], (y - 0.4, 0.8),
                       color=COLOURS.get(e["cat"], "#8c8c8c"))
    for e in xs:
        if e["name"] == "ALLGATHER" and t0 <= e["ts"] <= t1:
            ax.axvline(e["ts"] - t0, color="#55a868", lw=0.4, alpha=0.5)
    ax.set_yticks(range(len(rows)), [f"dev {k} {TRACKS[u]}" for k, u in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("µs from the layer's first instruction")
    o = t["otherData"]
    ax.set_title(f"{a.model} on {a.devices} x U280, decode step at position {a.pos}: {a.layer} "
                 f"({t1 - t0:.0f} µs of {o['cycles'] / o['clock_mhz'] / 1e3:.2f} ms)", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLOURS.values()]
    ax.legend(handles, list(COLOURS), fontsize=7, ncol=6, loc="lower right")
    fig.tight_layout()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print(f"step: {o['cycles']} cycles ({o['cycles'] / o['clock_mhz'] / 1e3:.3f} ms), {len(xs)} slices, "
          f"{o['ring_syncs']} ring syncs; wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
