"""Hugging Face GPT-2 checkpoints as people have them, each written by transformers' own `save_pretrained` (or,
for pytorch_model.bin, which transformers 5 no longer writes, laid out as the hub's original files), loaded,
compiled and compared with the float model through `dfx compare`: greedy tokens agree (exit 0).

Covered: sharded safetensors with an index, pytorch_model.bin, tied and untied LM heads, n_positions 1024, odd
vocabulary sizes, head counts that do not divide the device count, BPE tokenizers with added special tokens."""
import json

import pytest
import torch
from click.testing import CliRunner

from dfx.cli import main
from dfx.models.checkpoint import load_checkpoint
from gpt2_fixtures import make_hf_gpt2
from model_helpers import save_pytorch_bin

PROMPT = "def main():"


def _bpe(d, vocab_size, special=()):
    """A byte-level BPE trained offline, with `special` added as special tokens; saved next to the model."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["def main():", "return x + y", "import os", "for i in range(10):"] * 20,
                            trainers.BpeTrainer(vocab_size=vocab_size,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    if special:
        fast.add_special_tokens({"additional_special_tokens": list(special)})
    fast.save_pretrained(d)
    return len(fast)


def _compare(d, *extra, prompt=PROMPT, n=6):
    r = CliRunner().invoke(main, ["compare", str(d), "--prompt", prompt, "-n", str(n), *map(str, extra)])
    assert r.exit_code == 0, r.output
    assert "verdict: agree" in r.stdout or "verdict: near-tie" in r.stdout
    return r.stdout


def _logits_match(d, hf):
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(load_checkpoint(d)(ids)[0], hf(ids).logits, atol=1e-4, rtol=0)


def _byte_model(seed, **kw):
    cfg = dict(n_embd=64, n_head=4, n_layer=2, n_positions=64, vocab_size=256)
    cfg.update(kw)
    return make_hf_gpt2(seed, **cfg)


def test_sharded_safetensors_with_an_index(tmp_path):
    hf = _byte_model(1)
    hf.save_pretrained(tmp_path, max_shard_size="40KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1 and not (tmp_path / "model.safetensors").exists()
    _logits_match(tmp_path, hf)
    _compare(tmp_path)


def test_pytorch_model_bin(tmp_path):
    hf = _byte_model(2)
    hf.save_pretrained(tmp_path)
    save_pytorch_bin(hf, tmp_path)                 # no `transformer.` prefix, mask buffers, no lm_head
    assert (tmp_path / "pytorch_model.bin").is_file()
    _logits_match(tmp_path, hf)
    _compare(tmp_path)


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_tied_and_untied_lm_heads(tmp_path, tied):
    hf = _byte_model(3, tie_word_embeddings=tied)
    if not tied:
        with torch.no_grad():
            hf.lm_head.weight.normal_(0, 0.2)          # a head of its own, unlike wte
    hf.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()).get("tie_word_embeddings", True) is tied
    net = load_checkpoint(tmp_path)
    assert (net.lm_head is None) is tied
    _logits_match(tmp_path, hf)
    _compare(tmp_path)


def test_n_positions_1024(tmp_path):
    hf = _byte_model(4, n_embd=32, n_head=2, n_layer=1, n_positions=1024)
    hf.save_pretrained(tmp_path)
    _logits_match(tmp_path, hf)
    out = _compare(tmp_path, prompt="x" * 700, n=4)              # positions past 512
    assert "tokens: all 4 agree" in out


@pytest.mark.parametrize("vocab", [257, 1009], ids=["257", "prime-1009"])
def test_odd_vocabularies(tmp_path, vocab):
    n_tok = _bpe(tmp_path, 300)
    hf = _byte_model(5, vocab_size=max(vocab, n_tok))
    hf.save_pretrained(tmp_path)
    assert load_checkpoint(tmp_path).config.vocab_size == max(vocab, n_tok)
    _compare(tmp_path)


@pytest.mark.parametrize("heads,devices", [(3, 2), (5, 4), (5, 3)])
def test_head_counts_that_do_not_divide_the_device_count(tmp_path, heads, devices):
    hf = _byte_model(6, n_embd=16 * heads, n_head=heads)
    hf.save_pretrained(tmp_path)
    _compare(tmp_path, "--devices", devices)


def test_fewer_heads_than_devices_is_one_line(tmp_path):
    """Attention is split by whole heads: 3 heads cannot fill 4 devices, and the compiler says so."""
    _byte_model(6, n_embd=48, n_head=3).save_pretrained(tmp_path)
    r = CliRunner().invoke(main, ["compare", str(tmp_path), "--prompt", PROMPT, "--devices", "4"])
    assert r.exit_code == 2 and r.stdout == ""
    assert "4 devices but only 3 attention heads" in r.stderr and "use at most 3 devices" in r.stderr


def test_tokenizer_with_added_special_tokens(tmp_path):
    n_tok = _bpe(tmp_path, 290, special=("<|pad|>", "<|sep|>"))
    hf = _byte_model(7, vocab_size=n_tok)
    hf.save_pretrained(tmp_path)
    from transformers import AutoTokenizer
    sep = AutoTokenizer.from_pretrained(tmp_path).convert_tokens_to_ids("<|sep|>")
    assert sep == n_tok - 1
    out = _compare(tmp_path, prompt="import os<|sep|>def")
    assert "verdict" in out
