"""Memory images: parameters written where the plan put them, in the layout the DMA/MPU read."""
from __future__ import annotations

import numpy as np

from dfx import formats as F
from dfx import isa
from dfx.program import tile_matrix
from dfx.symbols import Kind, sym_name

from .allocate import Plan
from .graph import Graph
from .passes import weight_piece


def build_images(g: Graph, plan: Plan) -> tuple[bytearray, bytearray]:
    """(striped HBM image, DDR image). KV-cache regions and the logits buffer are zero."""
    cfg = plan.cfg
    out_hbm, out_ddr = bytearray(plan.hbm_size), bytearray(plan.ddr_size)    # filled in place: no other copy
    hbm, ddr = np.frombuffer(out_hbm, np.uint8), np.frombuffer(out_ddr, np.uint8)

    def put_ddr(node: str, kind: Kind, a: np.ndarray):
        b = np.ascontiguousarray(a, np.float16).view(np.uint8).reshape(-1)
        at = plan.ddr.address(sym_name(node, kind))
        ddr[at:at + b.size] = b

    for n in g.nodes:
        if n.op == "embed":
            put_ddr(n.name, Kind.WTE, n.params["wte"])
            put_ddr(n.name, Kind.WPE, n.params["wpe"])
        elif n.op == "layernorm":
            put_ddr(n.name, Kind.GAMMA, n.params["gamma"])
            put_ddr(n.name, Kind.BETA, n.params["beta"])
        if n.op == "linear" and "bias" in n.params:
            put_ddr(n.name, Kind.BIAS, n.params["bias"])
        if n.op in ("linear", "lm_head"):
            for p, (c0, c1) in enumerate(n.attrs["pieces"][plan.device]):
                w = weight_piece(n, c0, c1)
                if isinstance(w, F.QuantWeight):      # descriptor + packed codes + scale blocks (dfx.formats)
                    t = np.frombuffer(F.pack_region(w, cfg.d, cfg.l), np.uint8)
                else:
                    t = tile_matrix(w, cfg.d, cfg.l).view(np.uint8)
                a = plan.hbm.address(sym_name(n.name, Kind.WEIGHT, p)) * isa.HBM_UNIT
                hbm[a:a + t.size] = t
    return out_hbm, out_ddr
