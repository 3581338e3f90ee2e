"""The compiler driver: model in, verified `Program` out."""
from __future__ import annotations

from pathlib import Path

from dfx import isa
from dfx.config import AccelConfig, load_config
from dfx.errors import CompileError
from dfx.program import STREAMS, DeviceImage, Program

from .allocate import allocate
from .capture import capture
from .graph import verify
from .image import build_images
from .lower import BATCH_STREAM, lower
from .partition import partition
from .passes import pad_heads, quantize

def _model_quantize(model, fmt, method, calib):
    """Model-level quantizers (gptq, adadim, mixed) need the dfx GPT2 and calibration: {param: QuantWeight}."""
    from dfx.models import checkpoint, gpt2
    try:
        from .quant.model import quantize_model
    except ImportError:
        raise CompileError(f"method {method}: the model-level quantizers are not available") from None
    if isinstance(model, (str, Path)) and Path(model).exists():
        model = checkpoint.load_checkpoint(model)
    elif hasattr(model, "config") and type(model).__module__.startswith("transformers"):
        model = checkpoint.from_transformers(model)
    if not isinstance(model, gpt2.GPT2):
        raise CompileError(f"method {method} needs a model with weights (a checkpoint or GPT2 object)")
    return quantize_model(model, fmt, method, calib)


def quantization_record(g, weights, method, images) -> dict:
    """The manifest's `quantization`: the format (or "per-matrix" for a dict), the method, each linear's format
    and, per device, every weight region: HBM address (64-byte units) -> {node, format, k, n, phase, bytes}."""
    from dfx import formats as F
    from .allocate import piece_bytes
    lin = [n for n in g.nodes if n.op in ("linear", "lm_head")]
    fmts = {n.name: n.attrs.get("wformat", F.FP16).name for n in lin}
    methods = {}
    for n in lin:
        w = n.params.get("weight")
        if isinstance(w, F.QuantWeight):
            methods[n.name] = w.meta.get("method", method or "given")
    regions = []
    for plan, _ in images:
        reg = {}
        for n in lin:
            fmt = n.attrs.get("wformat", F.FP16)
            k = n.params["weight"].shape[0]
            for p, (a, b) in enumerate(n.attrs["pieces"][plan.device]):
                w = n.params["weight"]
                phase = w.cols(a, b).phase if isinstance(w, F.QuantWeight) else F.piece_phase(fmt, a)
                reg[str(plan.hbm[f"{n.name}.w{p}"])] = {"node": n.name, "format": fmt.name, "k": k, "n": b - a,
                                                        "phase": phase, "bytes": piece_bytes(n, a, b, plan.cfg)}
        regions.append(reg)
    name = ("per-matrix" if isinstance(weights, dict) else weights.name if isinstance(weights, F.WeightFormat)
            else F.parse(weights).name)
    return {"format": name, "method": method or ("given" if isinstance(weights, dict) else
                                                 "bcq" if name.startswith("bcq") else "rtn"),
            "matrices": fmts, "methods": methods, "regions": regions}


def _dominant_format(weights: dict) -> str:
    """The format holding the most weights of a {param: QuantWeight} dict (what overlap tuning assumes)."""
    count: dict[str, int] = {}
    for q in weights.values():
        count[q.fmt.name] = count.get(q.fmt.name, 0) + int(q.codes.shape[-1] * q.codes.shape[-2])
    return max(count, key=count.get) if count else "fp16"


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json")


def compile_model(model, config: str | AccelConfig | None = "tiny", devices: int = 1, weights="fp16",
                  max_seq: int | None = None, overlap: int | dict | str = 1, check: bool = True,
                  method: str | None = None,
                  calib=None, prefill_batch: int | None = None) -> Program:
    """Compile a GPT-2 (checkpoint dir, named size, dfx GPT2 or transformers model) for `config`.

    devices: FPGAs in the ring (intra-layer model parallelism, see partition.py); overlap: 1 for DFX's blocking
    all-gathers, S > 1 to cut each gathered output into S parts so communication overlaps compute, a dict
    {role: S} per layer role (`partition.ROLES`), or "auto": the performance model picks S per role
    (`dfx.sim.perf_tune`; never slower than blocking on its measured steps).
    weights: a format name (`dfx.formats`; Conv1D weights quantized in the compiler's padded coordinates by
    `method`: rtn, or bcq for bcq formats) or a dict {param name: QuantWeight} from a model-level quantizer
    (`compiler.quant.model.quantize_model`). method gptq/adadim/mixed (with `calib`) runs that quantizer on the
    model first. With `check`, the IR verifier runs between passes. prefill_batch M (default None: off, the
    token-serial program): add the `prefill_batch` stream, which prefills a chunk of up to M prompt tokens per run
    with every weight matrix streamed once per chunk (docs/isa.md, "Batched prefill"); the other streams and
    their memory layout are unchanged.
    """
    cfg = load_config(config)
    if method == "mixed":
        if weights not in (None, "fp16"):
            raise CompileError(f"method mixed chooses a format per layer (its candidates under a bit budget); "
                               f"give no weight format, not {weights!r}")
        weights = _model_quantize(model, None, method, calib)
    elif method is not None and not isinstance(weights, dict) and method not in ("rtn", "bcq"):
        weights = _model_quantize(model, weights, method, calib)
    g, tok_dir = capture(model)
    if overlap == "auto":
        from dfx.sim.perf_tune import tune_overlap
        fmt = weights if isinstance(weights, str) or weights is None else _dominant_format(weights)
        overlap = tune_overlap(g.model, cfg, devices, fmt or "fp16", max_seq=max_seq)
    passes = [("verify", lambda g: g), ("pad_heads", lambda g: pad_heads(g, cfg)),
              ("quantize", lambda g: quantize(g, cfg, weights, method)),
              ("partition", lambda g: partition(g, cfg, devices, overlap))]
    for name, p in passes:
        g = p(g)
        if check:
            verify(g)
    images, node_pcs = [], {}
    for k in range(devices):
        plan = allocate(g, cfg, max_seq, device=k, prefill_batch=prefill_batch)
        streams, pcs = lower(g, plan)
        for s, v in pcs.items():
            node_pcs.setdefault(s, []).append(v)
        hbm, ddr = build_images(g, plan) if g.has_weights else (bytearray(), bytearray())
        images.append((plan, DeviceImage(streams, hbm, ddr)))
    plan = images[0][0]
    lm = g.nodes[-1]
    manifest = {
        "isa_version": isa.ISA_VERSION,
        "config": cfg.to_dict(),
        "config_hash": cfg.config_hash,
        "model": dict(g.model),
        "devices": devices,
        "ring": list(range(devices)),
        "overlap": overlap,
        "weights": g.has_weights,
        "quantization": quantization_record(g, weights, method, images),
        "max_seq": plan.max_seq,
        "streams": list(STREAMS) + ([BATCH_STREAM] if prefill_batch is not None else []),
        "symbols": {"logits": plan.ddr["logits"], "vocab_size": g.model["vocab_size"],
                    "logits_pieces": [lm.attrs["pieces"][k] for k in range(devices)]},
        "memory": [{"hbm_bytes": p.hbm_size, "ddr_bytes": p.ddr_size, "vbuf_entries": p.vbuf_entries_used,
                    "hbm": p.hbm, "ddr": p.ddr} for p, _ in images],
        "tokenizer": "bytes" if g.model["vocab_size"] == 256 else "files",
        "node_pcs": node_pcs,
    }
    if prefill_batch is not None:
        manifest["symbols"]["prefill_batch"] = {"stream": BATCH_STREAM, "max_tokens": prefill_batch,
                                                "tokens": plan.ddr["prefill_tokens"]}
        for mem, (p, _) in zip(manifest["memory"], images):
            mem["vbuf_entries_batch"] = p.batch.vbuf_entries_used
    tok = {}
    if tok_dir is not None:
        for f in TOKENIZER_FILES:
            p = Path(tok_dir) / f
            if p.is_file():
                tok[f] = p.read_bytes()
    if tok:
        manifest["tokenizer"] = "files"
    return Program(manifest, [dev for _, dev in images], tok)
