"""The vector engine: the VPU (hw/vpu.py) with its operand collector and write-back.

One VECTOR or SCALAR instruction: the collector reads chunk c of a (port A, entry a+c) and b (port B, entry
b+c) of VBUF, one chunk of vpu_width = d elements per cycle, and sends the VPU its beats (opcode, operands,
S[sa], the immediate, the live-lane mask of the chunk, `last`); n = POS+1 with dyn_n; a SCALAR instruction is
one beat with no live lane. Write-back: element-wise results go to entry dst+c under the live-lane mask;
reductions and scalar operations write their binary32 result to S[sd]. Pipelined across instructions
(`IN_FLIGHT` = 2): the collector takes the next instruction (`ctl.ready`) as soon as it has fed the last beat of
the previous one, whose write-back parameters wait in a small FIFO; `done` comes once per instruction, in order,
when its last result is written (the controller's scoreboard keeps dependent instructions apart). Which opcode does what comes from
the ISA table (`writes` / `swrites` of `dfx.isa.OPS`), not from a list written here. The controller drives it
through the engine contract (hw/core_engine.py); it raises no error.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import data
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from dfx import isa
from dfx.config import AccelConfig, pipeline_profile

from .core_engine import Engine
from .core_mpu import check_core_config
from .decoder import Opcode
from .dma import log2
from .vpu import STAGES_300MHZ, VPU, in_layout

VEC_WRITERS = tuple(op.mnemonic for op in isa.OPS if op.unit is isa.Unit.VPU and op.writes)


def opcode_in(op, names) -> "Value":
    out = C(0, 1)
    for nm in names:
        out = out | (op == Opcode[nm])
    return out


class VectorEngine(Engine):
    """VECTOR and SCALAR instructions; besides `ctl`: POS, `sval` (S[sa] of the instruction, read at `start`)
    and the scalar register write port (`s_w_*`).

    The VPU is built with `vpu_params(cfg, deep)` (one exp and one GELU unit per `SFU_SHARE` lanes; `deep`:
    the 300 MHz depths, `DEEP` by default) unless keyword arguments replace or add to them.
    Each operation completes at its own latency (`VPU.op_latency`; the VPU delays a beat's entry only as long
    as it would overtake one in flight, so write-back stays in order). Cycle counts, read by the performance
    model (dfx.perf.timing, which builds the same VPU): from `start` to `done`, SETUP_CYCLES + FEED_CYCLES +
    `VPU.op_latency(op)` + `VPU.beat_cycles(op, beats)` (one cycle per beat of vpu_width elements; SFU_SHARE per
    VEXP/VGELU beat; red_stages + 1 between the beats of one VSUM/VDOT)."""

    UNIT = isa.Unit.VPU
    ERRORS = ()
    VBUF_READS = ("ra", "rb")
    IN_FLIGHT = 2             # pipelined: the next instruction is fed while the previous one drains

    SETUP_CYCLES = 3          # SETUP (the length), SETUP2 (the beats), then the first RUN cycle's VBUF read request
    FEED_CYCLES = 2           # the read data into the operand FIFO (SyncFIFOBuffered), out of it to the VPU
    SFU_SHARE = 8             # lanes per exp / GELU unit (docs/rtl.md, "VPU: depth and sharing": the fit)
    DEEP = False              # the VPU at the 300 MHz depths (`vpu_params`)

    @classmethod
    def vpu_params(cls, cfg: AccelConfig, deep: bool | None = None) -> dict:
        """The VPU's parameters in the core: shared special-function units, at the 300 MHz depths
        (`hw.vpu.STAGES_300MHZ`) when `deep` (None: `DEEP`, or the deep pipeline profile,
        `dfx.config.pipeline_profile`). Not deep by default: with every operation at its
        own latency the deep VPU is bit-exact, but its longer latencies (VSUM 61, SRSQRT 66 cycles at the dfx
        preset, against 14 and 21) on the LayerNorm and softmax chains leave the model's dfx prefill at
        100,114 cycles, above the DFX-style table model's 95,977 (tests/perf/test_tables.py; docs/rtl.md,
        "VPU: depth and sharing"). Deep, its adders (lanes, reduction tree and accumulator, scalar) are on
        DSP48E2 as the MPU's (`dsp_add`): 26k fewer LUTs at the dfx preset, where the fit binds on LUTs."""
        deep = (cls.DEEP or pipeline_profile() == "deep") if deep is None else deep
        return dict(sfu_share=min(cls.SFU_SHARE, cfg.vpu_width),
                    **(dict(STAGES_300MHZ, dsp_add="model") if deep else {}))

    def __init__(self, cfg: AccelConfig, deep: bool | None = None, **vpu_params):
        check_core_config(self, cfg)
        self.vpu = VPU(cfg, **{**self.vpu_params(cfg, deep), **vpu_params})
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

        # the instruction being fed, latched at start (field shapes from `dfx.isa`: VECTOR, or SCALAR's sd and imm)
        op = Signal(Opcode)
        scalar_fmt, vec_out = Signal(), Signal()
        dst, a, b, nf, sd = Signal.like(fv.dst), Signal.like(fv.a), Signal.like(fv.b), Signal.like(fv.n), \
            Signal.like(fv.sd)
        dyn = Signal()
        sval, imm = Signal(32), Signal.like(fs.imm)
        n = Signal(33)
        n_m1, n_zero = Signal(33), Signal()

        # what the write-back needs of each instruction fed and not done, in order
        desc_l = data.StructLayout({"dst": len(dst), "sd": len(sd), "vec_out": 1, "n": 33, "beats_m1": 30,
                                    "single": 1})
        m.submodules.desc = desc = SyncFIFOBuffered(width=desc_l.size, depth=self.IN_FLIGHT)
        wb = data.View(desc_l, desc.r_data)

        depth = 5       # (an entry's credit comes back a cycle after its read: `can_r` below; 5 keep a beat a cycle)
        lay = in_layout(cfg)
        m.submodules.ififo = ififo = SyncFIFOBuffered(width=lay.size, depth=depth)
        go = Signal()
        bi = Signal(30)
        pend, pend_i = Signal(), Signal(30)
        bi_last, pend_last = Signal(), Signal()      # bi + 1 == beats, from registers (the 300 MHz depth)
        bi_left = Signal(30)                         # beats after bi
        # the read goes when the FIFO will have room, from a register made a cycle ahead (the 300 MHz depth; as the
        # matrix engine's operand read, hw/core_mpu.py): late by one FIFO read, never early
        can_r = Signal(name="i_can_r")
        can = go & can_r
        m.d.sync += [pend.eq(can), can_r.eq(ififo.level + pend + can < depth)]
        with m.If(can):
            m.d.comb += [vbuf.ra_en.eq(1), vbuf.ra_addr.eq(a + bi),
                         vbuf.rb_en.eq(1), vbuf.rb_addr.eq(b + bi)]
            m.d.sync += [pend_i.eq(bi), pend_last.eq(bi_last), bi.eq(bi + 1), bi_left.eq(bi_left - 1),
                         bi_last.eq(bi_left == 1)]
            with m.If(bi_last):
                m.d.sync += go.eq(0)

        def live(i, count):
            """Lane r of chunk i holds element i*d + r < count."""
            base = i << log2(d)
            return Cat(*[base + r < count for r in range(d)])

        ip = Signal(lay)
        m.d.comb += [
            ip.op.eq(op), ip.s.eq(sval), ip.imm.eq(Mux(scalar_fmt, imm, 0)),
            ip.a.eq(Mux(scalar_fmt, 0, vbuf.ra_data)), ip.b.eq(Mux(scalar_fmt, 0, vbuf.rb_data)),
            ip.mask.eq(Mux(scalar_fmt, 0, live(pend_i, n))), ip.last.eq(pend_last),
            ififo.w_en.eq(pend), ififo.w_data.eq(ip.as_value()),
            vpu.i.valid.eq(ififo.r_rdy), vpu.i.payload.eq(ififo.r_data), ififo.r_en.eq(vpu.i.ready),
            vpu.o.ready.eq(desc.r_rdy & (~wb.vec_out | vbuf.w_rdy)),   # vector results wait for the VBUF write port
        ]

        # write-back, of the oldest instruction not done (the head of `desc`): `bo` its beat, whether that is its
        # last from registers (`single` for beat 0, `bo_last` after), so that `done` is no deeper than the handshake
        # (`bo1` = bo + 1 beside `bo`: no adder before bo_last's comparison)
        bo, bo1 = Signal(30), Signal(30, init=1)
        bo_zero, bo_last = Signal(init=1), Signal()
        fire = desc.r_rdy & vpu.o.valid & (~wb.vec_out | vbuf.w_rdy)
        last_out = Signal()
        m.d.comb += last_out.eq(~wb.vec_out | Mux(bo_zero, wb.single, bo_last))
        with m.If(desc.r_rdy & vpu.o.valid & wb.vec_out):
            m.d.comb += [vbuf.w_req.eq(1), vbuf.w_addr.eq(wb.dst + bo), vbuf.w_en.eq(live(bo, wb.n)),
                         vbuf.w_data.eq(vpu.o.payload.v.as_value())]
        with m.If(fire):
            with m.If(~wb.vec_out):
                m.d.comb += [self.s_w_addr.eq(wb.sd), self.s_w_en.eq(1), self.s_w_data.eq(vpu.o.payload.s)]
            with m.If(last_out):
                m.d.comb += [ctl.done.eq(1), desc.r_en.eq(1)]
                m.d.sync += [bo.eq(0), bo1.eq(1), bo_zero.eq(1)]
            with m.Else():
                m.d.sync += [bo.eq(bo1), bo1.eq(bo1 + 1), bo_zero.eq(0), bo_last.eq(bo1 == wb.beats_m1)]

        # the feeder: takes an instruction when it has fed the previous one (`ready`)
        feeding = Signal()
        m.d.comb += ctl.busy.eq(feeding | desc.r_rdy)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += ctl.ready.eq(desc.w_rdy)
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
            with m.State("SETUP"):                  # the length, then the beats from it (the 300 MHz depth)
                m.d.comb += feeding.eq(1)
                # (n - 1 and n == 0 beside n: beats - 1 = (n - 1) // d for n >= 1, one beat for n = 0 or a scalar)
                m.d.sync += [n.eq(Mux(dyn, self.pos + 1, nf)), n_m1.eq(Mux(dyn, self.pos, nf - 1)),
                             n_zero.eq(~dyn & (nf == 0))]
                m.next = "SETUP2"
            with m.State("SETUP2"):
                m.d.comb += feeding.eq(1)
                one = scalar_fmt | n_zero
                beats_m1 = Mux(one, 0, n_m1 >> log2(d))
                single = one | ((n_m1 >> log2(d)) == 0)
                m.d.sync += [go.eq(1), bi.eq(0), bi_left.eq(beats_m1), bi_last.eq(single)]
                dw = Signal(desc_l)
                m.d.comb += [dw.dst.eq(dst), dw.sd.eq(sd), dw.vec_out.eq(vec_out), dw.n.eq(n),
                             dw.beats_m1.eq(beats_m1), dw.single.eq(single),
                             desc.w_en.eq(1), desc.w_data.eq(dw.as_value())]
                m.next = "FEED"
            with m.State("FEED"):
                m.d.comb += feeding.eq(1)
                with m.If(~go & ~pend):
                    m.next = "IDLE"
        return m
