"""Accuracy of tile-scaled weights (`AccelConfig.tile_scale`, docs/numerics.md "Tile-scaled weights") against the
dequantising core, on the embedded default model in the functional simulator.

    python benchmarks/tile_scale_accuracy.py [--tokens 16] [--formats int4-oc-g128,int3-oc-g128,int4-oc-g64]

For each format the model is quantized once (model-level RTN, `compiler.quant.model.quantize_model`) and compiled
at the tiny preset twice, tile_scale False and True. Each prompt is run teacher-forced on the fake-quant golden's
greedy continuation (both cores see the same tokens), and each step's logits are compared with two float32
goldens:
- the fake-quant golden (`dfx.models.quantized.fake_quant`: the dequantised binary16 weights, what the quantized
  ladder tests use): max |diff| / logit range (the ladder's metric, worst and mean over the steps), cosine, and
  top-1 agreement;
- the exact-scale golden: the same model with every quantized weight q * s unrounded (exact in float32), the
  arithmetic a tile-scaled core approximates.
"Greedy equal" counts free-running greedy tokens equal to the fake-quant golden's. The last table gives the
ratio tile_scale True / False of the error figures (below 1: tile-scaled is closer).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

PROMPTS = (b"def main(self):", b"import os\nimport sys\n", b"class Foo(object):\n    def ")


def exact_scale_golden(model, q):
    """`fake_quant(model, q)` with every quantized weight replaced by f32(q) * f32(s), unrounded (exact)."""
    from dfx import formats as F
    from dfx.models.quantized import fake_quant
    out = fake_quant(model, q)
    params = dict(out.named_parameters())
    with torch.no_grad():
        for name, qw in q.items():
            k, n = qw.shape
            s = F.expand_groups(qw.scales.astype(np.float32), qw.fmt, k, n, qw.phase)
            params[name].copy_(torch.from_numpy(qw.codes.astype(np.float32) * s))
    return out


def measure(prog, goldens, prompt, continuation, new):
    """Teacher-forced logits of `prog` on prompt + continuation, against each golden's logits at the same steps;
    and the free-running greedy tokens."""
    from dfx.host.session import Session
    s = Session(prog, "sim")
    seq = list(prompt) + list(continuation)
    got = [s.feed(list(prompt))] + [s.feed([t]) for t in continuation[:new - 1]]
    got = np.stack(got).astype(np.float64)                                      # (steps, vocab)
    out = []
    for g in goldens:
        with torch.no_grad():
            ref = g(torch.tensor([seq]))[0][0].double().numpy()[len(prompt) - 1:len(prompt) - 1 + new]
        rel = np.abs(got - ref).max(1) / (ref.max(1) - ref.min(1))
        cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
        top1 = (got.argmax(1) == ref.argmax(1))
        out.append((rel, cos, top1))
    greedy = list(Session(prog, "sim").generate(list(prompt), new))
    return out, sum(a == b for a, b in zip(greedy, continuation))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=16, help="steps per prompt (default 16)")
    ap.add_argument("--formats", default="int4-oc-g128,int3-oc-g128,int4-oc-g64")
    args = ap.parse_args()
    from dfx.compiler import compile_model
    from dfx.compiler.quant.model import quantize_model
    from dfx.config import PRESETS
    from dfx.models.checkpoint import load_default
    from dfx.models.quantized import fake_quant

    model = load_default()
    new = args.tokens
    rows, ratios = [], []
    for fmt in args.formats.split(","):
        q = quantize_model(model, fmt, "rtn")
        goldens = (fake_quant(model, q), exact_scale_golden(model, q))
        conts = [list(goldens[0].generate(list(p), new)) for p in PROMPTS]
        per_mode = {}
        for ts in (False, True):
            cfg = PRESETS["tiny"].replace(name="tiny_ts" if ts else "tiny", tile_scale=ts)
            prog = compile_model(model, cfg, weights=q, max_seq=max(map(len, PROMPTS)) + new)
            acc = [[np.empty(0), np.empty(0), np.empty(0, bool)] for _ in goldens]
            greedy = 0
            for p, c in zip(PROMPTS, conts):
                res, eq = measure(prog, goldens, p, c, new)
                greedy += eq
                for a, r in zip(acc, res):
                    for i in range(3):
                        a[i] = np.concatenate([a[i], r[i]])
            per_mode[ts] = acc
            (rel, cos, top1), (rel_x, _, _) = acc
            rows.append(f"| {fmt} | {ts} | {rel.max():.4%} | {rel.mean():.4%} | {cos.min():.7f} | "
                        f"{int(top1.sum())}/{top1.size} | {greedy}/{new * len(PROMPTS)} | {rel_x.max():.4%} | "
                        f"{rel_x.mean():.4%} |")
        (f_rel, _, _), (f_relx, _, _) = per_mode[False]
        (t_rel, _, _), (t_relx, _, _) = per_mode[True]
        ratios.append(f"| {fmt} | {t_rel.max() / f_rel.max():.3f} | {t_rel.mean() / f_rel.mean():.3f} | "
                      f"{t_relx.max() / f_relx.max():.3f} | {t_relx.mean() / f_relx.mean():.3f} |")
    steps = new * len(PROMPTS)
    print(f"Embedded default model, tiny preset (d=8), model-level RTN; {len(PROMPTS)} prompts x {new} teacher-forced "
          f"steps = {steps} logit vectors per row.\n")
    print("| format | tile_scale | max abs diff / range, worst step (fake-quant golden) | mean over steps | min cosine "
          "| top-1 agree | greedy tokens equal | worst, exact-scale golden | mean, exact-scale golden |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\nRatio tile_scale True / False (below 1: tile-scaled is closer):\n")
    print("| format | worst (fake-quant) | mean (fake-quant) | worst (exact-scale) | mean (exact-scale) |")
    print("|---|---|---|---|---|")
    print("\n".join(ratios))


if __name__ == "__main__":
    main()
