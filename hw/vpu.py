"""The vector processing unit (VPU + SFU_V): element-wise binary16 operations, vector-scalar operations,
reductions to binary32 (sum, dot, max), exp and GELU, and the scalar operations of the ISA's VPU opcodes.
Bit-exact to `dfx.numerics` (`vadd` ... `reduce_max`, `sadd`, `smul`, `recip`, `rsqrt`, `exp16`, `gelu16`).

One instruction is a sequence of beats on `i`, each carrying d = vpu_width elements of the vector operands
(the operand collector reads them from the vector buffer), the scalar operand S[sa] (`s`) and the immediate
(`imm`), a lane mask (lanes beyond the vector's length: reductions treat them as the neutral element, +0 for
sums, -inf for max) and `last` on the final chunk. The operation is the ISA opcode itself (`decoder.Opcode`),
so no opcode value is written here. `o` carries one beat per element-wise input beat (the d results in
`v`), one per reduction (on its last beat; the binary32 result in `s`), and one per scalar operation (`s`).

Datapath per lane: widen a (and b, or the scalar), one binary32 adder (add/sub: the sign of the second
operand flipped for subtraction), one binary32 x binary16 multiplier (11 x 24 bits), one rounding to binary16;
the exp and GELU units of `sfu`. Reductions share one d-wide pairwise tree (`mpu.adder_tree`, the MPU's order)
fed with the widened elements (VSUM) or their exact products (VDOT, one binary16 multiplier per lane), and a
single-cycle group accumulator from +0; VMAX is an integer comparator tree on order-preserving keys. Scalar
operations use one binary32 adder, one multiplier, and the reciprocal / rsqrt units.

All paths are padded to one latency (`latency`, set by the slowest: rsqrt), so results leave in order;
throughput is one beat per cycle. vpu_width must equal d (the reductions' tree is the MPU's d-wide one).
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

import numpy as np
from amaranth import C, Cat, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from dfx import isa
from dfx.config import AccelConfig

from .decoder import Opcode
from .fp import ADD_MAX_STAGES, MUL16_CUTS, MUL32_CUTS, NAN32, Fp16, fp16_mul, fp32_add, fp32_mul, fp32_to_fp16, neg32, widen16
from .mpu import adder_tree
from .pipe import Pipe, T, check_stages
from .sfu import exp16, gelu16, recip, rsqrt

# The pipeline depths for a 300 MHz clock (docs/rtl.md, "Logic depth").
STAGES_300MHZ = dict(add_stages=ADD_MAX_STAGES, mul_stages=len(MUL32_CUTS), red_stages=ADD_MAX_STAGES)
VPU_OPS = tuple(op for op in isa.OPS if op.unit is isa.Unit.VPU)
_ELEMENTWISE = tuple(op.mnemonic for op in VPU_OPS if op.writes)                        # VBUF vector out
_REDUCE = tuple(op.mnemonic for op in VPU_OPS if op.fmt is isa.VECTOR and not op.writes)  # vector in, S[sd] out
_SCALAR = tuple(op.mnemonic for op in VPU_OPS if op.fmt is isa.SCALAR)
assert set(_ELEMENTWISE + _REDUCE + _SCALAR) == {op.mnemonic for op in VPU_OPS}, "a VPU opcode is not handled"


def in_layout(cfg: AccelConfig) -> data.StructLayout:
    return data.StructLayout({
        "op": Opcode,
        "a": data.ArrayLayout(16, cfg.vpu_width),
        "b": data.ArrayLayout(16, cfg.vpu_width),
        "s": 32,                                  # binary32 scalar operand (S[sa])
        "imm": 32,                                # binary32 immediate (SCALAR format)
        "mask": cfg.vpu_width,                    # lanes holding elements of the vector
        "last": 1,                                # the vector's last chunk
    })


def out_layout(cfg: AccelConfig) -> data.StructLayout:
    return data.StructLayout({"v": data.ArrayLayout(16, cfg.vpu_width), "s": 32})


def _is(op, *names):
    out = C(0, 1)
    for n in names:
        out = out | (op == Opcode[n])
    return out


def max_key(x16) -> Value:
    """An unsigned key whose integer order is binary16's order with -0 < +0 (NaN excluded): flip every bit
    of a negative value, set the sign bit of a positive one."""
    x16 = Value.cast(x16)
    return Mux(x16[15], ~x16, x16 | 0x8000)[:16]


def from_max_key(k) -> Value:
    k = Value.cast(k)
    return Mux(k[15], k & 0x7FFF, ~k)[:16]


def daz16(x16) -> Value:
    """A binary16 operand after DAZ (a subnormal becomes the zero of its sign)."""
    v = Fp16(Value.cast(x16))
    return Mux(v.exp == 0, Cat(C(0, 15), v.sign), Value.cast(x16))


class VPU(wiring.Component):
    """Vector unit for `cfg` (vpu_width lanes). See the module docstring for the stream protocol.

    Parameters: add_stages (0..ADD_MAX_STAGES) and mul_stages (0..4) of the pipelined binary32 operators;
    red_stages (0..ADD_MAX_STAGES) of the VSUM/VDOT accumulator: 0 is a single-cycle adder in a feedback
    loop (one reduction beat per cycle, a long path); A > 0 is a pipelined adder, and the unit then accepts
    a VSUM/VDOT beat at most every A + 1 cycles (`i.ready` stays low in between for reduction beats; other
    beats pass), so each partial sum is back before the next beat of its vector arrives. The sums are the
    same in either case.
    """

    def __init__(self, cfg: AccelConfig, *, add_stages: int = 2, mul_stages: int = 2, red_stages: int = 0):
        if not isinstance(cfg, AccelConfig):
            self._MustUse__silence = True
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        if cfg.vpu_width != cfg.d:
            self._MustUse__silence = True
            raise ValueError(f"the VPU needs vpu_width == d (its reductions use the d-wide tree), not "
                             f"vpu_width={cfg.vpu_width} with d={cfg.d}")
        check_stages(self, add_stages=(add_stages, ADD_MAX_STAGES), mul_stages=(mul_stages, len(MUL32_CUTS)),
                     red_stages=(red_stages, ADD_MAX_STAGES))
        self.cfg, self.add_stages, self.mul_stages, self.red_stages = cfg, add_stages, mul_stages, red_stages
        super().__init__({
            "i": In(stream.Signature(in_layout(cfg))),
            "o": Out(stream.Signature(out_layout(cfg))),
        })
        m = Module()
        m._MustUse__silence = True
        self.latency = self._datapath(m, Pipe(m, C(1, 1)), Signal(in_layout(cfg)), C(1, 1))[1]

    # ------------------------------------------------------------------ datapath
    def _datapath(self, m, p: Pipe, x, ce):
        """Build the datapath on payload view `x` (stage 0). Returns ((vector results, scalar result, emit)
        as T values, their common stage)."""
        w, ad, ml = self.cfg.vpu_width, self.add_stages, self.mul_stages
        op = p.comb(x.op, "op")
        is_sub = _is(op, "VSUB", "VSUBS")
        use_s = _is(op, "VADDS", "VSUBS", "VMULS")
        vs = T(p.comb(x.s, "s"), 0)
        vecs = []
        prods16 = []
        for k in range(w):
            a16 = T(x.a[k], 0)
            a32 = T(widen16(x.a[k]), 0)
            b32 = Mux(use_s, x.s, widen16(x.b[k]))
            b32 = T(Mux(is_sub, neg32(b32), b32), 0)
            add = fp32_add(p, a32, b32, ad)
            mul = fp32_mul(p, a32, b32, ml, a_bits=11)
            t, (addv, mulv, o) = p.sync(add, mul, T(op, 0))
            r32 = T(Mux(_is(o, "VMUL", "VMULS"), mulv, addv), t)
            r16 = fp32_to_fp16(p, r32)
            ex = exp16(p, a16, ad, ml)
            ge = gelu16(p, a16, ad, ml)
            t, (r16v, exv, gev, av, o) = p.sync(r16, ex, ge, a16, T(op, 0))
            vecs.append(T(Mux(_is(o, "VEXP"), exv, Mux(_is(o, "VGELU"), gev, Mux(_is(o, "VMOV"), av, r16v))), t))
            prods16.append(fp16_mul(p, T(x.a[k], 0), T(x.b[k], 0), 1 if ml <= 2 else len(MUL16_CUTS)))

        # ---- reductions: VSUM / VDOT through the tree and accumulator; VMAX through comparator keys
        is_dot = _is(op, "VDOT")
        tp = max(pr.t for pr in prods16)
        terms = []
        for k in range(w):
            pv = p.at(prods16[k], tp)
            a32 = p.at(T(widen16(x.a[k]), 0), tp)
            dot, live = p.at(T(is_dot, 0), tp), p.at(T(x.mask[k], 0), tp)
            terms.append(T(Mux(live, Mux(dot, pv, a32), 0), tp))
        g = adder_tree(p, terms, ad)
        tg = g.t
        fire = self._fire if self._fire is not None else C(1, 1)
        v_g, last_g = p.flag(fire, tg, "v_red"), p.at(T(x.last, 0), tg)
        first = Signal(init=1, name="red_first")
        acc = Signal(32, name="red_acc")
        if self.red_stages:                            # pipelined; beats spaced red_stages + 1 apart
            a = self.red_stages
            v_g = v_g & p.at(T(_is(op, "VSUM", "VDOT"), 0), tg)
            res = fp32_add(p, T(Mux(first, C(0, 32), acc), tg), g, a)
            v_res = p.flag(v_g, a, "v_redr")
            with m.If(ce & v_g):
                m.d.sync += first.eq(last_g)
            with m.If(ce & v_res):
                m.d.sync += acc.eq(res.v)
            red_sum = res
        else:
            nxt = fp32_add(p, Mux(first, C(0, 32), acc), g.v, stages=0)
            with m.If(ce & v_g):
                m.d.sync += [acc.eq(nxt.v), first.eq(last_g)]
            red_sum = T(acc, tg + 1)

        keys = []
        nans = []
        for k in range(w):
            a = daz16(x.a[k])
            live = x.mask[k]
            nans.append(live & (Value.cast(x.a[k])[:15] > 0x7C00))
            keys.append(Mux(live, max_key(a), max_key(C(0xFC00, 16))))
        while len(keys) > 1:
            keys = [Mux(keys[2 * i] > keys[2 * i + 1], keys[2 * i], keys[2 * i + 1]) for i in range(len(keys) // 2)]
        kbeat = T(p.comb(keys[0], "max_key"), 0)
        nbeat = T(p.comb(Cat(*nans).any(), "max_nan"), 0)
        kb, nb = p.at(kbeat, 1), p.at(nbeat, 1)                  # one register stage before the loop
        v1, last1 = p.flag(fire, 1, "v_max"), p.at(T(x.last, 0), 1)
        mfirst = Signal(init=1, name="max_first")
        mkey = Signal(16, name="max_run")
        mnan = Signal(name="max_nan_run")
        run_key = Mux(mfirst, max_key(C(0xFC00, 16)), mkey)
        with m.If(ce & v1):
            m.d.sync += [mkey.eq(Mux(kb > run_key, kb, run_key)), mnan.eq(nb | (~mfirst & mnan)),
                         mfirst.eq(last1)]
        red_max = T(Mux(mnan, NAN32, widen16(from_max_key(mkey))), 2)

        # ---- scalar operations
        imm = T(p.comb(x.imm, "imm"), 0)
        s_add = fp32_add(p, vs, imm, ad)
        s_mul = fp32_mul(p, vs, imm, ml)
        s_rcp = recip(p, vs, ad, ml)
        s_rsq = rsqrt(p, vs, ad, ml)

        t_end = max([v.t for v in vecs] + [red_sum.t, red_max.t, s_add.t, s_mul.t, s_rcp.t, s_rsq.t])
        opd = p.at(T(op, 0), t_end)
        sc = Mux(_is(opd, "VSUM", "VDOT"), p.at(red_sum, t_end),
             Mux(_is(opd, "VMAX"), p.at(red_max, t_end),
             Mux(_is(opd, "SADDI"), p.at(s_add, t_end),
             Mux(_is(opd, "SMULI"), p.at(s_mul, t_end),
             Mux(_is(opd, "SRECIP"), p.at(s_rcp, t_end),
             Mux(_is(opd, "SRSQRT"), p.at(s_rsq, t_end), p.at(imm, t_end)))))))   # SMOVI: the immediate
        sc = Mux(_is(opd, *_ELEMENTWISE), 0, sc)               # the unused half of `o` is zero
        vec_out = [Mux(_is(opd, *_ELEMENTWISE), p.at(v, t_end), 0) for v in vecs]
        emit = T(Mux(_is(op, *_REDUCE), x.last, 1), 0)
        return (vec_out, sc, p.at(emit, t_end)), t_end

    def elaborate(self, platform):
        m = Module()
        ce = Signal()
        m.d.comb += ce.eq(~self.o.valid | self.o.ready)
        fire = Signal()
        m.d.comb += [fire.eq(self.i.valid & self.i.ready)]
        if self.red_stages:                            # space VSUM/VDOT beats red_stages + 1 cycles apart
            wait = Signal(range(self.red_stages + 1), name="red_wait")
            red_in = _is(self.i.payload.op, "VSUM", "VDOT")
            m.d.comb += self.i.ready.eq(ce & ((wait == 0) | ~red_in))
            with m.If(ce):
                with m.If(fire & red_in):
                    m.d.sync += wait.eq(self.red_stages)
                with m.Elif(wait != 0):
                    m.d.sync += wait.eq(wait - 1)
        else:
            m.d.comb += self.i.ready.eq(ce)
        self._fire = fire
        p = Pipe(m, ce)
        (vecs, sc, emit), t_end = self._datapath(m, p, self.i.payload, ce)
        self._fire = None
        assert t_end == self.latency
        valid = Signal(t_end, name="valid_pipe")
        with m.If(ce):
            m.d.sync += valid.eq((valid << 1) | fire)
        m.d.comb += [self.o.valid.eq(valid[-1] & emit), self.o.payload.s.eq(sc)]
        for k, v in enumerate(vecs):
            m.d.comb += self.o.payload.v[k].eq(v)
        return m

    _fire = None


# ============================================================================================ host side
def _bits32(v) -> int:
    return int(np.asarray(v, np.float32).view(np.uint32)) if v is not None else 0


def vpu_beats(cfg: AccelConfig, op: str, a=None, b=None, s=None, imm=None) -> list[int]:
    """The `i` payloads (ints) of one VPU operation, as the operand collector sends them.

    op: a VPU mnemonic of `dfx.isa`; a, b: binary16 vectors (VECTOR format; b only where the op reads it);
    s: the binary32 scalar operand S[sa]; imm: the binary32 immediate (SCALAR format). A vector of length n
    takes max(1, ceil(n / vpu_width)) beats (an empty one: one beat with no live lane).
    """
    if op not in {o.mnemonic for o in VPU_OPS}:
        raise ValueError(f"op must be a VPU mnemonic ({', '.join(o.mnemonic for o in VPU_OPS)}), not {op!r}")
    w = cfg.vpu_width
    lay = in_layout(cfg)
    base = {"op": Opcode[op], "s": _bits32(s), "imm": _bits32(imm)}
    if op in _SCALAR:
        return [lay.const({**base, "a": [0] * w, "b": [0] * w, "mask": 0, "last": 1}).as_bits()]
    a = np.asarray(a, np.float16).reshape(-1)
    b = np.zeros_like(a) if b is None else np.asarray(b, np.float16).reshape(-1)
    if b.shape != a.shape:
        raise ValueError(f"a and b must have the same length, not {a.size} and {b.size}")
    n = a.size
    beats = max(1, -(-n // w))
    ap = np.zeros(beats * w, np.float16)
    bp = np.zeros(beats * w, np.float16)
    ap[:n], bp[:n] = a, b
    out = []
    for k in range(beats):
        live = min(max(n - k * w, 0), w)
        out.append(lay.const({**base, "a": [int(v) for v in ap[k * w:(k + 1) * w].view(np.uint16)],
                              "b": [int(v) for v in bp[k * w:(k + 1) * w].view(np.uint16)],
                              "mask": (1 << live) - 1, "last": k == beats - 1}).as_bits())
    return out
