"""Train the embedded default model: a small byte-level GPT-2 on the Python standard library's source.

Every machine with Python has that text offline. Files are split into train and held-out by a stable hash of
their path (5% held out). The held-out perplexity this prints is the figure quoted in the README; recompute it
with `python -m dfx.models.evaluate`.

    python -m dfx.models.train --out models/default --minutes 25
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import torch

from .checkpoint import save_checkpoint
from .gpt2 import GPT2, GPTConfig

DEFAULT_CONFIG = GPTConfig(vocab_size=256, n_positions=256, n_embd=256, n_layer=4, n_head=4)
HELD_OUT_PERCENT = 5


def corpus_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py")
                   if "site-packages" not in p.parts and "dist-packages" not in p.parts)
    return [p for p in files if p.is_file()]


def is_held_out(path: Path) -> bool:
    root = Path(sysconfig.get_paths()["stdlib"])
    h = hashlib.sha256(str(path.relative_to(root)).encode()).digest()
    return h[0] * 100 // 256 < HELD_OUT_PERCENT


def load_corpus() -> tuple[np.ndarray, np.ndarray]:
    """(train bytes, held-out bytes), files joined with a blank line between them."""
    train, held = [], []
    for p in corpus_files():
        try:
            b = p.read_bytes()
        except OSError:
            continue
        (held if is_held_out(p) else train).append(b + b"\n\n")
    return (np.frombuffer(b"".join(train), np.uint8), np.frombuffer(b"".join(held), np.uint8))


@torch.no_grad()
def evaluate(model: GPT2, data: np.ndarray, ctx: int, max_windows: int = 200) -> float:
    """Mean cross-entropy (nats per byte) over up to `max_windows` evenly spaced, non-overlapping windows."""
    model.eval()
    n = (len(data) - 1) // ctx
    starts = np.linspace(0, n - 1, min(n, max_windows)).astype(int) * ctx
    losses = []
    for i in range(0, len(starts), 16):
        s = starts[i:i + 16]
        x = torch.from_numpy(np.stack([data[j:j + ctx] for j in s]).astype(np.int64))
        y = torch.from_numpy(np.stack([data[j + 1:j + 1 + ctx] for j in s]).astype(np.int64))
        logits, _ = model(x)
        losses.append(torch.nn.functional.cross_entropy(logits.reshape(-1, 256), y.reshape(-1)).item() * len(s))
    return sum(losses) / len(starts)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m dfx.models.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "default"))
    ap.add_argument("--minutes", type=float, default=25.0, help="wall-clock training budget")
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    from tqdm import tqdm

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    train, held = load_corpus()
    cfg = DEFAULT_CONFIG
    ctx = cfg.n_positions
    model = GPT2(cfg)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    budget = args.minutes * 60
    warmup = 100
    t0 = time.time()
    step, tokens = 0, 0
    bar = tqdm(total=int(budget), unit="s", desc="train", file=sys.stderr)
    last_bar = 0
    ema = None
    while True:
        elapsed = time.time() - t0
        if elapsed >= budget:
            break
        frac = elapsed / budget
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = rng.integers(0, len(train) - ctx - 1, args.batch)
        x = torch.from_numpy(np.stack([train[i:i + ctx] for i in idx]).astype(np.int64))
        y = torch.from_numpy(np.stack([train[i + 1:i + 1 + ctx] for i in idx]).astype(np.int64))
        model.train()
        logits, _ = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += x.numel()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        now = int(time.time() - t0)
        bar.update(now - last_bar)
        last_bar = now
        bar.set_postfix(step=step, loss=f"{ema:.3f}", lr=f"{lr:.1e}")
    bar.close()
    nll = evaluate(model, held, ctx)
    out = save_checkpoint(model, args.out, dtype=torch.float16, dfx_tokenizer="bytes")
    metrics = {
        "heldout_nats_per_byte": round(nll, 4), "heldout_ppl": round(math.exp(nll), 3),
        "heldout_bits_per_byte": round(nll / math.log(2), 4), "train_steps": step, "tokens_seen": tokens,
        "wall_minutes": round((time.time() - t0) / 60, 1), "python": sys.version.split()[0],
        "train_bytes": int(len(train)), "heldout_bytes": int(len(held)),
        "command": "python -m dfx.models.train " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
