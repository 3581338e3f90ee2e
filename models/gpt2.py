"""The golden GPT-2: a plain PyTorch model written for clarity (nanoGPT style), with a KV cache.

Parameter names and layouts follow Hugging Face's GPT-2 (Conv1D weights stored (in, out)), so checkpoints map
one to one. This is the top of the reference ladder: everything else is checked against it, and it is checked
against `transformers.GPT2LMHeadModel`.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from dfx.errors import CheckpointError, ConfigError, UsageError


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    layer_norm_epsilon: float = 1e-5

    def __post_init__(self):
        for f in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"GPTConfig.{f} must be a positive integer, not {v!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not self.layer_norm_epsilon > 0:
            raise ConfigError(f"GPTConfig.layer_norm_epsilon must be > 0, not {self.layer_norm_epsilon!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def n_params(self) -> int:
        E, L = self.n_embd, self.n_layer
        return self.vocab_size * E + self.n_positions * E + L * (12 * E * E + 13 * E) + 2 * E


# The four published GPT-2 sizes, usable shapes-only (performance model, compiler) without weights.
GPT2_SIZES = {
    "124M": GPTConfig(n_embd=768, n_layer=12, n_head=12),
    "355M": GPTConfig(n_embd=1024, n_layer=24, n_head=16),
    "774M": GPTConfig(n_embd=1280, n_layer=36, n_head=20),
    "1.5B": GPTConfig(n_embd=1600, n_layer=48, n_head=25),
}
ALIASES = {"gpt2": "124M", "gpt2-medium": "355M", "345M": "355M", "gpt2-large": "774M", "gpt2-xl": "1.5B",
           "117M": "124M", "1558M": "1.5B"}


def named_config(name: str) -> GPTConfig:
    key = ALIASES.get(str(name).lower(), str(name))
    if key not in GPT2_SIZES:
        raise CheckpointError(f"unknown GPT-2 size {name!r}; accepted: {', '.join(GPT2_SIZES)} "
                              f"(or {', '.join(ALIASES)})")
    return GPT2_SIZES[key]


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU ("gelu_new"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Conv1D(nn.Module):
    """A linear layer with the weight stored (in, out), as GPT-2 does: y = x @ W + b."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out).normal_(0, 0.02))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).reshape(*x.shape[:-1], -1)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim
        self.c_attn = Conv1D(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = Conv1D(cfg.n_embd, cfg.n_embd)

    def forward(self, x, past=None):
        B, T, C = x.shape                                                   # (B, T, C)
        q, k, v = self.c_attn(x).split(C, dim=2)                             # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hd)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)                               # (B, nh, T_past + T, hd)
            v = torch.cat([past[1], v], dim=2)
        S = k.shape[2]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)           # (B, nh, T, S)
        # causal: query i (absolute position S - T + i) sees keys 0..S - T + i
        mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=S - T)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)                       # (B, T, C)
        return self.c_proj(y), (k, v)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = Conv1D(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = Conv1D(4 * cfg.n_embd, cfg.n_embd)

    def forward(self, x):
        return self.c_proj(gelu_tanh(self.c_fc(x)))                          # (B, T, C)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.mlp = MLP(cfg)

    def forward(self, x, past=None):
        a, present = self.attn(self.ln_1(x), past)
        x = x + a
        return x + self.mlp(self.ln_2(x)), present


class GPT2(nn.Module):
    """GPT-2 with a tied LM head. `forward(idx, past)` returns (logits, present KV cache)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        nn.init.normal_(self.wte.weight, 0, 0.02)
        nn.init.normal_(self.wpe.weight, 0, 0.01)

    def forward(self, idx: torch.Tensor, past: list | None = None):
        B, T = idx.shape                                                     # (B, T) token ids
        start = past[0][0].shape[2] if past else 0
        if start + T > self.config.n_positions:
            raise UsageError(f"sequence of {start + T} tokens exceeds the context of {self.config.n_positions}")
        pos = torch.arange(start, start + T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)                                    # (B, T, C)
        present = []
        for i, block in enumerate(self.h):
            x, kv = block(x, past[i] if past else None)
            present.append(kv)
        x = self.ln_f(x)
        return x @ self.wte.weight.T, present                                # (B, T, vocab)

    @torch.no_grad()
    def generate(self, prompt: list[int], max_new_tokens: int, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int = 0, use_cache: bool = True) -> Iterator[int]:
        """Yield new token ids one at a time. Greedy unless temperature > 0 (or top_k / top_p are set)."""
        if not prompt:
            raise UsageError("the prompt is empty; give at least one token")
        if max_new_tokens < 0:
            raise UsageError(f"max_new_tokens must be >= 0, not {max_new_tokens}")
        if len(prompt) + max_new_tokens > self.config.n_positions:
            raise UsageError(f"prompt ({len(prompt)} tokens) + max_new_tokens ({max_new_tokens}) exceeds the "
                             f"context of {self.config.n_positions} positions")
        from dfx.host.sampling import Sampler, Sampling
        sample = Sampler(Sampling(temperature if (temperature or top_k or top_p < 1) else 0.0, top_k, top_p, seed))
        if (top_k or top_p < 1) and temperature == 0:
            sample = Sampler(Sampling(1.0, top_k, top_p, seed))
        ids = list(prompt)
        past = None
        x = torch.tensor([ids])
        for i in range(max_new_tokens):
            if use_cache:
                logits, past = self(x, past)
            else:
                logits, _ = self(torch.tensor([ids]))
            tok = sample(logits[0, -1].float().numpy())
            ids.append(tok)
            yield tok
            x = torch.tensor([[tok]])
