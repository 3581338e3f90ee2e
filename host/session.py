"""Generation on any backend: prompt in, tokens streamed out (the host side of DFX's token loop)."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from dfx.errors import UsageError
from dfx.program import Program

from .backends import open_backend
from .sampling import Sampler, Sampling


class Session:
    def __init__(self, program: Program, backend: str = "sim", devices: int | None = None):
        self.program = program
        self.backend = open_backend(program, backend, devices)
        self.max_seq = program.manifest["max_seq"]
        self.vocab = program.symbols["vocab_size"]
        self.pos = 0

    def feed(self, tokens: list[int], logits: bool = True) -> np.ndarray | None:
        """Append tokens to the KV cache; return the logits after the last one (decode stream) if asked."""
        for i, t in enumerate(tokens):
            if not 0 <= t < self.vocab:
                raise UsageError(f"token id {t} is outside the vocabulary (0..{self.vocab - 1})")
            if self.pos >= self.max_seq:
                raise UsageError(f"the context is full: {self.max_seq} positions")
            last = i == len(tokens) - 1
            self.backend.run("decode" if (last and logits) else "prefill", t, self.pos)
            self.pos += 1
        return self.backend.read_logits() if logits else None

    def generate(self, prompt: list[int], max_new_tokens: int, sampling: Sampling = Sampling()) -> Iterator[int]:
        """Yield generated token ids one at a time."""
        if not prompt:
            raise UsageError("the prompt is empty; give at least one token")
        if max_new_tokens < 0:
            raise UsageError(f"max-new-tokens must be >= 0, not {max_new_tokens}")
        if len(prompt) + max_new_tokens > self.max_seq:
            raise UsageError(f"prompt ({len(prompt)} tokens) + max-new-tokens ({max_new_tokens}) exceeds the "
                             f"context of {self.max_seq} positions")
        self.pos = 0
        sample = Sampler(sampling)
        logits = self.feed(prompt)
        for i in range(max_new_tokens):
            tok = sample(logits)
            yield tok
            if i + 1 < max_new_tokens:
                logits = self.feed([tok])
