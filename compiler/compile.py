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
from .lower import lower
from .passes import pad_heads, quantize

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json")


def compile_model(model, config: str | AccelConfig | None = "tiny", devices: int = 1, weights: str = "fp16",
                  max_seq: int | None = None, check: bool = True) -> Program:
    """Compile a GPT-2 (checkpoint dir, named size, dfx GPT2 or transformers model) for `config`.

    With `check`, the IR verifier runs between passes.
    """
    cfg = load_config(config)
    if devices != 1:
        raise CompileError(f"--devices {devices}: multi-device partitioning is not implemented yet; accepted: 1")
    g, tok_dir = capture(model)
    passes = [("verify", lambda g: g), ("pad_heads", lambda g: pad_heads(g, cfg)),
              ("quantize", lambda g: quantize(g, cfg, weights))]
    for name, p in passes:
        g = p(g)
        if check:
            verify(g)
    plan = allocate(g, cfg, max_seq)
    streams = lower(g, plan)
    if g.has_weights:
        hbm, ddr = build_images(g, plan)
    else:
        hbm, ddr = bytearray(), bytearray()
    manifest = {
        "isa_version": isa.ISA_VERSION,
        "config": cfg.to_dict(),
        "config_hash": cfg.config_hash,
        "model": dict(g.model),
        "devices": 1,
        "ring": [0],
        "weights": g.has_weights,
        "quantization": {"format": weights},
        "max_seq": plan.max_seq,
        "streams": list(STREAMS),
        "symbols": {"logits": plan.ddr["logits"], "vocab_size": g.model["vocab_size"]},
        "memory": {"hbm_bytes": plan.hbm_size, "ddr_bytes": plan.ddr_size,
                   "vbuf_entries": plan.vbuf_entries_used, "hbm": plan.hbm, "ddr": plan.ddr},
        "tokenizer": "bytes" if g.model["vocab_size"] == 256 else "files",
    }
    tok = {}
    if tok_dir is not None:
        for f in TOKENIZER_FILES:
            p = Path(tok_dir) / f
            if p.is_file():
                tok[f] = p.read_bytes()
    if tok:
        manifest["tokenizer"] = "files"
    return Program(manifest, [DeviceImage(streams, hbm, ddr)], tok)
