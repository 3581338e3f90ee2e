"""The router: ring instructions (SEND, RECV, ALLGATHER) over AXI4-Stream links toward the neighbours.

Link payload: one VBUF entry (d binary16 elements) per beat, `last` on a message's final beat. `tx` goes to
the next device of the ring (forward), `rx` comes from the previous one; DFX's compiler only gathers
forward, and the ISA's backward direction (`dir` = 1) raises the `ring` error.

- SEND: the n elements at vaddr leave on `tx`, ceil(n/d) beats (lanes past n are zero).
- RECV: ceil(n/d) beats from `rx` are written at vaddr (lanes past n masked off).
- ALLGATHER over D devices on a unidirectional ring: the vector is cut into D chunks
  (`dfx.isa.chunk_bounds(n, D, gran*d)`, in ring order); the device at ring position p owns chunk p. In step
  s = 0 .. D-2 it sends chunk (p - s) mod D forward and receives chunk (p - s - 1) mod D from behind, writing
  it in place; after D-1 steps every device holds every chunk. A device's chunk bounds come from a small
  sequential divider (units = ceil(n / (gran*d)), base, extra = divmod(units, D)). With D = 1 it is a no-op.
  The ring position and size are the RING_POS / RING_SIZE registers.

Chunks start on entry boundaries (a granule is gran whole entries), so beats are whole entries; the last
chunk's last entry may be short (masked). The controller drives the router through the engine contract
(hw/core_engine.py); its one error is STATUS.ring.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from dfx import isa
from dfx.config import AccelConfig

from .core_engine import Engine
from .decoder import Opcode, format_layout
from .dma import log2

DEVICE_BITS = isa.ROUTE.field("devices").width    # a ring position (a ring size takes one bit more)
UNIT_BITS = isa.LEN_BITS + 1                      # ALLGATHER units and VBUF entries of a vector (n / d at most)


def link_layout(cfg: AccelConfig) -> data.StructLayout:
    return data.StructLayout({"data": 16 * cfg.d, "last": 1})


class RouterEngine(Engine):
    """ROUTE instructions; besides `ctl`: the RING_POS / RING_SIZE registers and the two ring links."""

    UNIT = isa.Unit.ROUTER
    ERRORS = ("ring",)
    VBUF_READS = ("ra",)

    def __init__(self, cfg: AccelConfig):
        super().__init__(cfg, {
            "ring_pos": In(DEVICE_BITS), "ring_size": In(DEVICE_BITS + 1),
            "tx": Out(stream.Signature(link_layout(cfg))),
            "rx": In(stream.Signature(link_layout(cfg))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        d = cfg.d
        ctl, vbuf = self.ctl, self.ctl.vbuf

        # ---- the instruction, latched at start (fields as `dfx.isa.ROUTE` defines them)
        ins = Signal(format_layout(isa.ROUTE))
        op, vaddr, n, devs, gran, back = ins.opcode, ins.vaddr, ins.n, ins.devices, ins.gran, ins.dir

        # ---- chunk bounds: units = ceil(n / (gran*d)); base, extra = divmod(units, devs) by repeated subtraction
        units, q, r = Signal(UNIT_BITS, name="units"), Signal(UNIT_BITS, name="q"), Signal(UNIT_BITS, name="r")
        units_g = Signal(UNIT_BITS + isa.VADDR_BITS, name="units_g")   # units * gran, kept beside units
        # chunk c starts at unit c*base + min(c, extra) and holds base + (c < extra) units
        step = Signal(DEVICE_BITS + 1)                    # ALLGATHER step s
        last_step = Signal()                              # step + 1 >= devs (a register beside `step`)
        # step s sends chunk (pos - s) mod D and receives chunk (pos - s - 1) mod D: kept in registers, each step's
        # send chunk the step before's receive chunk (the 300 MHz depth: no subtraction of `step` before a compare)
        send_c, recv_c = Signal(DEVICE_BITS + 1, name="send_c"), Signal(DEVICE_BITS + 1, name="recv_c")
        which = Signal(DEVICE_BITS + 1)                   # the chunk whose bounds are computed

        # in entries: unit u covers entries u*gran .. (u+1)*gran, clipped to the vector's ceil(n/d) entries.
        # Over registers (the 300 MHz depth): c * q, min(c, r) and the chunk's unit count (`c_q`, `c_m`, `c_n`),
        # then its units (`u_lo`, `u_hi`), then its entries (`e_lo`, `e_hi`), then clipped; the BOUNDS states below
        # step a chunk through them.
        c_q, c_m, c_n = (Signal(UNIT_BITS, name=nm) for nm in ("c_q", "c_m", "c_n"))
        m.d.sync += [c_q.eq(which * q), c_m.eq(Mux(which < r, which, r)), c_n.eq(q + (which < r))]
        lo_u = c_q + c_m
        # (and the clipped entries, `e_lo_c` / `e_hi_c`, a cycle later: a send chunk's in BOUNDS_S, a receive
        # chunk's in BOUNDS_R; `n_ent` = ceil(n / d) is registered at start)
        n_ent = Signal(UNIT_BITS, name="n_ent")
        u_lo, u_hi, e_lo, e_hi = (Signal(UNIT_BITS, name=nm) for nm in ("u_lo", "u_hi", "e_lo", "e_hi"))
        e_lo_c, e_hi_c = Signal(UNIT_BITS, name="e_lo_c"), Signal(UNIT_BITS, name="e_hi_c")
        m.d.sync += [u_lo.eq(lo_u), u_hi.eq(lo_u + c_n), e_lo.eq(u_lo * gran), e_hi.eq(u_hi * gran),
                     e_lo_c.eq(Mux(e_lo > n_ent, n_ent, e_lo)), e_hi_c.eq(Mux(e_hi > n_ent, n_ent, e_hi))]

        # ---- beat movers
        rd_pend = Signal()
        holding = Signal()
        hold = Signal(16 * d)
        hold_last = Signal()

        def lanes_of(e):
            """Live lanes of entry e: elements e*d + r < n."""
            return Cat(*[(e << log2(d)) + r < n for r in range(d)])

        m.d.comb += ctl.busy.eq(1)
        sending, receiving = Signal(), Signal()
        send_ent, recv_ent = Signal(UNIT_BITS, name="send_ent"), Signal(UNIT_BITS, name="recv_ent")
        # (`send_more`: entries are left to send, a register kept beside their count, `send_left`: the read's
        # decision and its last-entry test come from registers, the 300 MHz depth)
        send_left, send_more = Signal(UNIT_BITS, name="send_left"), Signal(name="send_more")
        # (`send_a`, `recv_a`: the VBUF addresses vaddr + send_ent / recv_ent, registers stepped beside the entries:
        # no addition before the buffer's address decode, the 300 MHz depth)
        send_a, recv_a = Signal(isa.VADDR_BITS, name="send_a"), Signal(isa.VADDR_BITS, name="recv_a")

        def send_range(lo, hi, base=vaddr):
            return [send_ent.eq(lo), send_a.eq(base + lo), send_left.eq(hi - lo), send_more.eq(hi > lo)]

        # sender: read entry (1 cycle), hold it, offer it on tx
        can_read = sending & ~holding & ~rd_pend & send_more
        rd_lanes, rd_last = Signal(d), Signal()          # the entry read's live lanes and whether it is the last,
        with m.If(can_read):                              # registered with the read (the 300 MHz depth)
            m.d.comb += [vbuf.ra_en.eq(1), vbuf.ra_addr.eq(send_a)]
            m.d.sync += [rd_pend.eq(1), send_ent.eq(send_ent + 1), send_a.eq(send_a + 1), rd_lanes.eq(lanes_of(send_ent)),
                         rd_last.eq(send_left == 1), send_left.eq(send_left - 1), send_more.eq(send_left != 1)]
        with m.If(rd_pend):
            m.d.sync += [rd_pend.eq(0), holding.eq(1),
                         hold.eq(vbuf.ra_data & Cat(*[rd_lanes[i].replicate(16) for i in range(d)])),
                         hold_last.eq(rd_last)]
        m.d.comb += [self.tx.valid.eq(holding), self.tx.payload.data.eq(hold), self.tx.payload.last.eq(hold_last)]
        with m.If(self.tx.valid & self.tx.ready):
            m.d.sync += holding.eq(0)
        send_idle = ~holding & ~rd_pend & ~send_more

        # receiver: write each beat at its entry
        # (a beat waits for the shared VBUF write port, hw/buffers.py)
        # (`recv_more`: entries are left to receive, a register kept beside their count, `recv_left`: the ring's
        # READY comes from registers and the write port's grant, the 300 MHz depth)
        recv_left, recv_more = Signal(UNIT_BITS), Signal()
        m.d.comb += self.rx.ready.eq(receiving & recv_more & vbuf.w_rdy)
        with m.If(self.rx.valid & receiving & recv_more):
            m.d.comb += [vbuf.w_req.eq(1), vbuf.w_addr.eq(recv_a), vbuf.w_en.eq(lanes_of(recv_ent)),
                         vbuf.w_data.eq(self.rx.payload.data)]
        with m.If(self.rx.valid & self.rx.ready):
            m.d.sync += [recv_ent.eq(recv_ent + 1), recv_a.eq(recv_a + 1), recv_left.eq(recv_left - 1), recv_more.eq(recv_left != 1)]
        recv_idle = ~recv_more

        def recv_range(lo, hi, base=vaddr):
            return [recv_ent.eq(lo), recv_a.eq(base + lo), recv_left.eq(hi - lo), recv_more.eq(hi > lo)]

        size = self.ring_size
        pos = self.ring_pos
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += ctl.busy.eq(0)
                with m.If(ctl.start):
                    m.d.sync += [ins.eq(ctl.word.route), n_ent.eq((ctl.word.route.n + d - 1) >> log2(d)),
                                 sending.eq(0), receiving.eq(0),
                                 *send_range(0, 0, 0), *recv_range(0, 0, 0)]
                    m.next = "DISPATCH"
            with m.State("DISPATCH"):
                with m.If(op == Opcode.ALLGATHER):
                    with m.If(devs <= 1):
                        m.d.comb += ctl.done.eq(1)
                        m.next = "IDLE"
                    with m.Elif((devs != size) | (gran == 0)):
                        m.d.comb += [ctl.done.eq(1), ctl.err.ring.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        # units = ceil(n_ent / gran) (DIV_UNITS); then divmod(units, devs) (DIV_PARTS)
                        m.d.sync += [units.eq(0), units_g.eq(0), q.eq(0), r.eq(0)]
                        m.next = "DIV_UNITS"
                with m.Elif(back):
                    m.d.comb += [ctl.done.eq(1), ctl.err.ring.eq(1)]
                    m.next = "IDLE"
                with m.Elif(op == Opcode.SEND):
                    m.d.sync += [sending.eq(1), *send_range(0, n_ent)]
                    m.next = "MOVE"
                with m.Else():
                    m.d.sync += [receiving.eq(1), *recv_range(0, n_ent)]
                    m.next = "MOVE"
            # units = ceil(n_ent / gran): count up (n_ent <= 65536 / d entries; gran >= 1), one per cycle
            with m.State("DIV_UNITS"):
                with m.If(units_g >= n_ent):
                    m.d.sync += [q.eq(0), r.eq(units)]
                    m.next = "DIV_PARTS"
                with m.Else():
                    m.d.sync += [units.eq(units + 1), units_g.eq(units_g + gran)]
            # base, extra = divmod(units, devs): repeated subtraction
            with m.State("DIV_PARTS"):
                with m.If(r >= devs):
                    m.d.sync += [q.eq(q + 1), r.eq(r - devs)]
                with m.Else():
                    m.d.sync += [step.eq(0), last_step.eq(devs <= 1), send_c.eq(pos),
                                 recv_c.eq(Mux(pos == 0, devs - 1, pos - 1))]
                    m.next = "STEP"
            with m.State("STEP"):
                with m.If(last_step):
                    m.d.comb += ctl.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += which.eq(send_c)
                    m.next = "BOUNDS_A"
            # the send chunk's c * q is registered at the end of STEP + 1, its units at + 2, its entries at + 3,
            # clipped at + 4; the receive chunk's a cycle behind
            with m.State("BOUNDS_A"):
                m.d.sync += which.eq(recv_c)
                m.next = "BOUNDS_B"
            with m.State("BOUNDS_B"):
                m.next = "BOUNDS_C"
            with m.State("BOUNDS_C"):
                m.next = "BOUNDS_D"
            with m.State("BOUNDS_D"):
                m.next = "BOUNDS_S"
            with m.State("BOUNDS_S"):
                m.d.sync += send_range(e_lo_c, e_hi_c)
                m.next = "BOUNDS_R"
            with m.State("BOUNDS_R"):
                m.d.sync += [*recv_range(e_lo_c, e_hi_c), sending.eq(1), receiving.eq(1)]
                m.next = "GATHER"
            with m.State("GATHER"):
                with m.If(send_idle & recv_idle):
                    m.d.sync += [step.eq(step + 1), last_step.eq(step + 2 >= devs), sending.eq(0), receiving.eq(0),
                                 send_c.eq(recv_c), recv_c.eq(Mux(recv_c == 0, devs - 1, recv_c - 1))]
                    m.next = "STEP"
            with m.State("MOVE"):
                with m.If(send_idle & recv_idle):
                    m.d.sync += [sending.eq(0), receiving.eq(0)]
                    m.d.comb += ctl.done.eq(1)
                    m.next = "IDLE"
        return m
