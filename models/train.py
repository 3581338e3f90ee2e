"""Train the embedded default model: a small byte-level GPT-2 on the Python standard library's source code.

Every machine with Python has that text offline. The corpus is the stdlib's .py files (site-packages and test
suites left out) in sorted order; a stable hash of each file's path puts 5% of the files in a held-out split.
At the end the model is saved with fp16 weights, loaded back, and scored on a fixed held-out subset; the
figures go to metrics.json next to the weights. `python -m dfx.models.evaluate` recomputes them.

    python -m dfx.models.train --out models/default --minutes 25

With a time budget the learning rate follows a cosine over the budget, so the step count depends on the
machine; `--steps N` instead runs exactly N steps (schedule over steps), which is bit-reproducible.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dfx import progress

from .checkpoint import DEFAULT_MODEL_DIR, load_checkpoint, save_checkpoint
from .gpt2 import GPT2, GPTConfig

DEFAULT_CONFIG = GPTConfig(vocab_size=256, n_positions=256, n_embd=256, n_layer=4, n_head=4)
HELD_OUT_PERCENT = 5
EVAL_WINDOWS = 256                     # held-out windows of n_positions bytes: 65,536 bytes scored
SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}


# ------------------------------------------------------------------------------------------------ corpus
def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def corpus_files(root: Path | None = None) -> list[Path]:
    """The stdlib's .py files, sorted by relative path, without site-packages or test suites."""
    root = root or stdlib_root()
    files = [p for p in root.rglob("*.py") if p.is_file() and not SKIP_DIRS & set(p.relative_to(root).parts)]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def is_held_out(relative_path: str) -> bool:
    """A stable split by file: the same path is held out on every machine and Python build."""
    h = int.from_bytes(hashlib.sha256(relative_path.encode()).digest()[:4], "big")
    return h % 100 < HELD_OUT_PERCENT


def load_corpus(root: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train bytes, held-out bytes) as uint8 arrays; files joined with a blank line between them."""
    root = root or stdlib_root()
    train, held = [], []
    for p in corpus_files(root):
        (held if is_held_out(p.relative_to(root).as_posix()) else train).append(p.read_bytes() + b"\n\n")
    return np.frombuffer(b"".join(train), np.uint8), np.frombuffer(b"".join(held), np.uint8)


def windows(data: np.ndarray, starts, ctx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-byte targets for windows of `ctx` bytes at `starts`: two (B, ctx) int64 tensors."""
    chunk = np.stack([data[s:s + ctx + 1] for s in starts]).astype(np.int64)     # (B, ctx + 1)
    return torch.from_numpy(chunk[:, :-1]), torch.from_numpy(chunk[:, 1:])


# ------------------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def heldout_nll(model: GPT2, data: np.ndarray, n_windows: int = EVAL_WINDOWS, batch: int = 16) -> float:
    """Mean cross-entropy in nats per byte over `n_windows` evenly spaced, non-overlapping windows of the
    model's context (deterministic: the same bytes every time)."""
    model.eval()
    ctx = model.config.n_positions
    n = min(n_windows, (len(data) - 1) // ctx)
    starts = np.linspace(0, (len(data) - 1) // ctx - 1, n).astype(np.int64) * ctx
    total = 0.0
    for i in progress.track(range(0, n, batch), "held-out windows", unit="batch", leave=False):
        x, y = windows(data, starts[i:i + batch], ctx)
        logits, _ = model(x)                                                     # (B, ctx, vocab)
        total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
    return total / (n * ctx)


def nll_metrics(nll: float) -> dict:
    return {"heldout_nats_per_byte": round(nll, 4), "heldout_bits_per_byte": round(nll / math.log(2), 4),
            "heldout_ppl": round(math.exp(nll), 4)}


# ------------------------------------------------------------------------------------------------ training
@dataclass(frozen=True)
class TrainArgs:
    minutes: float = 25.0              # wall-clock training budget (ignored when steps is set)
    steps: int = 0                     # > 0: run exactly this many steps instead
    batch: int = 16
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    seed: int = 0


def learning_rate(a: TrainArgs, step: int, progress: float) -> float:
    """Linear warm-up, then a cosine from lr down to min_lr_ratio * lr as progress goes 0 -> 1."""
    warm = min(1.0, (step + 1) / a.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return a.lr * warm * (a.min_lr_ratio + (1.0 - a.min_lr_ratio) * cosine)


def train(model: GPT2, data: np.ndarray, a: TrainArgs, progress_bar: bool = True) -> dict:
    """Train `model` in place on random windows of `data`; returns step and token counts."""
    torch.manual_seed(a.seed)
    model.reset_parameters(seed=a.seed)
    rng = np.random.default_rng(a.seed)
    ctx = model.config.n_positions
    decay = [p for p in model.parameters() if p.dim() >= 2]         # matrices and embeddings
    no_decay = [p for p in model.parameters() if p.dim() < 2]       # biases and LayerNorm gains
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.95), fused=True)
    budget = a.minutes * 60.0
    total = a.steps if a.steps else int(budget)
    bar = tqdm(total=total, unit="step" if a.steps else "s", desc="train", file=sys.stderr, disable=not progress_bar,
               mininterval=5.0)
    t0, step, ema = time.perf_counter(), 0, None
    model.train()
    while True:
        elapsed = time.perf_counter() - t0
        progress = step / a.steps if a.steps else elapsed / budget
        if progress >= 1.0:
            break
        lr = learning_rate(a, step, progress)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = windows(data, rng.integers(0, len(data) - ctx - 1, a.batch), ctx)   # (B, ctx) each
        logits, _ = model(x)                                                         # (B, ctx, vocab)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        bar.n = step if a.steps else min(int(time.perf_counter() - t0), total)
        bar.set_postfix(step=step, loss=f"{ema:.3f}", bpb=f"{ema / math.log(2):.2f}", lr=f"{lr:.1e}", refresh=False)
        bar.update(0)
    bar.close()
    model.eval()
    return {"train_steps": step, "tokens_seen": step * a.batch * ctx,
            "train_minutes": round((time.perf_counter() - t0) / 60, 2)}


def main(argv: list[str] | None = None):
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(prog="python -m dfx.models.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    d = TrainArgs()
    ap.add_argument("--out", default=str(DEFAULT_MODEL_DIR), help="checkpoint directory to write")
    ap.add_argument("--minutes", type=float, default=d.minutes, help="wall-clock training budget")
    ap.add_argument("--steps", type=int, default=d.steps, help="run exactly this many steps (overrides --minutes)")
    ap.add_argument("--batch", type=int, default=d.batch, help="windows of n_positions bytes per step")
    ap.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args(argv)
    if args.minutes <= 0 and args.steps <= 0:
        ap.error("give --minutes > 0 or --steps > 0")

    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    train_data, held_data = load_corpus()
    print(f"corpus: {len(train_data):,} train bytes, {len(held_data):,} held-out bytes "
          f"from {stdlib_root()}", file=sys.stderr)
    model = GPT2(DEFAULT_CONFIG)
    a = TrainArgs(minutes=args.minutes, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed)
    stats = train(model, train_data, a)

    out = save_checkpoint(model, args.out, dtype=torch.float16)
    shipped = load_checkpoint(out)               # score the fp16 weights as shipped, exactly as evaluate does
    metrics = {
        **nll_metrics(heldout_nll(shipped, held_data)),
        "heldout_bytes_scored": EVAL_WINDOWS * DEFAULT_CONFIG.n_positions,
        **stats,
        "batch": a.batch, "context": DEFAULT_CONFIG.n_positions, "peak_lr": a.lr, "seed": a.seed,
        "train_corpus_bytes": int(len(train_data)), "heldout_corpus_bytes": int(len(held_data)),
        "wall_minutes": round((time.perf_counter() - t_start) / 60, 2),
        "python": sys.version.split()[0], "torch": torch.__version__, "torch_threads": args.threads,
        "command": shlex.join(["python", "-m", "dfx.models.train", *argv]),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
