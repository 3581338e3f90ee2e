"""Calibration: per-layer input statistics of every quantized Conv1D, gathered by running the float model on text.

For a Conv1D y = x W + b (W: (K, N)), the calibration inputs X (M tokens, K) enter the quantizers only through
the Hessian of the layer's output error, H = X^T X (K, K):

    ||X W - X W_q||_F^2 = tr((W - W_q)^T H (W - W_q))

which is what GPTQ minimises, AdaDim compares between the per-OC and per-IC groupings, and the mixed-precision
search uses as a cheap sensitivity. Activations are taken from the float model (not re-run through already
quantized layers).

Calibration text comes from the training split of the corpus (`calibration_windows`), never the held-out one
the perplexity is measured on.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from dfx import progress
from dfx.errors import UsageError
from dfx.models.gpt2 import Conv1D
from dfx.models.train import load_corpus

MIN_CALIB_TOKENS = 1024        # below this the Hessians of the 4*n_embd-wide layers are far from full rank


@dataclass
class LayerStats:
    """Input statistics of one Conv1D: H = sum over tokens of x^T x (float64, (K, K)), tokens seen, and the
    mean |x| per input channel (K,) (outlier channels show up here)."""
    hessian: np.ndarray
    n_tokens: int
    act_absmean: np.ndarray

    @property
    def k(self) -> int:
        return self.hessian.shape[0]


@dataclass
class Calibration:
    """Per-layer statistics keyed by the weight's parameter name (`h.0.attn.c_attn.weight`), and the
    calibration windows themselves (B, T) for methods that run the network (mixed precision)."""
    layers: dict[str, LayerStats]
    tokens: torch.Tensor
    meta: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> LayerStats:
        return self.layers[name]

    def __contains__(self, name: str) -> bool:
        return name in self.layers

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.numel())


def conv1d_weights(model) -> dict[str, torch.nn.Module]:
    """The quantized layers: every Conv1D, keyed by its weight's parameter name, in network order."""
    return {f"{name}.weight": m for name, m in model.named_modules() if isinstance(m, Conv1D)}


def as_windows(tokens, ctx: int) -> torch.Tensor:
    """Calibration tokens as a (B, T) int64 tensor: a (B, T) array/tensor as it is, or a flat sequence (bytes,
    str, 1-D array) cut into windows of `ctx` tokens (the last, shorter one dropped unless it is the only one)."""
    if tokens is None:
        raise UsageError("calibration text is missing; give token windows or text of at least "
                         f"{MIN_CALIB_TOKENS} tokens (e.g. `calibration_windows(model)`)")
    if isinstance(tokens, str):
        tokens = tokens.encode()
    if isinstance(tokens, (bytes, bytearray)):
        tokens = np.frombuffer(bytes(tokens), np.uint8)
    t = torch.as_tensor(np.asarray(tokens) if not isinstance(tokens, torch.Tensor) else tokens).long()
    if t.dim() == 1:
        n = t.numel()
        if n > ctx:
            t = t[: n // ctx * ctx].view(-1, ctx)
        else:
            t = t.view(1, -1)
    if t.dim() != 2:
        raise UsageError(f"calibration tokens must be a (B, T) batch or a flat sequence, not shape {tuple(t.shape)}")
    if t.shape[1] > ctx:
        raise UsageError(f"calibration windows of {t.shape[1]} tokens exceed the model's context of {ctx}")
    return t


def collect_calibration(model, tokens, min_tokens: int = MIN_CALIB_TOKENS, batch: int = 8) -> Calibration:
    """Run `model` (float) on the calibration tokens and gather every Conv1D's input statistics.

    tokens: (B, T) windows or a flat token sequence (see `as_windows`). Fewer than `min_tokens` tokens is a
    `UsageError` that says how many are needed."""
    cfg = model.config
    t = as_windows(tokens, cfg.n_positions)
    if t.numel() < min_tokens:
        raise UsageError(f"calibration text is too short: {t.numel()} tokens; at least {min_tokens} are needed "
                         f"(e.g. {-(-min_tokens // cfg.n_positions)} windows of {cfg.n_positions} tokens)")
    if t.min() < 0 or t.max() >= cfg.vocab_size:
        raise UsageError(f"calibration tokens must be in 0 .. {cfg.vocab_size - 1}")
    layers = conv1d_weights(model)
    acc = {name: [torch.zeros(m.weight.shape[0], m.weight.shape[0], dtype=torch.float64),
                  torch.zeros(m.weight.shape[0], dtype=torch.float64), 0] for name, m in layers.items()}

    def hook(name):
        def fn(_mod, inp):
            x = inp[0].reshape(-1, inp[0].shape[-1]).float()                     # (M, K)
            a = acc[name]
            a[0] += (x.T @ x).double()                                           # (K, K)
            a[1] += x.abs().sum(0).double()
            a[2] += x.shape[0]
        return fn

    handles = [m.register_forward_pre_hook(hook(name)) for name, m in layers.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in progress.track(range(0, t.shape[0], batch), "calibration", unit="batch"):
                model(t[i:i + batch])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    stats = {name: LayerStats(a[0].numpy(), a[2], (a[1] / max(a[2], 1)).numpy()) for name, a in acc.items()}
    return Calibration(stats, t, {"n_tokens": int(t.numel()), "windows": int(t.shape[0])})


def output_error(w: np.ndarray, wq: np.ndarray, hessian: np.ndarray) -> float:
    """||X W - X W_q||_F^2 = tr(D^T H D), D = W - W_q, from the layer's Hessian (K, K)."""
    d = np.asarray(w, np.float64) - np.asarray(wq, np.float64)                  # (K, N)
    return float(np.einsum("kn,kn->", d, hessian @ d))


def calibration_windows(n_windows: int = 32, ctx: int = 256, seed: int = 0, data: np.ndarray | None = None):
    """`n_windows` random windows of `ctx` bytes from the training split of the stdlib corpus (the embedded
    model's training text; the held-out split is kept for perplexity). (B, ctx) int64."""
    if data is None:
        data, _ = load_corpus()
    if len(data) <= ctx:
        raise UsageError(f"calibration text is too short: {len(data)} bytes; at least {ctx + 1} are needed")
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(data) - ctx - 1, n_windows)
    return torch.from_numpy(np.stack([data[s:s + ctx] for s in starts]).astype(np.int64))
