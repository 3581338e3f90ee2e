"""Token selection from logits, shared by the golden model and every host backend, so that the same seed
gives the same sampled tokens on each (given the same logits)."""
from __future__ import annotations

import torch

from .errors import UsageError


class TokenSampler:
    """Choose the next token from one position's logits: greedy, or temperature / top-k / top-p sampling.

    Sampling is on when temperature > 0, top_k > 0 or top_p < 1 (temperature 0 then counts as 1). Greedy takes
    the first index among equal maxima, as `torch.argmax` and Hugging Face's greedy search do.

    max_repeat > 0 is a repetition guard: a token already chosen max_repeat times in a row is not chosen again
    (its logit is masked before greedy or sampled selection), so a small model cannot loop on one token (the
    embedded byte model's runs of spaces). The sampler keeps that run; one sampler serves one generation.
    """

    def __init__(self, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
                 max_repeat: int = 0):
        if not temperature >= 0:
            raise UsageError(f"temperature must be >= 0, not {temperature}")
        if top_k < 0:
            raise UsageError(f"top_k must be >= 0 (0: off), not {top_k}")
        if not 0 < top_p <= 1:
            raise UsageError(f"top_p must be in (0, 1] (1: off), not {top_p}")
        if max_repeat < 0:
            raise UsageError(f"max_repeat must be >= 0 (0: off), not {max_repeat}")
        self.max_repeat, self.last, self.run = max_repeat, -1, 0
        self.greedy = temperature == 0 and top_k == 0 and top_p == 1
        self.temperature = temperature or 1.0
        self.top_k, self.top_p = top_k, top_p
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, logits: torch.Tensor) -> int:
        logits = logits.detach().float().cpu()                               # (vocab,)
        if self.max_repeat and self.run >= self.max_repeat and logits.numel() > 1:
            logits = logits.clone()
            logits[self.last] = float("-inf")
        token = self._select(logits)
        self.run = self.run + 1 if token == self.last else 1
        self.last = token
        return token

    def _select(self, logits: torch.Tensor) -> int:
        if self.greedy:
            return int(torch.argmax(logits))
        logits = logits / self.temperature
        if self.top_k:
            kth = torch.topk(logits, min(self.top_k, logits.numel())).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = logits.softmax(dim=-1)
        if self.top_p < 1:
            # Keep the smallest set of most likely tokens whose mass reaches top_p (always at least one).
            sorted_p, order = probs.sort(descending=True, stable=True)
            before = sorted_p.cumsum(0) - sorted_p                           # mass of the tokens ranked above
            sorted_p = sorted_p.masked_fill(before >= self.top_p, 0.0)
            probs = torch.zeros_like(probs).scatter(0, order, sorted_p)
        return int(torch.multinomial(probs, 1, generator=self.generator))
