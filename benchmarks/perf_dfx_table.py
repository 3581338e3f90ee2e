"""DFX reproduction and beyond-DFX tables of the performance model, written into docs/perf.md.

    .venv/bin/python benchmarks/perf_dfx_table.py            # tables + plots (docs/perf/*.svg), a few minutes
    .venv/bin/python benchmarks/perf_dfx_table.py --quick    # the DFX reproduction table only (~15 s)
    .venv/bin/python benchmarks/perf_dfx_table.py --no-write # print, leave docs/ alone

The generated parts of docs/perf.md sit between `<!-- BEGIN GENERATED: name -->` and `<!-- END GENERATED -->`
markers; everything else in the file is prose and stays as it is. Results also go to docs/perf/results.json.
No constant is fitted: the board file and the config set every number (docs/perf.md, Constants).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dfx import docblock  # noqa: E402
from dfx.compiler import compile_model  # noqa: E402
from dfx.compiler.capture import capture  # noqa: E402
from dfx.config import PIPELINE_ENV, PRESETS  # noqa: E402
from dfx.errors import CompileError  # noqa: E402
from dfx.perf import PerfModel, estimate_resources, load_board, tune_overlap  # noqa: E402
from dfx.perf import hbm, plots, tables  # noqa: E402
from dfx.hw.core_vpu import VectorEngine  # noqa: E402
from dfx.hw.depth import parse_depth_table  # noqa: E402
from resource_tables import CLOCK_UNITS, FIT_BEST, block, core_clock, supported_clock  # noqa: E402
from resource_tables import DOC as RTL_DOC  # noqa: E402

DFX = PRESETS["dfx"]
_programs: dict = {}
_cache: dict = {}


def program(model: str, cfg, devices: int, overlap=1, weights: str = "fp16", prefill_batch: int | None = None):
    ov = tuple(sorted(overlap.items())) if isinstance(overlap, dict) else overlap
    key = (model, cfg.config_hash, devices, ov, weights, prefill_batch)
    if key not in _programs:
        _programs[key] = compile_model(model, cfg, devices=devices, overlap=overlap, weights=weights,
                                       prefill_batch=prefill_batch)
    return _programs[key]


def auto_overlap(model: str, cfg, devices: int, weights: str = "fp16", overrides=None) -> dict:
    """overlap="auto" as `dfx compile --overlap auto` chooses it, but tuned on the row's board (its overrides
    included), so that "never slower than blocking" holds for the board the row is modelled on."""
    key = ("auto", model, cfg.config_hash, devices, weights, tuple(sorted((overrides or {}).items())))
    if key not in _cache:
        if ("hparams", model) not in _cache:
            _cache[("hparams", model)] = capture(model)[0].model
        _cache[key] = tune_overlap(_cache[("hparams", model)], cfg, devices, weights,
                                   board=load_board("u280", overrides))
    return _cache[key]


def largest_chunk(model: str, cfg, devices: int) -> int:
    """The largest matrix-matrix prefill chunk the config's VBUF holds, as the compiler's CompileError names it
    (asked for a chunk of the whole context)."""
    key = ("chunk", model, cfg.config_hash, devices)
    if key not in _cache:
        try:
            compile_model(model, cfg, devices=devices, prefill_batch=int(capture(model)[0].model["n_positions"]))
            _cache[key] = int(capture(model)[0].model["n_positions"])
        except CompileError as e:
            found = re.search(r"largest chunk that fits is (\d+)", str(e))
            if not found:
                raise
            _cache[key] = int(found.group(1))
    return _cache[key]


def perf_model(model, cfg=DFX, devices=4, overlap=1, overrides=None, weights="fp16", prefill_batch=None,
               access="rtl", engines="pipelined") -> PerfModel:
    """overlap "auto": tuned on this board (`auto_overlap`); prefill_batch "max": the largest chunk that fits;
    access "dfx": DFX's weight-stream access pattern (`tables.dfx_model`), "rtl": the RTL's (read from hw/);
    engines: "rtl", the scoreboard core as built (hw/'s engines and cycle counts); "pipelined", the DFX-style
    units that the rows labelled with `SB` assume."""
    if overlap == "auto":
        overlap = auto_overlap(model, cfg, devices, weights, overrides)
    if prefill_batch == "max":
        prefill_batch = largest_chunk(model, cfg, devices)
    prog = program(model, cfg, devices, overlap, weights, prefill_batch)
    if access == "dfx":
        return tables.dfx_model(prog, tables.DFX_OUTSTANDING, load_board("u280", overrides))
    return PerfModel(prog, load_board("u280", overrides), engines=engines)


# Beyond DFX: (label, model kwargs). Everything the ISA and compiler support today; see docs/perf.md for what
# each assumes (timing closure, the RTL's operator latencies). {M} in a label: the row's prefill chunk.
INT4 = "int4-oc-g128"
WIDE = DFX.replace(name="dfx-l32", l=32, hbm_width=1024)
FAST = DFX.replace(name="dfx-300", clock_mhz=300.0)
WIDE_FAST = WIDE.replace(name="dfx-l32-300", clock_mhz=300.0)
# The best modelled configuration (l = 32, 300 MHz, INT4): more than the U280 holds (docs/rtl.md, "Fit").
MODELLED = dict(cfg=WIDE_FAST, overrides=tables.RTL_LATENCIES, weights=INT4, overlap="auto")
# The configuration chosen to fit within 75% per SLR after the shell (docs/rtl.md, "Fit of the whole core": FIT_OK
# says whether it does, measured whole): the dfx preset (l = 16) with tile-scaled INT4 weights (AccelConfig.tile_scale),
# at the clock the logic-depth table
# supports (docs/rtl.md, "Logic depth"): the slower of the operators' deep pipelines (UNITS_MHZ) and the core's own
# control, DMA and buffers around them (CORE_MHZ, "Depth of the core around the MPU and VPU"), with those
# pipelines' latencies.
UNITS_MHZ = supported_clock(block(RTL_DOC, "depth:tiny"), CLOCK_UNITS)
CORE_MHZ = core_clock(block(RTL_DOC, "depth:core"))
_CORE_ROWS = block(RTL_DOC, "depth:core")
CORE_LEVELS = max((int(r["LUT levels"]) for r in (parse_depth_table(_CORE_ROWS) if _CORE_ROWS.strip() else [])),
                  default=0)
FIT_MHZ = min(UNITS_MHZ, CORE_MHZ)
# ... and for the configuration chosen to fit, its INT4 tile fetcher's own depth too ("depth:fetcher")
FETCHER_MHZ = core_clock(block(RTL_DOC, "depth:fetcher"))
BEST_MHZ = min(FIT_MHZ, FETCHER_MHZ)
LIMIT_TEXT = (f"the control's, where the operators alone would allow {UNITS_MHZ:.0f}" if CORE_MHZ < UNITS_MHZ else
              f"the operators' deep pipelines', the core's control allowing {CORE_MHZ:.0f}")


def fit_lut_share(name: str, part: str | None = None) -> str:
    """The LUT share docs/rtl.md's "Fit of the whole core" measured for config `name` at the 300 MHz depths: the
    whole core's (`part` None) or one part's, as the table prints it ("101.9%"); "?" where the table lacks it."""
    text = block(RTL_DOC, "fit-core")
    if part is None:
        m = re.search(rf"^\| {re.escape(name)} \(d=[^|]*\| 300 MHz \| all \|[^|]*\| [^|]*\(([\d.]+%)\)", text, re.M)
    else:
        m = re.search(rf"^\| {re.escape(name)} \| {re.escape(part)} \| 300 MHz \|(?:[^|]*\|){{6}} ([\d.]+) \|", text, re.M)
        return f"{m.group(1)}%" if m else "?"
    return m.group(1) if m else "?"


def fits(name: str) -> bool:
    """Whether docs/rtl.md's "Fit of the whole core" has config `name` within 75% in every SLR and resource at the
    300 MHz depths (its "over 75%" column "none" in every row; False where the table lacks it)."""
    rows = re.findall(rf"^\| {re.escape(name)} \(d=[^|]*\| 300 MHz \|.*\| ([^|]*) \|$", block(RTL_DOC, "fit-core"), re.M)
    return bool(rows) and all(r.strip() == "none" for r in rows)


FIT_SHARE, FETCHER_SHARE = fit_lut_share(FIT_BEST.name), fit_lut_share(FIT_BEST.name, "int4 tile fetcher")
FIT_OK = fits(FIT_BEST.name)
DFX_SHARE = fit_lut_share("dfx")
# The core `dfx build` writes (the deep pipeline profile) at the clock the depth table supports: the dfx preset,
# FP16, the scoreboard core's own engines and cycle counts read from that core (`dfx.perf.serial_costs` under the
# deep profile; docs/rtl_core.md, "Cycle calibration", the deep profile), blocking ring. The configuration that
# fits as measured (DFX_SHARE of the region's LUTs, every SLR within 75%).
BUILT_DEEP = dict(cfg=DFX.replace(name="dfx-deep", clock_mhz=FIT_MHZ), engines="rtl", overrides=tables.DEEP_LATENCIES)


@contextlib.contextmanager
def deep_profile():
    """$DFX_RTL_PIPELINE=deep while the model reads the RTL's cycle counts (`serial_costs`), then as it was."""
    old = os.environ.get(PIPELINE_ENV)
    os.environ[PIPELINE_ENV] = "deep"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(PIPELINE_ENV, None)
        else:
            os.environ[PIPELINE_ENV] = old
OPS_SHARE = sum(float(fit_lut_share(FIT_BEST.name, p).rstrip("%?") or 0)
                for p in ("mpu", f"vpu, k={VectorEngine.SFU_SHARE}"))
BEST = dict(cfg=FIT_BEST.replace(clock_mhz=BEST_MHZ), overrides=tables.DEEP_LATENCIES, weights=INT4, overlap="auto")
# What each row assumes that the RTL does not have (docs/rtl.md, docs/rtl_core.md): the RTL's engines are not
# pipelined across instructions (the VPU takes ~25 cycles per instruction), its MPU takes FP16 tiles only, it has no
# BATCH/CHUNK/SLOT, and its logic depth supports about 85 MHz as built (docs/rtl.md, "Logic depth").
SB = "engines pipelined across instructions (not built)"
CLK = "300 MHz closure (no Fmax measured)"
L32 = "l = 32, 1024-bit ports (not built)"
Q4 = "the INT4 tile fetcher at the dfx preset (built, bit-exact at the tiny config)"
MM = "BATCH/CHUNK/SLOT"
FITQ = ("the tile-scaled INT4 core (AccelConfig.tile_scale: code fetcher, the MPU scaling each lane's tree sum; built, "
        "bit-exact at the tiny config)")
BEYOND = [
    ("DFX-faithful (DFX's access: one beat per tile, 16 reads in flight; blocking, d=64 l=16, 200 MHz)",
     dict(access="dfx"), "DFX's design, not ours"),
    ("RTL as built (scoreboard issue, its engines' cycle counts, its 4 KiB weight bursts, FP16, d=64 l=16, 200 MHz)",
     dict(engines="rtl"), ""),
    ("pipelined engines, RTL weight bursts (blocking ring, d=64 l=16, 200 MHz)", dict(), SB),
    ("overlapped ring, 2 segments", dict(overlap=2), SB),
    ("overlapped ring, auto (per layer role)", dict(overlap="auto"), SB),
    ("matrix-matrix prefill (chunk {M})", dict(prefill_batch="max"), f"{SB}, {MM}"),
    ("RTL operator latencies (hw/fp.py)", dict(overrides=tables.RTL_LATENCIES), SB),
    ("300 MHz core clock", dict(cfg=FAST), f"{SB}, {CLK}"),
    ("wider MPU l=32, 1024-bit HBM ports", dict(cfg=WIDE), f"{SB}, {L32}"),
    ("RTL latencies + 300 MHz + l=32", dict(cfg=WIDE_FAST, overrides=tables.RTL_LATENCIES), f"{SB}, {CLK}, {L32}"),
    ("same, 8 x U280", dict(cfg=WIDE_FAST, overrides=tables.RTL_LATENCIES, devices=8), f"{SB}, {CLK}, {L32}"),
    ("INT4 per-OC g128 weights, DFX MPU", dict(weights=INT4), f"{SB}, {Q4}"),
    ("INT4 + l=32, 1024-bit HBM ports", dict(cfg=WIDE, weights=INT4), f"{SB}, {Q4}, {L32}"),
    ("INT4 + RTL latencies + 300 MHz + l=32", dict(cfg=WIDE_FAST, overrides=tables.RTL_LATENCIES, weights=INT4),
     f"{SB}, {Q4}, {CLK}, {L32}"),
    ("same, 8 x U280", dict(cfg=WIDE_FAST, overrides=tables.RTL_LATENCIES, weights=INT4, devices=8),
     f"{SB}, {Q4}, {CLK}, {L32}"),
    ("RTL latencies + 300 MHz + l=32 + matrix-matrix prefill (chunk {M})",
     dict(cfg=WIDE_FAST, overrides=tables.RTL_LATENCIES, prefill_batch="max"), f"{SB}, {MM}, {CLK}, {L32}"),
    ("all: INT4 + RTL latencies + 300 MHz + l=32 + auto ring + matrix-matrix prefill (chunk {M})",
     dict(MODELLED, prefill_batch="max"), f"{SB}, {Q4}, {MM}, {CLK}, {L32}"),
    ("same, 8 x U280", dict(MODELLED, prefill_batch="max", devices=8), f"{SB}, {Q4}, {MM}, {CLK}, {L32}"),
]
# Matrix-matrix prefill: 128-token prompts, token-serial vs chunks of the largest M that fits VBUF
PREFILL = [
    ("DFX-faithful (d=64 l=16, 200 MHz)", dict()),
    ("300 MHz core clock", dict(cfg=FAST)),
    ("wider MPU l=32, 1024-bit HBM ports", dict(cfg=WIDE)),
    ("RTL latencies + 300 MHz + l=32", dict(cfg=WIDE_FAST, overrides=tables.RTL_LATENCIES)),
    ("INT4 + RTL latencies + 300 MHz + l=32", dict(cfg=WIDE_FAST, overrides=tables.RTL_LATENCIES, weights=INT4)),
]
OVERLAPS = (1, 2, 4, "auto")        # the ring-overlap comparison, decode at 128:16 on 4 and 8 devices


LIMIT = {"hbm": "HBM", "port": "AXI port's beat per cycle"}


def deep_text(built, deep) -> str:
    """Why the core `dfx build` writes, at the depth table's clock, is about as fast as the default profile's core
    at 200 MHz (345M, one device): the per-class decode ms/token of the two runs, and each one's weight stream
    per HBM channel (`hbm.channel_rate` of the RTL's access pattern under each profile)."""
    def per(r, *classes):
        return sum(v for k, v in r.by_class("decode").items() if k in classes) / r.phases["decode"].steps
    spec = hbm.HbmSpec.from_board(load_board("u280"))
    cfg = BUILT_DEEP["cfg"]
    slow = hbm.channel_rate(spec, hbm.rtl_weight_access(DFX), DFX.channel_beat_bytes, DFX.clock_mhz)
    with deep_profile():
        acc = hbm.rtl_weight_access(cfg)
    fast = hbm.channel_rate(spec, acc, cfg.channel_beat_bytes, cfg.clock_mhz)
    return (f"The core `dfx build` writes (the deep pipelines) at {FIT_MHZ:.0f} MHz against the default profile's "
            f"core at {DFX.clock_mhz:.0f} MHz, GPT-2 345M on one U280: {deep.tokens_per_s:.0f} against "
            f"{built.tokens_per_s:.0f} tokens/s. Its weight stream gains little from the clock: "
            f"{fast.gbps:.1f} against {slow.gbps:.1f} GB/s a channel (bound by the "
            f"{LIMIT.get(fast.limit, fast.limit)}, with the deep matrix engine's {acc.burst_bytes} B bursts, against "
            f"the {LIMIT.get(slow.limit, slow.limit)}), and its matrix instructions take "
            f"{per(deep, 'matrix'):.2f} against {per(built, 'matrix'):.2f} ms per token (the deeper MPU pipeline "
            f"drains at every instruction); the DMA gains ({per(deep, 'dma'):.2f} against {per(built, 'dma'):.2f} "
            "ms); the deeper operator pipelines lengthen every vector and scalar instruction in engines that take "
            f"one instruction at a time ({per(deep, 'vector', 'scalar'):.2f} against "
            f"{per(built, 'vector', 'scalar'):.2f} ms). So the clock pays only with engines pipelined across "
            "instructions (the rows that assume them).")


def replace_block(text: str, name: str, body: str) -> str:
    try:
        return docblock.replace_block(text, f"<!-- BEGIN GENERATED: {name} -->", "<!-- END GENERATED -->", body.rstrip())
    except ValueError:
        raise SystemExit(f"docs/perf.md has no '<!-- BEGIN GENERATED: {name} -->' marker") from None


def overlap_markdown(rows: list[dict]) -> str:
    """Decode ms/token per segment count, and what the figures say: which fixed counts are slower than
    blocking, and auto against blocking."""
    head = "| GPT-2 1.5B decode (128:16), ms/token | " + " | ".join(
        "blocking (1)" if ov == 1 else f"{ov} segments" if ov != "auto" else "auto" for ov in OVERLAPS) + \
        " | auto's choice (segments per layer role) |"
    out = [head, "|---|" + "---:|" * len(OVERLAPS) + "---|"]
    for r in rows:
        choice = ", ".join(f"{k} {v}" for k, v in r["choice"].items())
        out.append(f"| {r['devices']} x U280 | " + " | ".join(f"{r[str(ov)]:.3f}" for ov in OVERLAPS)
                   + f" | {choice} |")
    slower = [f"{ov} segments on {r['devices']} devices ({r[str(ov)]:.3f} vs {r['1']:.3f})"
              for r in rows for ov in OVERLAPS if ov not in (1, "auto") and r[str(ov)] > r["1"]]
    auto = "; ".join(f"{r['auto']:.3f} vs {r['1']:.3f} ms/token on {r['devices']} devices "
                     f"({100 * (r['auto'] / r['1'] - 1):+.1f}%)" for r in rows)
    out.append("")
    out.append(("Fixed segment counts slower than blocking: " + "; ".join(slower) + ". " if slower else
                "No fixed segment count is slower than blocking here. ")
               + f"Auto against blocking: {auto}.")
    return "\n".join(out)


def prefill_markdown(rows: list[dict]) -> str:
    out = ["| GPT-2 1.5B, 4 x U280, 128-token prompt | chunk M | prefill, token-serial (ms) | prefill, "
           "matrix-matrix (ms) | speedup | of which MPU (ms), serial / matrix-matrix | 128:1 latency (ms), serial / "
           "matrix-matrix |", "|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        out.append(f"| {r['label']} | {r['chunk']} | {r['serial_ms']:.0f} | {r['batched_ms']:.0f} | "
                   f"{r['serial_ms'] / r['batched_ms']:.2f}x | {r['mpu_ms_serial']:.0f} / {r['mpu_ms_batched']:.0f} | "
                   f"{r['serial_total_ms']:.0f} / {r['batched_total_ms']:.0f} |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="DFX reproduction table only")
    ap.add_argument("--no-write", action="store_true", help="print; do not touch docs/")
    ap.add_argument("--format", default="svg", choices=["svg", "png"])
    args = ap.parse_args(argv)
    t0 = time.time()
    results: dict = {}
    blocks: dict[str, str] = {}

    # ---- 0. the constants, with their sources
    b = load_board("u280")
    spec = hbm.HbmSpec.from_board(b)
    blocks["constants"] = "| constant | value | unit | source |\n|---|---:|---|---|\n" + "\n".join(
        f"| `{name}` | {value} | {unit} | {src} |" for name, value, unit, src in b.describe())
    blocks["constants"] += (f"\n\nDerived: ring link {b.link_gbytes_per_s:.2f} GB/s payload, hop "
                            f"{b.hop_latency_ns:.0f} ns + router cycles; HBM peak {b.hbm_peak_gbytes_per_s:.0f} GB/s, "
                            f"refresh bound 1 - tRFC/tREFI = {spec.refresh_bound:.3f}, sequential efficiency "
                            f"{spec.sequential_efficiency:.3f} "
                            f"(= {b.hbm_peak_gbytes_per_s * spec.sequential_efficiency:.0f}"
                            f" GB/s); PCIe {b.pcie_gbytes_per_s:.1f} GB/s. Core-side sizes (d, l, VPU width, HBM "
                            "ports, clock) come from the program's `AccelConfig`.")

    # ---- 0a. the HBM access model: per-channel rates of the access patterns that matter here
    wide = WIDE
    pats = [(DFX, hbm.rtl_weight_access(DFX)), (DFX, hbm.rtl_dma_access(DFX))]
    pats += [(DFX, hbm.dfx_access(DFX, o)) for o in (1, 4, tables.DFX_OUTSTANDING, None)]
    pats += [(DFX, hbm.dfx_access(DFX, o, "staggered")) for o in (tables.DFX_OUTSTANDING, 32)]
    pats += [(DFX, hbm.Access(64, None, 4096, "64-byte reads 4 KiB apart (every read a new row)")),
             (DFX, hbm.Access(4096, 1, None, "4 KiB bursts, one at a time")),
             (DFX, hbm.rtl_weight_access(DFX, "staggered"))]
    pats += [(DFX, replace(hbm.rtl_weight_access(DFX, "staggered"), buffer_beats=f,
                           label=f"RTL weight stream, staggered refresh, R FIFO of {f} beats")) for f in (32, 64)]
    pats += [(wide, replace(hbm.rtl_weight_access(wide), label="RTL weight stream, 1024-bit ports (l = 32)"))]
    hrows = [hbm.describe(spec, [a], cfg)[0] for cfg, a in pats]
    results["hbm_access"] = hrows
    blocks["hbm"] = tables.hbm_markdown(hrows)
    print(blocks["hbm"], "\n")

    # ---- 1. DFX reproduction: GPT-2 1.5B, 4 x U280, DFX config and access pattern, blocking sync, token-serial
    dfx = perf_model("1.5B", access="dfx")
    rows = tables.reproduction_rows(dfx)
    r128 = dfx.run(128, 256)
    results["dfx_reproduction"] = rows
    results["dfx_report_128_256"] = r128.to_dict()
    fit_dfx, fit_model = tables.linear_fit(rows, "dfx_ms"), tables.linear_fit(rows, "model_ms")
    results["per_token_fit"] = {"dfx": fit_dfx, "model": fit_model}
    n_ok = sum(tables.within(r["model_ms"], r["dfx_ms"]) for r in rows)
    summary = (f"Per token (the slope of the nine totals against T + M - 1 token steps): **{fit_model[0]:.2f} ms** "
               f"modelled vs **{fit_dfx[0]:.2f} ms** DFX ({100 * (fit_model[0] / fit_dfx[0] - 1):+.0f}%); fixed part "
               f"{fit_model[1]:.1f} vs {fit_dfx[1]:.1f} ms. Decode {r128.decode_ms_per_token:.2f} ms/token, prefill "
               f"(token-serial) {r128.prefill_ms_per_token:.2f} ms/token. {n_ok} of 9 totals within 20% of DFX. "
               f"Weight stream: {dfx.timing.hbm_rate.gbps:.2f} GB/s per channel ({dfx.timing.hbm_rate.limit}-bound, "
               f"{tables.DFX_OUTSTANDING} reads in flight), {r128.roofline_pct('port'):.0f}% of the 409.6 GB/s port "
               f"roofline ({r128.roofline_ms('port'):.2f} ms); DFX's figure is at "
               f"{100 * r128.roofline_ms('port') / fit_dfx[0]:.0f}% of it.")
    blocks["dfx-table"] = tables.reproduction_markdown(rows) + "\n\n" + summary
    per_tok = {k: v / r128.phases["decode"].steps for k, v in r128.by_class("decode").items()}
    top = ", ".join(f"{k} {v / r128.phases['decode'].steps:.3f}" for k, v in list(r128.by_op("decode").items())[:8])
    util = ", ".join(f"{k} {100 * v:.0f}%" for k, v in r128.utilisation().items())
    blocks["dfx-breakdown"] = (
        "| class | exposed ms per decode token | share |\n|---|---:|---:|\n"
        + "\n".join(f"| {k} | {v:.3f} | {100 * v / r128.decode_ms_per_token:.0f}% |" for k, v in per_tok.items() if v)
        + f"\n\nTop instructions (exposed ms per decode token): {top}.\n\nUnit utilisation over the run: {util}; "
        f"achieved HBM bandwidth {r128.hbm_gbps():.0f} GB/s per device (decode {r128.hbm_gbps('decode'):.0f} GB/s).")
    print(blocks["dfx-table"], "\n")
    print(blocks["dfx-breakdown"], "\n")

    # ---- 2. GPT-2 345M decode vs DFX's 185.19 tokens/s (5.40 ms/token)
    rows345 = []
    for n in (1, 4):
        r = perf_model("355M", devices=n, access="dfx").run(128, 256)
        rows345.append({"devices": n, "tokens_per_s": r.tokens_per_s, "decode_ms_per_token": r.decode_ms_per_token,
                        "roofline_pct_port": r.roofline_pct("port")})
    results["gpt2_345m"] = rows345
    blocks["345m"] = (
        "| GPT-2 345M (128 in, 256 out), DFX's access pattern | model tokens/s | model ms/token | DFX published | "
        "deviation | within 20% |\n|---|---:|---:|---:|---:|---|\n" + "\n".join(
            f"| {r['devices']} x U280 | {r['tokens_per_s']:.0f} | {r['decode_ms_per_token']:.2f} | "
            f"{tables.DFX_345M_TOKENS_PER_S} tokens/s = {tables.DFX_345M_MS_PER_TOKEN:.2f} ms/token | "
            f"{100 * (r['decode_ms_per_token'] / tables.DFX_345M_MS_PER_TOKEN - 1):+.0f}% | "
            f"{'yes' if tables.within(r['decode_ms_per_token'], tables.DFX_345M_MS_PER_TOKEN) else 'no'} |"
            for r in rows345))
    print(blocks["345m"], "\n")

    if not args.quick:
        # ---- 3. the unpublished parameter: DFX's reads in flight per channel
        sens = tables.sensitivity_rows(program("1.5B", DFX, 4), program("355M", DFX, 1))
        results["sensitivity"] = sens
        ok = [f"{'unlimited' if r['outstanding'] is None else r['outstanding']} ({ref})" for r in sens
              for ref in hbm.REFRESH if r[ref]["ok"]]
        full = [f"{'unlimited' if r['outstanding'] is None else r['outstanding']} ({ref})" for r in sens
                for ref in hbm.REFRESH if r[ref]["ok"] and r[ref]["totals_within"] == 9]
        blocks["sensitivity"] = tables.sensitivity_markdown(sens, fit_dfx[0]) + "\n\n" + (
            f"Both anchors' per-token costs within 20% with these reads in flight per channel (refresh phases): "
            f"{', '.join(ok)}." if ok else "No count of reads in flight brings both anchors within 20%.") + (
            f" With all nine 1.5B totals within 20% as well: {', '.join(full) or 'none'}.")
        print(blocks["sensitivity"], "\n")

        # ---- 3a. position dependence: DFX's per-token cost is flat from position 1 to 384
        pos = tables.position_rows(dfx)
        rtl_pos = tables.position_rows(perf_model("1.5B"))
        results["position"] = {"dfx_access": pos, "rtl_access": rtl_pos}
        d_pub = {T: tables.DFX_LATENCY_MS[(T, 256)] - tables.DFX_LATENCY_MS[(T, 16)] for T in (32, 64, 128)}
        d_mod = {r["input"]: 0 for r in rows}
        for r in rows:
            if r["output"] in (16, 256):
                d_mod[r["input"]] += r["model_ms"] * (1 if r["output"] == 256 else -1)
        blocks["position"] = (
            "| | position 0 | 63 | 127 | 255 | 383 |\n|---|---:|---:|---:|---:|---:|\n"
            + "\n".join(f"| decode step ms, {lab} | " + " | ".join(f"{v:.3f}" for v in p["step_ms"].values()) + " |"
                         for lab, p in (("DFX's access", pos), ("RTL's access", rtl_pos)))
            + "\n\nTokens 17 to 256 (T:256 minus T:16), ms: DFX "
            + ", ".join(f"{d_pub[T]} (T = {T})" for T in d_pub) + "; model "
            + ", ".join(f"{d_mod[T]:.0f}" for T in d_pub) + ". The model adds, over each 256-token window against a "
            "cost flat at position 0: " + ", ".join(f"{v:.0f} ms (T = {T})" for T, v in pos["window_extra_ms"].items())
            + " with DFX's access, " + ", ".join(f"{v:.0f} ms" for v in rtl_pos["window_extra_ms"].values())
            + " with the RTL's. Where the step grows from position 0 to 383 (exposed ms, DFX's access): "
            + ", ".join(f"{k} {v:+.3f}" for k, v in pos["growth_ms"].items() if abs(v) >= 0.001) + ".")
        print(blocks["position"], "\n")

        # ---- 4. beyond DFX
        brow = []
        for label, kw, assumes in BEYOND:
            try:
                m = perf_model("1.5B", **kw)
            except CompileError as e:
                print(f"skip {label}: {e}")
                continue
            brow.append(tables.config_row(label.format(M=m.prefill_chunk), m, assumes=assumes or "nothing"))
            print(f"{label}: {brow[-1]['decode_ms_per_token']:.3f} ms/token ({time.time() - t0:.0f} s)")
        results["beyond_dfx"] = brow
        blocks["beyond"] = tables.configs_markdown(brow)
        print(blocks["beyond"], "\n")

        # ---- 4a. ring overlap: fixed segment counts against auto (decode, 128:16)
        ov_rows = []
        for n in (4, 8):
            row = {"devices": n}
            for ov in OVERLAPS:
                m = perf_model("1.5B", devices=n, overlap=ov)
                row[str(ov)] = m.run(128, 16).decode_ms_per_token
                if ov == "auto":
                    row["choice"] = m.program.manifest.overlap
            ov_rows.append(row)
        results["overlap"] = ov_rows
        blocks["overlap"] = overlap_markdown(ov_rows)
        print(blocks["overlap"], "\n")

        # ---- 4b. matrix-matrix prefill: 128-token prompts, with and without
        pre_rows = []
        for label, kw in PREFILL:
            m = perf_model("1.5B", prefill_batch="max", **kw)
            rb, rs = m.run(128, 1), m.run(128, 1, batched=False)
            pre_rows.append({"label": label, "chunk": m.prefill_chunk, "serial_ms": rs.ms("prefill"),
                             "batched_ms": rb.ms("prefill"), "serial_total_ms": rs.total_ms,
                             "batched_total_ms": rb.total_ms, "runs": rb.phases["prefill"].steps,
                             "mpu_ms_serial": rs.by_class("prefill")["matrix"],
                             "mpu_ms_batched": rb.by_class("prefill")["matrix"]})
            print(f"prefill {label}: {rs.ms('prefill'):.0f} -> {rb.ms('prefill'):.0f} ms ({time.time() - t0:.0f} s)")
        results["prefill_batch"] = pre_rows
        blocks["prefill"] = prefill_markdown(pre_rows)
        print(blocks["prefill"], "\n")

        # ---- 4c. the goals: what the RTL as built gets, and the best configuration the model has
        def goal_runs(**kw):
            return (perf_model("1.5B", devices=4, **kw).run(128, 256),
                    perf_model("355M", devices=1, **kw).run(128, 256))

        built = goal_runs(engines="rtl")
        with deep_profile():
            deep = goal_runs(**BUILT_DEEP)
        stag = [PerfModel(program(mod, DFX, n), load_board("u280"), engines="rtl",
                          hbm_access=hbm.rtl_weight_access(DFX, "staggered")).run(128, 256)
                for mod, n in (("1.5B", 4), ("355M", 1))]
        target = goal_runs(overrides=tables.RTL_LATENCIES)
        m15, m345 = goal_runs(**MODELLED)
        g15, g345 = goal_runs(**BEST)
        res = estimate_resources(BEST["cfg"])

        def cells(pair):
            a, b = pair
            return (f"{a.decode_ms_per_token:.2f} ms/token", f"{b.tokens_per_s:.0f} tokens/s")

        cols = [("RTL as built: scoreboard issue, its engines, FP16, d=64 l=16, 200 MHz, its 4 KiB weight bursts", built,
                 "nothing"),
                (f"the same if the channels' refresh phases are staggered (R FIFO of {hbm.WEIGHT_FIFO_BEATS} beats)", stag,
                 "nothing"),
                (f"RTL as built, the core `dfx build` writes (deep pipelines), FP16, d=64 l=16, {FIT_MHZ:.0f} MHz: "
                 f"fits ({DFX_SHARE} of the region's LUTs, every SLR within 75%), every path within the "
                 f"{FIT_MHZ:.0f} MHz depth", deep, f"nothing (its {FIT_MHZ:.0f} MHz is the depth table's estimate; "
                 "no Vivado timing run)"),
                ("pipelined engines + RTL operator latencies, FP16, 200 MHz", target, SB),
                ("best modelled: INT4 g128, l=32, 300 MHz, RTL latencies, auto ring overlap (does not fit the U280)",
                 (m15, m345), f"{SB}, {Q4}, {CLK}, {L32}"),
                (f"chosen to fit: INT4 g128 (tile-scaled: the codes into the MPU), l=16, {BEST_MHZ:.0f} MHz, deep "
                 f"operator latencies, auto ring overlap ({'fits' if FIT_OK else 'does not fit'}: {FIT_SHARE} of the "
                 "region's LUTs)", (g15, g345), f"{SB}, {FITQ}")]
        results["goals"] = {"1.5B_4dev_ms_per_token": g15.decode_ms_per_token,
                            "345M_1dev_tokens_per_s": g345.tokens_per_s, "resources": res,
                            "rows": [{"label": c[0], "ms_1_5b": c[1][0].decode_ms_per_token,
                                      "tokens_per_s_345m": c[1][1].tokens_per_s, "assumes": c[2]} for c in cols]}
        lim = {k: v / g345.phases["decode"].steps for k, v in g345.by_class("decode").items()}
        top345 = ", ".join(f"{k} {100 * v / g345.decode_ms_per_token:.0f}%" for k, v in
                           sorted(lim.items(), key=lambda kv: -kv[1]) if v)
        ops = ", ".join(f"{k} {100 * v / g345.phases['decode'].steps / g345.decode_ms_per_token:.0f}%"
                        for k, v in list(g345.by_op("decode").items())[:5])
        lim15 = {k: v / g15.phases["decode"].steps for k, v in g15.by_class("decode").items()}
        top15 = ", ".join(f"{k} {100 * v / g15.decode_ms_per_token:.0f}%" for k, v in
                          sorted(lim15.items(), key=lambda kv: -kv[1]) if v)
        blocks["goals"] = (
            "| configuration | assumes what the RTL lacks | GPT-2 1.5B, 4 x U280 (goal <= 1.0 ms/token) | GPT-2 345M, "
            "1 x U280 (goal >= 800 tokens/s) |\n|---|---|---:|---:|\n"
            + "\n".join(f"| {lab} | {ass} | {cells(pair)[0]} | {cells(pair)[1]} |" for lab, pair, ass in cols)
            + f"\n\nMet by the RTL as built: 1.5B {'yes' if built[0].decode_ms_per_token <= 1.0 else 'no'}, 345M "
            f"{'yes' if built[1].tokens_per_s >= 800 else 'no'}; by the core `dfx build` writes, at "
            f"{FIT_MHZ:.0f} MHz: 1.5B {'yes' if deep[0].decode_ms_per_token <= 1.0 else 'no'}, 345M "
            f"{'yes' if deep[1].tokens_per_s >= 800 else 'no'}. Met by the best modelled configuration, which "
            f"does not fit the U280 and assumes hardware the RTL does not have: 1.5B "
            f"{'yes' if m15.decode_ms_per_token <= 1.0 else 'no'}, 345M {'yes' if m345.tokens_per_s >= 800 else 'no'}. "
            "Met by the configuration chosen to fit (the dfx datapath with tile-scaled INT4 weights, whose "
            f"operators alone take {OPS_SHARE:.0f}% of the dynamic region's LUTs and which, measured whole with its INT4 tile "
            f"fetcher, {'fits' if FIT_OK else 'does not fit'}: {FIT_SHARE} of the region's LUTs, "
            f"{'every SLR within 75%' if FIT_OK else 'some SLR over 75%'}, docs/rtl.md, \"Fit of the whole core\"; at the "
            f"{BEST_MHZ:.0f} MHz the logic-depth table supports, its tile fetcher's included): 1.5B "
            f"{'yes' if g15.decode_ms_per_token <= 1.0 else 'no'}, 345M {'yes' if g345.tokens_per_s >= 800 else 'no'}."
            "\n\n"
            "What backs each figure: the RTL-as-built rows are the model's default (`engines=\"rtl\"`): the "
            "scoreboard controller of hw/core.py issuing to hw/'s engines with their own cycle counts "
            "(`dfx.perf.serial_costs`: issue, wake-up, engine setup, feeds, the MPU's and VPU's pipeline latencies), "
            "checked in CI against the RTL's measured cycles at the tiny config (docs/rtl_core.md, \"Calibration\": "
            "per class within 10%, in total within 5%); their weight stream is the access pattern hw/core_mpu.py "
            f"issues (4 KiB bursts, {hbm.WEIGHT_FIFO_BEATS}-beat R FIFOs) under the HBM model. Their 200 MHz is not "
            "yet closed either: the "
            f"logic-depth table (docs/rtl.md) supports about 90 MHz for the default pipeline profile they model; in "
            f"the deep one that `dfx build` writes the operators support {UNITS_MHZ:.0f} MHz and the core's own "
            f"control, DMA and buffers {CORE_MHZ:.0f} MHz (their worst path is {CORE_LEVELS} LUT levels: docs/rtl.md, "
            "\"Depth of the core around the MPU and VPU\"). The row of the core `dfx build` writes is the same model "
            "with the engines' cycle counts read from that core (the deep profile: `serial_costs` under "
            "$DFX_RTL_PIPELINE=deep), checked against that core's measured cycles at the tiny config (docs/rtl_core.md, "
            "\"Cycle calibration\", the deep profile: `benchmarks/rtl_calibration.py --profile deep` and the slow "
            "`test_deep_profile_calibration`, 10% per class, 5% in total), at the clock the depth table supports for it; "
            "its fit is docs/rtl.md's \"Fit of the whole core\" at the dfx preset. The other rows assume engines pipelined across instructions (`engines=\"pipelined\"`), "
            "which the RTL does not have, with hw/fp.py's operator latencies. The INT4 tile fetcher (hw/qfetch.py) "
            "is built and bit-exact at the tiny config (one tile per cycle); nothing in the RTL backs l = 32 or "
            "300 MHz. The configuration chosen to fit is the dfx preset's datapath (l = 16, 512-bit ports) with "
            "tile-scaled INT4 weights (`AccelConfig.tile_scale`: the tile fetcher hands the MPU the codes, one "
            "`CodeTile` per lane, and each lane's tree sum is multiplied by its group scale before the accumulator, "
            "docs/numerics.md, \"Tile-scaled weights\"; bit-exact at the tiny config, the embedded model's "
            "int4-oc-g128 weights included), the operators at their deep pipelines (`tables.DEEP_LATENCIES`) and the clock "
            f"the logic-depth table supports for the operators, the core `dfx build` writes and its INT4 tile fetcher "
            f"({BEST_MHZ:.0f} MHz: {LIMIT_TEXT}; the tile fetcher's own depth, docs/rtl.md's \"depth:fetcher\" table, "
            f"allowing {FETCHER_MHZ:.0f}); its fit, per SLR, "
            "is docs/rtl.md's "
            f"\"Fit of the whole core\": measured with the rest of the core and the tile fetcher, it is {FIT_SHARE} of "
            f"the dynamic region's LUTs, so it {'fits as built, every SLR within 75%' if FIT_OK else 'does not fit as built'} "
            f"(its tile fetcher alone is {FETCHER_SHARE}).\n\n"
            f"{deep_text(built[1], deep[1])}\n\n"
            f"What limits the configuration chosen to fit, by the model's own breakdown of a decode step: 345M: {top345} "
            f"(instructions: {ops}); 1.5B on 4 devices: {top15}. Its datapath needs about "
            f"{res['dsp']:.0f} DSP48E2 (MPU {res['dsp_mpu']:.0f}) of the {res['dsp_budget']:.0f} usable on the U280 "
            f"({'fits' if res['fits'] else 'does not fit'}), by the model's first-order estimate "
            "(`dfx.perf.estimate_resources`; Yosys figures in docs/rtl.md).")
        print(blocks["goals"], "\n")

        # ---- 4d. peers: published decode figures beside ours
        ours = [("this model: RTL as built (modelled, not measured)", "1 x U280 / 4 x U280", "GPT-2 345M / 1.5B",
                 "FP16", "200 MHz", f"{built[1].tokens_per_s:.0f} / {1e3 / built[0].decode_ms_per_token:.0f} tokens/s"),
                ("this model: the core `dfx build` writes, at the clock its depth table supports (fits; modelled, "
                 "not measured)", "1 x U280 / 4 x U280", "GPT-2 345M / 1.5B", "FP16", f"{FIT_MHZ:.0f} MHz",
                 f"{deep[1].tokens_per_s:.0f} / {1e3 / deep[0].decode_ms_per_token:.0f} tokens/s"),
                ("this model: configuration chosen to fit (assumes engines pipelined across instructions, not built; "
                 f"measured, it {'fits' if FIT_OK else 'does not fit'})", "1 x U280 / 4 x U280",
                 "GPT-2 345M / 1.5B", "INT4 g128", f"{FIT_MHZ:.0f} MHz",
                 f"{g345.tokens_per_s:.0f} / {1e3 / g15.decode_ms_per_token:.0f} tokens/s")]
        blocks["peers"] = tables.peers_markdown(ours)
        print(blocks["peers"], "\n")

        # ---- 5. plots
        if not args.no_write:
            d = ROOT / "docs" / "perf"
            fmt = args.format
            made = [plots.breakdown([(r["label"].split(" (")[0], r["by_class_decode_ms"]) for r in brow
                                     if not r["prefill_batch"]],             # batched prefill leaves decode as is
                                    d / f"breakdown.{fmt}", "GPT-2 1.5B decode: exposed ms per token by class")]
            made.append(plots.layers(r128.by_layer("decode"), d / f"layers.{fmt}",
                                     "DFX-faithful GPT-2 1.5B, 4 x U280: decode time per layer (256 tokens)"))
            pts, scal = [], {}
            for ov, lab in ((1, "DFX config, blocking"), (2, "DFX config, overlap 2"),
                            ("auto", "DFX config, overlap auto")):
                s = []
                for n in (1, 2, 4, 8):
                    r = perf_model("1.5B", devices=n, overlap=ov).run(128, 16)
                    s.append((n, r.decode_ms_per_token))
                    if ov == 1:
                        pts.append({"label": f"DFX cfg, {n} dev", "bytes_per_token": r.decode_bytes_per_token,
                                    "ms_per_token": r.decode_ms_per_token})
                scal[lab] = s
            s = []
            for n in (1, 2, 4, 8):
                r = perf_model("1.5B", cfg=WIDE_FAST, devices=n, overrides=tables.RTL_LATENCIES).run(128, 16)
                s.append((n, r.decode_ms_per_token))
                pts.append({"label": f"best FP16, {n} dev", "bytes_per_token": r.decode_bytes_per_token,
                            "ms_per_token": r.decode_ms_per_token})
            scal["RTL latencies + 300 MHz + l=32"] = s
            results["scaling"] = scal
            made.append(plots.scaling(scal, d / f"scaling.{fmt}", "GPT-2 1.5B: decode ms/token vs U280 count"))
            made.append(plots.roofline(pts, d / f"roofline.{fmt}", 460.0,
                                       "GPT-2 1.5B decode vs the HBM roofline (per device)"))
            sizes = {}
            for n in (1, 4):
                sizes[f"fp16, {n} x U280"] = [(sz, perf_model(sz, devices=n).run(128, 16).tokens_per_s)
                                              for sz in ("124M", "355M", "774M", "1.5B")]
            for n in (1, 4):
                sizes[f"int4 l=32 300 MHz, {n} x U280"] = [
                    (sz, perf_model(sz, cfg=WIDE_FAST, devices=n, overrides=tables.RTL_LATENCIES,
                                    weights=INT4).run(128, 16).tokens_per_s)
                    for sz in ("124M", "355M", "774M", "1.5B")]
            results["model_sizes"] = sizes
            made.append(plots.model_sizes(sizes, d / f"model_sizes.{fmt}",
                                          "decode tokens/s vs GPT-2 size and weight format"))
            print("plots:", ", ".join(str(p.relative_to(ROOT)) for p in made))

    results["elapsed_s"] = time.time() - t0
    print(f"elapsed {results['elapsed_s']:.0f} s")
    if args.no_write:
        return
    doc = ROOT / "docs" / "perf.md"
    text = doc.read_text()
    for name, body in blocks.items():
        text = replace_block(text, name, body)
    doc.write_text(text)
    out = ROOT / "docs" / "perf" / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and args.quick:
        old = json.loads(out.read_text())
        old.update(results)
        results = old
    out.write_text(json.dumps(results, indent=1, default=float))
    print(f"wrote {doc.relative_to(ROOT)} and {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
