"""The markdown report of a sweep (docs/dse.md for the example spec): what ran, what failed and why, each
workload's Pareto fronts as tables with DFX's point beside them, the plots, and the sweep engine's measured
speed (benchmarks/sweep_speed.py's JSON, when it has been run)."""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from .pareto import AXES, by_workload, front, is_dfx, usable, workload
from .spec import CONFIG_FIELDS, Spec
from .tpe import PENALTY_MS

COLUMNS = (("d", "d"), ("l", "l"), ("vpu_width", "VPU"), ("clock_mhz", "MHz"), ("weights", "weights"),
           ("overlap", "overlap"), ("latency_ms", "latency ms"), ("tokens_per_s", "tokens/s"),
           ("roofline_pct", "% roofline"), ("lut", "LUT"), ("lut_pct", "% LUT"), ("dsp", "DSP"),
           ("dsp_est", "DSP (DFX-style)"), ("bits_per_byte", "bits/byte"), ("bits_per_byte_delta", "Δ vs FP16"))
PRECISE = {"bits_per_byte": "{:.4f}", "bits_per_byte_delta": "{:+.4f}"}


def _cell(v) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "-"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}" if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _value(row: dict, key: str, base: dict):
    v = row.get(key)
    return base.get(key) if v is None and key in CONFIG_FIELDS else v


def table(rows: list[dict], base: dict, mark_dfx: bool = True, label: bool = False) -> str:
    cols = [(k, h) for k, h in COLUMNS if any(r.get(k) is not None for r in rows) or k in CONFIG_FIELDS]
    if label:
        cols.insert(0, ("workload", "workload"))
        rows = [{**r, "workload": workload(r)} for r in rows]
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---:|" * len(cols)]
    for r in rows:
        cells = [PRECISE[k].format(r[k]) if k in PRECISE and isinstance(r.get(k), float) else
                 _cell(_value(r, k, base)) for k, _ in cols]
        if mark_dfx and is_dfx(r, base):
            cells[int(label)] = f"**{cells[int(label)]}** (DFX)"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(spec: Spec, rows: list[dict], plots: list[Path], doc: Path, base: dict, table_path: Path | None,
             speed: dict | None = None, command: str = "", timeline: Path | None = None,
             waves: Path | None = None) -> str:
    ok = [r for r in rows if r.get("status") == "ok"]
    reasons = Counter(r["reason"] for r in rows if r.get("status") != "ok")
    rev = Counter(r.get("git_rev") for r in rows).most_common(1)
    out = [f"# Design-space exploration: {spec.title or spec.name}", "",
           f"Written by `{command or 'dfx sweep'}` (sweep/report.py); every number below comes from that run"
           + (f" (git revision {rev[0][0]})" if rev else "") + ". Rerunning the command recomputes nothing that its "
           "journal already holds (build/sweep/NAME/journal.jsonl); a fresh clone computes it all again.", "",
           "## Running a sweep", "",
           "- `dfx sweep SPEC.toml` (or `.yaml`), or `dfx sweep --grid model=124M devices=1 d=32,64 ...`: the "
           "cartesian product of every parameter given a list (per `[[group]]`, over the top-level ones), or "
           "`search = \"random\"` with `samples = N` for N distinct points of it (seeded), or `search = \"tpe\"` "
           "with `samples = N` (and `seed`) for N points chosen by Optuna's TPE (below); `--search`, `--samples` "
           "and `--seed` override the spec's. Parameters: the "
           "model, devices, weights and method, overlap, prefill_batch, tokens, board, the base config and the "
           "AccelConfig fields d, l, vpu_width, vbuf_entries, hbm_channels, hbm_width, clock_mhz (sweep/spec.py). "
           "`engines`: the perf stage's timing, `pipelined` by default (the DFX-style target: engines pipelined "
           "across instructions, which the RTL does not have yet; every latency on this page assumes them) or `rtl` "
           "(the engines of hw/ as built, the default of `dfx perf`, calibrated against the RTL: docs/rtl_core.md).",
           "- Stages per spec: `perf`, `resources` (with `yosys = [\"mpu\", ...]`: Yosys at the point's config, "
           "cached by config hash), `accuracy` (cached by format and method) and `rtl` (a bit-exact check of a "
           "small GPT-2 on the core's RTL at the point's config, cached; minutes per config).",
           "- Ray: a local `ray.init` with `--workers` CPUs (default 2), no dashboard, quiet logs, shut down at "
           "the end; `--address` joins a cluster, where each task also requests its memory (perf 2 GiB, accuracy "
           "3, rtl 4, Yosys 6); tried here against a local `ray start --head` (started with "
           "RAY_AUTH_MODE=disabled: a cluster with Ray's token authentication needs its token on the client too). `--engine loop` runs without Ray.",
           "- Resumable: every finished task is appended to build/sweep/NAME/journal.jsonl as it lands; after an "
           "interruption the same command runs only what the journal lacks (tests/sweep/test_runner.py "
           "interrupts a sweep and checks it). A tqdm bar with ETA goes to stderr.",
           "- Results: one row per point (Parquet with pyarrow, else CSV), with `config_hash` (sweep/spec.py, "
           "`point_hash`) and `git_rev`; points that do not fit or compile have `status` error and a one-line "
           "`reason`.",
           "- TPE (sweep/tpe.py): Ray Tune's `OptunaSearch` with Optuna's seeded `TPESampler` over the same space "
           "(a categorical per axis; with several groups, the group first) and the same stages, minimising "
           "latency among the points that fit: a point that does not complete, does not fit the usable LUTs "
           "and DSPs (when the resources stage runs) or exceeds `accuracy_budget` (when the accuracy stage runs) "
           f"scores {PENALTY_MS:.0e} ms, and its row keeps `objective` and `objective_reason`. Suggestions come "
           "in batches of `--workers`, each batch's stages run as Ray tasks, and the rows (with `trial`, the "
           "order the search reached them) go to the same Parquet. Resumable like the grid: a rerun asks the "
           "seeded searcher the same questions, finds the answers in the journal and computes only what it "
           "lacks (tests/sweep/test_tpe.py interrupts one, resumes it on Ray and compares it with an "
           "uninterrupted run).", "",
           "## What ran", "",
           f"- {len(rows)} points, stages {', '.join(spec.stages)}: {len(ok)} complete, {len(rows) - len(ok)} "
           "recorded with the reason they do not fit or compile.",
           "- perf: the cycle-level performance model (docs/perf.md) on the program compiled for the point "
           "(shapes only), 128 prompt tokens and 256 generated; latency is the whole request. The clock is taken as "
           "given: whether a design closes timing at it is not modelled.",
           "- resources: MPU + VPU as Yosys maps them, counted from the measured lanes of docs/rtl.md (LUT, "
           "DSP); DSP (DFX-style) is the first-order estimate with DFX's floating-point adders on DSPs "
           "(`dfx.perf.estimate_resources`). Neither counts the DMA, router, buffers or decoder.",
           "- accuracy: held-out bits/byte of the embedded byte-level model with every weight matrix in the "
           f"point's format (`dfx quant-report`, {spec.accuracy_windows} windows), cached per format and method: a "
           "proxy for the swept GPT-2 sizes, whose trained weights cannot be fetched here.",
           ""]
    if table_path is not None:
        out.append(f"Results: `{os.path.relpath(table_path, doc.parent)}` (one row per point, with its "
                   "config hash and git revision).")
        out.append("")
    if reasons:
        out += ["Points that did not complete, by reason:", "", "| points | reason |", "|---:|---|"]
        out += [f"| {n} | {why} |" for why, n in reasons.most_common(8)]
        out.append("")
    best = fastest(rows, spec.accuracy_budget)
    if best:
        out += ["## Fastest within the board and an accuracy budget", "",
                "Per workload, the lowest-latency point whose MPU + VPU fit the usable 80% of the U280's LUTs and "
                f"DSPs (Yosys lane count) and whose weights cost at most {spec.accuracy_budget:+g} bits/byte over "
                "FP16 (where the accuracy stage ran); DFX's own point for comparison.", "",
                table(best, base, label=True), ""]
    out += ["## Pareto fronts", "",
            "Latency against each resource, both minimised, per workload. DFX's own point (d=64, l=16, 64-wide "
            "VPU, 200 MHz, FP16, blocking ring) is marked; where it is not on a front, the front's points beside "
            "it show what dominates it.", ""]
    for name, rs in sorted(by_workload(rows).items()):
        for x in ("lut", "dsp", "bits_per_byte"):
            f = front(rs, x)
            if not f:
                continue
            out += [f"### {name}: latency vs {AXES[x]}", "", table(f, base)]
            dfx = [r for r in usable(rs, x) if is_dfx(r, base)]
            if dfx and not any(is_dfx(r, base) for r in f):
                out += ["", "DFX's point (not on this front):", "", table(dfx, base)]
            out.append("")
    if plots:
        out += ["## Plots", ""]
        out += [f"![{p.stem}]({os.path.relpath(p, doc.parent)})" for p in plots]
        out.append("")
    out += ["## Timelines", "",
            "`dfx perf MODEL ... --trace step.json` writes a Chrome/Perfetto trace (JSON trace-event format; open "
            "it at ui.perfetto.dev or chrome://tracing) of the first decode step: a process per device, a track "
            "per unit (MPU, VPU, DMA, ROUTER, and CTRL for FENCEs), every instruction a slice named by its "
            "mnemonic with its PC, disassembly and layer in its arguments (slices span the unit's occupancy; "
            "`done_us` is when the result is ready), and every ALLGATHER a ring sync drawn as flow arrows from "
            "each device to the next. tests/perf/test_chrome_trace.py validates it against the format's schema "
            "(perf/chrome_trace.py, `SCHEMA`) and checks that its cycles equal the model's.", ""]
    if timeline is not None:
        out += ["The figure below is that trace for GPT-2 1.5B on 4 cards (decode at position 127), its first "
                "decoder layer, drawn with matplotlib by `python benchmarks/trace_figure.py` (no browser here for "
                "a Perfetto screenshot). Device 0 holds 7 of the 25 heads and the others 6, so devices 1-3 wait "
                "at each ring sync for device 0.", "",
                f"![timeline]({os.path.relpath(timeline, doc.parent)})", ""]
    out += waves_section(waves, doc)
    if speed:
        out += ["## Sweep speed", "", f"Measured by `{speed['command']}` on this machine ({speed['machine']}):", ""]
        out += [f"- {line}" for line in speed["lines"]]
        out += ["", "With more runnable processes than cores (the load average above), a second worker does not "
                "get a second core, and run-to-run differences of this size are the machine's other work, not "
                "Ray's. The one clear cost is Ray's start-up, paid once per sweep; the per-point overhead is below what this "
                "machine resolves.", ""]
    return "\n".join(out)


def waves_section(figure: Path | None, doc: Path) -> list[str]:
    """The RTL's waveforms beside the model's timeline (benchmarks/waves_figure.py's figure, when it exists)."""
    out = ["### The RTL's waves beside the model", "",
           "`dfx run PROGRAM --backend rtl --waves out.fst` (and `dfx generate --backend rtl --waves out.fst`) "
           "writes the RTL simulation's waveforms as FST: Icarus by default, `SIM=verilator` for Verilator "
           "(built with `--trace-fst`). At the top of the fast harness (verify/fast_top.py) the core's state is "
           "named plainly (verify/waves.py): `dbg_running`, `dbg_pc` (the PC in the instruction register, the "
           "next to dispatch), and per unit (mpu, vpu, dma, router) `dbg_pc_<unit>`, `dbg_busy_<unit>` (what "
           "its BUSY counter counts), `dbg_issue_<unit>` and `dbg_done_<unit>` (one-cycle strobes). A bad "
           "`--waves` path is one error line, exit 2, before anything runs.",
           "",
           "- Open the FST with GTKWave (`gtkwave out.fst`; in the signal tree, the top scope `dfx_fast`, filter "
           "`dbg_`) or Surfer (`surfer out.fst`, or drop it on the web build), and the model's JSON trace at "
           "ui.perfetto.dev (Open trace file) or chrome://tracing.",
           "- tests/test_cli_waves.py runs a tiny program with `--waves` on Icarus, reads the FST back "
           "(pywellen, the `test` extra) and checks that the signals exist, the PC advances and the busy "
           "cycles in the waves equal the core's BUSY counters.", ""]
    if figure is not None:
        out += ["Below, one decode step of the embedded model at the tiny config, scheduled by the performance "
                "model (top, `dfx perf --trace`) and run by the RTL core (bottom, the `dbg_busy_*` waves; ticks "
                "are `dbg_issue_*`), drawn by `python benchmarks/waves_figure.py` (it runs the program on "
                "Icarus with `--waves` and writes the model's step as JSON for Perfetto beside the FST). The "
                "model's bars run from an instruction's start to its result, the RTL's are the units' busy "
                "signals. Both run the same instructions per unit (MPU 17, VPU 81, DMA 29 in this step); the "
                "model takes 4,826 cycles and the RTL 4,176, with its MPU busy 2,089 cycles against the RTL's "
                "1,383 and its VPU 2,529 against 2,216 (the script prints these; the fast harness's memory models "
                "answer with no added latency here, where the model charges HBM's, perf/hbm.py). Over the whole run (4 steps), the cycles the "
                "waves show running and each unit busy equal the core's CYCLES and BUSY counters exactly "
                "(16,454 cycles).", "",
                f"![waves_vs_model]({os.path.relpath(figure, doc.parent)})", ""]
    return out


def fastest(rows: list[dict], budget: float) -> list[dict]:
    """Per workload: the fastest complete point that fits (LUT and DSP) within the accuracy budget, and DFX's."""
    out = []
    for _, rs in sorted(by_workload(rows).items()):
        ok = [r for r in usable(rs, "latency_ms") if r.get("fits_lut") and r.get("fits_dsp")
              and (r.get("bits_per_byte_delta") is None or r["bits_per_byte_delta"] <= budget)]
        if ok:
            out.append(min(ok, key=lambda r: r["latency_ms"]))
        out += [r for r in usable(rs, "latency_ms") if is_dfx(r) and r not in out]
    return out


def load_speed(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
