"""Recompute a byte-level model's held-out perplexity on the Python standard library (the README figure).

    python -m dfx.models.evaluate [--model DIR]

The held-out files and windows are the ones `dfx.models.train` scores, so on the same Python version this
prints the figures stored in the model's metrics.json.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from dfx.errors import DfxError, UsageError

from .checkpoint import DEFAULT_MODEL_DIR, load_checkpoint
from .train import EVAL_WINDOWS, heldout_nll, load_corpus, nll_metrics


def evaluate(model_dir) -> dict:
    model = load_checkpoint(model_dir)
    if model.config.vocab_size != 256:
        raise UsageError(f"held-out perplexity is measured per byte: the model needs vocab_size 256, "
                         f"not {model.config.vocab_size}")
    _, held = load_corpus()
    return {**nll_metrics(heldout_nll(model, held)), "heldout_bytes_scored": EVAL_WINDOWS * model.config.n_positions,
            "python": sys.version.split()[0]}


def main(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(prog="python -m dfx.models.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEFAULT_MODEL_DIR),
                    help="checkpoint directory (default: the embedded model)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        print(json.dumps(evaluate(args.model), indent=2))
    except DfxError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
