"""Recompute the embedded model's held-out perplexity (the README figure): python -m dfx.models.evaluate"""
from __future__ import annotations

import argparse
import json
import math

from .checkpoint import DEFAULT_MODEL_DIR, load_checkpoint
from .train import evaluate, load_corpus


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m dfx.models.evaluate", description=__doc__)
    ap.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    args = ap.parse_args(argv)
    model = load_checkpoint(args.model)
    _, held = load_corpus()
    nll = evaluate(model, held, model.config.n_positions)
    print(json.dumps({"heldout_ppl": round(math.exp(nll), 3), "heldout_bits_per_byte": round(nll / math.log(2), 4)}))


if __name__ == "__main__":
    main()
