"""`dfx quant-report`: held-out perplexity and size of a byte-level GPT-2 under every weight format/method.

Each row quantizes every Conv1D weight (embeddings/LM head, biases and LayerNorms stay FP16), builds the
fake-quant golden (`dfx.models.quantized.fake_quant`) and scores it on the held-out stdlib windows that
`python -m dfx.models.evaluate` scores (`--windows` fewer for a quick look). Sizes:

- bits/w: bits per quantized weight, codes + binary16 scales (+ zero points), `WeightFormat.ideal_bytes`;
- model bytes: the quantized weights at ideal bytes plus every other parameter in FP16;
- HBM bytes/token: what one decode step streams on one device with the DFX MPU (d=64, l=16): every weight
  matrix in its exact HBM region layout (`formats.matrix_bytes`: tiles, scale blocks, 64-byte alignment), the
  tied LM head (wte, FP16), one wte and one wpe row, biases and LayerNorm parameters, and the KV cache: read
  2 x n_layer x t x n_embd FP16 values and write one new position, at t = n_positions / 2 (the mean over a full
  context).

Calibration (gptq, adadim, mixed) uses windows from the *training* split (or `--calib FILE`), never the
held-out one.
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
import torch

from dfx import formats as F
from dfx import numerics as nx
from dfx import progress
from dfx.errors import DfxError, UsageError
from dfx.models.checkpoint import DEFAULT_MODEL_DIR, load_checkpoint
from dfx.models.quantized import fake_quant
from dfx.models.train import EVAL_WINDOWS, heldout_nll, load_corpus

from .calib import MIN_CALIB_TOKENS, calibration_windows, collect_calibration, conv1d_weights, output_error
from .methods import METHODS, check_method, parse_format
from .model import model_bytes, quantize_model

HW_D, HW_L = 64, 16                    # the DFX preset's MPU: d x l tiles (dfx.config.PRESETS["dfx"])
DEFAULT_BUDGET = 4.5


@dataclass(frozen=True)
class RowSpec:
    label: str
    fmt: str | None                    # None for mixed
    method: str
    opts: dict = field(default_factory=dict, hash=False)


def default_rows(budget: float = DEFAULT_BUDGET) -> list[RowSpec]:
    """The table issue #5 asks for."""
    return [
        RowSpec("FP16 (DFX)", "fp16", "rtn"),
        RowSpec("INT8 per-OC", "int8-oc", "rtn"),
        RowSpec("INT4 per-OC g128", "int4-oc-g128", "rtn"),
        RowSpec("INT4 per-IC g128", "int4-ic-g128", "rtn"),
        RowSpec("AdaDim INT4 g128", "int4-oc-g128", "adadim"),
        RowSpec("GPTQ INT4 per-OC g128", "int4-oc-g128", "gptq"),
        RowSpec("AdaDim + GPTQ INT4 g128", "int4-oc-g128", "adadim", {"base": "gptq"}),
        RowSpec("BCQ 4-bit g128", "bcq4-oc-g128", "bcq"),
        RowSpec("BCQ 3-bit g128", "bcq3-oc-g128", "bcq"),
        RowSpec("FP8 E4M3 per-OC", "fp8e4m3", "rtn"),
        RowSpec("FP8 E5M2 per-OC", "fp8e5m2", "rtn"),
        RowSpec(f"Mixed int3/4/8 g128, <= {budget:g} bits", None, "mixed", {"budget_bits": budget}),
        RowSpec("INT3 per-OC g128", "int3-oc-g128", "rtn"),
        RowSpec("GPTQ INT3 per-OC g128", "int3-oc-g128", "gptq"),
    ]


def parse_rows(spec: str, budget: float = DEFAULT_BUDGET) -> list[RowSpec]:
    """`fmt[:method],...` (method default rtn, bcq for bcq formats); `mixed` alone is the mixed row. Every entry
    is checked before anything runs."""
    rows = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        fmt, _, method = item.partition(":")
        if fmt.strip().lower() == "mixed":
            rows.append(RowSpec(f"Mixed, <= {budget:g} bits", None, "mixed", {"budget_bits": budget}))
            continue
        f = parse_format(fmt)
        method = check_method(method or ("bcq" if f.kind == "bcq" else "rtn"), f)
        if method == "mixed":
            raise UsageError(f"{item!r}: write the mixed row as 'mixed' (it chooses formats itself)")
        rows.append(RowSpec(f"{method.upper()} {f.name}", f.name, method))
    if not rows:
        raise UsageError("--rows is empty; give fmt[:method],... e.g. int4-oc-g128:gptq,bcq3-oc-g128,mixed")
    return rows


def hbm_bytes_per_token(model, qweights: dict, d: int = HW_D, l: int = HW_L, context: int | None = None) -> dict:
    """One decode step's HBM traffic on one device (see the module docstring)."""
    cfg = model.config
    t = cfg.n_positions // 2 if context is None else context
    weights = 0
    small = 0
    for name, p in model.named_parameters():
        if name in qweights:
            qw = qweights[name]
            weights += F.matrix_bytes(qw.fmt, *qw.shape, d, l)
        elif name.endswith(".weight") and p.dim() == 2 and name not in ("wte.weight", "wpe.weight"):
            weights += F.matrix_bytes(F.FP16, *p.shape, d, l)              # an FP16 Conv1D (mixed may keep one)
        elif p.dim() == 1:
            small += 2 * p.numel()                                            # biases, LayerNorms
    E = cfg.n_embd
    head = F.matrix_bytes(F.FP16, E, cfg.vocab_size, d, l)                     # tied LM head
    emb = 2 * 2 * E                                                           # one wte row + one wpe row
    kv = 2 * cfg.n_layer * (t + 1) * E * 2                                    # read t positions, write one
    return {"weights": weights, "lm_head": head, "small": small + emb, "kv": kv,
            "total": weights + head + small + emb + kv, "context": t}


def _rel_output_error(model, qweights, calib) -> float:
    """sum over layers of ||X(W - Wq)||^2 / sum of ||X W||^2 on the calibration activations."""
    num = den = 0.0
    for name, m in conv1d_weights(model).items():
        w = m.weight.detach().float().numpy()
        h = calib[name].hessian
        wq = qweights[name].dequant() if name in qweights else nx.to_fp16(w)
        num += output_error(w, wq, h)
        den += output_error(w, np.zeros_like(w), h)
    return num / den


def run_report(model, held: np.ndarray | None, rows: list[RowSpec], calib_tokens, n_windows: int = 0, log=None,
               score=None) -> list[dict]:
    """Quantize, fake-quant and score each row. Returns one dict per row. `score(model) -> nats per token`
    replaces the held-out windows (`heldout_nll(model, held, n_windows)`) when given."""
    log = log or (lambda s: None)
    calib = collect_calibration(model, calib_tokens)
    n_quant = sum(m.weight.numel() for m in conv1d_weights(model).values())
    out = []
    for r in progress.track(rows, "quant-report", len(rows), "row"):
        t0 = time.perf_counter()
        q = quantize_model(model, r.fmt, r.method, calib if r.method in ("gptq", "adadim", "mixed") else None,
                           **r.opts)
        tq = time.perf_counter() - t0
        fq = fake_quant(model, q)
        nll = score(fq) if score is not None else heldout_nll(fq, held, n_windows)
        size = model_bytes(model, q)
        hbm = hbm_bytes_per_token(model, q)
        fmts = [qw.fmt.name for qw in q.values()]
        if r.method == "mixed":
            counts = {f: fmts.count(f) for f in dict.fromkeys(sorted(set(fmts), key=fmts.index))}
            fname = " / ".join(f"{f} x{c}" for f, c in counts.items())
        elif r.method == "adadim":
            fname = f"{sum(f.split('-')[1] == 'oc' for f in fmts)} oc / {sum(f.split('-')[1] == 'ic' for f in fmts)} ic"
        else:
            fname = r.fmt
        res = {"label": r.label, "format": fname, "method": r.method,
               "bits_per_weight": size["quantized_bytes"] * 8 / n_quant,
               "model_bytes": size["total_bytes"], "hbm_bytes_per_token": hbm["total"],
               "hbm_weight_bytes": hbm["weights"] + hbm["lm_head"], "kv_bytes": hbm["kv"],
               "nll": nll, "ppl": math.exp(nll), "bits_per_byte": nll / math.log(2),
               "rel_output_error": _rel_output_error(model, q, calib), "quant_seconds": tq}
        out.append(res)
        log(f"{r.label:<38} ppl {res['ppl']:.4f}  bpb {res['bits_per_byte']:.4f}  "
            f"{res['bits_per_weight']:.3f} bits/w  ({tq:.1f} s)")
    return out


def markdown_table(results: list[dict], unit: str = "bits/byte") -> str:
    """The table as markdown; Δ is against the FP16 row when there is one."""
    fp = next((r for r in results if r["format"] == "fp16"), None)
    lines = [f"| weights | format(s) | bits/w | model MB | HBM MB/token | rel. output err (calib) | ppl | {unit} | "
             f"Δ vs FP16 |", "|" + "---|" * 9]
    for r in results:
        delta = f"{r['bits_per_byte'] - fp['bits_per_byte']:+.4f}" if fp else "-"
        lines.append(f"| {r['label']} | {r['format']} | {r['bits_per_weight']:.3f} | {r['model_bytes'] / 1e6:.3f} | "
                     f"{r['hbm_bytes_per_token'] / 1e6:.3f} | {r['rel_output_error']:.2e} | {r['ppl']:.4f} | "
                     f"{r['bits_per_byte']:.4f} | {delta} |")
    return "\n".join(lines)


def load_calibration_text(path: Path | None, model, n_windows: int):
    """Windows of calibration tokens: from a text file (its bytes; byte-level models) or the training split."""
    if path is None:
        return calibration_windows(n_windows, model.config.n_positions)
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"calibration file {p} does not exist; give a text file of at least "
                         f"{MIN_CALIB_TOKENS} bytes, or leave --calib out to use the training split")
    data = np.frombuffer(p.read_bytes(), np.uint8)
    if len(data) < MIN_CALIB_TOKENS:
        raise UsageError(f"calibration text {p} is too short: {len(data)} bytes; at least {MIN_CALIB_TOKENS} "
                         f"are needed")
    return data


def report(model_dir=None, rows: list[RowSpec] | None = None, n_windows: int | None = None, calib=None,
           calib_windows: int = 32, log=None) -> tuple[list[dict], dict]:
    """Load the model (default: the embedded one) and run the table. Returns (rows, meta)."""
    model = load_checkpoint(model_dir or DEFAULT_MODEL_DIR)
    if model.config.vocab_size != 256:
        raise UsageError(f"the report measures bits per byte: the model needs vocab_size 256 (byte-level), "
                         f"not {model.config.vocab_size}")
    if n_windows is not None and n_windows < 1:
        raise UsageError(f"--windows must be >= 1, not {n_windows}")
    rows = rows or default_rows()
    tokens = load_calibration_text(calib, model, calib_windows)
    _, held = load_corpus()
    n = n_windows or EVAL_WINDOWS
    results = run_report(model, held, rows, tokens, n, log)
    cfg = model.config
    meta = {"model": str(model_dir or DEFAULT_MODEL_DIR), "config": cfg.to_dict(), "eval_windows": n,
            "eval_bytes": n * cfg.n_positions, "calib_tokens": int(np.asarray(tokens).size),
            "params": int(sum(p.numel() for p in model.parameters()))}
    return results, meta


@click.command("quant-report")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="byte-level checkpoint directory (default: the embedded model)")
@click.option("--windows", type=int, default=None,
              help="held-out windows to score (default: all of models/evaluate.py's, 256 x n_positions bytes)")
@click.option("--rows", default=None,
              help="comma-separated fmt[:method] (methods: " + ", ".join(METHODS) + "), or 'mixed'; "
                   "default: the full table")
@click.option("--budget", type=float, default=DEFAULT_BUDGET, show_default=True,
              help="mixed precision: average bits per weight incl. scales")
@click.option("--calib", type=click.Path(path_type=Path), default=None,
              help="calibration text file (default: windows of the training split)")
@click.option("--calib-windows", type=int, default=32, show_default=True, help="calibration windows (training split)")
@click.option("--threads", type=int, default=2, show_default=True, help="torch CPU threads")
def quant_report(model_dir, windows, rows, budget, calib, calib_windows, threads):
    """Held-out perplexity, bits/byte, model bytes and HBM bytes per decoded token for each weight format and
    quantizer (RTN, AdaDim, GPTQ, BCQ, FP8, mixed precision), as a markdown table on stdout."""
    torch.set_num_threads(max(1, threads))
    try:
        specs = parse_rows(rows, budget) if rows is not None else default_rows(budget)
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            results, meta = report(model_dir, specs, windows, calib, calib_windows,
                                   log=lambda s: click.echo(s, err=True))
        for msg in dict.fromkeys(str(w.message) for w in rec if issubclass(w.category, UserWarning)):
            click.echo(f"warning: {msg}", err=True)
    except (DfxError, F.FormatError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    click.echo(f"# {meta['model']}: {meta['params']:,} parameters; held-out {meta['eval_bytes']:,} bytes; "
               f"calibration {meta['calib_tokens']:,} tokens")
    click.echo(markdown_table(results))
