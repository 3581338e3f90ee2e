"""The vector engine: the VPU (hw/vpu.py) with its operand collector and write-back.

One VECTOR or SCALAR instruction: the collector reads chunk c of a (port A, entry a+c) and b (port B, entry
b+c) of VBUF, one chunk of vpu_width = d elements per cycle, and sends the VPU its beats (opcode, operands,
S[sa], the immediate, the live-lane mask of the chunk, `last`); n = POS+1 with dyn_n; a SCALAR instruction is
one beat with no live lane. Write-back: element-wise results go to entry dst+c under the live-lane mask;
reductions and scalar operations write their binary32 result to S[sd]. Which opcode does what comes from
the ISA table (`writes` / `swrites` of `dfx.isa.OPS`), not from a list written here. The controller drives it
through the engine contract (hw/core_engine.py); it raises no error.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from dfx import isa
from dfx.config import AccelConfig

from .core_engine import Engine
from .core_mpu import check_core_config
from .decoder import Opcode
from .dma import log2
from .vpu import VPU, in_layout

VEC_WRITERS = tuple(op.mnemonic for op in isa.OPS if op.unit is isa.Unit.VPU and op.writes)


def opcode_in(op, names) -> "Value":
    out = C(0, 1)
    for nm in names:
        out = out | (op == Opcode[nm])
    return out


class VectorEngine(Engine):
    """VECTOR and SCALAR instructions; besides `ctl`: POS, `sval` (S[sa] of the instruction, read at `start`)
    and the scalar register write port (`s_w_*`).

    Cycle counts, read by the performance model's serial-issue mode (dfx.perf.timing): from `start` to `done`,
    SETUP_CYCLES + FEED_CYCLES + `VPU.latency` + one cycle per beat (chunk of vpu_width elements)."""

    UNIT = isa.Unit.VPU
    ERRORS = ()
    VBUF_READS = ("ra", "rb")

    SETUP_CYCLES = 2          # SETUP, then the first RUN cycle's VBUF read request
    FEED_CYCLES = 2           # the read data into the operand FIFO (SyncFIFOBuffered), out of it to the VPU

    def __init__(self, cfg: AccelConfig, **vpu_stages):
        check_core_config(self, cfg)
        self.vpu = VPU(cfg, **vpu_stages)
        super().__init__(cfg, {
            "pos": In(32), "sval": In(32),
            "s_w_addr": Out(isa.SREG_BITS), "s_w_en": Out(1), "s_w_data": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        d = cfg.vpu_width
        m.submodules.vpu = vpu = self.vpu
        ctl, vbuf = self.ctl, self.ctl.vbuf
        fv, fs = ctl.word.vector, ctl.word.scalar

        # the instruction, latched at start (field shapes from `dfx.isa`: VECTOR, or SCALAR's sd and imm)
        op = Signal(Opcode)
        scalar_fmt, vec_out = Signal(), Signal()
        dst, a, b, nf, sd = Signal.like(fv.dst), Signal.like(fv.a), Signal.like(fv.b), Signal.like(fv.n), \
            Signal.like(fv.sd)
        dyn = Signal()
        sval, imm = Signal(32), Signal.like(fs.imm)
        n, beats = Signal(33), Signal(30)

        depth = 4
        lay = in_layout(cfg)
        m.submodules.ififo = ififo = SyncFIFOBuffered(width=lay.size, depth=depth)
        go = Signal()
        bi = Signal(30)
        pend, pend_i = Signal(), Signal(30)
        can = go & (ififo.level + pend < depth)
        m.d.sync += pend.eq(can)
        with m.If(can):
            m.d.comb += [vbuf.ra_en.eq(1), vbuf.ra_addr.eq(a + bi),
                         vbuf.rb_en.eq(1), vbuf.rb_addr.eq(b + bi)]
            m.d.sync += [pend_i.eq(bi), bi.eq(bi + 1)]
            with m.If(bi + 1 == beats):
                m.d.sync += go.eq(0)

        def live(i):
            """Lane r of chunk i holds element i*d + r < n."""
            base = i << log2(d)
            return Cat(*[base + r < n for r in range(d)])

        ip = Signal(lay)
        m.d.comb += [
            ip.op.eq(op), ip.s.eq(sval), ip.imm.eq(Mux(scalar_fmt, imm, 0)),
            ip.a.eq(Mux(scalar_fmt, 0, vbuf.ra_data)), ip.b.eq(Mux(scalar_fmt, 0, vbuf.rb_data)),
            ip.mask.eq(Mux(scalar_fmt, 0, live(pend_i))), ip.last.eq(pend_i + 1 == beats),
            ififo.w_en.eq(pend), ififo.w_data.eq(ip.as_value()),
            vpu.i.valid.eq(ififo.r_rdy), vpu.i.payload.eq(ififo.r_data), ififo.r_en.eq(vpu.i.ready),
            vpu.o.ready.eq(~vec_out | vbuf.w_rdy),          # vector results wait for the shared VBUF write port
        ]

        bo = Signal(30)
        out_go = Signal()
        fire = out_go & vpu.o.valid & (~vec_out | vbuf.w_rdy)
        last_out = Signal()
        m.d.comb += last_out.eq(~vec_out | (bo + 1 == beats))
        with m.If(out_go & vpu.o.valid & vec_out):
            m.d.comb += [vbuf.w_addr.eq(dst + bo), vbuf.w_en.eq(live(bo)),
                         vbuf.w_data.eq(vpu.o.payload.v.as_value())]
        with m.If(fire):
            m.d.sync += bo.eq(bo + 1)
            with m.If(~vec_out):
                m.d.comb += [self.s_w_addr.eq(sd), self.s_w_en.eq(1), self.s_w_data.eq(vpu.o.payload.s)]

        m.d.comb += ctl.busy.eq(1)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += ctl.busy.eq(0)
                with m.If(ctl.start):
                    sfmt = Signal()
                    m.d.comb += sfmt.eq(opcode_in(fv.opcode, [o.mnemonic for o in isa.OPS if o.fmt is isa.SCALAR]))
                    m.d.sync += [
                        op.eq(fv.opcode), scalar_fmt.eq(sfmt),
                        vec_out.eq(opcode_in(fv.opcode, VEC_WRITERS)),
                        dst.eq(fv.dst), a.eq(fv.a), b.eq(fv.b), nf.eq(fv.n), dyn.eq(fv.dyn_n),
                        sd.eq(Mux(sfmt, fs.sd, fv.sd)), sval.eq(self.sval), imm.eq(fs.imm),
                    ]
                    m.next = "SETUP"
            with m.State("SETUP"):
                nn = Mux(dyn, self.pos + 1, nf)
                bb = (nn + d - 1) >> log2(d)
                m.d.sync += [n.eq(nn), beats.eq(Mux(scalar_fmt | (bb == 0), 1, bb)),
                             go.eq(1), bi.eq(0), out_go.eq(1), bo.eq(0)]
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(fire & last_out):
                    m.d.sync += [out_go.eq(0), go.eq(0)]
                    m.d.comb += ctl.done.eq(1)
                    m.next = "IDLE"
        return m
