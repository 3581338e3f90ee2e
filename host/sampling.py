"""Token selection from logits: greedy, or temperature / top-k / top-p sampling with a seeded generator."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dfx.errors import UsageError


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0      # 0: greedy (argmax, first index on ties)
    top_k: int = 0                # 0: no top-k cut
    top_p: float = 1.0            # 1: no nucleus cut
    seed: int = 0

    def __post_init__(self):
        if self.temperature < 0:
            raise UsageError(f"temperature must be >= 0, not {self.temperature}")
        if self.top_k < 0:
            raise UsageError(f"top-k must be >= 0, not {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise UsageError(f"top-p must be in (0, 1], not {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 and self.top_k == 0 and self.top_p == 1.0


class Sampler:
    def __init__(self, s: Sampling):
        self.s = s
        self.rng = np.random.default_rng(s.seed)

    def __call__(self, logits: np.ndarray) -> int:
        x = np.asarray(logits, np.float64)
        if self.s.greedy:
            return int(np.argmax(x))
        x = x / (self.s.temperature or 1.0)
        if self.s.top_k:
            kth = np.sort(x)[-min(self.s.top_k, x.size)]
            x = np.where(x < kth, -np.inf, x)
        p = np.exp(x - x.max())
        p /= p.sum()
        if self.s.top_p < 1.0:
            order = np.argsort(-p, kind="stable")
            cum = np.cumsum(p[order])
            keep = order[: int(np.searchsorted(cum, self.s.top_p)) + 1]
            q = np.zeros_like(p)
            q[keep] = p[keep]
            p = q / q.sum()
        return int(self.rng.choice(p.size, p=p))
