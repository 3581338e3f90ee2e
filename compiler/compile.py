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
from .partition import partition
from .passes import pad_heads, quantize

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json")


def compile_model(model, config: str | AccelConfig | None = "tiny", devices: int = 1, weights: str = "fp16",
                  max_seq: int | None = None, overlap: int = 1, check: bool = True) -> Program:
    """Compile a GPT-2 (checkpoint dir, named size, dfx GPT2 or transformers model) for `config`.

    devices: FPGAs in the ring (intra-layer model parallelism, see partition.py); overlap: 1 for DFX's blocking
    all-gathers, S > 1 to cut each gathered output into S parts so communication overlaps compute.
    With `check`, the IR verifier runs between passes.
    """
    cfg = load_config(config)
    g, tok_dir = capture(model)
    passes = [("verify", lambda g: g), ("pad_heads", lambda g: pad_heads(g, cfg)),
              ("quantize", lambda g: quantize(g, cfg, weights)),
              ("partition", lambda g: partition(g, cfg, devices, overlap))]
    for name, p in passes:
        g = p(g)
        if check:
            verify(g)
    images, node_pcs = [], {}
    for k in range(devices):
        plan = allocate(g, cfg, max_seq, device=k)
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
        "quantization": {"format": weights},
        "max_seq": plan.max_seq,
        "streams": list(STREAMS),
        "symbols": {"logits": plan.ddr["logits"], "vocab_size": g.model["vocab_size"],
                    "logits_pieces": [lm.attrs["pieces"][k] for k in range(devices)]},
        "memory": [{"hbm_bytes": p.hbm_size, "ddr_bytes": p.ddr_size, "vbuf_entries": p.vbuf_entries_used,
                    "hbm": p.hbm, "ddr": p.ddr} for p, _ in images],
        "tokenizer": "bytes" if g.model["vocab_size"] == 256 else "files",
        "node_pcs": node_pcs,
    }
    tok = {}
    if tok_dir is not None:
        for f in TOKENIZER_FILES:
            p = Path(tok_dir) / f
            if p.is_file():
                tok[f] = p.read_bytes()
    if tok:
        manifest["tokenizer"] = "files"
    return Program(manifest, [dev for _, dev in images], tok)
