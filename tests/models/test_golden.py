"""The golden model against transformers.GPT2LMHeadModel, through our checkpoint loader."""
import numpy as np
import pytest
import torch

from conftest import make_hf_gpt2
from dfx.models.checkpoint import from_transformers, load_checkpoint, save_checkpoint
from dfx.models.gpt2 import GPT2_SIZES, GPTConfig, named_config

CONFIGS = [
    dict(n_embd=96, n_head=3, n_layer=2, n_positions=64, vocab_size=301),     # n_embd % 64 != 0, odd heads
    dict(n_embd=80, n_head=5, n_layer=1, n_positions=48, vocab_size=257),
    dict(n_embd=128, n_head=4, n_layer=3, n_positions=80, vocab_size=512),
]


@pytest.fixture(scope="module", params=range(len(CONFIGS)))
def saved(request, tmp_path_factory):
    hf = make_hf_gpt2(10 + request.param, **CONFIGS[request.param])
    d = tmp_path_factory.mktemp(f"ckpt{request.param}")
    hf.save_pretrained(d, safe_serialization=request.param != 1)   # config 1 as pytorch_model.bin
    return hf, d


def test_logits_match_transformers(saved):
    hf, d = saved
    ours = load_checkpoint(d)
    ids = torch.randint(0, hf.config.vocab_size, (2, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = hf(ids).logits
        got, _ = ours(ids)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generation_matches_transformers(saved, use_cache):
    hf, d = saved
    ours = load_checkpoint(d)
    prompt = [3, 1, 4, 1, 5]
    with torch.no_grad():
        ref = hf.generate(torch.tensor([prompt]), max_new_tokens=32, do_sample=False, pad_token_id=0,
                          attention_mask=torch.ones(1, 5, dtype=torch.long))[0, 5:].tolist()
    assert list(ours.generate(prompt, 32, use_cache=use_cache)) == ref


def test_kv_cache_equals_full_recompute(saved):
    _, d = saved
    m = load_checkpoint(d)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        full, _ = m(ids)
        _, past = m(ids[:, :4])
        step, _ = m(ids[:, 4:], past)
    torch.testing.assert_close(step, full[:, 4:], atol=1e-5, rtol=0)


def test_from_transformers_object_and_roundtrip(tmp_path):
    hf = make_hf_gpt2(5, **CONFIGS[0])
    ours = from_transformers(hf)
    save_checkpoint(ours, tmp_path)
    from transformers import GPT2LMHeadModel
    back = GPT2LMHeadModel.from_pretrained(tmp_path, local_files_only=True).eval()
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, ours(ids)[0], atol=1e-5, rtol=0)


def test_sampling_is_reproducible(saved):
    _, d = saved
    m = load_checkpoint(d)
    a = list(m.generate([1, 2], 10, temperature=1.0, top_k=20, seed=3))
    b = list(m.generate([1, 2], 10, temperature=1.0, top_k=20, seed=3))
    c = list(m.generate([1, 2], 10, temperature=1.0, top_k=20, seed=4))
    assert a == b and a != c


def test_named_sizes():
    assert named_config("gpt2-xl") == GPT2_SIZES["1.5B"] and GPT2_SIZES["1.5B"].n_head == 25
    assert 1.5e9 < GPT2_SIZES["1.5B"].n_params < 1.6e9
    assert 3.5e8 < named_config("gpt2-medium").n_params < 3.6e8
    assert GPTConfig().head_dim == 64
