"""The reference ladder, levels 1 -> 3: the functional simulator against the float PyTorch model.

Tolerances (docs/numerics.md, "Network-level accuracy"): FP16 storage of every activation and weight, FP32
accumulation. Over a few layers this gives logits within 0.5% of the logit range and cosine >= 0.9999 of the
fp32 reference (measured: <= 0.1%, >= 0.999999); greedy tokens must be identical.
"""
import numpy as np
import pytest
import torch

from dfx.compiler import compile_model
from dfx.host.session import Session

PROMPT_LEN, NEW = 8, 32


def hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].float().numpy()


def hf_greedy(model, ids, n):
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, pad_token_id=0,
                             attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    return out[0, len(ids):].tolist()


def compare(sim, ref):
    sim = sim.astype(np.float64)
    ref = ref.astype(np.float64)
    cos = float(sim @ ref / np.linalg.norm(sim) / np.linalg.norm(ref))
    rel = float(np.abs(sim - ref).max() / (ref.max() - ref.min()))
    return cos, rel


def test_simulator_matches_golden(hf_model):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, hf_model.config.vocab_size, PROMPT_LEN).tolist()
    prog = compile_model(hf_model, "tiny")
    sess = Session(prog, "sim")
    logits = sess.feed(ids).astype(np.float32)
    cos, rel = compare(logits, hf_logits(hf_model, ids))
    assert cos >= 0.9999 and rel <= 0.005, (cos, rel)
    got = list(Session(prog, "sim").generate(ids, NEW))
    assert got == hf_greedy(hf_model, ids, NEW)


def test_prefill_then_decode_equals_token_by_token(hf_model):
    ids = list(range(1, 10))
    prog = compile_model(hf_model, "tiny")
    a = Session(prog, "sim").feed(ids)                      # prefill stream for 0..T-2, decode for T-1
    s = Session(prog, "sim")
    for t in ids:
        b = s.feed([t])                                     # decode stream for every token
    np.testing.assert_array_equal(a.view(np.uint16), b.view(np.uint16))


def test_embedded_default_model():
    """The embedded model: simulator logits near the fp32 golden, 32 greedy tokens identical."""
    from dfx.models.checkpoint import load_default
    from dfx.models.tokenizer import ByteTokenizer
    model = load_default()
    ids = ByteTokenizer().encode("def main(")
    prog = compile_model(model, "tiny")
    with torch.no_grad():
        ref = model(torch.tensor([ids]))[0][0, -1].numpy()
    cos, rel = compare(Session(prog, "sim").feed(ids).astype(np.float32), ref)
    assert cos >= 0.9999 and rel <= 0.005, (cos, rel)
    assert list(Session(prog, "sim").generate(ids, NEW)) == list(model.generate(ids, NEW))
