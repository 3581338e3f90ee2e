"""Load and save GPT-2 checkpoints as Hugging Face's `save_pretrained` writes them.

A checkpoint directory holds config.json plus model.safetensors (or pytorch_model.bin), and optionally the
tokenizer files. Every way it can be wrong is one `CheckpointError` line naming the file or tensor.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from dfx.errors import CheckpointError, ConfigError

from .gpt2 import GPT2, GPTConfig

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"
ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")
_SKIP = (".attn.bias", ".attn.masked_bias")          # causal-mask buffers older HF checkpoints carry


def config_from_hf(data: dict, where: str = "config.json") -> GPTConfig:
    mt = data.get("model_type")
    if mt != "gpt2":
        raise CheckpointError(f"{where}: model_type {mt!r} is not supported; accepted: 'gpt2'")
    act = data.get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise CheckpointError(f"{where}: activation_function {act!r} is not supported; accepted: "
                              f"{', '.join(ACTIVATIONS)}")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if data.get(flag):
            raise CheckpointError(f"{where}: {flag}=true is not supported; accepted: false")
    try:
        return GPTConfig(vocab_size=data["vocab_size"], n_positions=data.get("n_positions", data.get("n_ctx")),
                         n_embd=data["n_embd"], n_layer=data["n_layer"], n_head=data["n_head"],
                         layer_norm_epsilon=float(data.get("layer_norm_epsilon", 1e-5)))
    except KeyError as e:
        raise CheckpointError(f"{where}: missing field {e.args[0]!r}") from None
    except ConfigError as e:
        raise CheckpointError(f"{where}: {e}") from None


def config_to_hf(cfg: GPTConfig, **extra) -> dict:
    return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "activation_function": "gelu_new",
            "vocab_size": cfg.vocab_size, "n_positions": cfg.n_positions, "n_ctx": cfg.n_positions,
            "n_embd": cfg.n_embd, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
            "layer_norm_epsilon": cfg.layer_norm_epsilon, "bos_token_id": cfg.vocab_size - 1,
            "eos_token_id": cfg.vocab_size - 1, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
            "tie_word_embeddings": True, **extra}


def _read_weights(d: Path) -> dict[str, torch.Tensor]:
    st, pt = d / "model.safetensors", d / "pytorch_model.bin"
    if st.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(st))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{st} cannot be read (truncated or corrupt: {str(e).splitlines()[0]})") from None
    if pt.is_file():
        try:
            return torch.load(str(pt), map_location="cpu", weights_only=True)
        except Exception as e:   # noqa: BLE001 - torch raises many types for a bad pickle
            raise CheckpointError(f"{pt} cannot be read (truncated or corrupt: {type(e).__name__})") from None
    raise CheckpointError(f"{d} has no weights: expected model.safetensors or pytorch_model.bin")


def load_state(model: GPT2, state: dict[str, torch.Tensor], where: str) -> GPT2:
    """Copy a state dict with HF GPT-2 names (with or without the `transformer.` prefix) into `model`."""
    state = {(k[len("transformer."):] if k.startswith("transformer.") else k): v for k, v in state.items()}
    own = model.state_dict()
    for name, want in own.items():
        if name not in state:
            raise CheckpointError(f"{where}: tensor {name} is missing")
        got = state[name]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(f"{where}: tensor {name} has shape {list(got.shape)}, the config needs "
                                  f"{list(want.shape)}")
    extra = [k for k in state if k not in own and k != "lm_head.weight" and not k.endswith(_SKIP)]
    if extra:
        raise CheckpointError(f"{where}: unexpected tensor(s) {', '.join(sorted(extra)[:3])}; is this GPT-2?")
    with torch.no_grad():
        for name, p in own.items():
            p.copy_(state[name].to(torch.float32))
    return model


def load_checkpoint(path: str | Path) -> GPT2:
    """A GPT2 (eval mode, float32) from a checkpoint directory."""
    d = Path(path)
    if not d.exists():
        raise CheckpointError(f"checkpoint directory {d} does not exist")
    if not d.is_dir():
        raise CheckpointError(f"{d} is not a directory; give a checkpoint directory with config.json")
    cj = d / "config.json"
    if not cj.is_file():
        raise CheckpointError(f"{d} has no config.json; it is not a Hugging Face checkpoint")
    try:
        data = json.loads(cj.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{cj} is not valid JSON ({e})") from None
    cfg = config_from_hf(data, str(cj))
    return load_state(GPT2(cfg), _read_weights(d), str(d)).eval()


def from_transformers(hf_model) -> GPT2:
    """Our GPT2 from a `transformers` GPT2LMHeadModel (or GPT2Model) object."""
    cfg = config_from_hf(hf_model.config.to_dict(), "transformers model config")
    return load_state(GPT2(cfg), hf_model.state_dict(), "transformers model").eval()


def save_checkpoint(model: GPT2, path: str | Path, dtype: torch.dtype = torch.float32, **extra_config) -> Path:
    """Write config.json + model.safetensors with HF names (transformers can load it too)."""
    from safetensors.torch import save_file
    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    state = {f"transformer.{k}": v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
    (d / "config.json").write_text(json.dumps(config_to_hf(model.config, **extra_config), indent=2) + "\n")
    return d


def load_default() -> GPT2:
    """The embedded default model shipped in the repository."""
    return load_checkpoint(DEFAULT_MODEL_DIR)
