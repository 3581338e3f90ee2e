"""The fake-quant golden (models/quantized.py): exact dequantised weights, everything else binary16."""
import numpy as np
import pytest
import torch
from model_helpers import one_torch_thread  # noqa: F401  (autouse fixture)

from dfx import numerics as nx
from dfx.compiler.quant.model import quantize_model
from dfx.errors import UsageError
from dfx.models.gpt2 import GPT2, GPTConfig
from dfx.models.quantized import fake_quant, quantizable_names


@pytest.fixture(scope="module")
def model():
    m = GPT2(GPTConfig(vocab_size=97, n_positions=32, n_embd=64, n_layer=2, n_head=2))
    m.reset_parameters(seed=1)
    with torch.no_grad():                       # off-grid values so the fp16 rounding is visible
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    return m.eval()


def test_quantizable_names(model):
    assert quantizable_names(model) == [f"h.{i}.{s}.weight" for i in range(2)
                                        for s in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]


@pytest.mark.parametrize("fmt", ["int8-oc", "int4-ic-g32", "fp8e5m2", "bcq2-oc-g32"])
def test_weights_are_exact_dequant_and_rest_fp16(model, fmt):
    q = quantize_model(model, fmt)
    fq = fake_quant(model, q)
    fp = dict(fq.named_parameters())
    for name, p in model.named_parameters():
        got = fp[name].detach().numpy()
        want = q[name].dequant() if name in q else nx.to_fp16(p.detach().numpy())
        np.testing.assert_array_equal(got.view(np.uint32), np.asarray(want, np.float32).view(np.uint32), name)
    assert fq is not model and model.h[0].mlp.c_fc.weight.dtype == torch.float32
    # the original is untouched
    assert not torch.equal(model.h[0].mlp.c_fc.weight, fq.h[0].mlp.c_fc.weight)


def test_fp16_format_is_the_fp16_ladder_golden(model):
    """fp16 'quantization' equals rounding every parameter to binary16, as the compiler does for DFX."""
    fq = fake_quant(model, quantize_model(model, "fp16"))
    ref = fake_quant(model, {})
    ids = torch.arange(10).view(1, 10)
    assert torch.equal(fq(ids)[0], ref(ids)[0])


def test_quantized_logits_stay_close_at_8_bits(model):
    ids = torch.arange(1, 20).view(1, 19)
    ref = fake_quant(model, {})(ids)[0]
    got = fake_quant(model, quantize_model(model, "int8-oc"))(ids)[0]
    assert (got - ref).abs().max() <= 0.02 * (ref.max() - ref.min())


def test_bad_names_and_shapes(model):
    q = quantize_model(model, "int8-oc")
    with pytest.raises(UsageError, match="not a quantizable weight"):
        fake_quant(model, {"wte.weight": q["h.0.mlp.c_fc.weight"]})
    with pytest.raises(UsageError, match="quantized weight is"):
        fake_quant(model, {"h.0.mlp.c_proj.weight": q["h.0.mlp.c_fc.weight"]})
