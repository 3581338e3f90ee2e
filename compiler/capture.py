"""Capture GPT-2 into the graph IR: from a state dict with Hugging Face names, a model object, a checkpoint
directory, or a named GPT-2 size (shapes only, for the performance model).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dfx.errors import CompileError
from dfx.models import checkpoint, gpt2

from .graph import Graph, Node, Shape

MODEL_KEYS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "layer_norm_epsilon")


def _canon(name: str) -> str:
    return name[len("transformer."):] if name.startswith("transformer.") else name


def model_dict(cfg) -> dict:
    """GPT-2 hyper-parameters from a GPTConfig, a transformers GPT2Config or a dict."""
    get = cfg.get if isinstance(cfg, dict) else (lambda k, default=None: getattr(cfg, k, default))
    out = {}
    for k in MODEL_KEYS:
        v = get(k)
        if v is None:
            v = get({"n_positions": "n_ctx"}.get(k, k)) if k == "n_positions" else None
        if v is None:
            raise CompileError(f"model config has no {k}; a GPT-2 config is needed")
        out[k] = float(v) if k == "layer_norm_epsilon" else int(v)
    act = get("activation_function", "gelu_new") or "gelu_new"
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise CompileError(f"node mlp.act: activation {act!r} cannot be lowered; the GELU unit implements the "
                           "tanh approximation (gelu_new, gelu_pytorch_tanh)")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if get(flag, False):
            raise CompileError(f"node attn: {flag}=True cannot be lowered; the attention unit scales by "
                               "1/sqrt(head_dim) only")
    if get("scale_attn_weights", True) is False:
        raise CompileError("node attn: scale_attn_weights=False cannot be lowered; set it True")
    return out


def capture_state(model: dict, state: dict | None, owned: bool = False) -> Graph:
    """Build the IR from hyper-parameters and a state dict (HF GPT-2 names; None for shapes only). `owned`: the
    state's tensors are the compiler's (a checkpoint it loaded), so the graph uses them in place, never copied."""
    m = model_dict(model)
    E, H, L, V, P = m["n_embd"], m["n_head"], m["n_layer"], m["vocab_size"], m["n_positions"]
    if E % H:
        raise CompileError(f"node attn: n_embd {E} is not divisible by n_head {H}")
    hd = E // H
    sd = {_canon(k): v for k, v in state.items()} if state is not None else None

    def p(name: str, shape: tuple[int, ...]):
        if sd is None:
            return Shape(shape)
        if name not in sd:
            raise CompileError(f"node {name.rsplit('.', 1)[0]}: weight {name} is missing from the state dict")
        t = sd[name]
        if hasattr(t, "detach"):
            t = t.detach().cpu()
            a = t.numpy() if t.dtype in (torch.float16, torch.float32) else t.float().numpy()
        else:
            a = np.asarray(t)
        if a.shape != shape:
            raise CompileError(f"node {name.rsplit('.', 1)[0]}: {name} has shape {list(a.shape)}, "
                               f"expected {list(shape)}")
        # binary16 stays binary16 (an FP16 checkpoint: no float32 copy; the passes widen exactly where they
        # compute), anything else becomes float32 (a copy, unless the compiler owns a float32 tensor)
        return a if a.dtype == np.float16 else a.astype(np.float32, copy=not owned)

    g = Graph(model=m, has_weights=sd is not None, own_weights=owned and sd is not None)
    wte = p("wte.weight", (V, E))
    g.add(Node("embed", "embed", (), "x0", {"wte": wte, "wpe": p("wpe.weight", (P, E))}), E)
    x = "x0"
    for i in range(L):
        b = f"h.{i}"
        g.add(Node(f"{b}.ln_1", "layernorm", (x,), f"{b}.ln1",
                   {"gamma": p(f"{b}.ln_1.weight", (E,)), "beta": p(f"{b}.ln_1.bias", (E,))},
                   {"eps": m["layer_norm_epsilon"]}), E)
        g.add(Node(f"{b}.attn.c_attn", "linear", (f"{b}.ln1",), f"{b}.qkv",
                   {"weight": p(f"{b}.attn.c_attn.weight", (E, 3 * E)), "bias": p(f"{b}.attn.c_attn.bias", (3 * E,))},
                   {"act": None}), 3 * E)
        g.add(Node(f"{b}.attn", "attention", (f"{b}.qkv",), f"{b}.att",
                   attrs={"layer": i, "n_head": H, "head_dim": hd, "head_pad": hd, "max_seq": P}), E)
        g.add(Node(f"{b}.attn.c_proj", "linear", (f"{b}.att",), f"{b}.ao",
                   {"weight": p(f"{b}.attn.c_proj.weight", (E, E)), "bias": p(f"{b}.attn.c_proj.bias", (E,))},
                   {"act": None}), E)
        g.add(Node(f"{b}.res1", "add", (x, f"{b}.ao"), f"{b}.x1"), E)
        g.add(Node(f"{b}.ln_2", "layernorm", (f"{b}.x1",), f"{b}.ln2",
                   {"gamma": p(f"{b}.ln_2.weight", (E,)), "beta": p(f"{b}.ln_2.bias", (E,))},
                   {"eps": m["layer_norm_epsilon"]}), E)
        g.add(Node(f"{b}.mlp.c_fc", "linear", (f"{b}.ln2",), f"{b}.fc",
                   {"weight": p(f"{b}.mlp.c_fc.weight", (E, 4 * E)), "bias": p(f"{b}.mlp.c_fc.bias", (4 * E,))},
                   {"act": "gelu"}), 4 * E)
        g.add(Node(f"{b}.mlp.c_proj", "linear", (f"{b}.fc",), f"{b}.mo",
                   {"weight": p(f"{b}.mlp.c_proj.weight", (4 * E, E)), "bias": p(f"{b}.mlp.c_proj.bias", (E,))},
                   {"act": None}), E)
        g.add(Node(f"{b}.res2", "add", (f"{b}.x1", f"{b}.mo"), f"{b}.x2"), E)
        x = f"{b}.x2"
    g.add(Node("ln_f", "layernorm", (x,), "xf",
               {"gamma": p("ln_f.weight", (E,)), "beta": p("ln_f.bias", (E,))},
               {"eps": m["layer_norm_epsilon"]}), E)
    # the LM head: lm_head.weight^T where the state has one (an untied head; a tied one equals wte), else WTE^T
    head = p("lm_head.weight", (V, E)) if sd is not None and "lm_head.weight" in sd else wte
    lm = Shape((E, V)) if sd is None else head.T              # a view: the tiles are cut from it piece by piece
    g.add(Node("lm_head", "lm_head", ("xf",), "logits", {"weight": lm}), V)
    return g


def capture(source) -> tuple[Graph, object]:
    """IR from any model source; returns (graph, tokenizer source dir or None).

    source: a named GPT-2 size ("124M", "gpt2-xl", ...: shapes only), a dict of GPT-2 hyper-parameters (shapes
    only), a checkpoint directory, our golden `GPT2` module, or a `transformers` GPT2LMHeadModel.
    """
    if hasattr(source, "config") and type(source).__module__.startswith("transformers"):
        return capture_state(source.config.to_dict(), source.state_dict()), None
    if isinstance(source, dict):                      # GPT-2 hyper-parameters alone: a shapes-only program
        return capture_state(source, None), None
    if isinstance(source, (str, Path)):
        s = str(source)
        if not Path(s).exists():
            try:
                cfg = gpt2.named_config(s)
            except Exception:   # noqa: BLE001 - say both what was tried and what is accepted
                raise CompileError(f"model {s!r} is neither a checkpoint directory nor a named GPT-2 size "
                                   f"({', '.join(gpt2.GPT2_SIZES)})") from None
            return capture_state(cfg.to_dict(), None), None
        cfg, state = checkpoint.load_tensors(s)       # as stored: one copy of an FP16 checkpoint's weights
        return capture_state(cfg.to_dict(), state, owned=True), Path(s)
    if isinstance(source, gpt2.GPT2):
        return capture_state(source.config.to_dict(), source.state_dict()), None
    raise CompileError(f"cannot compile a {type(source).__name__}; give a checkpoint directory, a named GPT-2 size, "
                       "a dfx GPT2 model or a transformers GPT2LMHeadModel")
