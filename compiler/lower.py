"""Lowering: the graph IR + allocation plan -> instruction streams.

One run of a stream processes one token (register TOKEN) at one position (register POS), as DFX's
token-serial summarisation does:
- `prefill` runs every decoder layer and appends the token's K and V to the cache;
- `decode` does the same and then the LM head, storing FP16 logits to DDR (`symbols.logits`).
The host runs `prefill` for prompt tokens 0..T-2 and `decode` for token T-1 and every generated token.

With matrix-matrix prefill (`compile_model(prefill_batch=M)`, docs/isa.md "Batched prefill") a third stream,
`prefill_batch`, processes a chunk of up to M prompt tokens per run: `CHUNK` reads the chunk's token count,
then every step of `batch_steps` in order -- a linear as one `BATCH +dyn_m` LINEAR per weight piece (the weights
stream from HBM once per chunk; the all-gathers batched the same way), a group of per-token nodes (embedding,
LayerNorm, attention, residual add) as one section per token slot, `SLOT i` giving the section its TOKEN and POS
and skipping the remaining sections when the chunk has fewer than i+1 tokens.
"""
from __future__ import annotations

import math

from dfx import isa
from dfx.errors import CompileError
from dfx.isa import Instr
from dfx.manifest import BATCH_STREAM
from dfx.symbols import LOGITS, PREFILL_TOKENS, Kind, sym_name

from .allocate import Plan, batch_steps, prefill_nodes
from .graph import Graph, shape_of

S_MEAN, S_VAR, S_SCALE = 0, 1, 2          # scalar registers the lowering uses
DDR, HBM = isa.SPACE_CODE["DDR"], isa.SPACE_CODE["HBM"]
IDX_TOKEN, IDX_POS = isa.INDEX_CODE["TOKEN"], isa.INDEX_CODE["POS"]


class Emitter:
    def __init__(self, g: Graph, plan: Plan):
        self.g, self.plan, self.cfg = g, plan, plan.cfg
        self.out: list[Instr] = []

    def __call__(self, mnemonic: str, **fields):
        self.out.append(Instr(mnemonic, **fields))

    def v(self, name: str, offset_elems: int = 0) -> int:
        assert offset_elems % self.cfg.d == 0, (name, offset_elems)
        return self.plan.vbuf.address(name) + offset_elems // self.cfg.d

    def ddr(self, node: str, kind: Kind) -> int:
        """DDR byte address of `node`'s datum `kind`."""
        return self.plan.ddr.address(sym_name(node, kind))

    def hbm(self, node: str, kind: Kind, index: int) -> int:
        """HBM address (64-byte units) of `node`'s weight piece or cache head `index`."""
        return self.plan.hbm.address(sym_name(node, kind, index))

    # ---- ops
    def embed(self, n):
        E = self.g.values[n.output]
        x, t = self.v(n.output), self.v(sym_name(n.name, Kind.POS))
        self("LOAD", vaddr=x, addr=self.ddr(n.name, Kind.WTE), n=E, index=IDX_TOKEN, stride=2 * E)
        self("LOAD", vaddr=t, addr=self.ddr(n.name, Kind.WPE), n=E, index=IDX_POS, stride=2 * E)
        self("VADD", dst=x, a=x, b=t, n=E)

    def layernorm(self, n):
        self.layernorm_params(n)
        self.layernorm_body(n)

    def layernorm_params(self, n):
        E = self.g.values[n.output]
        for kind in (Kind.GAMMA, Kind.BETA):
            self("LOAD", vaddr=self.v(sym_name(n.name, kind)), addr=self.ddr(n.name, kind), n=E)

    def layernorm_body(self, n):
        E = self.g.values[n.output]
        x, y = self.v(n.inputs[0]), self.v(n.output)
        g, b = self.v(sym_name(n.name, Kind.GAMMA)), self.v(sym_name(n.name, Kind.BETA))
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
                fields = dict(dst=self.v(n.output, a), src=self.v(n.inputs[0]), w=self.hbm(n.name, Kind.WEIGHT, p),
                              k=K, n=b - a, gelu=int(n.attrs.get("act") == "gelu"),
                              wfmt=n.attrs["wformat"].wfmt if "wformat" in n.attrs else 0)
                if "bias" in n.params:
                    bias = self.v(sym_name(n.name, Kind.BIAS), a)
                    self("LOAD", vaddr=bias, addr=self.ddr(n.name, Kind.BIAS) + 2 * a, n=b - a)
                    fields.update(bias=bias, has_bias=1)
                self.emit_linear(n, fields)
            if gran:
                self.allgather(n.output, s0, length, gran)

    def emit_linear(self, n, fields):
        self("LINEAR", **fields)

    def allgather(self, value: str, start: int, length: int, gran: int):
        self("ALLGATHER", vaddr=self.v(value, start), n=length, devices=self.g.model["devices"], gran=gran)

    def attention(self, n):
        self.attention_append(n)
        self.attention_heads(n)
        self.attention_gathers(n)

    def attention_gathers(self, n):
        for s0, length, gran in n.attrs["gathers"]:
            self.allgather(n.output, s0, length, gran)

    def attention_append(self, n):
        """Append this token's K (column POS) and V (row POS) of this device's heads to the cache."""
        H, hp = n.attrs["n_head"], n.attrs["head_pad"]
        qkv = n.inputs[0]
        for h in n.attrs["heads"][self.plan.device]:
            self("STORE_K", vaddr=self.v(qkv, (H + h) * hp), addr=self.hbm(n.name, Kind.KCACHE, h), n=hp, hbm=HBM,
                 index=IDX_POS)
            self("STORE_VT", vaddr=self.v(qkv, (2 * H + h) * hp), addr=self.hbm(n.name, Kind.VCACHE, h), n=hp,
                 hbm=HBM, index=IDX_POS)

    def attention_heads(self, n):
        """This token's attention over the cache (this device's heads), after `attention_append`."""
        hd, hp = n.attrs["head_dim"], n.attrs["head_pad"]
        qkv, out = n.inputs[0], n.output
        heads = n.attrs["heads"][self.plan.device]
        self("FENCE", units=isa.UNIT_BITS[isa.Unit.DMA])       # the cache append is read below (off-chip RAW)
        self("SMOVI", sd=S_SCALE, imm=1.0 / math.sqrt(hd))
        for h in heads:
            s = self.v(sym_name(n.name, Kind.SCORE, h % 2))   # two score buffers: head h+1 overlaps head h
            self("QK", dst=s, src=self.v(qkv, h * hp), w=self.hbm(n.name, Kind.KCACHE, h), k=hp,
                 scale=1, s=S_SCALE, dyn_n=1)
            self("VMAX", a=s, sd=S_MEAN, dyn_n=1)
            self("VSUBS", dst=s, a=s, sa=S_MEAN, dyn_n=1)
            self("VEXP", dst=s, a=s, dyn_n=1)
            self("VSUM", a=s, sd=S_VAR, dyn_n=1)
            self("SRECIP", sd=S_VAR, sa=S_VAR)
            self("VMULS", dst=s, a=s, sa=S_VAR, dyn_n=1)
            self("SV", dst=self.v(out, h * hp), src=s, w=self.hbm(n.name, Kind.VCACHE, h), n=hp, dyn_k=1,
                 rowmajor=1)

    def add(self, n):
        self("VADD", dst=self.v(n.output), a=self.v(n.inputs[0]), b=self.v(n.inputs[1]), n=self.g.values[n.output])

    def lm_head(self, n):
        E = shape_of(n.params["weight"])[0]
        chunk = self.plan.logits_chunk
        kt = -(-E // self.cfg.d)
        tile_units = self.cfg.tile_bytes // isa.HBM_UNIT
        for p, (a, b) in enumerate(n.attrs["pieces"][self.plan.device]):
            w0 = self.hbm(n.name, Kind.WEIGHT, p)
            for c0 in range(a, b, chunk):
                c = min(chunk, b - c0)
                # a chunk of columns starts at column tile (c0-a)/l of the piece's column-major grid
                self("LMHEAD", dst=self.v(n.output), src=self.v(n.inputs[0]),
                     w=w0 + ((c0 - a) // self.cfg.l) * kt * tile_units, k=E, n=c)
                self("STORE", vaddr=self.v(n.output), addr=self.plan.ddr.address(LOGITS) + 2 * c0, n=c, hbm=DDR)


class BatchEmitter(Emitter):
    """The prefill_batch stream: `plan` is the batched plan (`Plan.batch`); vectors of token slot `self.slot` are
    `vstride` entries after slot 0's."""
    BODY = {"embed": "embed", "layernorm": "layernorm_body", "attention": "attention_slot", "add": "add"}

    def __init__(self, g: Graph, plan: Plan):
        super().__init__(g, plan)
        self.slot = 0
        self.used = {v for n in prefill_nodes(g) for v in n.inputs}

    def v(self, name: str, offset_elems: int = 0) -> int:
        return super().v(name, offset_elems) + self.slot * self.plan.vstride.get(name, 0)

    def batch(self, stride: tuple[int, int]):
        self("BATCH", src_stride=stride[0], dst_stride=stride[1], dyn_m=1)

    def emit_linear(self, n, fields):
        self.batch((self.plan.vstride[n.inputs[0]], self.plan.vstride[n.output]))
        self("LINEAR", **fields)

    def allgather(self, value: str, start: int, length: int, gran: int):
        self.batch((self.plan.vstride[value],) * 2)
        super().allgather(value, start, length, gran)

    def attention_slot(self, n):
        """The K/V append, and the attention itself only where a later node reads it (not in the last layer)."""
        self.attention_append(n)
        if n.output in self.used:
            self.attention_heads(n)

    def group(self, nodes, pcs: list):
        """Per-token nodes: parameters once, then one section per slot; an empty slot skips to the group's end."""
        for n in nodes:
            if n.op == "layernorm":
                pcs.append([len(self.out), n.name])
                self.layernorm_params(n)
        slots = []
        for i in range(self.plan.prefill_batch):
            self.slot = i
            slots.append(len(self.out))
            self("SLOT", i=i)
            for n in nodes:
                if i == 0 and n.op != "layernorm":
                    pcs.append([len(self.out), n.name])
                getattr(self, self.BODY[n.op])(n)
        self.slot = 0
        end = len(self.out)
        for i, pc in enumerate(slots):
            if end - pc - 1 >= 1 << isa.SLOT.field("skip").width:
                raise CompileError(f"node {nodes[0].name}: the token sections of a batched prefill group are "
                                   f"{end - pc - 1} instructions, more than SLOT's 16-bit skip; use a smaller "
                                   "--prefill-batch")
            self.out[pc] = Instr("SLOT", i=i, skip=end - pc - 1)
        for n in nodes:
            if n.op == "attention" and n.output in self.used:
                self.attention_gathers(n)


def lower_prefill_batch(g: Graph, plan: Plan) -> tuple[list[Instr], list[list]]:
    """The prefill_batch stream for `plan.batch` and its node pcs ([first pc, node name], in pc order)."""
    bp = plan.batch
    e = BatchEmitter(g, bp)
    pcs: list[list] = []
    e("CHUNK", addr=bp.ddr.address(PREFILL_TOKENS), cap=bp.prefill_batch)
    for step in batch_steps(g):
        if step[0].op == "linear":
            pcs.append([len(e.out), step[0].name])
            e.linear(step[0])
        else:
            e.group(step, pcs)
    e("HALT")
    pcs.sort(key=lambda p: p[0])
    return e.out, pcs


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
    if plan.batch is not None:
        streams[BATCH_STREAM], node_pcs[BATCH_STREAM] = lower_prefill_batch(g, plan)
    return streams, node_pcs
