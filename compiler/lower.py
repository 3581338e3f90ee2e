"""Lowering: the graph IR + allocation plan -> instruction streams.

One run of a stream processes one token (register TOKEN) at one position (register POS), as DFX's
token-serial summarisation does:
- `prefill` runs every decoder layer and appends the token's K and V to the cache;
- `decode` does the same and then the LM head, storing FP16 logits to DDR (`symbols.logits`).
The host runs `prefill` for prompt tokens 0..T-2 and `decode` for token T-1 and every generated token.
"""
from __future__ import annotations

import math

from dfx import isa
from dfx.isa import Instr

from .allocate import Plan
from .graph import Graph, shape_of

S_MEAN, S_VAR, S_SCALE = 0, 1, 2          # scalar registers the lowering uses
DDR, HBM = 0, 1
IDX_TOKEN, IDX_POS = 1, 2


class Emitter:
    def __init__(self, g: Graph, plan: Plan):
        self.g, self.plan, self.cfg = g, plan, plan.cfg
        self.out: list[Instr] = []

    def __call__(self, mnemonic: str, **fields):
        self.out.append(Instr(mnemonic, **fields))

    def v(self, name: str, offset_elems: int = 0) -> int:
        assert offset_elems % self.cfg.d == 0, (name, offset_elems)
        return self.plan.vbuf[name] + offset_elems // self.cfg.d

    # ---- ops
    def embed(self, n):
        E = self.g.values[n.output]
        x, t = self.v(n.output), self.v(f"{n.name}.pos")
        self("LOAD", vaddr=x, addr=self.plan.ddr[f"{n.name}.wte"], n=E, index=IDX_TOKEN, stride=2 * E)
        self("LOAD", vaddr=t, addr=self.plan.ddr[f"{n.name}.wpe"], n=E, index=IDX_POS, stride=2 * E)
        self("VADD", dst=x, a=x, b=t, n=E)

    def layernorm(self, n):
        E = self.g.values[n.output]
        x, y = self.v(n.inputs[0]), self.v(n.output)
        g, b = self.v(f"{n.name}.gamma"), self.v(f"{n.name}.beta")
        self("LOAD", vaddr=g, addr=self.plan.ddr[f"{n.name}.gamma"], n=E)
        self("LOAD", vaddr=b, addr=self.plan.ddr[f"{n.name}.beta"], n=E)
        self("VSUM", a=x, n=E, sd=S_MEAN)
        self("SMULI", sd=S_MEAN, sa=S_MEAN, imm=1.0 / E)
        self("VSUBS", dst=y, a=x, sa=S_MEAN, n=E)
        self("VDOT", a=y, b=y, n=E, sd=S_VAR)
        self("SMULI", sd=S_VAR, sa=S_VAR, imm=1.0 / E)
        self("SADDI", sd=S_VAR, sa=S_VAR, imm=n.attrs["eps"])
        self("SRSQRT", sd=S_VAR, sa=S_VAR)
        self("VMULS", dst=y, a=y, sa=S_VAR, n=E)
        self("VMUL", dst=y, a=y, b=g, n=E)
        self("VADD", dst=y, a=y, b=b, n=E)

    def linear(self, n):
        K = shape_of(n.params["weight"])[0]
        pieces = list(enumerate(n.attrs["pieces"][self.plan.device]))
        for s0, length, gran in n.attrs["gathers"] or [(0, self.g.values[n.output], 0)]:
            for p, (a, b) in pieces:
                if not s0 <= a < s0 + length:
                    continue
                fields = dict(dst=self.v(n.output, a), src=self.v(n.inputs[0]), w=self.plan.hbm[f"{n.name}.w{p}"],
                              k=K, n=b - a, gelu=int(n.attrs.get("act") == "gelu"),
                              wfmt=n.attrs["wformat"].wfmt if "wformat" in n.attrs else 0)
                if "bias" in n.params:
                    bias = self.v(f"{n.name}.bias", a)
                    self("LOAD", vaddr=bias, addr=self.plan.ddr[f"{n.name}.bias"] + 2 * a, n=b - a)
                    fields.update(bias=bias, has_bias=1)
                self("LINEAR", **fields)
            if gran:
                self.allgather(n.output, s0, length, gran)

    def allgather(self, value: str, start: int, length: int, gran: int):
        self("ALLGATHER", vaddr=self.v(value, start), n=length, devices=self.g.model["devices"], gran=gran)

    def attention(self, n):
        H, hd, hp = n.attrs["n_head"], n.attrs["head_dim"], n.attrs["head_pad"]
        qkv, out = n.inputs[0], n.output
        heads = n.attrs["heads"][self.plan.device]
        for h in heads:           # append this token's K (column POS) and V (row POS) to the cache
            self("STORE_K", vaddr=self.v(qkv, (H + h) * hp), addr=self.plan.hbm[f"{n.name}.k{h}"], n=hp, hbm=HBM,
                 index=IDX_POS)
            self("STORE_VT", vaddr=self.v(qkv, (2 * H + h) * hp), addr=self.plan.hbm[f"{n.name}.v{h}"], n=hp, hbm=HBM,
                 index=IDX_POS)
        self("FENCE", units=isa.UNIT_BITS[isa.Unit.DMA])       # the cache append is read below (off-chip RAW)
        self("SMOVI", sd=S_SCALE, imm=1.0 / math.sqrt(hd))
        for h in heads:
            s = self.v(f"{n.name}.s{h % 2}")                   # two score buffers: head h+1 overlaps head h
            self("QK", dst=s, src=self.v(qkv, h * hp), w=self.plan.hbm[f"{n.name}.k{h}"], k=hp,
                 scale=1, s=S_SCALE, dyn_n=1)
            self("VMAX", a=s, sd=S_MEAN, dyn_n=1)
            self("VSUBS", dst=s, a=s, sa=S_MEAN, dyn_n=1)
            self("VEXP", dst=s, a=s, dyn_n=1)
            self("VSUM", a=s, sd=S_VAR, dyn_n=1)
            self("SRECIP", sd=S_VAR, sa=S_VAR)
            self("VMULS", dst=s, a=s, sa=S_VAR, dyn_n=1)
            self("SV", dst=self.v(out, h * hp), src=s, w=self.plan.hbm[f"{n.name}.v{h}"], n=hp, dyn_k=1,
                 rowmajor=1)
        for s0, length, gran in n.attrs["gathers"]:
            self.allgather(out, s0, length, gran)

    def add(self, n):
        self("VADD", dst=self.v(n.output), a=self.v(n.inputs[0]), b=self.v(n.inputs[1]), n=self.g.values[n.output])

    def lm_head(self, n):
        E = shape_of(n.params["weight"])[0]
        chunk = self.plan.logits_chunk
        kt = -(-E // self.cfg.d)
        tile_units = self.cfg.tile_bytes // isa.HBM_UNIT
        for p, (a, b) in enumerate(n.attrs["pieces"][self.plan.device]):
            w0 = self.plan.hbm[f"{n.name}.w{p}"]
            for c0 in range(a, b, chunk):
                c = min(chunk, b - c0)
                # a chunk of columns starts at column tile (c0-a)/l of the piece's column-major grid
                self("LMHEAD", dst=self.v(n.output), src=self.v(n.inputs[0]),
                     w=w0 + ((c0 - a) // self.cfg.l) * kt * tile_units, k=E, n=c)
                self("STORE", vaddr=self.v(n.output), addr=self.plan.ddr["logits"] + 2 * c0, n=c, hbm=DDR)


def lower(g: Graph, plan: Plan) -> tuple[dict[str, list[Instr]], dict[str, list[list]]]:
    """(streams, node_pcs): node_pcs[stream] lists [first pc, node name] for every node, for breakdowns."""
    assert plan.logits_chunk % plan.cfg.l == 0 or plan.logits_chunk == g.model["vocab_size"]
    streams, node_pcs = {}, {}
    for name in ("prefill", "decode"):
        e = Emitter(g, plan)
        node_pcs[name] = []
        for n in g.nodes:
            if n.op == "lm_head" and name == "prefill":
                continue
            node_pcs[name].append([len(e.out), n.name])
            getattr(e, n.op)(n)
        e("HALT")
        streams[name] = e.out
    return streams, node_pcs
