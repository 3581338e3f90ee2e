"""Bad checkpoints: one line naming what is wrong."""
import json

import pytest
import torch

from conftest import make_hf_gpt2
from dfx.errors import CheckpointError, ConfigError, UsageError
from dfx.models.checkpoint import load_checkpoint
from dfx.models.gpt2 import GPT2, GPTConfig, named_config


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    make_hf_gpt2(0, n_embd=32, n_head=2, n_layer=1, n_positions=16, vocab_size=40).save_pretrained(d)
    return d


def _copy(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")


def test_no_config(tmp_path):
    with pytest.raises(CheckpointError, match="has no config.json"):
        load_checkpoint(tmp_path)


def test_llama_config(ckpt, tmp_path):
    d = _copy(ckpt, tmp_path / "llama")
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    with pytest.raises(CheckpointError, match=r"model_type 'llama' is not supported; accepted: 'gpt2'"):
        load_checkpoint(d)


def test_shape_mismatch_names_the_tensor(ckpt, tmp_path):
    d = _copy(ckpt, tmp_path / "shape")
    cfg = json.loads((d / "config.json").read_text())
    cfg["n_embd"] = 48
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"tensor \S+ has shape \[\d+, 32\], the config needs \[\d+, 48\]"):
        load_checkpoint(d)


def test_truncated_safetensors(ckpt, tmp_path):
    d = _copy(ckpt, tmp_path / "trunc")
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="model.safetensors cannot be read"):
        load_checkpoint(d)


def test_missing_weights_and_tensor(ckpt, tmp_path):
    d = _copy(ckpt, tmp_path / "noweights")
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no weights"):
        load_checkpoint(d)
    from safetensors.torch import load_file, save_file
    d2 = _copy(ckpt, tmp_path / "missing")
    sd = load_file(str(d2 / "model.safetensors"))
    del sd["transformer.h.0.mlp.c_fc.bias"]
    save_file(sd, str(d2 / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"tensor h\.0\.mlp\.c_fc\.bias is missing"):
        load_checkpoint(d2)


def test_bad_activation(ckpt, tmp_path):
    d = _copy(ckpt, tmp_path / "relu")
    cfg = json.loads((d / "config.json").read_text())
    cfg["activation_function"] = "relu"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="activation_function 'relu' is not supported"):
        load_checkpoint(d)


def test_config_validation_and_usage():
    with pytest.raises(ConfigError, match=r"n_embd \(30\) must be divisible by n_head \(4\)"):
        GPTConfig(n_embd=30, n_head=4)
    with pytest.raises(CheckpointError, match="unknown GPT-2 size 'gpt5'"):
        named_config("gpt5")
    m = GPT2(GPTConfig(vocab_size=10, n_positions=8, n_embd=8, n_layer=1, n_head=2))
    with pytest.raises(UsageError, match="empty"):
        list(m.generate([], 3))
    with pytest.raises(UsageError, match="exceeds the context of 8"):
        list(m.generate([1, 2, 3], 6))
