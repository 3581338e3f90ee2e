"""The golden GPT-2 against transformers.GPT2LMHeadModel, loaded through our checkpoint loader.

Random configs cover n_embd not a multiple of 64, odd head counts and odd vocabularies, in both weight files:
model.safetensors as save_pretrained writes it, and pytorch_model.bin laid out like the hub's original GPT-2
files (transformers 5 no longer writes .bin files).
"""
from collections.abc import Iterator

import pytest
import torch

from gpt2_fixtures import RANDOM_CONFIGS, make_hf_gpt2
from model_helpers import one_torch_thread, save_pytorch_bin  # noqa: F401 - autouse fixture
from dfx.errors import CheckpointError, ConfigError, UsageError
from dfx.models.checkpoint import load_checkpoint
from dfx.models.gpt2 import GPT2, GPT2_SIZES, GPTConfig, TokenSampler, named_config

CONFIGS = {**RANDOM_CONFIGS,
           "e64_h1_eps": dict(n_embd=64, n_head=1, n_layer=2, n_positions=128, vocab_size=256, layer_norm_epsilon=1e-6)}
PROMPT, NEW = [3, 1, 4, 1, 5], 32


@pytest.fixture(scope="module")
def references():
    """Per config: the HF model and its greedy continuation of PROMPT (computed once, shared by both formats)."""
    cache = {}

    def get(name):
        if name not in cache:
            hf = make_hf_gpt2(sorted(CONFIGS).index(name) + 10, **CONFIGS[name])
            with torch.no_grad():
                out = hf.generate(torch.tensor([PROMPT]), max_new_tokens=NEW, do_sample=False, pad_token_id=0,
                                  attention_mask=torch.ones(1, len(PROMPT), dtype=torch.long))
            cache[name] = hf, out[0, len(PROMPT):].tolist()
        return cache[name]
    return get


@pytest.fixture(scope="module", params=[(c, f) for c in sorted(CONFIGS) for f in ("safetensors", "bin")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def saved(request, references, tmp_path_factory):
    """(HF model, its greedy tokens, our model loaded from the checkpoint directory)."""
    name, fmt = request.param
    hf, greedy = references(name)
    d = tmp_path_factory.mktemp(f"{name}_{fmt}")
    hf.save_pretrained(d)
    if fmt == "bin":
        save_pytorch_bin(hf, d)
    return hf, greedy, load_checkpoint(d)


def test_logits_match_transformers(saved):
    hf, _, ours = saved
    ids = torch.randint(0, hf.config.vocab_size, (2, hf.config.n_positions),
                        generator=torch.Generator().manual_seed(0))             # (B, T) over the full context
    with torch.no_grad():
        ref = hf(ids).logits
        got, present = ours(ids)
    assert got.dtype == torch.float32 and got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)
    assert len(present) == hf.config.n_layer
    assert present[0][0].shape == (2, hf.config.n_head, hf.config.n_positions, hf.config.n_embd // hf.config.n_head)


@pytest.mark.parametrize("use_cache", [True, False], ids=["kv_cache", "no_cache"])
def test_greedy_generation_matches_transformers(saved, use_cache):
    _, greedy, ours = saved
    assert list(ours.generate(PROMPT, NEW, use_cache=use_cache)) == greedy


def test_kv_cache_decode_equals_full_forward(saved):
    m = saved[2]
    ids = torch.randint(0, m.config.vocab_size, (3, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full, _ = m(ids)                                     # (3, 12, vocab)
        step, past = m(ids[:, :5])                           # prefill 5, then 2 at once, then one at a time
        pieces = [step]
        step, past = m(ids[:, 5:7], past)
        pieces.append(step)
        for t in range(7, 12):
            step, past = m(ids[:, t:t + 1], past)
            pieces.append(step)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)
    assert past[0][0].shape[2] == 12


def test_context_overflow_in_forward():
    m = GPT2(GPTConfig(vocab_size=16, n_positions=8, n_embd=8, n_layer=1, n_head=2))
    _, past = m(torch.zeros(1, 6, dtype=torch.long))
    with pytest.raises(UsageError, match="9 tokens exceed the model's context of 8 positions"):
        m(torch.zeros(1, 3, dtype=torch.long), past)


# ------------------------------------------------------------------------------------------------ generate
@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    m = GPT2(GPTConfig(vocab_size=50, n_positions=24, n_embd=16, n_layer=1, n_head=2)).eval()
    m.reset_parameters(seed=0)
    with torch.no_grad():
        m.wte.weight.mul_(8)                                 # spread the logits so sampling has real choices
    return m


def test_generate_streams_one_token_at_a_time(small):
    gen = small.generate([1, 2, 3], 5)
    assert isinstance(gen, Iterator)
    first = next(gen)
    assert isinstance(first, int) and 0 <= first < 50
    assert [first, *gen] == list(small.generate([1, 2, 3], 5, use_cache=False))


def test_sampling_is_reproducible_with_a_seed(small):
    for kw in (dict(temperature=1.0), dict(temperature=0.8, top_k=5), dict(top_p=0.9),
               dict(temperature=1.5, top_k=10, top_p=0.8)):
        a = list(small.generate([1, 2], 20, seed=3, **kw))
        assert a == list(small.generate([1, 2], 20, seed=3, **kw))
        assert a == list(small.generate([1, 2], 20, seed=3, use_cache=False, **kw))
        assert a != list(small.generate([1, 2], 20, seed=4, **kw)), kw
    greedy = list(small.generate([1, 2], 20))
    assert list(small.generate([1, 2], 20, top_k=1, seed=9)) == greedy      # top-k 1 is greedy
    assert list(small.generate([1, 2], 20, top_p=1e-6, seed=9)) == greedy   # so is a vanishing nucleus


def test_sampler_filters():
    logits = torch.tensor([0.0, 3.0, 2.9, -1.0, 2.8])
    top2 = {TokenSampler(temperature=1.0, top_k=2, seed=s)(logits) for s in range(200)}
    assert top2 == {1, 2}
    nucleus = {TokenSampler(temperature=1.0, top_p=0.5, seed=s)(logits) for s in range(200)}
    assert nucleus == {1, 2}                                  # p(1) ~ 0.37 < 0.5, so token 2 joins; 4 does not
    assert TokenSampler()(torch.tensor([1.0, 5.0, 5.0])) == 1  # greedy ties: the first index, as torch/HF


@pytest.mark.parametrize("args,kw,msg", [
    ([], dict(max_new_tokens=3), "the prompt is empty"),
    ([1, 2, 3], dict(max_new_tokens=22), r"prompt \(3 tokens\) \+ max_new_tokens \(22\) exceeds the model's "
                                         r"context of 24 positions"),
    ([1], dict(max_new_tokens=-1), "max_new_tokens must be >= 0, not -1"),
    ([1, 50], dict(max_new_tokens=2), r"prompt token 50 is out of range; accepted: 0 \.\. 49"),
    ([1], dict(max_new_tokens=2, temperature=-1.0), "temperature must be >= 0"),
    ([1], dict(max_new_tokens=2, top_k=-2), "top_k must be >= 0"),
    ([1], dict(max_new_tokens=2, top_p=0.0), r"top_p must be in \(0, 1\]"),
])
def test_generate_rejects_bad_arguments_before_streaming(small, args, kw, msg):
    with pytest.raises(UsageError, match=msg):
        small.generate(args, **kw)                           # raised at the call, not at the first next()
    assert len(list(small.generate([1, 2, 3], 21))) == 21    # exactly at the limit is fine


# ------------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("kw,msg", [
    (dict(n_embd=30, n_head=4), r"GPTConfig.n_embd \(30\) must be a multiple of n_head \(4\)"),
    (dict(n_layer=0), "GPTConfig.n_layer must be a positive integer, not 0"),
    (dict(vocab_size=2.5), "GPTConfig.vocab_size must be a positive integer, not 2.5"),
    (dict(layer_norm_epsilon=0), "GPTConfig.layer_norm_epsilon must be a positive number, not 0"),
])
def test_config_rejects_inconsistent_fields(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        GPTConfig(**kw)


def test_named_sizes():
    assert GPTConfig().head_dim == 64 and GPT2_SIZES["1.5B"].head_dim == 64
    assert named_config("gpt2") is GPT2_SIZES["124M"] and named_config("GPT2-XL") is GPT2_SIZES["1.5B"]
    assert named_config("gpt2-medium") is named_config("355m") is GPT2_SIZES["355M"]
    assert named_config("gpt2-large").n_layer == 36
    # the published parameter counts (tied LM head)
    assert GPT2_SIZES["124M"].n_params == 124_439_808
    assert GPT2_SIZES["355M"].n_params == 354_823_168
    assert GPT2_SIZES["774M"].n_params == 774_030_080
    assert GPT2_SIZES["1.5B"].n_params == 1_557_611_200
    odd = GPT2(GPTConfig(vocab_size=40, n_positions=16, n_embd=24, n_layer=2, n_head=3))
    assert odd.config.n_params == sum(p.numel() for p in odd.parameters())
    with pytest.raises(CheckpointError, match=r"unknown GPT-2 size 'gpt5'; accepted: 124M, 355M, 774M, 1.5B or gpt2, "
                                              r"gpt2-medium, gpt2-large, gpt2-xl"):
        named_config("gpt5")
