"""DFX's published figures and the tables the performance model is compared with them in (docs/perf.md).

The published numbers: end-to-end latency of GPT-2 1.5B on 4 x U280 per (input, output) tokens from IANUS
(Seo et al., ASPLOS'24, Fig. 9, which tabulates DFX's results), ~6.9 ms per generated token (DFX, Hong et al.,
MICRO'22, arXiv:2209.10797), and GPT-2 345M decode at 185.19 tokens/s from StreamTensor (Ye & Chen, MICRO'25,
Table 4). They are only ever compared with, never used to set a constant.
"""
from __future__ import annotations

from .model import PerfModel
from .report import PerfReport
from .resources import estimate_resources

DFX_LATENCY_MS = {   # (input, output) tokens -> ms, GPT-2 1.5B, 4 x U280 [IANUS Fig. 9]
    (32, 1): 227, (32, 16): 330, (32, 256): 1981,
    (64, 1): 447, (64, 16): 550, (64, 256): 2201,
    (128, 1): 887, (128, 16): 991, (128, 256): 2642,
}
DFX_DECODE_MS_PER_TOKEN = 6.9        # GPT-2 1.5B generation, DFX (~145 tokens/s)
DFX_345M_TOKENS_PER_S = 185.19       # GPT-2 345M decode [StreamTensor T4]; number of FPGAs not stated
WORKLOADS = tuple(DFX_LATENCY_MS)
RTL_LATENCIES = {                    # hw/fp.py default operator stages (docs/rtl.md), for the 'RTL latencies' rows
    "core.fp16_mul_cycles": 1, "core.fp_add_cycles": 2, "core.fp32_mul_cycles": 2, "core.fp_round_cycles": 1}


def reproduction_rows(model: PerfModel) -> list[dict]:
    """The 9 DFX workloads: our modelled latency beside DFX's, with the deviation."""
    rows = []
    for (T, M), published in DFX_LATENCY_MS.items():
        if T + M - 1 > model.max_seq:
            rows.append({"input": T, "output": M, "model_ms": None, "dfx_ms": published, "deviation_pct": None,
                         "prefill_ms": None, "decode_ms": None, "decode_ms_per_token": None,
                         "note": f"needs {T + M - 1} positions, the program has {model.max_seq}"})
            continue
        r = model.run(T, M)
        rows.append({"input": T, "output": M, "model_ms": r.total_ms, "dfx_ms": published,
                     "deviation_pct": 100.0 * (r.total_ms - published) / published,
                     "prefill_ms": r.ms("prefill"), "decode_ms": r.ms("decode"),
                     "decode_ms_per_token": r.decode_ms_per_token})
    return rows


def reproduction_markdown(rows: list[dict]) -> str:
    out = ["| input | output | model (ms) | DFX published (ms) | deviation | of which prefill / decode (ms) |",
           "|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["model_ms"] is None:
            out.append(f"| {r['input']} | {r['output']} | - | {r['dfx_ms']} | - | {r['note']} |")
            continue
        out.append(f"| {r['input']} | {r['output']} | {r['model_ms']:.0f} | {r['dfx_ms']} | "
                   f"{r['deviation_pct']:+.0f}% | {r['prefill_ms']:.0f} / {r['decode_ms']:.0f} |")
    return "\n".join(out)


def config_row(label: str, model: PerfModel, workloads=WORKLOADS, report: PerfReport | None = None) -> dict:
    """One configuration: latency of every workload, decode ms/token and its share of the HBM roofline (a
    program with a batched prefill stream prefills through it)."""
    lat = {f"{T}:{M}": model.run(T, M).total_ms for T, M in workloads}
    r = report or model.run(128, 256)
    res = estimate_resources(model.cfg, model.board)
    return {"label": label, "devices": model.devices, "overlap": model.program.manifest.overlap,
            "prefill_batch": model.prefill_chunk,
            "config": model.cfg.name, "d": model.cfg.d, "l": model.cfg.l, "clock_mhz": model.cfg.clock_mhz,
            "latency_ms": lat, "decode_ms_per_token": r.decode_ms_per_token, "tokens_per_s": r.tokens_per_s,
            "prefill_ms_per_token": r.prefill_ms_per_token,
            "roofline_ms_board": r.roofline_ms("board"), "roofline_pct_board": r.roofline_pct("board"),
            "roofline_pct_port": r.roofline_pct("port"), "dsp": res["dsp"], "dsp_fits": res["fits"],
            "by_class_decode_ms": {k: v / max(r.phases["decode"].steps, 1) for k, v in r.by_class("decode").items()}}


def configs_markdown(rows: list[dict], workloads=WORKLOADS) -> str:
    head = "| configuration | " + " | ".join(f"{T}:{M}" for T, M in workloads) + \
           " | decode ms/token | tokens/s | HBM roofline ms | % of roofline | DSP (est.) |"
    out = [head, "|---|" + "---:|" * (len(workloads) + 5)]
    for r in rows:
        cells = " | ".join(f"{r['latency_ms'][f'{T}:{M}']:.0f}" for T, M in workloads)
        out.append(f"| {r['label']} | {cells} | {r['decode_ms_per_token']:.3f} | {r['tokens_per_s']:.0f} | "
                   f"{r['roofline_ms_board']:.3f} | {r['roofline_pct_board']:.0f}% | {r['dsp']}"
                   f"{'' if r['dsp_fits'] else ' (over budget)'} |")
    return "\n".join(out)
