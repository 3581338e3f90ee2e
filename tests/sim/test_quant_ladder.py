"""The reference ladder for quantized weights, levels 2 -> 3: the functional simulator against the fake-quant
golden (`dfx.models.quantized.fake_quant`: the exact dequantised weights, float32 PyTorch math).

Tolerances are the FP16 ladder's (docs/numerics.md, "Network-level accuracy"): the weights are identical on both
sides, so what remains is binary16 activations: logits cosine >= 0.9999 and max |diff| <= 0.5% of the golden's
range; greedy tokens identical. Two devices must give logits bit-identical to one (the split never changes a
sum), also where per-IC groups are cut mid-group (descriptor phase).

- The embedded default model (no head padding at d=8): quantized at model level
  (`compiler.quant.model.quantize_model`), the dict handed to the compiler, the same dict to the golden.
- A random config with padded heads (head_dim 12 -> 16): quantized by format name, so the compiler quantizes in
  its padded coordinates; the golden is the program's own dequantised weights with the padding taken out
  (`compiler.passes.model_weights`).
"""

import numpy as np
import pytest
import torch

from gpt2_fixtures import make_hf_gpt2
from dfx.compiler import compile_model
from dfx.compiler.capture import capture
from dfx.compiler.passes import model_weights, pad_heads, quantize
from dfx.config import PRESETS
from dfx.host.session import Session
from dfx.models.quantized import fake_quant

TINY = PRESETS["tiny"]
# the ladder; groups of 64 for the embedded model's 256-wide layers (128 would be 2 groups per column)
EMBEDDED = ["fp16", "int8-oc", "int4-oc-g128", "int4-ic-g64", "int4-oc-g64-asym", "fp8e4m3", "fp8e5m2",
            "bcq3-oc-g64"]
PADDED = ["fp16", "int8-oc", "int4-oc-g32", "int4-ic-g32", "int4-ic-g32-asym", "fp8e4m3", "fp8e5m2-ic-g32",
          "bcq3-oc-g32"]
NEW = 4


def compare(sim, ref):
    sim, ref = sim.astype(np.float64), ref.astype(np.float64)
    cos = float(sim @ ref / np.linalg.norm(sim) / np.linalg.norm(ref))
    rel = float(np.abs(sim - ref).max() / (ref.max() - ref.min()))
    return cos, rel


def golden_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids]))[0][0, -1].float().numpy()


def check(prog, golden, ids, new=NEW):
    logits = Session(prog, "sim").feed(ids)
    cos, rel = compare(logits, golden_logits(golden, ids))
    assert cos >= 0.9999 and rel <= 0.005, (cos, rel)
    assert list(Session(prog, "sim").generate(ids, new)) == list(golden.generate(ids, new))
    return logits


@pytest.fixture(scope="module")
def embedded():
    from dfx.models.checkpoint import load_default
    return load_default()


@pytest.fixture(scope="module")
def padded():
    from dfx.models.checkpoint import from_transformers
    return from_transformers(make_hf_gpt2(7, n_embd=60, n_head=5, n_layer=2, n_positions=32, vocab_size=101))


def _method(fmt):
    return "rtn"          # bcq: `rtn` is BCQ's greedy fit (fast); ALS runs in the slow test


@pytest.mark.parametrize("fmt", EMBEDDED)
def test_embedded_model(embedded, fmt):
    from dfx.compiler.quant.model import quantize_model
    q = quantize_model(embedded, fmt, _method(fmt))
    golden = fake_quant(embedded, q)
    ids = list(b"def f(")
    prog = compile_model(embedded, "tiny", weights=q, max_seq=16)
    assert prog.manifest.quantization.format == "per-matrix"
    assert set(prog.manifest.quantization.matrices.values()) >= {q["h.0.mlp.c_fc.weight"].fmt.name}
    check(prog, golden, ids)


@pytest.mark.parametrize("fmt", ["int4-ic-g64", "bcq3-oc-g64"])
def test_embedded_model_two_devices_bit_identical(embedded, fmt):
    from dfx.compiler.quant.model import quantize_model
    q = quantize_model(embedded, fmt, _method(fmt))
    ids = list(b"def f(")
    one = Session(compile_model(embedded, "tiny", weights=q, max_seq=16), "sim").feed(ids)
    two = Session(compile_model(embedded, "tiny", devices=2, weights=q, max_seq=16), "sim").feed(ids)
    np.testing.assert_array_equal(one.view(np.uint16), two.view(np.uint16))


@pytest.mark.parametrize("fmt", PADDED)
def test_padded_heads_by_name(padded, fmt):
    g, _ = capture(padded)
    quantize(pad_heads(g, TINY), TINY, fmt)
    assert g.node("h.0.attn").attrs["head_pad"] == 16
    golden = fake_quant(padded, model_weights(g))
    ids = [5, 17, 3, 99, 42, 8]
    one = check(compile_model(padded, "tiny", weights=fmt), golden, ids)
    prog2 = compile_model(padded, "tiny", devices=2, weights=fmt)
    if fmt.startswith("int4-ic"):       # c_fc (240 columns) splits 120/120: device 1 starts mid-group
        regs = prog2.manifest.quantization.regions[1]
        assert any(r.phase for r in regs.values()), regs
    two = Session(prog2, "sim").feed(ids)
    np.testing.assert_array_equal(one.view(np.uint16), two.view(np.uint16))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["int4-ic-g128", "int4-oc-g128", "bcq3-oc-g128", "bcq4-ic-g64", "int3-oc-g64",
                                 "int8-ic-g32-asym", "fp8e4m3-ic-g128"])
@pytest.mark.parametrize("devices", [1, 2])
def test_embedded_model_more_formats(embedded, fmt, devices):
    from dfx.compiler.quant.model import quantize_model
    q = quantize_model(embedded, fmt, "bcq" if fmt.startswith("bcq") else "rtn")     # bcq: ALS
    prog = compile_model(embedded, "tiny", devices=devices, weights=q, max_seq=48)
    check(prog, fake_quant(embedded, q), list(b"def main(self):"), new=24)
