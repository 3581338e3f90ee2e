"""The quantized float reference (level 2 of the reference ladder): GPT-2 with fake-quant weights.

`fake_quant(model, qweights)` returns a copy of `model` whose quantized Conv1D weights are exactly the binary16
matrices the matrix unit multiplies with (`QuantWeight.dequant()`, held as float32), and whose other parameters
(embeddings and the tied LM head, biases, LayerNorms) are rounded to binary16 as the compiler stores them for
the FP16 ladder (`numerics.to_fp16`: RNE, subnormals flushed). The math stays float32 PyTorch: this is the
golden the functional simulator is checked against for each weight format.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from dfx import numerics as nx
from dfx.errors import UsageError
from dfx.formats import QuantWeight

from .gpt2 import GPT2, Conv1D


def quantizable_names(model: GPT2) -> list[str]:
    """The parameters a weight format applies to: every Conv1D weight (`h.{i}.attn.c_attn.weight`, ...)."""
    return [f"{name}.weight" for name, m in model.named_modules() if isinstance(m, Conv1D)]


@torch.no_grad()
def fake_quant(model: GPT2, qweights: dict[str, QuantWeight]) -> GPT2:
    """A copy of `model` with every weight in `qweights` replaced by its exact dequantisation and every other
    parameter rounded to binary16. Names not among the model's Conv1D weights, or shapes that differ, are a
    `UsageError`; Conv1D weights missing from `qweights` stay FP16."""
    allowed = set(quantizable_names(model))
    params = dict(model.named_parameters())
    for name, qw in qweights.items():
        if name not in allowed:
            raise UsageError(f"fake_quant: {name!r} is not a quantizable weight of this model; accepted: "
                             f"Conv1D weights such as {next(iter(sorted(allowed)), '-')}")
        if tuple(qw.shape) != tuple(params[name].shape):
            raise UsageError(f"fake_quant: {name} is {tuple(params[name].shape)} in the model but the quantized "
                             f"weight is {tuple(qw.shape)}")
    out = copy.deepcopy(model)
    for name, p in out.named_parameters():
        if name in qweights:
            w = qweights[name].dequant()                                     # binary16 (K, N)
        else:
            w = nx.to_fp16(p.detach().cpu().float().numpy())
        p.copy_(torch.from_numpy(np.asarray(w, np.float32)).to(p.device))
    return out.eval()
