"""The reference ladder's figures: functional simulator vs the fp32 PyTorch golden, per model.

    python benchmarks/ladder_report.py [--tokens 32]

For the embedded model and the random test configs: max-abs logit difference (and relative to the logit
range), cosine similarity, and how many of N greedy tokens agree.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=32)
    args = ap.parse_args()
    from gpt2_fixtures import RANDOM_CONFIGS, make_hf_gpt2
    from dfx.compiler import compile_model
    from dfx.host.session import Session
    from dfx.models.checkpoint import from_transformers, load_default

    models = [("embedded default", load_default(), list(b"def main("))]
    for i, (name, cfg) in enumerate(sorted(RANDOM_CONFIGS.items())):
        models.append((f"random {name}", from_transformers(make_hf_gpt2(i, **cfg)),
                       list(np.random.default_rng(0).integers(0, cfg["vocab_size"], 8))))
    print("| model | max abs diff | relative to range | cosine | greedy tokens equal |")
    print("|---|---|---|---|---|")
    for name, model, ids in models:
        ids = [int(i) for i in ids]
        prog = compile_model(model, "tiny")
        with torch.no_grad():
            ref = model(torch.tensor([ids]))[0][0, -1].double().numpy()
        sim = Session(prog, "sim").feed(ids).astype(np.float64)
        diff = float(np.abs(sim - ref).max())
        cos = float(sim @ ref / np.linalg.norm(sim) / np.linalg.norm(ref))
        gold = list(model.generate(ids, args.tokens))
        got = list(Session(prog, "sim").generate(ids, args.tokens))
        same = sum(a == b for a, b in zip(gold, got))
        print(f"| {name} | {diff:.4f} | {diff / (ref.max() - ref.min()):.2%} | {cos:.6f} | {same}/{args.tokens} |")


if __name__ == "__main__":
    main()
