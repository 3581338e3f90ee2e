"""The compiler driver: model in, verified `Program` out."""
from __future__ import annotations

from pathlib import Path

from dfx import formats as F
from dfx import isa, progress
from dfx.config import AccelConfig, load_config
from dfx.errors import CompileError
from dfx.manifest import (BATCH_STREAM, STREAMS, DeviceMemory, HostSymbols, Manifest, ModelConfig, NodePc,
                          PrefillBatch, Quantization, Region)
from dfx.models import checkpoint, gpt2
from dfx.models.tokenizer import has_tokenizer_files, load_tokenizer
from dfx.program import DeviceImage, Program
from dfx.symbols import LOGITS, PREFILL_TOKENS, Kind, sym_name

from .allocate import Plan, allocate, piece_bytes
from .capture import MODEL_KEYS, capture
from .graph import Graph, verify
from .image import build_images
from .lower import lower
from .partition import partition
from .passes import pad_heads, quantize
from .quant.model import quantize_model


def _model_quantize(model, fmt, method, calib):
    """Model-level quantizers (gptq, adadim, mixed) need the dfx GPT2 and calibration: {param: QuantWeight}."""
    if isinstance(model, (str, Path)) and Path(model).exists():
        model = checkpoint.load_checkpoint(model)
    elif hasattr(model, "config") and type(model).__module__.startswith("transformers"):
        model = checkpoint.from_transformers(model)
    if not isinstance(model, gpt2.GPT2):
        raise CompileError(f"method {method} needs a model with weights (a checkpoint or GPT2 object)")
    return quantize_model(model, fmt, method, calib)


def quantization_record(g: Graph, weights, method: str | None, plans: list[Plan]) -> Quantization:
    """The manifest's `quantization`: the format (or "per-matrix" for a dict), the method, each linear's format
    and, per device, every weight region by HBM address (64-byte units)."""
    lin = [n for n in g.nodes if n.op in ("linear", "lm_head")]
    fmts = {n.name: n.attrs.get("wformat", F.FP16).name for n in lin}
    methods = {}
    for n in lin:
        w = n.params.get("weight")
        if isinstance(w, F.QuantWeight):
            methods[n.name] = w.meta.get("method", method or "given")
    regions = []
    for plan in plans:
        reg = {}
        for n in lin:
            fmt = n.attrs.get("wformat", F.FP16)
            k = n.params["weight"].shape[0]
            for p, (a, b) in enumerate(n.attrs["pieces"][plan.device]):
                w = n.params["weight"]
                phase = w.cols(a, b).phase if isinstance(w, F.QuantWeight) else F.piece_phase(fmt, a)
                reg[plan.hbm.address(sym_name(n.name, Kind.WEIGHT, p))] = Region(
                    n.name, fmt.name, k, b - a, phase, piece_bytes(n, a, b, plan.cfg))
        regions.append(reg)
    name = ("per-matrix" if isinstance(weights, dict) else weights.name if isinstance(weights, F.WeightFormat)
            else F.parse(weights).name)
    return Quantization(name, method or ("given" if isinstance(weights, dict) else
                                         "bcq" if name.startswith("bcq") else "rtn"),
                        fmts, methods, tuple(regions))


def prepare_weights(model, weights="fp16", method: str | None = None, calib=None):
    """The weights `compile_model` compiles with: a model-level quantizer's {param: QuantWeight} dict when
    `method` is gptq, adadim or mixed (run here, on the model with `calib`), else `weights` as given (a format
    name, a WeightFormat or such a dict already: passing the result again does nothing)."""
    if isinstance(weights, dict):
        return weights
    if method == "mixed":
        if weights not in (None, "fp16"):
            raise CompileError(f"method mixed chooses a format per layer (its candidates under a bit budget); "
                               f"give no weight format, not {weights!r}")
        return _model_quantize(model, None, method, calib)
    if method is not None and method not in ("rtn", "bcq"):
        return _model_quantize(model, weights, method, calib)
    return weights


def compile_model(model, config: str | AccelConfig | None = "tiny", devices: int = 1, weights="fp16",
                  max_seq: int | None = None, overlap: int | dict[str, int] = 1, check: bool = True,
                  method: str | None = None,
                  calib=None, prefill_batch: int | None = None) -> Program:
    """Compile a GPT-2 (checkpoint dir, named size, dfx GPT2 or transformers model) for `config`.

    devices: FPGAs in the ring (intra-layer model parallelism, see partition.py); overlap: 1 for DFX's blocking
    all-gathers, S > 1 to cut each gathered output into S parts so communication overlaps compute, or a dict
    {role: S} per layer role (`partition.ROLES`); to let the performance model pick S per role, call
    `dfx.perf.compile_tuned(..., overlap="auto")`.
    weights: a format name (`dfx.formats`; Conv1D weights quantized in the compiler's padded coordinates by
    `method`: rtn, or bcq for bcq formats) or a dict {param name: QuantWeight} from a model-level quantizer
    (`compiler.quant.model.quantize_model`). method gptq/adadim/mixed (with `calib`) runs that quantizer on the
    model first. With `check`, the IR verifier runs between passes. prefill_batch M (default None: off, the
    token-serial program): add the `prefill_batch` stream, which prefills a chunk of up to M prompt tokens per run
    with every weight matrix streamed once per chunk (docs/isa.md, "Batched prefill"); the other streams and
    their memory layout are unchanged.
    """
    cfg = load_config(config)
    if overlap == "auto":
        raise CompileError("overlap 'auto' is chosen by the performance model: call dfx.perf.compile_tuned "
                           "(compile_model takes a segment count >= 1 or {role: count})")
    weights = prepare_weights(model, weights, method, calib)
    g, tok_dir = capture(model)
    passes = [("verify", lambda g: g), ("pad_heads", lambda g: pad_heads(g, cfg)),
              ("quantize", lambda g: quantize(g, cfg, weights, method)),
              ("partition", lambda g: partition(g, cfg, devices, overlap))]
    work = progress.bar("compile", len(passes) + devices + (len(g.nodes) if g.has_weights else 0), "step",
                        leave=False)
    for name, p in passes:
        work.set_postfix_str(name, refresh=False)
        g = p(g)
        if check:
            verify(g)
        work.update(1)
    plans, lowered, node_pcs = [], [], {}
    for k in range(devices):
        work.set_postfix_str(f"device {k}: allocate, lower", refresh=False)
        plan = allocate(g, cfg, max_seq, device=k, prefill_batch=prefill_batch)
        streams, pcs = lower(g, plan)
        for s, v in pcs.items():
            node_pcs.setdefault(s, []).append(v)
        plans.append(plan)
        lowered.append(streams)
        work.update(1)
    # the weights move from the graph into the images (a temporary file) node by node (release): in memory once
    work.set_postfix_str("memory images", refresh=False)
    if g.has_weights:
        mem = build_images(g, plans, release=True, on_node=lambda n: work.update(1))
        images = [DeviceImage(s, source=mem, cfg=cfg, device=k) for k, s in enumerate(lowered)]
    else:
        images = [DeviceImage(s, bytearray(), bytearray()) for s in lowered]
    work.close()
    plan, lm = plans[0], g.nodes[-1]
    batch = (PrefillBatch(BATCH_STREAM, prefill_batch, plan.ddr.address(PREFILL_TOKENS))
             if prefill_batch is not None else None)
    symbols = HostSymbols(plan.ddr.address(LOGITS), g.model["vocab_size"],
                          tuple(tuple(map(tuple, lm.attrs["pieces"][k])) for k in range(devices)), batch)
    memory = tuple(DeviceMemory(p.hbm_size, p.ddr_size, p.vbuf_entries_used,
                                p.batch.vbuf_entries_used if p.batch is not None else None, p.hbm, p.ddr)
                   for p in plans)
    streams = STREAMS + ((BATCH_STREAM,) if prefill_batch is not None else ())
    # the checkpoint's tokenizer as one tokenizer.json, which a program's reader builds in memory
    tok = (load_tokenizer(tok_dir, g.model["vocab_size"]).to_json() if has_tokenizer_files(tok_dir) else None)
    manifest = Manifest(
        isa_version=isa.ISA_VERSION, config=cfg, model=ModelConfig(**{k: g.model[k] for k in MODEL_KEYS}),
        devices=devices, ring=tuple(range(devices)), overlap=overlap, weights=g.has_weights, max_seq=plan.max_seq,
        streams=streams, symbols=symbols, quantization=quantization_record(g, weights, method, plans),
        memory=memory, tokenizer="files" if tok is not None or g.model["vocab_size"] != 256 else "bytes",
        node_pcs={s: tuple(tuple(NodePc(pc, node) for pc, node in per) for per in pcs)
                  for s, pcs in node_pcs.items()})
    return Program(manifest, images, tok)
