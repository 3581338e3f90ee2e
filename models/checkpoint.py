"""Load and save GPT-2 checkpoints in the layout Hugging Face's `save_pretrained` writes.

A checkpoint directory holds config.json plus model.safetensors or pytorch_model.bin (or their sharded forms
with an .index.json), and optionally the tokenizer files. Tensor names are HF's, with or without the
`transformer.` prefix. Every way a checkpoint can be wrong is one `CheckpointError` line naming the file or
tensor and what is accepted.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from dfx.errors import CheckpointError, ConfigError

from .gpt2 import GPT2, GPTConfig

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"
ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")      # both are GELU's tanh approximation
SAFETENSORS, PYTORCH_BIN = "model.safetensors", "pytorch_model.bin"
_BUFFERS = (".attn.bias", ".attn.masked_bias")       # causal-mask buffers older HF checkpoints carry: not weights


# ------------------------------------------------------------------------------------------------ config
def config_from_hf(data: dict, where: str = "config.json") -> GPTConfig:
    """Our GPTConfig from a Hugging Face GPT-2 config dict; refuses variants this model does not implement."""
    model_type = data.get("model_type")
    if model_type != "gpt2":
        raise CheckpointError(f"{where}: model_type {model_type!r} is not supported; accepted: 'gpt2'")
    act = data.get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise CheckpointError(f"{where}: activation_function {act!r} is not supported; accepted: "
                              f"{', '.join(ACTIVATIONS)}")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"):
        if data.get(flag):
            raise CheckpointError(f"{where}: {flag}=true is not supported; accepted: false")
    if data.get("scale_attn_weights", True) is False:
        raise CheckpointError(f"{where}: scale_attn_weights=false is not supported; accepted: true")
    n_inner = data.get("n_inner")
    if n_inner is not None and n_inner != 4 * data.get("n_embd", 0):
        raise CheckpointError(f"{where}: n_inner {n_inner} is not supported; accepted: null or 4 * n_embd")
    missing = [k for k in ("vocab_size", "n_embd", "n_layer", "n_head") if k not in data]
    if "n_positions" not in data and "n_ctx" not in data:
        missing.append("n_positions")
    if missing:
        raise CheckpointError(f"{where}: missing field(s) {', '.join(missing)}; a GPT-2 config needs them")
    try:
        return GPTConfig(vocab_size=data["vocab_size"], n_positions=data.get("n_positions", data.get("n_ctx")),
                         n_embd=data["n_embd"], n_layer=data["n_layer"], n_head=data["n_head"],
                         layer_norm_epsilon=data.get("layer_norm_epsilon", 1e-5),
                         tie_word_embeddings=data.get("tie_word_embeddings", True) is not False)
    except ConfigError as e:
        raise CheckpointError(f"{where}: {e}") from None


def config_to_hf(cfg: GPTConfig, extra: dict | None = None) -> dict:
    """A config.json that `transformers.GPT2LMHeadModel.from_pretrained` accepts."""
    eot = 50256 if cfg.vocab_size > 50256 else None      # GPT-2's <|endoftext|>; byte-level models have none
    return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "activation_function": "gelu_new",
            "vocab_size": cfg.vocab_size, "n_positions": cfg.n_positions, "n_embd": cfg.n_embd,
            "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_inner": None,
            "layer_norm_epsilon": cfg.layer_norm_epsilon, "tie_word_embeddings": cfg.tie_word_embeddings,
            "bos_token_id": eot, "eos_token_id": eot, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
            **(extra or {})}


def read_config(d: Path) -> GPTConfig:
    cj = d / "config.json"
    if not cj.is_file():
        raise CheckpointError(f"{d} has no config.json; accepted: a Hugging Face GPT-2 checkpoint directory "
                              "(config.json + model.safetensors or pytorch_model.bin)")
    try:
        data = json.loads(cj.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{cj} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{cj} must hold a JSON object, not a {type(data).__name__}")
    return config_from_hf(data, str(cj))


# ------------------------------------------------------------------------------------------------ weights
def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as e:   # noqa: BLE001 - safetensors raises its own error, OSError or ValueError
        raise CheckpointError(f"{path} cannot be read: truncated or corrupt safetensors file "
                              f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def _read_bin(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:   # noqa: BLE001 - torch raises many types for a bad file
        raise CheckpointError(f"{path} cannot be read: truncated or corrupt PyTorch file "
                              f"({type(e).__name__})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}; accepted: a state dict of tensors")
    return state


def _read_shards(index: Path, reader) -> dict[str, torch.Tensor]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index} is not a valid shard index ({type(e).__name__}: {e})") from None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index}: weight_map must map tensor names to shard file names")
    state = {}
    for shard in sorted(set(weight_map.values())):
        if Path(shard).name != shard or shard in ("", ".", ".."):
            raise CheckpointError(f"{index} names shard {shard!r}; accepted: a file name in the checkpoint "
                                  "directory (no path)")
        if not (index.parent / shard).is_file():
            raise CheckpointError(f"{index} names shard {shard}, which is missing")
        state.update(reader(index.parent / shard))
    return state


def read_weights(d: Path) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint directory (safetensors preferred, as transformers does)."""
    if (d / SAFETENSORS).is_file():
        return _read_safetensors(d / SAFETENSORS)
    if (d / f"{SAFETENSORS}.index.json").is_file():
        return _read_shards(d / f"{SAFETENSORS}.index.json", _read_safetensors)
    if (d / PYTORCH_BIN).is_file():
        return _read_bin(d / PYTORCH_BIN)
    if (d / f"{PYTORCH_BIN}.index.json").is_file():
        return _read_shards(d / f"{PYTORCH_BIN}.index.json", _read_bin)
    raise CheckpointError(f"{d} has no weights file; accepted: {SAFETENSORS} or {PYTORCH_BIN} "
                          "(or their sharded .index.json forms)")


def load_state(model: GPT2, state: dict[str, torch.Tensor], where: str) -> GPT2:
    """Copy a state dict with HF GPT-2 names (with or without `transformer.`) into `model`, upcast to fp32."""
    own = model.state_dict()
    state = check_state(own, state, where)
    with torch.no_grad():
        for name, p in own.items():
            p.copy_(state[name].to(torch.float32))
    return model


def check_state(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """`state` (HF GPT-2 names, with or without `transformer.`) checked against the tensors `own` names (their
    shapes; `own` may live on the meta device): {name: tensor} in the stored dtype, the tied LM head dropped."""
    state = {k.removeprefix("transformer."): v for k, v in state.items() if not k.endswith(_BUFFERS)}
    for name, want in own.items():
        if name not in state:
            raise CheckpointError(f"{where}: tensor {name} is missing")
        got = state[name]
        if not isinstance(got, torch.Tensor):
            raise CheckpointError(f"{where}: {name} is a {type(got).__name__}, not a tensor")
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(f"{where}: tensor {name} has shape {list(got.shape)}, expected "
                                  f"{list(want.shape)} from config.json")
        if not got.is_floating_point():
            raise CheckpointError(f"{where}: tensor {name} is {got.dtype}; accepted: floating point")
        if not torch.isfinite(got).all():
            raise CheckpointError(f"{where}: tensor {name} holds inf or NaN values; accepted: finite weights")
    head = state.pop("lm_head.weight", None) if "lm_head.weight" not in own else None     # untied: one of `own`
    if head is not None and not torch.equal(head.to(torch.float32), state["wte.weight"].to(torch.float32)):
        raise CheckpointError(f"{where}: lm_head.weight differs from wte.weight; accepted: a tied LM head, as "
                              "GPT-2 has")
    extra = sorted(k for k in state if k not in own)
    if extra:
        raise CheckpointError(f"{where}: unexpected tensor(s) {', '.join(extra[:3])}"
                              f"{' ...' if len(extra) > 3 else ''}; accepted: GPT-2's tensors only")
    return state


# ------------------------------------------------------------------------------------------------ public API
def _directory(path: str | Path) -> Path:
    d = Path(path)
    if not d.exists():
        raise CheckpointError(f"checkpoint directory {d} does not exist")
    if not d.is_dir():
        raise CheckpointError(f"{d} is not a directory; accepted: a checkpoint directory with config.json")
    return d


def load_checkpoint(path: str | Path) -> GPT2:
    """A GPT2 (eval mode, float32) from a checkpoint directory; its GPTConfig is `model.config`."""
    d = _directory(path)
    cfg = read_config(d)
    return load_state(GPT2(cfg), read_weights(d), str(d)).eval()


def load_tensors(path: str | Path) -> tuple[GPTConfig, dict[str, torch.Tensor]]:
    """A checkpoint directory's config and tensors as stored (an FP16 checkpoint stays FP16), with every check
    `load_checkpoint` makes but no float32 model: the compiler's input, one copy of the weights in memory.
    Names are HF's without `transformer.`; the tied LM head is dropped."""
    d = _directory(path)
    cfg = read_config(d)
    with torch.device("meta"):                   # the expected names and shapes, no memory
        own = GPT2(cfg).state_dict()
    return cfg, check_state(own, read_weights(d), str(d))


def from_transformers(hf_model) -> GPT2:
    """Our GPT2 from a `transformers` GPT2LMHeadModel (or GPT2Model) object, weights copied."""
    cfg = config_from_hf(hf_model.config.to_dict(), "transformers model config")
    return load_state(GPT2(cfg), hf_model.state_dict(), "transformers model").eval()


def save_checkpoint(model: GPT2, path: str | Path, dtype: torch.dtype = torch.float32,
                    extra_config: dict | None = None) -> Path:
    """Write config.json + model.safetensors with HF names, loadable by this module and by transformers.

    Each file is written to a temporary name and renamed into place, so a failure leaves nothing half-written.
    """
    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    state = {(k if k.startswith("lm_head.") else f"transformer.{k}"): v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    config = json.dumps(config_to_hf(model.config, extra_config), indent=2) + "\n"
    _write_atomic(d / SAFETENSORS, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    _write_atomic(d / "config.json", lambda tmp: Path(tmp).write_text(config))
    return d


def _write_atomic(target: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)                         # mkstemp creates 0600; checkpoints are meant to be shared
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_default() -> GPT2:
    """The embedded default model shipped in the repository (models/default)."""
    return load_checkpoint(DEFAULT_MODEL_DIR)
