"""The golden GPT-2: a plain PyTorch model written for clarity (nanoGPT style), with a KV cache.

Parameter names and layouts follow Hugging Face's GPT-2 (`h.0.attn.c_attn.weight`, Conv1D weights stored
(in, out)), so checkpoints map one to one. This is the top of the reference ladder: everything below it is
checked against this model, and this model is checked against `transformers.GPT2LMHeadModel`.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from dfx.errors import CheckpointError, ConfigError, UsageError
from dfx.sampling import TokenSampler  # noqa: F401  (re-exported: the one sampler for every backend)

# One (k, v) pair per layer, each (B, n_head, T_past, head_dim).
KVCache = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50257
    n_positions: int = 1024          # the context: the most tokens one sequence can hold
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    layer_norm_epsilon: float = 1e-5
    tie_word_embeddings: bool = True    # False: a separate lm_head.weight (vocab, n_embd), as some fine-tunes have

    def __post_init__(self):
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"GPTConfig.{name} must be a positive integer, not {v!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"GPTConfig.n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if isinstance(self.layer_norm_epsilon, bool) or not isinstance(self.layer_norm_epsilon, (int, float)) \
                or not self.layer_norm_epsilon > 0:
            raise ConfigError(f"GPTConfig.layer_norm_epsilon must be a positive number, "
                              f"not {self.layer_norm_epsilon!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_inner(self) -> int:
        """Width of the MLP's hidden layer (GPT-2 always uses 4 x n_embd)."""
        return 4 * self.n_embd

    @property
    def n_params(self) -> int:
        """Parameter count with the LM head tied to wte (as GPT-2 publishes it)."""
        E, L = self.n_embd, self.n_layer
        per_block = 4 * E + (E * 3 * E + 3 * E) + (E * E + E) + (E * 4 * E + 4 * E) + (4 * E * E + E)
        return self.vocab_size * E + self.n_positions * E + L * per_block + 2 * E

    def to_dict(self) -> dict:
        return asdict(self)


# The four published GPT-2 sizes, shapes only (for the performance model and the compiler, no weights needed).
GPT2_SIZES = {
    "124M": GPTConfig(n_embd=768, n_layer=12, n_head=12),
    "355M": GPTConfig(n_embd=1024, n_layer=24, n_head=16),
    "774M": GPTConfig(n_embd=1280, n_layer=36, n_head=20),
    "1.5B": GPTConfig(n_embd=1600, n_layer=48, n_head=25),
}
# Hugging Face hub names, and the sizes as OpenAI first published them.
ALIASES = {"gpt2": "124M", "gpt2-medium": "355M", "gpt2-large": "774M", "gpt2-xl": "1.5B",
           "117M": "124M", "345M": "355M", "762M": "774M", "1558M": "1.5B"}


def named_config(name: str) -> GPTConfig:
    """The shapes of a published GPT-2 size, by size ("355M") or hub name ("gpt2-medium"); case-insensitive."""
    key = str(name).strip().lower()
    for size in GPT2_SIZES:
        if key == size.lower():
            return GPT2_SIZES[size]
    if key in ALIASES:
        return GPT2_SIZES[ALIASES[key]]
    raise CheckpointError(f"unknown GPT-2 size {name!r}; accepted: {', '.join(GPT2_SIZES)} "
                          f"or {', '.join(ALIASES)}")


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU, the tanh approximation (HF "gelu_new"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

    PyTorch's fused kernel computes exactly this formula (HF calls it "gelu_pytorch_tanh"), several times faster
    than writing it out, which matters for training on a CPU.
    """
    return F.gelu(x, approximate="tanh")


class Conv1D(nn.Module):
    """GPT-2's linear layer: y = x @ W + b with W stored (in, out), the transpose of `nn.Linear`."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x @ W + b, with the bias add fused into the matmul (addmm): (..., n_in) -> (..., n_out)
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim
        self.c_attn = Conv1D(cfg.n_embd, 3 * cfg.n_embd)                    # q, k, v side by side
        self.c_proj = Conv1D(cfg.n_embd, cfg.n_embd)

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None):
        B, T, C = x.shape                                                    # (B, T, C)
        q, k, v = self.c_attn(x).split(C, dim=2)                             # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hd)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)                               # (B, nh, S, hd), S = T_past + T
            v = torch.cat([past[1], v], dim=2)
        S = k.shape[2]
        # Causal mask: query i sits at absolute position S - T + i and sees keys 0 .. S - T + i.
        mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=S - T)   # (T, S)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)          # softmax(q k^T / sqrt(hd)) v
        # y: (B, nh, T, hd)
        y = y.transpose(1, 2).reshape(B, T, C)                               # (B, T, C)
        return self.c_proj(y), (k, v)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = Conv1D(cfg.n_embd, cfg.n_inner)
        self.c_proj = Conv1D(cfg.n_inner, cfg.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(gelu_tanh(self.c_fc(x)))                          # (B, T, C) -> (B, T, 4C) -> (B, T, C)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, past=None):
        a, present = self.attn(self.ln_1(x), past)
        x = x + a                                                            # (B, T, C)
        x = x + self.mlp(self.ln_2(x))
        return x, present


class GPT2(nn.Module):
    """GPT-2 with the LM head tied to the token embedding (or, with `tie_word_embeddings=False`, its own
    `lm_head` weight).

    `forward(idx, past)` returns (logits, present): `past` is the KV cache from the previous call (None at the
    start); the position of the first new token is the cache length.
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.lm_head = None if cfg.tie_word_embeddings else nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, seed: int | None = None):
        """GPT-2's initialisation: weights N(0, 0.02) with the residual projections (c_proj) scaled by
        1/sqrt(2 n_layer), biases 0, LayerNorm gains 1. A seed makes it independent of the global RNG."""
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        for name, m in self.named_modules():
            if isinstance(m, (Conv1D, nn.Embedding, nn.Linear)):
                std = 0.02 / math.sqrt(2 * self.config.n_layer) if name.endswith("c_proj") else 0.02
                m.weight.normal_(0.0, std, generator=g)
            if isinstance(m, Conv1D):
                m.bias.zero_()
            if isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()

    def forward(self, idx: torch.Tensor, past: KVCache | None = None) -> tuple[torch.Tensor, KVCache]:
        B, T = idx.shape                                                     # (B, T) token ids
        start = past[0][0].shape[2] if past else 0
        if start + T > self.config.n_positions:
            raise UsageError(f"{start + T} tokens exceed the model's context of {self.config.n_positions} positions")
        pos = torch.arange(start, start + T, device=idx.device)              # (T,)
        x = self.wte(idx) + self.wpe(pos)                                    # (B, T, C)
        present = []
        for i, block in enumerate(self.h):
            x, kv = block(x, past[i] if past else None)
            present.append(kv)
        x = self.ln_f(x)                                                     # (B, T, C)
        head = self.wte.weight if self.lm_head is None else self.lm_head.weight  # tied or own LM head
        logits = F.linear(x, head)                                           # (B, T, vocab)
        return logits, present

    def generate(self, prompt: list[int], max_new_tokens: int, *, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int = 0, max_repeat: int = 0, use_cache: bool = True) -> Iterator[int]:
        """Continue `prompt`, yielding new token ids one at a time (a stream).

        Greedy (argmax) by default. Setting temperature > 0, top_k > 0 or top_p < 1 samples instead, from a
        `torch.Generator` seeded with `seed`, so the same arguments give the same tokens. max_repeat > 0 never
        picks one token more than that many times in a row (`dfx.sampling.TokenSampler`). With use_cache=False
        every step recomputes the whole sequence (the slow reference the KV cache is checked against).
        Arguments are checked here, before the first token, not when the stream is first read.
        """
        prompt = [int(t) for t in prompt]
        if not prompt:
            raise UsageError("the prompt is empty; give at least one token")
        if any(not 0 <= t < self.config.vocab_size for t in prompt):
            bad = next(t for t in prompt if not 0 <= t < self.config.vocab_size)
            raise UsageError(f"prompt token {bad} is out of range; accepted: 0 .. {self.config.vocab_size - 1}")
        if max_new_tokens < 0:
            raise UsageError(f"max_new_tokens must be >= 0, not {max_new_tokens}")
        if len(prompt) + max_new_tokens > self.config.n_positions:
            raise UsageError(f"prompt ({len(prompt)} tokens) + max_new_tokens ({max_new_tokens}) exceeds the "
                             f"model's context of {self.config.n_positions} positions")
        pick = TokenSampler(temperature, top_k, top_p, seed, max_repeat)
        return self._generate(prompt, max_new_tokens, pick, use_cache)

    @torch.no_grad()
    def _generate(self, prompt: list[int], max_new_tokens: int, pick: TokenSampler, use_cache: bool):
        device = self.wte.weight.device
        ids = list(prompt)
        past = None
        step_input = torch.tensor([ids], device=device)                      # (1, T_prompt): prefill first
        for _ in range(max_new_tokens):
            if use_cache:
                logits, past = self(step_input, past)
            else:
                logits, _ = self(torch.tensor([ids], device=device))
            token = pick(logits[0, -1])                                      # logits of the last position: (vocab,)
            ids.append(token)
            yield token
            step_input = torch.tensor([[token]], device=device)             # (1, 1): one token per decode step
