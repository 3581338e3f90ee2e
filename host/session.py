"""Generation on any backend: prompt in, tokens streamed out (the host side of DFX's token loop).

Every token step is one run of a stream on every device (`prefill` for prompt tokens but the last, `decode`
for the last prompt token and each generated token). A program compiled with `--prefill-batch M` has a
`prefill_batch` stream: the prompt tokens but the last then go through it in chunks of up to M tokens, one run
per chunk (docs/isa.md, "Batched prefill"), with bit-identical results. `Session.steps` keeps, per run, the
host wall time, the
kernel's cycle counters (CYCLES and BUSY_* per device) and, per generated token, the latency from the step's
start to the sampled token (`Session.summary()`).
"""
from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from dfx import regmap
from dfx.errors import UsageError
from dfx.program import Program

from .backends import open_backend
from .device import RunRecord
from .sampling import Sampler, Sampling


class Session:
    def __init__(self, program: Program, backend: str | None = None, devices: int | None = None, **opts):
        """Open and load `program` on `backend` (None: $DFX_BACKEND, else sim; `dfx.host.resolve_backend`)."""
        self.program = program
        self.backend = open_backend(program, backend, devices, **opts)
        self.max_seq = program.manifest.max_seq
        self.vocab = program.symbols.vocab_size
        self.pos = 0
        self.batch = program.symbols.prefill_batch          # None: token-serial prefill
        self.steps: list[RunRecord] = []
        self.token_latency_s: list[float] = []
        self.on_step = None            # called with each RunRecord as it completes (progress bars)

    def _record(self, rec: RunRecord) -> None:
        self.steps.append(rec)
        if self.on_step is not None:
            self.on_step(rec)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def feed(self, tokens: list[int], logits: bool = True) -> np.ndarray | None:
        """Append tokens to the KV cache; return the logits after the last one (decode stream) if asked."""
        tokens = list(tokens)
        for t in tokens:
            if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < self.vocab:
                raise UsageError(f"token id {t!r} is outside the vocabulary (0..{self.vocab - 1})")
        if self.pos + len(tokens) > self.max_seq:
            raise UsageError(f"the context is full: {self.max_seq} positions")
        prefix = tokens[:-1] if logits else tokens
        if self.batch is not None:                 # matrix-matrix prefill: chunks of up to M tokens per run
            m = self.batch.max_tokens
            for c in range(0, len(prefix), m):
                chunk = [int(t) for t in prefix[c:c + m]]
                self._record(self.backend.run_batch(chunk, self.pos))
                self.pos += len(chunk)
        else:
            for t in prefix:
                self._record(self.backend.run("prefill", int(t), self.pos))
                self.pos += 1
        if not logits:
            return None
        if tokens:
            self._record(self.backend.run("decode", int(tokens[-1]), self.pos))
            self.pos += 1
        return self.backend.read_logits()

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
        self.steps, self.token_latency_s = [], []
        sample = Sampler(sampling)
        t0 = time.perf_counter()
        logits = self.feed(prompt)
        for i in range(max_new_tokens):
            tok = sample(logits)
            self.token_latency_s.append(time.perf_counter() - t0)
            yield tok
            if i + 1 < max_new_tokens:
                t0 = time.perf_counter()
                logits = self.feed([tok])

    def summary(self) -> dict:
        """Per-token latency and counter statistics of the last `generate`."""
        lat = np.asarray(self.token_latency_s or [0.0])
        dec = [s for s in self.steps if s.stream == "decode"]
        pre = [s for s in self.steps if s.stream != "decode"]
        clock = self.program.config.clock_mhz * 1e6

        def cyc(steps):
            return int(sum(s.max_cycles for s in steps))

        busy = {u.lower(): sum(b.get(u.lower(), 0) for s in self.steps for b in s.busy) for u in regmap.COUNTER_UNITS}
        total = sum(sum(s.cycles) for s in self.steps)
        return {
            "backend": self.backend.name, "devices": self.program.n_devices,
            "tokens": len(self.token_latency_s), "steps": len(self.steps),
            "first_token_s": float(lat[0]), "token_s_mean": float(lat[1:].mean()) if lat.size > 1 else float(lat[0]),
            "token_s_max": float(lat.max()),
            "prefill_cycles": cyc(pre), "decode_cycles": cyc(dec),
            "decode_ms_per_token_modelled": cyc(dec) / len(dec) / clock * 1e3 if dec else 0.0,
            "busy_fraction": {u: (v / total if total else 0.0) for u, v in busy.items()},
        }
