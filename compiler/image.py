"""Memory images: parameters written where the plan put them, in the layout the DMA/MPU read."""
from __future__ import annotations

import numpy as np

from dfx import formats as F
from dfx import isa
from dfx.program import tile_matrix
from dfx.symbols import Kind, sym_name

from .allocate import Plan
from .graph import Graph, Shape
from .passes import weight_piece


def build_images(g: Graph, plans: list[Plan], release: bool = False) -> list[tuple[bytearray, bytearray]]:
    """(striped HBM image, DDR image) of every plan's device. KV-cache regions and the logits buffer are zero.
    Node by node, for every device at once, written in place; `release`: a node's parameters become `Shape`s once
    every image holds them, so that the weights are in memory once, in the graph or in the images, not twice."""
    images = [(bytearray(p.hbm_size), bytearray(p.ddr_size)) for p in plans]
    for n in g.nodes:
        for plan, (hbm, ddr) in zip(plans, images):
            _put_node(n, plan, np.frombuffer(hbm, np.uint8), np.frombuffer(ddr, np.uint8))
        if release:
            n.params = {k: Shape(tuple(v.shape)) if isinstance(v, np.ndarray) else v for k, v in n.params.items()}
    return images


def _put_node(n, plan: Plan, hbm: np.ndarray, ddr: np.ndarray) -> None:
    cfg = plan.cfg

    def put_ddr(node: str, kind: Kind, a: np.ndarray):
        b = np.ascontiguousarray(a, np.float16).view(np.uint8).reshape(-1)
        at = plan.ddr.address(sym_name(node, kind))
        ddr[at:at + b.size] = b

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
