"""Memory images: parameters written where the plan put them, in the layout the DMA/MPU read.

The images go into an `ImageFile` (a temporary file laid out as the program's members), not into memory: with
`release`, a node's parameters leave the graph once every device's images hold them, so a compile holds its
weights about once (in the graph, shrinking) plus the pieces being written, never a zeroed image per device.
"""
from __future__ import annotations

import numpy as np

from dfx import formats as F
from dfx import isa
from dfx.images import ImageFile
from dfx.program import tile_grid, tile_matrix
from dfx.symbols import Kind, sym_name

from .allocate import Plan
from .graph import Graph, Shape
from .passes import weight_piece

PIECE_BYTES = 2 << 20       # an FP16 matrix piece is tiled and written this many bytes (whole tile columns) at a time


def build_images(g: Graph, plans: list[Plan], release: bool = False, on_node=None) -> ImageFile:
    """The striped HBM image and the DDR image of every plan's device, in one `ImageFile`. KV-cache regions and the
    logits buffer are zero. Node by node, for every device at once; `release`: a node's parameters become `Shape`s
    once every image holds them, so that the weights are in memory once, in the graph, and shrink as they go.
    `on_node(node)` is called after each node (progress)."""
    images = ImageFile(plans[0].cfg, [(p.hbm_size, p.ddr_size) for p in plans])
    for n in g.nodes:
        for plan in plans:
            _put_node(n, plan, images)
        if release:
            n.params = {k: Shape(tuple(v.shape)) if isinstance(v, np.ndarray) else v for k, v in n.params.items()}
        if on_node is not None:
            on_node(n)
    return images


def _put_node(n, plan: Plan, images: ImageFile) -> None:
    cfg, dev = plan.cfg, plan.device

    def put_ddr(node: str, kind: Kind, a: np.ndarray):
        b = np.ascontiguousarray(a, np.float16).view(np.uint8)
        images.write_ddr(dev, plan.ddr.address(sym_name(node, kind)), b)

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
            a = plan.hbm.address(sym_name(n.name, Kind.WEIGHT, p)) * isa.HBM_UNIT
            if isinstance(w, F.QuantWeight):      # descriptor + packed codes + scale blocks (dfx.formats)
                images.write_hbm(dev, a, np.frombuffer(F.pack_region(w, cfg.d, cfg.l), np.uint8))
                continue
            # tiles are column-major (dfx.program.tile_matrix): columns j.. of the piece start at tile column j/l
            kt, _ = tile_grid(*w.shape, cfg.d, cfg.l)
            col_bytes = kt * cfg.d * 2                # one column of tiles, per column of the matrix
            step = max(1, PIECE_BYTES // (col_bytes * cfg.l)) * cfg.l
            for j in range(0, w.shape[1], step):
                images.write_hbm(dev, a + j * col_bytes, tile_matrix(w[:, j:j + step], cfg.d, cfg.l).view(np.uint8))
