"""Checkpoint loading and saving: HF layouts in and out, and every bad input as one pinned CheckpointError line."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from gpt2_fixtures import make_hf_gpt2
from dfx.errors import CheckpointError
from dfx.models.checkpoint import from_transformers, load_checkpoint, load_tensors, save_checkpoint
from dfx.models.gpt2 import GPT2, GPTConfig
from model_helpers import one_torch_thread, save_pytorch_bin  # noqa: F401 - autouse fixture

SMALL = dict(n_embd=32, n_head=2, n_layer=1, n_positions=16, vocab_size=40)
IDS = torch.tensor([[1, 7, 3, 9, 2]])


@pytest.fixture(scope="module")
def hf():
    return make_hf_gpt2(0, **SMALL)


@pytest.fixture(scope="module")
def good(hf, tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    hf.save_pretrained(d)
    return d


@pytest.fixture
def ckpt(good, tmp_path):
    """A fresh copy of the good checkpoint for a test to break."""
    return shutil.copytree(good, tmp_path / "ckpt")


def edit_config(d, **changes):
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))


def edit_weights(d, fn):
    state = load_file(str(d / "model.safetensors"))
    fn(state)
    save_file(state, str(d / "model.safetensors"))


def logits(m, ids=IDS):
    with torch.no_grad():
        out = m(ids)
    return out.logits if hasattr(out, "logits") else out[0]


# ------------------------------------------------------------------------------------------------ good inputs
def test_from_transformers_model_object(hf):
    ours = from_transformers(hf)
    assert ours.config == GPTConfig(**SMALL)
    torch.testing.assert_close(logits(ours), logits(hf), atol=1e-5, rtol=0)
    from transformers import GPT2Model                     # the headless model has no `transformer.` prefix
    base = GPT2Model(hf.config)
    base.load_state_dict(hf.transformer.state_dict())
    torch.testing.assert_close(logits(from_transformers(base)), logits(hf), atol=1e-5, rtol=0)


def test_save_checkpoint_loads_in_transformers_and_here(hf, tmp_path):
    from transformers import GPT2LMHeadModel
    ours = from_transformers(hf)
    d = save_checkpoint(ours, tmp_path / "out", extra_config={"dfx_note": "test"})
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.safetensors"]
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["model_type"] == "gpt2" and cfg["architectures"] == ["GPT2LMHeadModel"] and cfg["dfx_note"] == "test"
    assert "transformer.h.0.attn.c_attn.weight" in load_file(str(d / "model.safetensors"))
    back = GPT2LMHeadModel.from_pretrained(d, local_files_only=True).eval()
    torch.testing.assert_close(logits(back), logits(ours), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits(load_checkpoint(d)), logits(ours), atol=0, rtol=0)


def test_fp16_weights_upcast_to_fp32(hf, tmp_path):
    ours = from_transformers(hf)
    d = save_checkpoint(ours, tmp_path / "half", dtype=torch.float16)
    assert load_file(str(d / "model.safetensors"))["transformer.wte.weight"].dtype == torch.float16
    m = load_checkpoint(d)
    assert all(p.dtype == torch.float32 for p in m.parameters())
    torch.testing.assert_close(m.wte.weight, ours.wte.weight.half().float(), atol=0, rtol=0)


def test_load_tensors_keeps_the_stored_dtype_and_checks_as_load_checkpoint(hf, tmp_path):
    """The compiler's reader: an FP16 checkpoint stays FP16 (no float32 model), with the same checks."""
    ours = from_transformers(hf)
    d = save_checkpoint(ours, tmp_path / "half", dtype=torch.float16)
    cfg, state = load_tensors(d)
    assert cfg == ours.config and "lm_head.weight" not in state
    assert set(state) == set(ours.state_dict()) and all(t.dtype == torch.float16 for t in state.values())
    torch.testing.assert_close(state["h.0.mlp.c_fc.weight"].float(), load_checkpoint(d).h[0].mlp.c_fc.weight,
                               atol=0, rtol=0)
    edit_weights(d, lambda s: s.update({"transformer.h.0.mlp.c_fc.bias": s["transformer.h.0.mlp.c_fc.bias"] * 0
                                        + float("inf")}))
    for load in (load_checkpoint, load_tensors):
        with pytest.raises(CheckpointError, match="h.0.mlp.c_fc.bias holds inf or NaN"):
            load(d)


def test_names_without_prefix_and_mask_buffers(hf, ckpt):
    save_pytorch_bin(hf, ckpt)                              # keys `h.0...`, plus h.0.attn.bias / masked_bias
    torch.testing.assert_close(logits(load_checkpoint(ckpt)), logits(hf), atol=1e-5, rtol=0)


def test_sharded_checkpoint(hf, tmp_path):
    hf.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    torch.testing.assert_close(logits(load_checkpoint(tmp_path)), logits(hf), atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------ bad inputs
def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match=r"^checkpoint directory \S+nope does not exist$"):
        load_checkpoint(tmp_path / "nope")


def test_file_instead_of_directory(ckpt):
    with pytest.raises(CheckpointError, match=r"config.json is not a directory; accepted: a checkpoint directory"):
        load_checkpoint(ckpt / "config.json")


def test_directory_without_config(tmp_path):
    with pytest.raises(CheckpointError, match=r"has no config.json; accepted: a Hugging Face GPT-2 checkpoint "
                                              r"directory \(config.json \+ model.safetensors or pytorch_model.bin\)"):
        load_checkpoint(tmp_path)


def test_config_that_is_not_json(ckpt):
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config.json is not valid JSON \(Expecting property name"):
        load_checkpoint(ckpt)


def test_config_of_another_model(ckpt):
    (ckpt / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    with pytest.raises(CheckpointError, match=r"config.json: model_type 'llama' is not supported; accepted: 'gpt2'$"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("change,msg", [
    (dict(activation_function="relu"),
     r"activation_function 'relu' is not supported; accepted: gelu_new, gelu_pytorch_tanh$"),
    (dict(activation_function="gelu"), r"activation_function 'gelu' is not supported"),
    (dict(n_inner=100), r"n_inner 100 is not supported; accepted: null or 4 \* n_embd$"),
    (dict(scale_attn_by_inverse_layer_idx=True), r"scale_attn_by_inverse_layer_idx=true is not supported"),
    (dict(tie_word_embeddings=False), r"tensor lm_head.weight is missing"),     # untied: its own head needed
    (dict(n_head=5), r"config.json: GPTConfig.n_embd \(32\) must be a multiple of n_head \(5\)$"),
])
def test_config_variants_we_do_not_implement(ckpt, change, msg):
    edit_config(ckpt, **change)
    with pytest.raises(CheckpointError, match=msg):
        load_checkpoint(ckpt)


def test_config_missing_fields(ckpt):
    (ckpt / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 32}))
    with pytest.raises(CheckpointError, match=r"missing field\(s\) vocab_size, n_layer, n_head, n_positions"):
        load_checkpoint(ckpt)


def test_gelu_pytorch_tanh_is_accepted(ckpt, hf):
    edit_config(ckpt, activation_function="gelu_pytorch_tanh")
    torch.testing.assert_close(logits(load_checkpoint(ckpt)), logits(hf), atol=1e-5, rtol=0)


def test_missing_weights_file(ckpt):
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"has no weights file; accepted: model.safetensors or "
                                              r"pytorch_model.bin \(or their sharded .index.json forms\)$"):
        load_checkpoint(ckpt)


def test_shape_mismatch_names_tensor_and_shapes(ckpt):
    edit_config(ckpt, n_positions=32)
    with pytest.raises(CheckpointError, match=r": tensor wpe.weight has shape \[16, 32\], expected \[32, 32\] "
                                              r"from config.json$"):
        load_checkpoint(ckpt)


def test_missing_tensor_is_named(ckpt):
    edit_weights(ckpt, lambda s: s.pop("transformer.h.0.mlp.c_fc.bias"))
    with pytest.raises(CheckpointError, match=r": tensor h\.0\.mlp\.c_fc\.bias is missing$"):
        load_checkpoint(ckpt)


def test_unexpected_tensor_is_named(ckpt):
    edit_weights(ckpt, lambda s: s.update({"transformer.h.0.attn.q_norm.weight": torch.ones(32)}))
    with pytest.raises(CheckpointError, match=r"unexpected tensor\(s\) h.0.attn.q_norm.weight; accepted: GPT-2's"):
        load_checkpoint(ckpt)


def test_untied_lm_head(ckpt):
    edit_weights(ckpt, lambda s: s.update({"lm_head.weight": torch.zeros(40, 32)}))
    with pytest.raises(CheckpointError, match=r"lm_head.weight differs from wte.weight; accepted: a tied LM head"):
        load_checkpoint(ckpt)


def test_non_finite_weights(ckpt):
    def poison(s):
        s["transformer.ln_f.bias"][3] = float("nan")
    edit_weights(ckpt, poison)
    with pytest.raises(CheckpointError, match=r"tensor ln_f.bias holds inf or NaN values; accepted: finite weights$"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("keep", [0, 7, 100, -64])
def test_truncated_safetensors(ckpt, keep):
    f = ckpt / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    with pytest.raises(CheckpointError, match=r"model.safetensors cannot be read: truncated or corrupt safetensors "
                                              r"file \(.+\)$") as e:
        load_checkpoint(ckpt)
    assert "\n" not in str(e.value)


def test_corrupt_pytorch_bin(ckpt, hf):
    save_pytorch_bin(hf, ckpt)
    f = ckpt / "pytorch_model.bin"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin cannot be read: truncated or corrupt PyTorch file"):
        load_checkpoint(ckpt)


def test_pickle_with_code_is_refused(ckpt):
    (ckpt / "model.safetensors").unlink()
    torch.save({"wte.weight": torch.zeros(2), "evil": GPT2}, ckpt / "pytorch_model.bin")   # needs a full unpickler
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin cannot be read: truncated or corrupt PyTorch file "
                                              r"\(UnpicklingError\)"):
        load_checkpoint(ckpt)


def test_shard_index_naming_a_missing_shard(hf, tmp_path):
    hf.save_pretrained(tmp_path, max_shard_size="20KB")
    shard = sorted(tmp_path.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=rf"names shard {shard.name}, which is missing$"):
        load_checkpoint(tmp_path)


# ------------------------------------------------------------------------------------------------ hostile inputs
def test_shard_names_cannot_leave_the_directory(hf, tmp_path):
    hf.save_pretrained(tmp_path / "ck", max_shard_size="20KB")
    index = tmp_path / "ck" / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    shard = next(iter(data["weight_map"].values()))
    (tmp_path / "outside.safetensors").write_bytes((tmp_path / "ck" / shard).read_bytes())
    for evil in ("../outside.safetensors", str(tmp_path / "outside.safetensors")):
        data["weight_map"] = {k: evil for k in data["weight_map"]}
        index.write_text(json.dumps(data))
        with pytest.raises(CheckpointError, match=r"names shard .*; accepted: a file name in the checkpoint "
                                                  r"directory \(no path\)$"):
            load_checkpoint(tmp_path / "ck")


def test_checkpoint_asking_for_custom_code_runs_none(ckpt, tmp_path):
    """A checkpoint whose config and tokenizer config point at custom Python (auto_map) is loaded as plain GPT-2
    or refused in one line; the custom code never runs (trust_remote_code stays False)."""
    from dfx.models.tokenizer import load_tokenizer
    marker = tmp_path / "pwned"
    (ckpt / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                  "from transformers import GPT2LMHeadModel as EvilModel, "
                                  "PreTrainedTokenizerFast as EvilTokenizer\n")
    edit_config(ckpt, auto_map={"AutoModelForCausalLM": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"})
    (ckpt / "tokenizer_config.json").write_text(json.dumps(
        {"auto_map": {"AutoTokenizer": ["evil.EvilTokenizer", "evil.EvilTokenizer"]},
         "tokenizer_class": "EvilTokenizer"}))
    (ckpt / "tokenizer.json").write_text("{}")
    load_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match=r"^tokenizer files in \S+ cannot be loaded \(\w+"):
        load_tokenizer(ckpt, 40)
    assert not marker.exists()
