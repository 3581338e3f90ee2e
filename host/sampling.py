"""Sampling options as the CLI and `Session.generate` take them; the sampler itself is `dfx.sampling`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dfx.sampling import TokenSampler


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0      # 0 and no top-k/top-p: greedy (argmax, first index on ties)
    top_k: int = 0                # 0: no top-k cut
    top_p: float = 1.0            # 1: no nucleus cut
    seed: int = 0
    max_repeat: int = 0           # > 0: never the same token more than this many times in a row (dfx.sampling)

    def __post_init__(self):
        TokenSampler(self.temperature, self.top_k, self.top_p, self.seed, self.max_repeat)     # validates, one-line errors


class Sampler:
    """Picks tokens from the FP16 logits a backend returns, exactly as the golden model's `generate` does."""

    def __init__(self, s: Sampling):
        self.pick = TokenSampler(s.temperature, s.top_k, s.top_p, s.seed, s.max_repeat)

    def __call__(self, logits: np.ndarray) -> int:
        return self.pick(torch.from_numpy(np.asarray(logits, np.float32)))
