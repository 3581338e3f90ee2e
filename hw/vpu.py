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
operand flipped for subtraction), one binary32 x binary16 multiplier (11 x 24 bits), one rounding to binary16.
The exp and GELU units of `sfu` are shared: one of each per `sfu_share` lanes, a VEXP/VGELU beat going through
them in sfu_share slots (lanes s*n .. s*n+n-1 in slot s, n = vpu_width / sfu_share) whose results are held and
leave together on the last slot. Reductions share one d-wide pairwise tree (`mpu.adder_tree`, the MPU's order)
fed with the widened elements (VSUM) or their exact products (VDOT, one binary16 multiplier per lane), and a
single-cycle group accumulator from +0; VMAX is an integer comparator tree on order-preserving keys. Scalar
operations use one binary32 adder, one multiplier, and the reciprocal / rsqrt units.

Each operation completes at its own latency (`op_latency`: seven completion classes; `latency` is the
longest, rsqrt's); a beat enters only once its result cannot overtake one in flight, so results leave in
order, one per cycle. Throughput is one beat per cycle, except VEXP/VGELU (sfu_share cycles per beat) and the beats of one VSUM/VDOT
vector with a pipelined accumulator (red_stages + 1 apart): `VPU.beat_cycles`. vpu_width must equal d (the reductions' tree is the MPU's d-wide one).
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

import numpy as np
from amaranth import C, Cat, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from dfx import isa
from dfx.config import AccelConfig

from .decoder import Opcode
from .fp import ADD_MAX_STAGES, DSP_MODES, MUL16_CUTS, MUL32_CUTS, NAN32, Fp16, fp16_mul, fp32_add, fp32_mul, fp32_to_fp16, neg32, widen16
from .mpu import adder_tree
from .pipe import Pipe, T, check_stages
from .sfu import exp16, gelu16, recip, rsqrt

# The pipeline depths for a 300 MHz clock (docs/rtl.md, "Logic depth").
STAGES_300MHZ = dict(add_stages=ADD_MAX_STAGES, mul_stages=len(MUL32_CUTS), red_stages=ADD_MAX_STAGES)
VPU_OPS = tuple(op for op in isa.OPS if op.unit is isa.Unit.VPU)
_ELEMENTWISE = tuple(op.mnemonic for op in VPU_OPS if op.writes)                        # VBUF vector out
_REDUCE = tuple(op.mnemonic for op in VPU_OPS if op.fmt is isa.VECTOR and not op.writes)  # vector in, S[sd] out
_SCALAR = tuple(op.mnemonic for op in VPU_OPS if op.fmt is isa.SCALAR)
_SFU_OPS = ("VEXP", "VGELU")                     # through the shared exp / GELU units
_ACCUM = ("VSUM", "VDOT")                        # through the reduction tree and its accumulator
_VEC = tuple(m for m in _ELEMENTWISE if m not in _SFU_OPS)   # through the lane adders / multipliers
# the completion classes: one latency each (`VPU.op_latency`)
_CLASSES = (_VEC, _SFU_OPS, _ACCUM, ("VMAX",), ("SMOVI", "SADDI", "SMULI"), ("SRECIP",), ("SRSQRT",))
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
    the next beat of the same VSUM/VDOT vector at most every A + 1 cycles (`i.ready` stays low in between for
    reduction beats; other beats pass), so each partial sum is back before the next beat of its vector
    arrives. The sums are the same in either case. sfu_share (a power of two dividing vpu_width): lanes per
    exp and per GELU unit; a VEXP / VGELU beat then occupies the input for sfu_share cycles (one slot per
    group of vpu_width / sfu_share lanes, `i.ready` low until the last) and its results leave together.
    `beat_cycles` gives an instruction's input occupancy. With add_stages > 3 (the 300 MHz depths) the glue
    is registered too: operands before the operators, rounding inputs, the reduction tree's terms, every
    level of the VMAX comparator tree and the outputs. dsp_add (None, the default; "model"; "primitive"): the
    lanes' adders, the reduction tree, its accumulator and the scalar adder with their alignment and wide add
    in two DSP48E2 each, as the MPU's (`fp.fp32_add`'s `dsp`: the same results and latency, about 200 fewer
    LUTs per adder at the 300 MHz depths); the SFUs' adders stay in LUTs.
    """

    def __init__(self, cfg: AccelConfig, *, add_stages: int = 2, mul_stages: int = 2, red_stages: int = 0,
                 sfu_share: int = 1, dsp_add: str | None = None):
        if not isinstance(cfg, AccelConfig):
            self._MustUse__silence = True
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        if cfg.vpu_width != cfg.d:
            self._MustUse__silence = True
            raise ValueError(f"the VPU needs vpu_width == d (its reductions use the d-wide tree), not "
                             f"vpu_width={cfg.vpu_width} with d={cfg.d}")
        check_stages(self, add_stages=(add_stages, ADD_MAX_STAGES), mul_stages=(mul_stages, len(MUL32_CUTS)),
                     red_stages=(red_stages, ADD_MAX_STAGES))
        if not (isinstance(sfu_share, int) and sfu_share >= 1 and sfu_share & (sfu_share - 1) == 0
                and cfg.vpu_width % sfu_share == 0):
            self._MustUse__silence = True
            raise ValueError(f"sfu_share must be a power of two dividing vpu_width={cfg.vpu_width}, "
                             f"not {sfu_share!r}")
        if dsp_add not in DSP_MODES:
            self._MustUse__silence = True
            raise ValueError(f"dsp_add must be one of {', '.join(map(repr, DSP_MODES))}, not {dsp_add!r}")
        self.cfg, self.add_stages, self.mul_stages, self.red_stages = cfg, add_stages, mul_stages, red_stages
        self.dsp_add = dsp_add
        self.sfu_share = sfu_share
        super().__init__({
            "i": In(stream.Signature(in_layout(cfg))),
            "o": Out(stream.Signature(out_layout(cfg))),
        })
        m = Module()
        m._MustUse__silence = True
        classes = self._datapath(m, Pipe(m, C(1, 1)), Signal(in_layout(cfg)), C(1, 1))
        out_reg = 1 if add_stages > 3 else 0           # the 300 MHz depths register the outputs
        self.latencies = {mn: t + out_reg for ops, t, *_ in classes for mn in ops}
        self.latency = max(self.latencies.values())

    def _class_latencies(self) -> dict:
        """{opcodes of one completion class: its latency}."""
        out = {}
        for mn, lat in self.latencies.items():
            ops = next(c for c in _CLASSES if mn in c)
            out[ops] = lat
        return out

    def op_latency(self, op: str) -> int:
        """Cycles from a beat of `op` (mnemonic) entering to its result leaving (each operation its own)."""
        return self.latencies[op]

    def beat_cycles(self, op: str, beats: int) -> int:
        """Cycles the unit's input takes for one instruction `op` (mnemonic) of `beats` beats: the results
        follow `latency` cycles behind the last beat's slot."""
        if op in _SFU_OPS:
            return beats * self.sfu_share
        if op in _ACCUM and self.red_stages:
            return 1 + (beats - 1) * (self.red_stages + 1)
        return beats

    # ------------------------------------------------------------------ datapath
    def _datapath(self, m, p: Pipe, x, ce):
        """Build the datapath on payload view `x` (stage 0). Returns one (opcodes, stage, `op` is one of them,
        vector results or None, scalar result or None, emit) per completion class (`_CLASSES`), every value
        as seen at that class's own stage."""
        w, ad, ml = self.cfg.vpu_width, self.add_stages, self.mul_stages
        g = ad > 3                                       # the 300 MHz depths: registered glue
        k_sh = self.sfu_share
        fire = self._fire if self._fire is not None else C(1, 1)
        sub = self._sub if self._sub is not None else C(0, max(1, (k_sh - 1).bit_length()))
        op = p.comb(x.op, "op")
        is_sub = _is(op, "VSUB", "VSUBS")
        use_s = _is(op, "VADDS", "VSUBS", "VMULS")
        vs = T(p.comb(x.s, "s"), 0)
        r16s = []
        prods16 = []
        for k in range(w):
            a32 = T(widen16(x.a[k]), 0)
            b32 = Mux(use_s, x.s, widen16(x.b[k]))
            b32 = T(Mux(is_sub, neg32(b32), b32), 0)
            a32, b32 = _reg(p, a32, g), _reg(p, b32, g)
            add = fp32_add(p, a32, b32, ad, dsp=self.dsp_add)
            mul = fp32_mul(p, a32, b32, ml, a_bits=11)
            t, (addv, mulv, o) = p.sync(add, mul, T(op, 0))
            r32 = _reg(p, T(Mux(_is(o, "VMUL", "VMULS"), mulv, addv), t), g)
            r16s.append(fp32_to_fp16(p, r32, 2 if g else 1))
            prods16.append(fp16_mul(p, T(x.a[k], 0), T(x.b[k], 0), 1 if ml <= 2 else len(MUL16_CUTS)))

        # ---- exp and GELU: one unit each per sfu_share lanes; slot s of a beat takes lanes s*n .. s*n+n-1
        n_u = w // k_sh
        sfu_out = []
        for j in range(n_u):
            a_j = x.a[j]
            for s_ in range(1, k_sh):
                a_j = Mux(sub == s_, x.a[s_ * n_u + j], a_j)
            a_j = _reg(p, T(p.comb(a_j, "sfu_in"), 0), g and k_sh > 1)
            ex = exp16(p, a_j, ad, ml)
            ge = gelu16(p, a_j, ad, ml)
            t, (exv, gev, o) = p.sync(ex, ge, T(op, 0))
            sfu_out.append(T(p.comb(Mux(_is(o, "VEXP"), exv, gev), "sfu_out"), t))
        ts = max(v.t for v in sfu_out)
        res = Cat(*[p.at(v, ts) for v in sfu_out])                  # this slot's n_u results
        if k_sh > 1:                                                # earlier slots of the beat wait here
            hold = Signal(len(res) * (k_sh - 1), name="sfu_hold")
            with m.If(ce & p.flag(fire, ts, "v_sfu")):
                m.d.sync += hold.eq(Cat(hold[len(res):], res))
            res = Cat(hold, res)
        sfu_vec = T(p.comb(res, "sfu_vec"), ts)

        vecs = []
        for k in range(w):
            t, (r16v, av, o) = p.sync(r16s[k], T(x.a[k], 0), T(op, 0))
            vecs.append(T(Mux(_is(o, "VMOV"), av, r16v), t))

        # ---- reductions: VSUM / VDOT through the tree and accumulator; VMAX through comparator keys
        is_dot = _is(op, "VDOT")
        tp = max(pr.t for pr in prods16)
        terms = []
        for k in range(w):
            pv = p.at(prods16[k], tp)
            a32 = p.at(T(widen16(x.a[k]), 0), tp)
            dot, live = p.at(T(is_dot, 0), tp), p.at(T(x.mask[k], 0), tp)
            terms.append(_reg(p, T(Mux(live, Mux(dot, pv, a32), 0), tp), g))
        gsum = adder_tree(p, terms, ad, self.dsp_add)
        tg = gsum.t
        v_g, last_g = p.flag(fire, tg, "v_red"), p.at(T(x.last, 0), tg)
        first = Signal(init=1, name="red_first")
        acc = Signal(32, name="red_acc")
        if self.red_stages:                            # pipelined; beats of a vector spaced red_stages + 1 apart
            a = self.red_stages
            v_g = v_g & p.at(T(_is(op, *_ACCUM), 0), tg)
            # the adder's first operand straight from a register: the partial sum, or +0 after a vector's last
            # beat (nothing reads it between a beat's entry and its result: the spacing)
            red = fp32_add(p, T(acc, tg), gsum, a, dsp=self.dsp_add)
            v_res = p.flag(v_g, a, "v_redr")
            with m.If(ce & v_g):
                m.d.sync += first.eq(last_g)
            with m.If(ce & v_res):
                m.d.sync += acc.eq(Mux(first, C(0, 32), red.v))
            with m.If(ce & v_g & last_g):
                m.d.sync += acc.eq(0)
            red_sum = red
        else:
            nxt = fp32_add(p, Mux(first, C(0, 32), acc), gsum.v, stages=0, dsp=self.dsp_add)
            with m.If(ce & v_g):
                m.d.sync += [acc.eq(nxt.v), first.eq(last_g)]
            red_sum = T(acc, tg + 1)

        keys = []
        nans = []
        for k in range(w):
            a = daz16(x.a[k])
            live = x.mask[k]
            nans.append(live & (Value.cast(x.a[k])[:15] > 0x7C00))
            keys.append(T(Mux(live, max_key(a), max_key(C(0xFC00, 16))), 0))
        while len(keys) > 1:                                        # one register per tree level (deep)
            keys = [_reg(p, T(Mux(keys[2 * i].v > keys[2 * i + 1].v, keys[2 * i].v, keys[2 * i + 1].v),
                              keys[2 * i].t), g) for i in range(len(keys) // 2)]
        tk = keys[0].t + 1                                          # one register stage before the loop
        kb = p.at(T(p.comb(keys[0].v, "max_key"), keys[0].t), tk)
        nb = p.at(T(p.comb(Cat(*nans).any(), "max_nan"), 0), tk)
        v1, last1 = p.flag(fire, tk, "v_max"), p.at(T(x.last, 0), tk)
        mfirst = Signal(init=1, name="max_first")
        mkey = Signal(16, name="max_run")
        mnan = Signal(name="max_nan_run")
        run_key = Mux(mfirst, max_key(C(0xFC00, 16)), mkey)
        with m.If(ce & v1):
            m.d.sync += [mkey.eq(Mux(kb > run_key, kb, run_key)), mnan.eq(nb | (~mfirst & mnan)),
                         mfirst.eq(last1)]
        red_max = T(Mux(mnan, NAN32, widen16(from_max_key(mkey))), tk + 1)

        # ---- scalar operations
        imm = T(p.comb(x.imm, "imm"), 0)
        s_add = fp32_add(p, vs, imm, ad, dsp=self.dsp_add)
        s_mul = fp32_mul(p, vs, imm, ml)
        s_rcp = recip(p, vs, ad, ml)
        s_rsq = rsqrt(p, vs, ad, ml)

        # ---- completion classes: each leaves at its own stage (the issue rule in `elaborate` keeps them in order)
        def at_each(vals, t):
            return [p.at(v, t) for v in vals]
        tv = max(v.t for v in vecs)
        t_sa = max(s_add.t, s_mul.t)
        o_sa = p.at(T(op, 0), t_sa)
        results = [                                    # (stage, vector results, scalar result) per _CLASSES
            (tv, at_each(vecs, tv), None),
            (ts, [sfu_vec.v[16 * k:16 * k + 16] for k in range(w)], None),
            (red_sum.t, None, red_sum.v),
            (red_max.t, None, red_max.v),
            (t_sa, None, Mux(_is(o_sa, "SADDI"), p.at(s_add, t_sa),
                             Mux(_is(o_sa, "SMULI"), p.at(s_mul, t_sa), p.at(imm, t_sa)))),   # SMOVI: imm
            (s_rcp.t, None, s_rcp.v),
            (s_rsq.t, None, s_rsq.v),
        ]
        # a beat's result leaves on its last slot (VEXP/VGELU) and, for reductions, on the vector's last beat
        emit = T(Mux(_is(op, *_REDUCE), x.last, 1) & (~_is(op, *_SFU_OPS) | (sub == k_sh - 1)), 0)
        return [(ops, t, _is(p.at(T(op, 0), t), *ops), vv, sv, p.at(emit, t))
                for ops, (t, vv, sv) in zip(_CLASSES, results)]

    def elaborate(self, platform):
        m = Module()
        ce = Signal()
        m.d.comb += ce.eq(~self.o.valid | self.o.ready)
        g = self.add_stages > 3                        # the 300 MHz depths: registered outputs
        enter = Signal()                               # a slot enters the pipeline
        op_in = self.i.payload.op
        ok = Signal()
        # issue rule: a beat enters only if it completes after every beat already in flight, so results
        # leave in order, one per cycle, each class at its own latency; `busy[j]` = the last beat entered
        # completes more than j cycles from now (a thermometer shifted down each cycle: one bit per check)
        lats = self._class_latencies()
        busy = Signal(max(lats.values()) + 1, name="busy_until")
        order_ok = C(1, 1)
        busy_next = C(0, len(busy))
        for ops, lat in lats.items():
            hit = _is(op_in, *ops)
            order_ok = order_ok & (~hit | ~busy[lat])
            busy_next = busy_next | Mux(hit, (1 << lat) - 1, 0)
        with m.If(ce):
            m.d.sync += busy.eq(Mux(enter, busy_next, busy >> 1))
        red_ok = C(1, 1)
        if self.red_stages:                            # space a VSUM/VDOT vector's beats red_stages + 1 apart
            wait = Signal(self.red_stages, name="red_wait")   # thermometer: bit 0 = still waiting
            red_in = _is(op_in, *_ACCUM)
            red_ok = ~wait[0] | ~red_in
            with m.If(ce):
                m.d.sync += wait.eq(Mux(enter & red_in & ~self.i.payload.last, (1 << self.red_stages) - 1,
                                        wait >> 1))
        m.d.comb += ok.eq(order_ok & red_ok)
        m.d.comb += enter.eq(self.i.valid & ce & ok)
        sub = Signal(max(1, (self.sfu_share - 1).bit_length()), name="sfu_slot")
        sfu_in = _is(op_in, *_SFU_OPS)
        last_slot = ~sfu_in | (sub == self.sfu_share - 1)
        m.d.comb += self.i.ready.eq(ce & ok & last_slot)
        if self.sfu_share > 1:
            with m.If(enter & sfu_in):
                m.d.sync += sub.eq(Mux(last_slot, 0, sub + 1))
        self._fire, self._sub = enter, sub
        p = Pipe(m, ce)
        classes = self._datapath(m, p, self.i.payload, ce)
        self._fire = self._sub = None
        t_max = max(t for _, t, *_ in classes)
        valid = Signal(t_max, name="valid_pipe")
        with m.If(ce):
            m.d.sync += valid.eq((valid << 1) | enter)
        o_valid, o_s = C(0, 1), C(0, 32)
        o_v = [C(0, 16)] * self.cfg.vpu_width
        for ops, t, hit, vv, sv, emit in classes:       # at most one class completes per cycle
            sel = valid[t - 1] & hit
            o_valid = o_valid | (sel & emit)
            if sv is not None:
                o_s = o_s | Mux(sel, sv, 0)
            if vv is not None:
                o_v = [ov | Mux(sel, v, 0) for ov, v in zip(o_v, vv)]
        if g:                                          # registered outputs
            rv, rs = Signal(name="o_valid_r"), Signal(32, name="o_s_r")
            rvv = [Signal(16, name=f"o_v{k}_r") for k in range(len(o_v))]
            with m.If(ce):
                m.d.sync += [rv.eq(o_valid), rs.eq(o_s)] + [r.eq(v) for r, v in zip(rvv, o_v)]
            o_valid, o_s, o_v = rv, rs, rvv
        m.d.comb += [self.o.valid.eq(o_valid), self.o.payload.s.eq(o_s)]
        for k, v in enumerate(o_v):
            m.d.comb += self.o.payload.v[k].eq(v)
        return m

    _fire = None
    _sub = None


def _reg(p: Pipe, x: T, on: bool) -> T:
    """`x` one stage later through a register when `on` (the glue registers of the 300 MHz depths)."""
    return T(p.reg(x.v, "glue"), x.t + 1) if on else x


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
