"""The quantization accuracy/size table (docs/quant.md) and its plot (docs/quant/ppl_vs_bytes.png).

    python benchmarks/quant_report.py               # both models: compute, write docs/quant/results.json,
                                                    # docs/quant.md, the plot and the README section
    python benchmarks/quant_report.py --render      # re-render docs from results.json only
    python benchmarks/quant_report.py --only embedded --windows 16     # a quicker look

Two models:
- the embedded model (byte-level GPT-2, 4 layers x 256, trained on the stdlib): held-out perplexity and bits
  per byte on the windows `models/evaluate.py` scores; calibration windows from the training split;
- a larger random teacher (6 layers x 384, 128 positions, byte vocabulary; widened GPT-2 init (as tests/gpt2_fixtures.py)
  so its next-token distributions are peaked but not collapsed, and 4 of the 384 residual channels given LayerNorm
  gains of 8 in every block, the "outlier features" of trained LLMs that per-IC groups are meant to isolate).
  We sample text from the FP16 teacher and score each quantized copy on it: the FP16 row is the teacher's own
  entropy (the floor), the others show what quantization costs. Training a larger model here was tried and
  abandoned: on this shared 2-core machine a 6 x 384 model managed ~2-3 optimizer steps a minute (about 75 in
  the 15-minute budget), far from a trained model.

Table rows come from `dfx.compiler.quant.report_cli.run_report`, the code `dfx quant-report` prints.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = DOCS / "quant" / "results.json"
PLOT = DOCS / "quant" / "ppl_vs_bytes.png"
TEACHER = dict(vocab_size=256, n_positions=128, n_embd=384, n_layer=6, n_head=6)
OUTLIER_CHANNELS, OUTLIER_GAIN, W_STD, EMB_STD = 4, 8.0, 0.08, 0.2
TEACHER_EVAL, TEACHER_CALIB = 64, 32          # sequences of n_positions tokens


# ------------------------------------------------------------------------------------------------ teacher
def random_teacher(seed: int = 0):
    """GPT-2 shaped, random: matrices N(0, W_STD), embeddings N(0, EMB_STD), LayerNorm gains U(0.8, 1.2),
    biases N(0, 0.05) (the widened init tests/gpt2_fixtures.py uses, so next-token distributions are peaked
    but not collapsed), then OUTLIER_CHANNELS residual channels with LayerNorm gain OUTLIER_GAIN in every block;
    rounded to FP16."""
    import torch

    from dfx import numerics as nx
    from dfx.models.gpt2 import GPT2, GPTConfig
    m = GPT2(GPTConfig(**TEACHER))
    g = torch.Generator().manual_seed(seed)
    ch = torch.randperm(TEACHER["n_embd"], generator=g)[:OUTLIER_CHANNELS]
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, EMB_STD if name in ("wte.weight", "wpe.weight") else W_STD, generator=g)
            elif "ln_" in name and name.endswith("weight"):
                p.uniform_(0.8, 1.2, generator=g)
            else:
                p.normal_(0.0, 0.05, generator=g)
        for blk in m.h:
            blk.ln_1.weight[ch] = OUTLIER_GAIN
            blk.ln_2.weight[ch] = OUTLIER_GAIN
        for p in m.parameters():                                   # the teacher is its own FP16 model
            p.copy_(torch.from_numpy(nx.to_fp16(p.numpy()).astype("float32")))
    return m.eval(), sorted(ch.tolist())


def sample(model, n: int, seed: int):
    """n sequences of n_positions tokens sampled at temperature 1 (first token uniform). (n, T) int64."""
    import torch
    T = model.config.n_positions
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, model.config.vocab_size, (n, 1), generator=g)
    out, past = [x], None
    with torch.no_grad():
        for _ in range(T - 1):
            logits, past = model(x, past)
            x = torch.multinomial(torch.softmax(logits[:, -1].float(), -1), 1, generator=g)
            out.append(x)
    return torch.cat(out, 1)


def seq_nll(model, seqs) -> float:
    """Mean next-token cross-entropy (nats) inside each sequence."""
    import torch
    import torch.nn.functional as Fn
    tot = 0.0
    with torch.no_grad():
        for i in range(0, len(seqs), 16):
            s = seqs[i:i + 16]
            logits, _ = model(s[:, :-1])
            tot += Fn.cross_entropy(logits.flatten(0, 1), s[:, 1:].flatten(), reduction="sum").item()
    return tot / (len(seqs) * (seqs.shape[1] - 1))


# ------------------------------------------------------------------------------------------------ runs
def run_embedded(windows: int | None, calib_windows: int, log) -> dict:
    from dfx.compiler.quant.report_cli import default_rows, report
    t0 = time.perf_counter()
    rows, meta = report(None, default_rows(), windows, None, calib_windows, log=log)
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    meta["model"] = "models/default (embedded)"
    return {"meta": meta, "rows": rows}


def run_teacher(log, seed: int = 0) -> dict:
    from dfx.compiler.quant.report_cli import default_rows, run_report
    t0 = time.perf_counter()
    teacher, ch = random_teacher(seed)
    evals = sample(teacher, TEACHER_EVAL, seed + 10)
    calib = sample(teacher, TEACHER_CALIB, seed + 20)
    rows = run_report(teacher, None, default_rows(), calib, log=log, score=lambda m: seq_nll(m, evals))
    meta = {"model": "random teacher", "config": TEACHER, "outlier_channels": ch, "outlier_gain": OUTLIER_GAIN,
            "w_std": W_STD, "emb_std": EMB_STD, "seed": seed, "eval_tokens": int(evals.numel()), "calib_tokens": int(calib.numel()),
            "params": int(sum(p.numel() for p in teacher.parameters())),
            "seconds": round(time.perf_counter() - t0, 1)}
    return {"meta": meta, "rows": rows}


# ------------------------------------------------------------------------------------------------ render
def _row(rows, label_start):
    return next((r for r in rows if r["label"].startswith(label_start)), None)


def findings(res: dict, unit: str) -> list[str]:
    """Comparisons the literature makes, computed from the rows, worded by what the numbers say."""
    rows = res["rows"]
    fp, rtn4, ic4 = _row(rows, "FP16"), _row(rows, "INT4 per-OC"), _row(rows, "INT4 per-IC")
    gptq4, ada, rtn3, gptq3 = _row(rows, "GPTQ INT4"), _row(rows, "AdaDim"), _row(rows, "INT3"), _row(rows, "GPTQ INT3")
    bcq3, bcq4, mix = _row(rows, "BCQ 3"), _row(rows, "BCQ 4"), _row(rows, "Mixed")
    e4, e5, i8 = _row(rows, "FP8 E4M3"), _row(rows, "FP8 E5M2"), _row(rows, "INT8")
    d = lambda r: r["bits_per_byte"] - fp["bits_per_byte"]           # noqa: E731
    out = []

    def cmp(a, b, claim):
        ok = d(a) <= d(b)
        out.append(f"{claim}: {'reproduces' if ok else 'does not reproduce'} — {a['label']} {d(a):+.4f} vs "
                   f"{b['label']} {d(b):+.4f} {unit} over FP16.")
    if gptq4 and rtn4:
        out.append(f"GPTQ's own objective (output error on calibration activations) is "
                   f"{rtn4['rel_output_error'] / gptq4['rel_output_error']:.1f}x lower than RTN's at INT4 g128"
                   + (f" and {rtn3['rel_output_error'] / gptq3['rel_output_error']:.1f}x at INT3 g128." if rtn3 and gptq3 else "."))
        cmp(gptq4, rtn4, "GPTQ < RTN on held-out loss at INT4 g128")
    if gptq3 and rtn3:
        cmp(gptq3, rtn3, "GPTQ < RTN at INT3 g128")
    if ic4 and rtn4:
        cmp(ic4, rtn4, "per-IC groups beat per-OC at INT4 g128")
    if ada and rtn4 and ic4:
        better = d(ada) <= min(d(rtn4), d(ic4))
        out.append(f"AdaDim (per-layer axis by calibration output error, {ada['format']}): "
                   f"{d(ada):+.4f} {unit}, {'at or below' if better else 'not below'} the better fixed axis "
                   f"({min(d(rtn4), d(ic4)):+.4f}); its calibration output error "
                   f"{ada['rel_output_error']:.2e} vs {min(rtn4['rel_output_error'], ic4['rel_output_error']):.2e}.")
    adag = _row(rows, "AdaDim + GPTQ")
    if adag and gptq4:
        cmp(adag, gptq4, f"AdaDim on top of GPTQ ({adag['format']}) beats GPTQ per-OC")
    if bcq4 and rtn4:
        cmp(bcq4, rtn4, f"BCQ 4-bit (non-uniform levels; its four alphas per group cost "
                        f"{bcq4['bits_per_weight'] - rtn4['bits_per_weight']:.3f} bits/w more than INT4's scale) "
                        f"beats INT4 RTN")
    if bcq3 and rtn3:
        cmp(bcq3, rtn3, "BCQ 3-bit beats INT3 RTN")
    if e4 and e5:
        cmp(e4, e5, "FP8 E4M3 (more mantissa) beats E5M2 for weights")
    if e4 and i8:
        cmp(i8, e4, "INT8 per-OC beats FP8 E4M3 per-OC")
    if mix and rtn4:
        out.append(f"Mixed precision at {mix['bits_per_weight']:.3f} bits/w ({mix['format']}): {d(mix):+.4f} {unit} "
                   f"vs INT4 RTN {d(rtn4):+.4f} at {rtn4['bits_per_weight']:.3f} bits/w"
                   + (f" and GPTQ INT4 {d(gptq4):+.4f}." if gptq4 else "."))
    return out


def table(rows, unit: str) -> str:
    from dfx.compiler.quant.report_cli import markdown_table
    return markdown_table(rows, unit)


def plot(results: dict):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [k for k in ("embedded", "teacher") if k in results]
    fig, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), 4.8), squeeze=False)
    for ax, key in zip(axes[0], names):
        rows = results[key]["rows"]
        for i, r in enumerate(rows):
            x = r["model_bytes"] / results[key]["meta"]["params"]
            mk = {"rtn": "o", "gptq": "s", "adadim": "D", "bcq": "^", "mixed": "*"}[r["method"]]
            ax.scatter(x, r["ppl"], marker=mk, s=60 if mk != "*" else 140, zorder=3, alpha=0.9, color=plt.cm.tab20(i),
                       label=r["label"].replace(" (DFX)", ""))
        ax.set_xscale("log", base=2)
        if key == "teacher":
            ax.set_yscale("log")
        ax.legend(fontsize=7, ncol=2)
        ax.set_xlabel("model bytes per parameter (incl. scales; embeddings etc. FP16)")
        ax.set_ylabel("held-out perplexity" if key == "embedded" else "perplexity on teacher samples")
        m = results[key]["meta"]
        ax.set_title("embedded model (4 x 256, stdlib)" if key == "embedded"
                     else f"random teacher ({m['config']['n_layer']} x {m['config']['n_embd']}, outlier channels)")
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=120)


def render(results: dict):
    emb, tea = results.get("embedded"), results.get("teacher")
    parts = [DOC_HEAD]
    if emb:
        m = emb["meta"]
        parts.append(f"## Embedded model (4 layers x 256, byte-level, Python stdlib)\n\n"
                     f"{m['params']:,} parameters; held-out {m['eval_bytes']:,} bytes ({m['eval_windows']} windows "
                     f"of {m['config']['n_positions']}, the set `python -m dfx.models.evaluate` scores); "
                     f"calibration {m['calib_tokens']:,} bytes from the training split; {m['seconds']:.0f} s.\n\n"
                     + table(emb["rows"], "bits/byte") + "\n\n" +
                     "\n".join(f"- {f}" for f in findings(emb, "bits/byte")) + "\n")
    if tea:
        m = tea["meta"]
        parts.append(f"## Larger random teacher ({m['config']['n_layer']} layers x {m['config']['n_embd']})\n\n"
                     f"{m['params']:,} parameters, {m['config']['n_positions']} positions, byte vocabulary; GPT-2 "
                     f"init widened as in tests/gpt2_fixtures.py (matrices N(0, {m['w_std']}), embeddings N(0, {m['emb_std']}), "
                     f"seed {m['seed']}) and LayerNorm gains of "
                     f"{m['outlier_gain']:g} on channels {m['outlier_channels']} in every block (activation outlier "
                     f"channels into c_attn and c_fc). Scored on {m['eval_tokens']:,} tokens sampled from the "
                     f"FP16 teacher (its FP16 row is the entropy floor); calibration: {m['calib_tokens']:,} other "
                     f"sampled tokens; {m['seconds']:.0f} s. Column 'bits/byte' is bits per token (one byte).\n\n"
                     + table(tea["rows"], "bits/token") + "\n\n" +
                     "\n".join(f"- {f}" for f in findings(tea, "bits/token")) + "\n")
    parts.append("![perplexity vs bytes per parameter](quant/ppl_vs_bytes.png)\n")
    (DOCS / "quant.md").write_text("\n".join(parts))
    readme(results)


DOC_HEAD = """# Quantized weights: accuracy and size

Generated by `python benchmarks/quant_report.py` (figures in `docs/quant/results.json`); `dfx quant-report`
prints the same table for any byte-level checkpoint. Do not edit by hand.

What is quantized: every Conv1D weight (`h.{i}.attn.c_attn`, `attn.c_proj`, `mlp.c_fc`, `mlp.c_proj`). The
token and position embeddings (and so the tied LM head), biases and LayerNorm parameters stay FP16. Each row is
the fake-quant golden (`dfx.models.quantized.fake_quant`: weights exactly `QuantWeight.dequant()`, the binary16
matrix the MPU multiplies with; everything else rounded to binary16) in float32 PyTorch.

Columns: bits/w = bits per quantized weight with binary16 scales/alphas and zero points
(`WeightFormat.ideal_bytes`); model MB = those weights plus every other parameter in FP16; HBM MB/token = one
decode step on one device with the DFX MPU (d=64, l=16): every matrix in its exact HBM region layout
(`formats.matrix_bytes`), the FP16 LM head, one embedding row each, biases/LayerNorms, and the KV cache
(read 2 x layers x t x n_embd FP16 values and write one position, t = n_positions / 2); rel. output err =
sum over layers of ||X(W - W_q)||^2 / ||X W||^2 on the calibration activations (what GPTQ and AdaDim
minimise). Methods: RTN (`compiler/quant/rtn.py`), GPTQ (`gptq.py`: damping 0.01, act order, blocks of
128, groups in the format), AdaDim (`adadim.py`: per layer the lower-output-error axis, RTN or GPTQ base), BCQ
(`bcq.py`: greedy + alternating least squares), mixed (`mixed.py`: per-layer KL sensitivity on calibration
text, exact knapsack over int3/int4/int8 g128 for a 4.5 bits/w budget). Calibration activations come from the
float model (not re-propagated through quantized layers).
"""


def readme(results: dict):
    """Rewrite the README's quantization section between its markers (added at the end the first time)."""
    path = ROOT / "README.md"
    text = path.read_text()
    emb = results.get("embedded")
    lines = ["## Quantized weights", "",
             "Every Conv1D weight can be stored as INT8/INT4/INT3 with binary16 group scales (per output or per "
             "input channel), FP8 E4M3/E5M2, or BCQ; embeddings, LM head, biases and LayerNorms stay FP16. "
             "Quantizers: RTN, GPTQ, AdaDim, BCQ (ALS), layer-wise mixed precision (`compiler/quant/`); the "
             "fake-quant golden is `dfx.models.quantized.fake_quant`. `dfx quant-report` prints the table below "
             "for any byte-level checkpoint; `python benchmarks/quant_report.py` regenerates "
             "[docs/quant.md](docs/quant.md) (also a larger random-teacher model) and the plot.", ""]
    if emb:
        fp = _row(emb["rows"], "FP16")
        lines += ["Embedded model, held-out bits/byte (Δ vs FP16) and HBM bytes per decoded token:", "",
                  "| weights | bits/w | bits/byte | Δ | HBM MB/token |", "|---|---|---|---|---|"]
        for r in emb["rows"]:
            lines.append(f"| {r['label']} | {r['bits_per_weight']:.3f} | {r['bits_per_byte']:.4f} | "
                         f"{r['bits_per_byte'] - fp['bits_per_byte']:+.4f} | {r['hbm_bytes_per_token'] / 1e6:.3f} |")
        tea = results.get("teacher")
        if tea:
            t = {k: _row(tea["rows"], k) for k in ("FP16", "INT4 per-OC", "INT4 per-IC", "GPTQ INT4")}
            dd = {k: r["bits_per_byte"] - t["FP16"]["bits_per_byte"] for k, r in t.items()}
            lines += ["", f"On a larger random teacher with activation outlier channels (docs/quant.md) INT4 g128 costs {dd['INT4 per-OC']:+.3f} "
                          f"bits/token per-OC, {dd['INT4 per-IC']:+.3f} per-IC and {dd['GPTQ INT4']:+.3f} with GPTQ."]
        lines += ["", "![perplexity vs bytes per parameter](docs/quant/ppl_vs_bytes.png)"]
    block = "<!-- quant-report:begin -->\n" + "\n".join(lines) + "\n<!-- quant-report:end -->"
    pat = re.compile(r"<!-- quant-report:begin -->.*?<!-- quant-report:end -->", re.S)
    text = pat.sub(lambda _: block, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["embedded", "teacher"], default=None)
    ap.add_argument("--windows", type=int, default=None, help="held-out windows (default: all 256)")
    ap.add_argument("--calib-windows", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--render", action="store_true", help="only re-render docs from results.json")
    args = ap.parse_args(argv)
    import warnings

    import torch
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UserWarning)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if not args.render:
        log = lambda s: print(s, file=sys.stderr, flush=True)          # noqa: E731
        if args.only in (None, "embedded"):
            results["embedded"] = run_embedded(args.windows, args.calib_windows, log)
        if args.only in (None, "teacher"):
            results["teacher"] = run_teacher(log)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    render(results)
    plot(results)
    print(f"wrote {DOCS / 'quant.md'}, {PLOT}, {RESULTS}")


if __name__ == "__main__":
    main()
