"""The integrated DFX compute core: register block, instruction fetch, decoder, controller, VBUF and scalar
registers, and the four execution engines (matrix, vector, DMA, router) on AXI4 memory ports and ring links.

Controller. One instruction stream per run, from DDR base + ENTRY, executed in program order. This first
version issues *in order and one at a time*: an instruction is dispatched to its engine only when the
previous one has completed, which satisfies every dependency rule of the ISA trivially (rule 1: no two
instructions are ever in flight; rule 2: every DMA write has been acknowledged before the next instruction
starts; rule 3: router instructions complete when their data has moved). The engines are independent
components with their own streams, so overlapping them (a scoreboard over VBUF ranges, as `dfx.isa` permits)
changes only this controller; see docs/rtl_core.md.

Per instruction: FETCH (take the next word from the prefetcher; the word's DDR offset must be inside the
config's DDR) -> DECODE (`hw.decoder`: illegal opcode or reserved bits set -> STATUS.illegal_opcode; every
on-chip operand of the ISA table (`dfx.isa` `Op.operands`, the rule of `dfx.isa.check_operands`) inside VBUF
and the scalar register file -> else STATUS.address_range) -> dispatch (NOP and FENCE retire at once, HALT
ends the run, the others start the engine of their unit) -> WAIT (the engine's `done`; an engine's own checks
-- off-chip range, weight format, ring -- end the run with the STATUS bit of the error it raised). The engines
are driven through one contract (hw/core_engine.py): each declares its unit and its errors, so this controller
starts them, counts their busy cycles and maps their errors to STATUS without naming any of them. Errors store
ERROR_PC and end the run like HALT: the fetcher is drained, ap_done rises, the core goes idle.

Counters: CYCLES counts from accepting ap_start to ap_done; BUSY_<unit> the cycles each engine is busy.
Debug outputs for the test harness (not part of the kernel interface): `dbg_retire` pulses when an
instruction retires, with its `dbg_pc` and `dbg_opcode`.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from dfx import isa, regmap
from dfx.config import AccelConfig

from .buffers import ScalarFile, VectorBuffer
from .core_engine import Engine
from .core_mpu import MatrixEngine, check_core_config
from .core_vpu import VectorEngine
from .decoder import Decoder, Opcode, Unit, WordLayout
from .dma import AXI_HANDSHAKE_IN, DmaEngine, axi4_signature, ddr_data_bits, hbm_port_names, log2
from .fetch import Fetch
from .regs import Registers, axil_addr_bits, axil_signature
from .router import RouterEngine, link_layout

STATUS = regmap.STATUS_BITS
ENGINES = (MatrixEngine, VectorEngine, DmaEngine, RouterEngine)     # the core's engines, one per unit


def _mux_out(m, target, sources):
    """Drive every Out member of `target` (a port of the given signature, the master's view) from the
    selected source; `sources` = [(select, port)], selects one-hot. In members go back to every source, the
    handshake ones (`*ready`/`*valid` driven by the slave) only to the selected one."""
    sig = target.signature
    for name, member in sig.members.items():
        tv = getattr(target, name)
        if member.flow == wiring.Out:
            expr = C(0, len(tv))
            for sel, src in reversed(sources):
                expr = Mux(sel, getattr(src, name), expr)
            m.d.comb += tv.eq(expr)
        else:
            for sel, src in sources:
                m.d.comb += getattr(src, name).eq(tv & sel if name in AXI_HANDSHAKE_IN else tv)


def operands_ok(word, pos, cfg: AccelConfig):
    """1 when every on-chip operand of the instruction (`dfx.isa` `Op.operands`) lies inside VBUF and, for a
    config with fewer scalar registers than the ISA can name, names one that exists: `dfx.isa.check_operands`
    as comparators."""
    ok = C(1, 1)
    elems = cfg.vbuf_elems
    for op in isa.OPS:
        specs = [s for s in op.operands if not s.scalar or cfg.sregs < isa.SREG_COUNT]
        if not specs:
            continue
        view = getattr(word, op.fmt.name.lower())
        cond = C(1, 1)
        for spec in specs:
            if spec.scalar:
                inside = getattr(view, spec.field) < cfg.sregs
            else:
                ln = getattr(view, spec.length)
                if spec.dyn is not None:
                    ln = Mux(getattr(view, spec.dyn), pos + 1, ln)
                inside = (getattr(view, spec.field) << log2(cfg.d)) + ln <= elems
            if spec.when is not None:           # e.g. the bias, read only with has_bias
                inside = inside | ~getattr(view, spec.when)
            cond = cond & inside
        ok = ok & ((view.opcode != Opcode[op.mnemonic]) | cond)
    return ok


class Core(wiring.Component):
    """The core for `cfg`. Ports (Amaranth names; hw/top.py gives them Vitis names): `axil` (AXI4-Lite
    slave), `interrupt`, `ddr` and `hbm0`.. (AXI4 masters), `ring_tx` / `ring_rx` (link streams)."""

    # Cycle counts of this controller, read by the performance model's serial-issue mode (dfx.perf.timing):
    # FETCH + DECODE from one instruction's retirement to the next one's engine start (the engine sees
    # `start` in DECODE), or to a NOP / FENCE / HALT retiring in DECODE.
    ISSUE_CYCLES = 2

    def __init__(self, cfg: AccelConfig, **mpu_stages):
        """`mpu_stages`: pipeline stages of the MPU (`hw.mpu.MPU`'s keyword arguments)."""
        check_core_config(self, cfg)
        self.cfg = cfg
        self._mpu_stages = mpu_stages
        members = {
            "axil": In(axil_signature(axil_addr_bits(cfg))),
            "interrupt": Out(1),
            "ddr": Out(axi4_signature(ddr_data_bits(cfg))),
        }
        for nm in hbm_port_names(cfg):
            members[nm] = Out(axi4_signature(cfg.hbm_width))
        members["ring_tx"] = Out(stream.Signature(link_layout(cfg)))
        members["ring_rx"] = In(stream.Signature(link_layout(cfg)))
        members.update({"dbg_retire": Out(1), "dbg_pc": Out(32), "dbg_opcode": Out(8), "dbg_running": Out(1)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.regs = regs = Registers(cfg)
        m.submodules.fetch = fetch = Fetch(cfg)
        m.submodules.decoder = dec = Decoder()
        m.submodules.vbuf = vbuf = VectorBuffer(cfg)
        m.submodules.sregs = sregs = ScalarFile(cfg)
        engines: tuple[Engine, ...] = tuple(E(cfg, **self._mpu_stages) if E is MatrixEngine else E(cfg)
                                            for E in ENGINES)
        for e in engines:
            m.submodules[e.UNIT.value] = e
        mpu, vpu, dma, router = engines
        wiring.connect(m, wiring.flipped(self.axil), regs.axil)
        m.d.comb += self.interrupt.eq(regs.interrupt)

        # ---- controller state
        ir = Signal(WordLayout)
        pc = Signal(32)
        status = Signal(32)
        error_pc = Signal(32)
        cycles = Signal(64)
        busy = [Signal(64, name=f"busy_{u.lower()}") for u in regmap.COUNTER_UNITS]
        running = Signal()
        active = Signal(len(engines))            # one-hot: the engine that owns VBUF and the shared ports
        token, pos = regs.token, regs.pos
        m.d.comb += [dec.word.eq(ir), regs.status.eq(status), regs.error_pc.eq(error_pc),
                     regs.cycles.eq(cycles), regs.running.eq(running)]
        for i, b in enumerate(busy):
            m.d.comb += regs.busy[i].eq(b)
        for e in engines:
            b = busy[regmap.COUNTER_UNITS.index(e.UNIT.name)]
            with m.If(running & e.ctl.busy):
                m.d.sync += b.eq(b + 1)
        with m.If(running):
            m.d.sync += cycles.eq(cycles + 1)

        # ---- engine inputs
        for e in engines:
            m.d.comb += e.ctl.word.eq(ir)
        m.d.comb += [mpu.pos.eq(pos), vpu.pos.eq(pos), dma.pos.eq(pos), dma.token.eq(token),
                     dma.ddr_base.eq(regs.ddr_base),
                     router.ring_pos.eq(regs.ring_pos), router.ring_size.eq(regs.ring_size)]
        for c in range(cfg.hbm_channels):
            m.d.comb += [mpu.hbm_base[c].eq(regs.hbm_base[c]), dma.hbm_base[c].eq(regs.hbm_base[c])]
        # scalar operands: S[s] for the MPU's scale, S[sa] for the VPU (VECTOR or SCALAR format)
        is_scalar_fmt = C(0, 1)
        for op in isa.OPS:
            if op.fmt is isa.SCALAR:
                is_scalar_fmt = is_scalar_fmt | (ir.control.opcode == Opcode[op.mnemonic])
        m.d.comb += [sregs.r0_addr.eq(ir.matrix.s), mpu.scale.eq(sregs.r0_data),
                     sregs.r1_addr.eq(Mux(is_scalar_fmt, ir.scalar.sa, ir.vector.sa)), vpu.sval.eq(sregs.r1_data),
                     sregs.w_addr.eq(vpu.s_w_addr), sregs.w_en.eq(vpu.s_w_en), sregs.w_data.eq(vpu.s_w_data)]

        # ---- shared resources: VBUF (the owner drives it), HBM ports (matrix engine or DMA), DDR
        sel = {e: active[i] for i, e in enumerate(engines)}
        _mux_out(m, wiring.flipped(vbuf.port), [(sel[e], e.ctl.vbuf) for e in engines])
        for nm in hbm_port_names(cfg):
            _mux_out(m, getattr(self, nm), [(sel[mpu], getattr(mpu, nm)), (sel[dma], getattr(dma, nm))])
        self._ddr_arbiter(m, fetch.ddr, dma.ddr)
        wiring.connect(m, router.tx, wiring.flipped(self.ring_tx))
        wiring.connect(m, wiring.flipped(self.ring_rx), router.rx)

        # ---- fetch
        entry_off = Signal(33)
        m.d.comb += [entry_off.eq(regs.entry + (pc << log2(isa.WORD_BYTES))),
                     fetch.addr.eq(regs.ddr_base + regs.entry), fetch.limit.eq(regs.ddr_base + cfg.ddr_bytes)]

        # ---- control
        retire = Signal()
        m.d.comb += [self.dbg_retire.eq(retire), self.dbg_pc.eq(pc), self.dbg_opcode.eq(ir.control.opcode),
                     self.dbg_running.eq(running)]

        # ISA version 2's batched prefill (BATCH, CHUNK, SLOT) is decoded but not implemented by this core yet:
        # it stops with illegal_opcode rather than run the instruction a BATCH prefixes unbatched
        not_here = C(0, 1)
        for mn in isa.BATCHED_OPS:
            not_here = not_here | (ir.control.opcode == Opcode[mn])

        def fail(bit):
            m.d.sync += [status.eq(status | STATUS[bit]), error_pc.eq(pc)]
            m.next = "FINISH"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(regs.start):
                    m.d.comb += [regs.accept.eq(1), fetch.start.eq(1)]
                    m.d.sync += [running.eq(1), pc.eq(0), status.eq(0), error_pc.eq(0), cycles.eq(0),
                                 *[b.eq(0) for b in busy]]
                    m.next = "FETCH"
            with m.State("FETCH"):
                with m.If(entry_off + isa.WORD_BYTES > cfg.ddr_bytes):
                    fail("address_range")
                with m.Else():
                    m.d.comb += fetch.o.ready.eq(1)
                    with m.If(fetch.o.valid):
                        m.d.sync += ir.eq(fetch.o.payload)
                        m.next = "DECODE"
            with m.State("DECODE"):
                with m.If(dec.illegal | not_here):
                    fail("illegal_opcode")
                with m.Elif(~operands_ok(ir, pos, cfg)):
                    fail("address_range")
                with m.Elif(dec.unit == Unit.CTRL):
                    with m.If(ir.control.opcode == Opcode.HALT):
                        m.d.comb += retire.eq(1)
                        m.d.sync += status.eq(status | STATUS["halted"])
                        m.next = "FINISH"
                    with m.Else():                     # NOP, FENCE: nothing is in flight
                        m.d.comb += retire.eq(1)
                        m.d.sync += pc.eq(pc + 1)
                        m.next = "FETCH"
                with m.Else():
                    for i, e in enumerate(engines):
                        with m.If(dec.unit == Unit[e.UNIT.name]):
                            m.d.comb += e.ctl.start.eq(1)
                            m.d.sync += active.eq(1 << i)
                    m.next = "WAIT"
            with m.State("WAIT"):
                done = Cat(*[e.ctl.done & active[i] for i, e in enumerate(engines)]).any()
                # the engines' errors by STATUS bit, in STATUS_BITS order (the priority)
                raised = [(bit, Cat(*[e.ctl.err[bit] & active[i] for i, e in enumerate(engines)
                                      if bit in e.ERRORS]).any())
                          for bit in STATUS if any(bit in e.ERRORS for e in engines)]
                with m.If(done):
                    m.d.sync += active.eq(0)
                    for j, (bit, flag) in enumerate(raised):
                        with (m.If if j == 0 else m.Elif)(flag):
                            fail(bit)
                    with m.Else():
                        m.d.comb += retire.eq(1)
                        m.d.sync += pc.eq(pc + 1)
                        m.next = "FETCH"
            with m.State("FINISH"):
                m.d.comb += fetch.flush.eq(1)
                m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(fetch.idle):
                    m.d.comb += regs.done.eq(1)
                    m.d.sync += running.eq(0)
                    m.next = "IDLE"
        return m

    def _ddr_arbiter(self, m, fetch_port, dma_port):
        """DDR: reads from the fetcher and the DMA share AR (the DMA first; a waiting request is never
        switched away from) and R (routed in AR order, by a FIFO of who asked); writes are the DMA's."""
        ddr = self.ddr
        m.submodules.ddr_order = order = SyncFIFO(width=1, depth=16)
        locked, held = Signal(), Signal()
        who = Signal()                                   # 1: DMA
        m.d.comb += who.eq(Mux(locked, held, dma_port.arvalid))
        src_valid = Mux(who, dma_port.arvalid, fetch_port.arvalid)
        for nm in ("araddr", "arlen", "arsize", "arburst"):
            m.d.comb += getattr(ddr, nm).eq(Mux(who, getattr(dma_port, nm), getattr(fetch_port, nm)))
        m.d.comb += [ddr.arvalid.eq(src_valid & order.w_rdy),
                     dma_port.arready.eq(who & ddr.arready & order.w_rdy),
                     fetch_port.arready.eq(~who & ddr.arready & order.w_rdy),
                     order.w_en.eq(ddr.arvalid & ddr.arready), order.w_data.eq(who)]
        m.d.sync += [locked.eq(ddr.arvalid & ~ddr.arready), held.eq(who)]
        head = order.r_data
        for p, mine in ((dma_port, head), (fetch_port, ~head)):
            m.d.comb += [p.rvalid.eq(ddr.rvalid & order.r_rdy & mine), p.rdata.eq(ddr.rdata),
                         p.rresp.eq(ddr.rresp), p.rlast.eq(ddr.rlast)]
        m.d.comb += [ddr.rready.eq(order.r_rdy & Mux(head, dma_port.rready, fetch_port.rready)),
                     order.r_en.eq(ddr.rvalid & ddr.rready & ddr.rlast)]
        for nm in ("awvalid", "awaddr", "awlen", "awsize", "awburst", "wvalid", "wdata", "wstrb", "wlast",
                   "bready"):
            m.d.comb += getattr(ddr, nm).eq(getattr(dma_port, nm))
        for nm in ("awready", "wready", "bvalid", "bresp"):
            m.d.comb += getattr(dma_port, nm).eq(getattr(ddr, nm))
