"""DFX's published figures and the tables the performance model is compared with them in (docs/perf.md).

The published numbers: end-to-end latency of GPT-2 1.5B on 4 x U280 per (input, output) tokens from IANUS
(Seo et al., ASPLOS'24, Fig. 9, which tabulates DFX's results), ~6.9 ms per generated token (DFX, Hong et al.,
MICRO'22, arXiv:2209.10797), and GPT-2 345M decode at 185.19 tokens/s from StreamTensor (Ye & Chen, MICRO'25,
Table 4). They are only ever compared with, never used to set a constant.
"""
from __future__ import annotations

from dfx.hw import fp
from dfx.program import Program

from . import hbm
from .model import PerfModel
from .report import PerfReport
from .trace import MNEMONICS
from .resources import estimate_resources

DFX_LATENCY_MS = {   # (input, output) tokens -> ms, GPT-2 1.5B, 4 x U280 [IANUS Fig. 9]
    (32, 1): 227, (32, 16): 330, (32, 256): 1981,
    (64, 1): 447, (64, 16): 550, (64, 256): 2201,
    (128, 1): 887, (128, 16): 991, (128, 256): 2642,
}
DFX_DECODE_MS_PER_TOKEN = 6.9        # GPT-2 1.5B generation, DFX (~145 tokens/s)
DFX_345M_TOKENS_PER_S = 185.19       # GPT-2 345M decode [StreamTensor T4]; number of FPGAs not stated
DFX_345M_MS_PER_TOKEN = 1e3 / DFX_345M_TOKENS_PER_S
TOLERANCE = 0.20                     # the band for the reproduction
# DFX's reads in flight per HBM channel are not published. The tables use 16: the default depth of AMD's AXI
# masters (UG1399, Vitis HLS m_axi num_read_outstanding and max_read_burst_length: 16), chosen as the tool's
# default, never matched to DFX's latencies; `sensitivity_rows` shows every other value.
DFX_OUTSTANDING = 16
PEERS = [   # published decode figures of U280-class designs and the measured GPU row (docs/perf.md, "Peers")
    ("DFX (Hong et al., MICRO'22, arXiv:2209.10797)", "4 x U280", "GPT-2 1.5B", "FP16", "200 MHz",
     "145 tokens/s (6.875 ms/token, the slope of IANUS Fig. 9's nine totals)"),
    ("DFX, as StreamTensor tabulates it (Ye & Chen, MICRO'25, Table 4)", "U280 (count not stated)", "GPT-2 345M",
     "FP16", "200 MHz", "185.19 tokens/s"),
    ("Allo (Chen et al., TRETS'24, arXiv:2312.15159)", "1 x U280", "GPT-2 medium (345M)", "W4A8", "250 MHz",
     "204.05 tokens/s"),
    ("StreamTensor (Ye & Chen, MICRO'25, Table 4)", "1 x U55C", "GPT-2 (345M)", "W4A8", "-", "229.61 tokens/s"),
    ("FlightLLM (Zeng et al., FPGA'24)", "1 x U280", "LLaMA2-7B", "sparse, mixed precision", "-",
     "55 tokens/s; decode HBM utilisation 35.6% before, 65.9% after its access fix"),
    ("GPU, measured here (benchmarks/gpu_peer.py)", "1 x H200", "GPT-2 345M / 1.5B", "FP16", "-",
     "289 / 240 tokens/s (torch.compile, CUDA graphs), 80 / 42 (eager)"),
]


def dfx_model(program: Program, outstanding: int | None = DFX_OUTSTANDING, board="u280",
              refresh: str = "aligned") -> PerfModel:
    """`program` on `board` as DFX runs it: its weight-stream access pattern (`hbm.dfx_access`: one 64-byte beat
    per channel per tile, `outstanding` reads in flight per channel), and every prompt token through the whole
    decode path, LM head included, on DFX's pipelined units (`engines="pipelined"`). The second is what DFX's table says: a prompt token costs what a generated one
    does ((887 - 447) / 64 = 6.875 ms from the inputs, (2642 - 991) / 240 = 6.879 ms from the outputs)."""
    return PerfModel(program, board, hbm_access=hbm.dfx_access(program.config, outstanding, refresh),
                     prefill_stream="decode", engines="pipelined")


def linear_fit(rows: list[dict], key: str) -> tuple[float, float]:
    """(ms per token, ms fixed) of the least-squares line through total ms against T + M - 1 token steps: DFX's
    table is linear in it, so its slope is the per-token cost of prefill and decode alike."""
    pts = [(r["input"] + r["output"] - 1, r[key]) for r in rows if r.get(key) is not None]
    n = len(pts)
    mx, my = sum(x for x, _ in pts) / n, sum(y for _, y in pts) / n
    slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    return slope, my - slope * mx


def dfx_per_token_ms() -> float:
    """DFX's per-token cost for GPT-2 1.5B on 4 x U280: the slope of its nine published totals (6.88 ms)."""
    return linear_fit([{"input": T, "output": M, "ms": v} for (T, M), v in DFX_LATENCY_MS.items()], "ms")[0]


def within(model: float, published: float) -> bool:
    return abs(model - published) <= TOLERANCE * published


def sensitivity_rows(p15: Program, p345: Program, values=(4, 8, 12, 16, 24, 32, 48, None)) -> list[dict]:
    """Decode ms/token (128 in, 256 out) of GPT-2 1.5B on 4 devices and 345M on 1, for each count of DFX's reads
    in flight per channel and both refresh phasings, beside DFX's published per-token costs."""
    rows = []
    for o in values:
        row = {"outstanding": o}
        for ref in hbm.REFRESH:
            m15, m345 = dfx_model(p15, o, refresh=ref), dfx_model(p345, o, refresh=ref)
            a, b = m15.run(128, 256).decode_ms_per_token, m345.run(128, 256).decode_ms_per_token
            totals = sum(within(r["model_ms"], r["dfx_ms"]) for r in reproduction_rows(m15))
            row[ref] = {"channel_gbps": m15.timing.hbm_rate.gbps, "limit": m15.timing.hbm_rate.limit, "ms_1_5b": a,
                        "ms_345m": b, "ok": within(a, dfx_per_token_ms()) and within(b, DFX_345M_MS_PER_TOKEN),
                        "totals_within": totals}
        rows.append(row)
    return rows


def sensitivity_markdown(rows: list[dict], dfx15: float) -> str:
    out = ["| reads in flight per channel (DFX: unpublished) | refresh phases (unpublished) | GB/s per channel "
           "(limit) | GPT-2 1.5B, 4 x U280, ms/token | vs DFX | GPT-2 345M, 1 x U280, ms/token | vs DFX | both "
           "within 20% | 1.5B totals within 20% |", "|---:|---|---|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        o = "unlimited" if r["outstanding"] is None else r["outstanding"]
        for ref in hbm.REFRESH:
            x = r[ref]
            out.append(f"| {o} | {ref} | {x['channel_gbps']:.2f} ({x['limit']}) | {x['ms_1_5b']:.2f} | "
                       f"{100 * (x['ms_1_5b'] / dfx15 - 1):+.0f}% | {x['ms_345m']:.2f} | "
                       f"{100 * (x['ms_345m'] / DFX_345M_MS_PER_TOKEN - 1):+.0f}% | {'yes' if x['ok'] else 'no'} | "
                       f"{x['totals_within']} of 9 |")
    return "\n".join(out)


def position_rows(model: PerfModel, positions=(0, 63, 127, 255, 383)) -> dict:
    """Decode step ms by position, and what the model adds over each of DFX's 256-token windows compared with a
    flat cost (the step at position 0)."""
    ms = {p: model.step_cycles("decode", p) / model.timing.clock_hz * 1e3 for p in positions}
    first, last = (max(model.step("decode", p), key=lambda d: d.cycles) for p in (positions[0], positions[-1]))
    growth = {MNEMONICS[i]: (b - a) / model.timing.clock_hz * 1e3 for i, (a, b) in
              enumerate(zip(first.by_op, last.by_op)) if b - a}
    windows = {}
    for T in (32, 64, 128):
        flat = model.step_cycles("decode", 0)
        extra = sum(model.step_cycles("decode", p) - flat for p in range(T - 1, T + 255))
        windows[T] = extra / model.timing.clock_hz * 1e3
    return {"step_ms": ms, "window_extra_ms": windows,
            "growth_ms": dict(sorted(growth.items(), key=lambda kv: -kv[1]))}


def hbm_markdown(rows: list[dict]) -> str:
    out = ["| access pattern (per channel) | bytes per read | reads in flight | stride (B) | GB/s per channel | "
           "GB/s, 32 channels | latency (ns) | of the core's port | limit |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        o = "unlimited" if r["outstanding"] is None else r["outstanding"]
        out.append(f"| {r['access']} | {r['burst_bytes']} | {o} | {r['stride_bytes']} | {r['channel_gbps']:.2f} | "
                   f"{r['total_gbps']:.0f} | {r['latency_ns']:.0f} | {100 * r['efficiency']:.0f}% | {r['limit']} |")
    return "\n".join(out)


def peers_markdown(ours: list[tuple[str, str, str, str, str, str]]) -> str:
    out = ["| design | boards | model | weights | clock | decode |", "|---|---|---|---|---|---|"]
    out += [f"| {' | '.join(p)} |" for p in PEERS + ours]
    return "\n".join(out)
WORKLOADS = tuple(DFX_LATENCY_MS)
RTL_LATENCIES = {                    # hw/fp.py default operator stages (docs/rtl.md), for the 'RTL latencies' rows
    "core.fp16_mul_cycles": 1, "core.fp_add_cycles": 2, "core.fp32_mul_cycles": 2, "core.fp_round_cycles": 1}
# hw/fp.py's operators with every register cut (the "deep" rows of docs/rtl.md's logic-depth table, the
# depths the best configuration's clock rests on): binary16 multiply, binary32 add and multiply, rounding.
DEEP_LATENCIES = {"core.fp16_mul_cycles": len(fp.MUL16_CUTS), "core.fp_add_cycles": fp.ADD_MAX_STAGES,
                  "core.fp32_mul_cycles": len(fp.MUL32_CUTS), "core.fp_round_cycles": 2}


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
    out = ["| input | output | model (ms) | DFX published (ms) | deviation | within 20% | of which prefill / decode "
           "(ms) |", "|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        if r["model_ms"] is None:
            out.append(f"| {r['input']} | {r['output']} | - | {r['dfx_ms']} | - | - | {r['note']} |")
            continue
        ok = "yes" if within(r["model_ms"], r["dfx_ms"]) else "no"
        out.append(f"| {r['input']} | {r['output']} | {r['model_ms']:.0f} | {r['dfx_ms']} | "
                   f"{r['deviation_pct']:+.0f}% | {ok} | {r['prefill_ms']:.0f} / {r['decode_ms']:.0f} |")
    return "\n".join(out)


def config_row(label: str, model: PerfModel, workloads=WORKLOADS, report: PerfReport | None = None,
               assumes: str = "") -> dict:
    """One configuration: latency of every workload, decode ms/token and its share of the HBM roofline (a
    program with a batched prefill stream prefills through it)."""
    lat = {f"{T}:{M}": model.run(T, M).total_ms for T, M in workloads}
    r = report or model.run(128, 256)
    res = estimate_resources(model.cfg, model.board)
    return {"label": label, "assumes": assumes, "devices": model.devices, "overlap": model.program.manifest.overlap,
            "prefill_batch": model.prefill_chunk,
            "config": model.cfg.name, "d": model.cfg.d, "l": model.cfg.l, "clock_mhz": model.cfg.clock_mhz,
            "latency_ms": lat, "decode_ms_per_token": r.decode_ms_per_token, "tokens_per_s": r.tokens_per_s,
            "prefill_ms_per_token": r.prefill_ms_per_token,
            "roofline_ms_board": r.roofline_ms("board"), "roofline_pct_board": r.roofline_pct("board"),
            "roofline_pct_port": r.roofline_pct("port"), "dsp": res["dsp"], "dsp_fits": res["fits"],
            "by_class_decode_ms": {k: v / max(r.phases["decode"].steps, 1) for k, v in r.by_class("decode").items()}}


def configs_markdown(rows: list[dict], workloads=WORKLOADS) -> str:
    head = "| configuration | assumes what the RTL lacks | " + " | ".join(f"{T}:{M}" for T, M in workloads) + \
           " | decode ms/token | tokens/s | HBM roofline ms | % of roofline | DSP (est.) |"
    out = [head, "|---|---|" + "---:|" * (len(workloads) + 5)]
    for r in rows:
        cells = " | ".join(f"{r['latency_ms'][f'{T}:{M}']:.0f}" for T, M in workloads)
        out.append(f"| {r['label']} | {r.get('assumes', '')} | {cells} | {r['decode_ms_per_token']:.3f} | "
                   f"{r['tokens_per_s']:.0f} | "
                   f"{r['roofline_ms_board']:.3f} | {r['roofline_pct_board']:.0f}% | {r['dsp']}"
                   f"{'' if r['dsp_fits'] else ' (over budget)'} |")
    return "\n".join(out)
