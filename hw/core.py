"""The integrated DFX compute core: register block, instruction fetch, decoder, controller, VBUF and scalar
registers, and the four execution engines (matrix, vector, DMA, router) on AXI4 memory ports and ring links.

Controller (docs/rtl_core.md, "Controller and dependency rules"). One instruction stream per run, from DDR base +
ENTRY. The front end takes one word per cycle from the prefetcher into the instruction register and decodes it
(`hw.decoder`: an illegal opcode or reserved bits -> STATUS.illegal_opcode; a static rule of `dfx.isa_check`
broken (`hw.scoreboard.invalid`: a zero length or granule, quantized-weight flags) -> STATUS.invalid; an on-chip
operand of the ISA table (`dfx.isa` `Op.operands`) outside VBUF or the scalar register file ->
STATUS.address_range; a fetch past the config's DDR -> STATUS.address_range). What of them depends on the word
alone comes with it from the prefetcher (its predecode, hw/predecode.py); the checks against POS and the batch
state and the word's footprint are made into registers a cycle ahead (for the word in the instruction register and
for the one the prefetcher offers), and dispatch decides from them, as flat terms of registers; after a cycle that changes what they read
(BATCH, CHUNK or SLOT leaving, a vector of a batched instruction dispatched) the front end waits a cycle for them.
A valid instruction is dispatched, in program order, one per cycle, into the in-order queue of its unit (`QUEUE_DEPTH` entries per unit: MPU, VPU,
DMA, ROUTER); NOP retires at dispatch, FENCE holds dispatch until the units of its mask have completed every
older instruction, HALT until every unit has. The head of each queue starts its engine when the engine is idle
and the scoreboard finds no hazard with an older instruction still queued or running (ISA dependency rule 1, RAW /
WAR / WAW on VBUF entry ranges and scalar registers: `hw.scoreboard`), and when the HBM ports are free: the matrix
engine's weight streamer and an HBM DMA instruction take the HBM ports for a whole instruction (the older one
first); DDR is shared by the fetcher and the DMA beat by beat (`_ddr_arbiter`). So the four engines run
concurrently on disjoint data, as DFX does. `in_order=True` builds the same core dispatching an instruction only
when every unit is idle (the one-at-a-time controller: benchmarks/rtl_core_cycles.py compares the two).

Errors. The engines report their own (off-chip range, weight format, ring) with `done`, in completion order.
The first error in time stores ERROR_PC (the faulting instruction's PC; for engine errors in the same cycle, the
older instruction's; a front-end error is recorded from registers a cycle after it is found, a cycle in which the
front end does nothing) and every error sets its STATUS bit; the core then dispatches nothing more and ends the run
like HALT (fetcher drained, ap_done). After an engine's error it discards queued instructions that have not
started and lets the running ones complete: instructions younger than ERROR_PC may have completed (out-of-order
completion); older ones that had not started do not run. A front-end error (decode, fetch) is precise: every older
instruction was dispatched, and the queued ones still start and complete; nothing younger runs.

Issue timing (the 300 MHz depth, docs/rtl.md "Depth of the core around the MPU and VPU"): the hazard test of each
queue's head is registered twice (its blocking terms, then their OR), so a head starts two cycles after the test
found it free, if it is still the head (`Core.ISSUE_CYCLES`, `Core.WAKE_CYCLES`). What can change in those cycles
only frees it (a completion) or leaves it blocked under the same rule (an older instruction moving from its queue
to its engine); a younger dispatch is never a hazard to an older head, and cannot start past it where they
conflict (the head blocks it from its queue). A FENCE retires from a register: the cycle after its units were found idle with it in
the instruction register.

Counters: CYCLES counts from accepting ap_start to ap_done; BUSY_<unit> the cycles each engine is busy.
Debug outputs for the test harness (not part of the kernel interface): a completion event per source (the
controller's NOP / FENCE / HALT, each engine's `done`) registered in `dbg_ev` with the PC and opcode
(`dbg_ev_pc<i>`, `dbg_ev_op<i>`), `dbg_tick` toggling on every cycle with an event; VBUF and scalar-register
writes with the PC of the instruction that made them (`dbg_vw_*`, `dbg_sw_*`).
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from dfx import isa, regmap
from dfx.config import AccelConfig

from .buffers import ScalarFile, VectorBuffer, vbuf_addr_bits
from .core_batch import BatchUnit
from .core_engine import Engine
from .core_mpu import MatrixEngine, check_core_config
from .core_vpu import VectorEngine
from .decoder import Opcode, Unit, WordLayout
from .dma import AXI_HANDSHAKE_IN, BURST_INCR, DmaEngine, axi4_signature, ddr_data_bits, hbm_port_names, log2
from .fetch import Fetch
from .predecode import DYN_SLOTS, Predecode, outside
from .regs import Registers, axil_addr_bits, axil_signature
from .router import RouterEngine, link_layout
from .scoreboard import FOOTPRINT, conflict, finish_footprint

STATUS = regmap.STATUS_BITS
ENGINES = (MatrixEngine, VectorEngine, DmaEngine, RouterEngine)     # the core's engines, one per unit
# VBUF write port arbitration, first wins. The DMA first: its request is a register (its load stages) and it never
# waits, so no engine's grant chains into its R path; each later engine's grant is the OR of the earlier requests.
WRITE_PRIORITY = (DmaEngine, MatrixEngine, RouterEngine, VectorEngine)
QUEUE_DEPTH = 2             # instructions waiting per unit queue, besides the one its engine runs
SEQ_BITS = 8                # dispatch sequence numbers (age order in the scoreboard; far more than in flight)
SLOT_FIELDS = ("word", "pc", "seq", "fp", "pos", "tok")   # what a queue entry carries (TOKEN / POS of its dispatch)


def _mux_out(m, target, sources, raw=()):
    """Drive every Out member of `target` (a port of the given signature, the master's view) from the
    selected source; `sources` = [(select, port)], selects one-hot. In members go back to every source, the
    handshake ones (`*ready`/`*valid` driven by the slave) only to the selected one, except those named in `raw`
    = [(port, member)], which that port takes ungated (it reads them only while it is selected)."""
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
                gated = name in AXI_HANDSHAKE_IN and not any(src is p and name == nm for p, nm in raw)
                m.d.comb += getattr(src, name).eq(tv & sel if gated else tv)


class Core(wiring.Component):
    """The core for `cfg`. Ports (Amaranth names; hw/top.py gives them Vitis names): `axil` (AXI4-Lite
    slave), `interrupt`, `ddr` and `hbm0`.. (AXI4 masters), `ring_tx` / `ring_rx` (link streams)."""

    # Cycle counts of this controller, read by the performance model's serial-issue mode (dfx.perf.timing): in
    # the in-order build, from one instruction's completion to the next one's engine start (dispatch when
    # every unit is idle, then the queue head's start), or to a NOP / FENCE / HALT retiring.
    ISSUE_CYCLES = 4
    # In the scoreboard build, from an engine's `done` to the start of an instruction that waited for it (on its
    # operands, its engine or the HBM ports): the in-flight slot frees on the clock edge after `done`, and the
    # hazard test is registered twice (two cycles more, for the 300 MHz depth).
    WAKE_CYCLES = 3
    # ... and to a FENCE or HALT waiting for it retiring (not through the hazard test): the slot frees on the edge
    # after `done`, the units are found idle from registers, and the FENCE retires (HALT: FINISH, DRAIN)
    FENCE_CYCLES = 4

    def __init__(self, cfg: AccelConfig, in_order: bool = False, **mpu_stages):
        """`in_order`: dispatch only when every unit is idle; `mpu_stages`: pipeline stages of the MPU
        (`hw.mpu.MPU`'s keyword arguments)."""
        check_core_config(self, cfg)
        self.cfg = cfg
        self.in_order = in_order
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
        n_ev = len(ENGINES) + 1
        members.update({"dbg_running": Out(1), "dbg_tick": Out(1), "dbg_ev": Out(n_ev),
                        **{f"dbg_ev_pc{i}": Out(32) for i in range(n_ev)},
                        **{f"dbg_ev_op{i}": Out(8) for i in range(n_ev)},
                        "dbg_vw_en": Out(cfg.d), "dbg_vw_addr": Out(vbuf_addr_bits(cfg)),
                        "dbg_vw_data": Out(16 * cfg.d), "dbg_vw_pc": Out(32),
                        "dbg_sw_en": Out(1), "dbg_sw_addr": Out(isa.SREG_BITS), "dbg_sw_data": Out(32),
                        "dbg_sw_pc": Out(32)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.regs = regs = Registers(cfg)
        m.submodules.fetch = fetch = Fetch(cfg, annotate=Predecode(cfg, [E.UNIT for E in ENGINES], staged=True))
        m.submodules.batch = pf = BatchUnit(cfg, [E.UNIT for E in ENGINES])
        m.submodules.sregs = sregs = ScalarFile(cfg)
        engines: tuple[Engine, ...] = tuple(E(cfg, **self._mpu_stages) if E is MatrixEngine else E(cfg)
                                            for E in ENGINES)
        for e in engines:
            m.submodules[e.UNIT.value] = e
        mpu, vpu, dma, router = engines
        n_read = sum(len(e.VBUF_READS) for e in engines)
        m.submodules.vbuf = vbuf = VectorBuffer(cfg, readers=n_read)
        wiring.connect(m, wiring.flipped(self.axil), regs.axil)
        m.d.comb += self.interrupt.eq(regs.interrupt)
        U = len(engines)
        Q = QUEUE_DEPTH

        # ---- controller state
        ir = Signal(WordLayout)
        ir_pd = Signal(fetch.o_pd.shape())       # its predecode (hw/predecode.py), taken with it from the prefetcher
        ir_valid = Signal()
        ir_pc = Signal(32)                       # PC of `ir`
        fpc = Signal(32)                         # PC of the next word taken from the prefetcher
        seq = Signal(SEQ_BITS)                   # the next dispatch's sequence number
        status = Signal(32)
        error_pc = Signal(32)
        failed = Signal()                        # an error was recorded: dispatch nothing more
        eng_failed = Signal()                    # ... an engine's: start nothing more either
        halting = Signal()                       # HALT dispatched (retires when every unit is idle)
        cycles = Signal(64)
        busy = [Signal(64, name=f"busy_{u.lower()}") for u in regmap.COUNTER_UNITS]
        running = Signal()
        token, pos = pf.token, pf.pos            # the TOKEN / POS dispatched with (SLOT changes them)
        m.d.comb += [pf.token_in.eq(regs.token), pf.pos_in.eq(regs.pos), pf.ddr_base.eq(regs.ddr_base)]
        m.d.comb += [regs.status.eq(status), regs.error_pc.eq(error_pc),
                     regs.cycles.eq(cycles), regs.running.eq(running), self.dbg_running.eq(running)]
        for i, b in enumerate(busy):
            m.d.comb += regs.busy[i].eq(b)
        for e in engines:
            b = busy[regmap.COUNTER_UNITS.index(e.UNIT.name)]
            with m.If(running & e.ctl.busy):
                m.d.sync += b.eq(b + 1)
        with m.If(running):
            m.d.sync += cycles.eq(cycles + 1)

        # ---- unit queues (slot 0 is the head) and the instruction each engine runs (`ex_*`)
        def slot(name):
            return dict(word=Signal(WordLayout, name=f"{name}_word"), pc=Signal(32, name=f"{name}_pc"),
                        seq=Signal(SEQ_BITS, name=f"{name}_seq"), fp=Signal(FOOTPRINT, name=f"{name}_fp"),
                        pos=Signal(32, name=f"{name}_pos"), tok=Signal(32, name=f"{name}_tok"))
        qs = [[slot(f"q_{e.UNIT.value}{k}") for k in range(Q)] for e in engines]
        q_n = [Signal(range(Q + 1), name=f"q_{e.UNIT.value}_n") for e in engines]
        # an engine runs up to IN_FLIGHT instructions (a pipelined one accepts the next while earlier ones drain);
        # they complete in order, so slot 0 is the one `done` completes
        exs = [[slot(f"ex_{e.UNIT.value}{j}") for j in range(e.IN_FLIGHT)] for e in engines]
        ex = [x[0] for x in exs]
        ex_n = [Signal(range(e.IN_FLIGHT + 1), name=f"ex_{e.UNIT.value}_n") for e in engines]
        ex_v = [Signal(name=f"ex_{e.UNIT.value}_valid") for e in engines]
        unit_idle = [Signal(name=f"{e.UNIT.value}_idle") for e in engines]
        for u in range(U):
            m.d.comb += [ex_v[u].eq(ex_n[u] != 0), unit_idle[u].eq((q_n[u] == 0) & ~ex_v[u])]
        all_idle = Cat(*unit_idle).all()
        idle_r = Signal()               # all_idle a cycle ago: HALT retires from it (STATUS's depth; as FENCE's)
        m.d.sync += idle_r.eq(all_idle)

        # ---- the scoreboard: may the head of queue u start?
        def older(a, b):
            """a is an older dispatch than b (sequence numbers of instructions in flight together)."""
            return ~((b - a)[SEQ_BITS - 1])

        start = [Signal(name=f"start_{e.UNIT.value}") for e in engines]
        for u in range(U):
            h = qs[u][0]
            blocked = []
            for v in range(U):
                for j, o in enumerate(exs[v]):
                    if v == u:                       # still draining in the same engine: older
                        blocked.append((ex_n[v] > j) & conflict(h["fp"], o["fp"]))
                    else:
                        blocked.append((ex_n[v] > j) & ((older(o["seq"], h["seq"]) & conflict(h["fp"], o["fp"]))
                                                        | (h["fp"].hbm & o["fp"].hbm)))
                if v == u:
                    continue
                for k in range(Q):
                    o = qs[v][k]
                    blocked.append((q_n[v] > k) & older(o["seq"], h["seq"])
                                   & (conflict(h["fp"], o["fp"]) | (h["fp"].hbm & o["fp"].hbm)))
            # registered twice (the 300 MHz depth): each blocking term of the head as it stands this cycle
            # (`blk_<unit>`), then their OR, decide its start two cycles on, if it is still the head (it did not
            # start and the queue was not empty in either cycle). Conservative: what changes in between only frees
            # the head (a completion), or does not concern it (a younger dispatch, which an older head's HBM use or
            # operands keep from starting; an older instruction moving from its queue to its engine blocks it
            # under the same rule).
            unit = engines[u].UNIT.value
            blk = Signal(len(blocked), name=f"blk_{unit}")
            hazard, steady, steady1 = (Signal(name=f"{nm}_{unit}") for nm in ("hazard", "steady", "steady1"))
            stay = (q_n[u] != 0) & ~start[u]
            m.d.sync += [blk.eq(Cat(*blocked)), hazard.eq(blk.any()), steady1.eq(stay), steady.eq(stay & steady1)]
            free = (ex_n[u] < engines[u].IN_FLIGHT) & (engines[u].ctl.ready if engines[u].IN_FLIGHT > 1 else 1)
            m.d.comb += start[u].eq((q_n[u] != 0) & steady & ~hazard & free & ~eng_failed)

        # ---- engine inputs: each engine sees the head of its queue
        for u, e in enumerate(engines):
            m.d.comb += [e.ctl.word.eq(qs[u][0]["word"]), e.ctl.start.eq(start[u])]
        # each engine runs with the TOKEN / POS its instruction was dispatched with (rule 6), registered at its
        # start: an engine reads them from the cycle after `start` (its SETUP), so no path runs from the
        # scoreboard's decision into an engine's arithmetic
        for u, e in enumerate(engines):
            e_pos, e_tok = Signal(32, name=f"{e.UNIT.value}_pos"), Signal(32, name=f"{e.UNIT.value}_tok")
            with m.If(start[u]):
                m.d.sync += [e_pos.eq(qs[u][0]["pos"]), e_tok.eq(qs[u][0]["tok"])]
            if e is not router:
                m.d.comb += e.pos.eq(e_pos)
            if e is dma:
                m.d.comb += e.token.eq(e_tok)
        m.d.comb += [dma.ddr_base.eq(regs.ddr_base),
                     router.ring_pos.eq(regs.ring_pos), router.ring_size.eq(regs.ring_size)]
        for c in range(cfg.hbm_channels):
            m.d.comb += [mpu.hbm_base[c].eq(regs.hbm_base[c]), dma.hbm_base[c].eq(regs.hbm_base[c])]
        # scalar operands at start: S[s] for the MPU's scale, S[sa] for the VPU (VECTOR or SCALAR format)
        vw = qs[1][0]["word"]
        is_scalar_fmt = C(0, 1)
        for op in isa.OPS:
            if op.fmt is isa.SCALAR:
                is_scalar_fmt = is_scalar_fmt | (vw.control.opcode == Opcode[op.mnemonic])
        m.d.comb += [sregs.r0_addr.eq(qs[0][0]["word"].matrix.s), mpu.scale.eq(sregs.r0_data),
                     sregs.r1_addr.eq(Mux(is_scalar_fmt, vw.scalar.sa, vw.vector.sa)), vpu.sval.eq(sregs.r1_data),
                     sregs.w_addr.eq(vpu.s_w_addr), sregs.w_en.eq(vpu.s_w_en), sregs.w_data.eq(vpu.s_w_data)]

        # ---- VBUF: own read ports per engine, the write port by fixed priority (WRITE_PRIORITY)
        r = 0
        for e in engines:
            for nm in e.VBUF_READS:
                rp = getattr(vbuf, f"r{r}")
                port = e.ctl.vbuf
                m.d.comb += [rp.addr.eq(getattr(port, f"{nm}_addr")), rp.en.eq(getattr(port, f"{nm}_en")),
                             getattr(port, f"{nm}_data").eq(rp.data)]
                r += 1
        order = [engines[ENGINES.index(E)] for E in WRITE_PRIORITY]
        taken = C(0, 1)
        wsel = {}
        for e in order:
            p = e.ctl.vbuf
            m.d.comb += p.w_rdy.eq(~taken)
            wsel[e] = p.w_req & ~taken
            taken = taken | p.w_req
        wpc = C(0, 32)
        for e in reversed(order):
            p = e.ctl.vbuf
            u = engines.index(e)
            with m.If(wsel[e]):
                m.d.comb += [vbuf.w.addr.eq(p.w_addr), vbuf.w.en.eq(p.w_en), vbuf.w.data.eq(p.w_data)]
            wpc = Mux(wsel[e], ex[u]["pc"], wpc)
        m.d.comb += [self.dbg_vw_en.eq(vbuf.w.en), self.dbg_vw_addr.eq(vbuf.w.addr),
                     self.dbg_vw_data.eq(vbuf.w.data), self.dbg_vw_pc.eq(wpc),
                     self.dbg_sw_en.eq(vpu.s_w_en), self.dbg_sw_addr.eq(vpu.s_w_addr),
                     self.dbg_sw_data.eq(vpu.s_w_data), self.dbg_sw_pc.eq(ex[1]["pc"])]

        # ---- HBM ports: the DMA while it runs an HBM instruction, else the matrix engine (never both: above). The
        # select is a register, a cycle behind the DMA's start and done: neither engine moves data on HBM for
        # SETUP_CYCLES after its start (the 300 MHz depth: no path from the issue state into the ports' READYs).
        dma_hbm = Signal()
        m.d.sync += dma_hbm.eq(ex_v[2] & ex[2]["fp"].hbm)
        for nm in hbm_port_names(cfg):
            # (the DMA takes RVALID ungated: its load path reads it only with a read of its own outstanding, which
            # it has only while it runs an HBM instruction, i.e. with dma_hbm; one LUT less before its R
            # descriptor FIFO, the 300 MHz depth)
            _mux_out(m, getattr(self, nm), [(~dma_hbm, getattr(mpu, nm)), (dma_hbm, getattr(dma, nm))],
                     raw=[(getattr(dma, nm), "rvalid")])
        self._ddr_arbiter(m, fetch.ddr, dma.ddr, pf)
        wiring.connect(m, router.tx, wiring.flipped(self.ring_tx))
        wiring.connect(m, wiring.flipped(self.ring_rx), router.rx)

        # ---- front end: decode, validate, dispatch
        op = ir.control.opcode

        fe_err = Signal(len(STATUS))    # front-end error bits this cycle (STATUS order), at `fe_pc`
        fe_pc = Signal(32)
        fe_err_r = Signal(len(STATUS), name="fe_err_r")    # ... recorded from registers, a cycle on
        fe_pc_r, fe_any_r = Signal(32, name="fe_pc_r"), Signal(name="fe_any_r")
        leave = Signal()                # `ir` is dispatched or retires this cycle
        ctrl_ev = Signal()              # NOP / FENCE / HALT retire
        push = Signal(U)
        names = list(STATUS)

        want = Signal()                 # the front end takes the next word from the prefetcher
        fpc_past = Signal()             # word `fpc` lies past DDR (a register beside `fpc`)
        fpa = Signal(38)                # ENTRY + 16 * fpc, word `fpc`'s byte offset in DDR (beside `fpc`)

        # stage 1: the word's checks (its predecode, hw/predecode.py, made in the prefetcher, against POS) into
        # registers, for the word in `ir` (`ck_ir`) and for the word the fetcher offers (`ck_in`, in case it is taken
        # into `ir` this cycle); stage 2 decides from them (with the batch unit's own, made the same way:
        # hw/core_batch.py). They are stale after a cycle that changes what they read (`pf.restate`: a BATCH, CHUNK
        # or SLOT leaves, or a vector of a batched instruction is pushed): the front end then waits a cycle for
        # `ck_ir` (`ck_fresh`).
        w_in, pd_in = Signal(WordLayout), Signal(fetch.o_pd.shape())
        m.d.comb += [w_in.eq(fetch.o.payload), pd_in.eq(fetch.o_pd)]

        def checks(pd, own):
            out = outside(pd.out, pd.need, [pd[f"room{j}"] for j in range(DYN_SLOTS)], pf.pos1)
            go = own & ~(pd.illegal | pd.invalid | out)         # the front end's own word, with no error
            go_ctrl = own & ~(pd.illegal | pd.invalid)           # (NOP, HALT, FENCE have no operands)
            # (then the classes the decision reads, each one register: to queue u, NOP, HALT, FENCE)
            return Cat(pd.illegal, pd.invalid, out, pd.fence_on,
                       *[go & (pd.unit == Unit[e.UNIT.name]) for e in engines],
                       go_ctrl & pd.ctrl & ~pd.halt & ~pd.fence,
                       go_ctrl & pd.halt, go_ctrl & pd.fence)
        n_ck = 6 + 2 * U
        ck_ir, ck_in = Signal(n_ck), Signal(n_ck)
        m.d.comb += [pf.pd_w.eq(ir_pd), pf.pd_in.eq(pd_in)]
        m.d.sync += [ck_ir.eq(checks(ir_pd, pf.own_w)), ck_in.eq(checks(pd_in, pf.own_in))]
        ck_sel, ck_fresh = Signal(), Signal()
        ck = Signal(n_ck)
        m.d.comb += ck.eq(Mux(ck_sel, ck_in, ck_ir))
        # the footprint, made into registers a cycle ahead as the checks are, from the predecode's POS-free half
        # (hw/scoreboard.py `finish_footprint`): for the word in `ir` as the batch unit moves its operands (vector i
        # of a batched instruction: its own ranges, `pf.off_*`) and for the word the fetcher offers
        fp_ir_c, fp_in_c, fp_ir, fp_in = (Signal(FOOTPRINT, name=nm) for nm in ("fp_ir_c", "fp_in_c", "fp_ir", "fp_in"))
        finish_footprint(m, ir_pd.fp, ir_pd.fdyn, pf.ent1, fp_ir_c, off=(pf.off_r0, C(0, 1), pf.off_w))
        finish_footprint(m, pd_in.fp, pd_in.fdyn, pf.ent1, fp_in_c)
        m.d.sync += [fp_ir.eq(fp_ir_c), fp_in.eq(fp_in_c)]
        fp_new = Mux(ck_sel, fp_in, fp_ir)
        ck_illegal, ck_invalid, ck_range = (ck[i] for i in range(3))
        ck_fence_on, ck_unit = ck[3:3 + U], ck[3 + U:3 + 2 * U]
        k_nop, k_halt, k_fence = (ck[3 + 2 * U + i] for i in range(3))
        # FENCE goes on a register: its units were idle in the cycle before, with it in `ir` then and not leaving
        # (the units it waits for only complete meanwhile: nothing is pushed while it waits), so the unit test is
        # out of the dispatch decision (a FENCE waits a cycle more)
        fenced = Signal()

        acting = running & ir_valid & ~failed & ~halting & ~fe_any_r & ck_fresh
        m.d.comb += [pf.word.eq(ir), pf.pc.eq(ir_pc), pf.valid.eq(acting), pf.pushed.eq(push.any()),
                     pf.word_in.eq(w_in), pf.ck_sel.eq(ck_sel)]
        m.d.sync += ck_fresh.eq(~pf.restate)
        # The decision, as flat terms of registers (the 300 MHz depth): the batch unit decides for the words it
        # handles (skipped, BATCH, CHUNK, SLOT); the rest are the front end's, which go when they have no error.
        # Each word class with "no error" is one register (`ck_unit`, `k_*`), the batch unit's and the front end's
        # checks combined a cycle ahead.
        act = acting & ~pf.skipping
        gate = all_idle if self.in_order else C(1, 1)
        for u in range(U):
            m.d.comb += push[u].eq(act & ck_unit[u] & (q_n[u] < Q) & gate)
        ctrl_go = act & (k_nop | (k_fence & fenced & ~ck_sel))      # NOP or FENCE retires (not HALT)
        halt_go = act & k_halt
        on = Signal()                   # `ir` leaves and is not a HALT: the front end takes the next word
        m.d.comb += [on.eq(pf.leave | ctrl_go | (push.any() & pf.last)), leave.eq(on | halt_go),
                     ctrl_ev.eq(pf.ev | ctrl_go)]
        with m.If(halt_go):
            m.d.sync += halting.eq(1)
        # (`fenced`: the units of the checks then in use were idle; it counts for a FENCE that was in `ir` the cycle
        # before, not taken into it at the last edge (`ck_sel`): then those were its own checks, and nothing was
        # pushed meanwhile. No `leave` or `k_fence` in it: the 300 MHz depth.)
        m.d.sync += fenced.eq(Cat(*[~ck_fence_on[u] | unit_idle[u] for u in range(U)]).all())
        # the error, the first in the ISA's order (only it is recorded: the front end then stops), as flat terms:
        # the batch unit's `invalid` for a word it does not handle (a BATCH followed by what it may not prefix),
        # `illegal_opcode`, the batch unit's `invalid` / `address_range`, then for the front end's own words
        # `invalid` and `address_range`; the next word's `address_range` (it lies past DDR: `fpc_past`) once `ir`
        # is empty (a cycle after the word before it left), so that `fe_pc` picks `fpc` by `ir_valid` alone.
        handled = pf.handled
        e_inv, e_rng = pf.err_invalid, pf.err_range
        own_checks = act & ~ck_illegal & ~e_inv & ~e_rng & ~handled
        m.d.comb += [
            fe_err[names.index("illegal_opcode")].eq(act & ck_illegal & ~(e_inv & ~handled)),
            fe_err[names.index("invalid")].eq((act & e_inv & (~handled | ~ck_illegal)) | (own_checks & ck_invalid)),
            fe_err[names.index("address_range")].eq((act & ~ck_illegal & ~e_inv & e_rng)
                                                    | (own_checks & ~ck_invalid & (ck_range | ~pf.range_ok))
                                                    | (~ir_valid & want & fpc_past)),
            # the PC: the batch unit's (its BATCH's, `err_pc`) for its errors, the word's for the rest, `fpc` for
            # the prefetcher's
            fe_pc.eq(Mux(ir_valid, Mux(~handled | ~ck_illegal, pf.err_pc, ir_pc), fpc)),
        ]
        with m.If(leave):
            m.d.sync += ir_valid.eq(0)
        with m.If(push.any()):
            m.d.sync += seq.eq(seq + 1)

        # take the next word (the fetch address must lie inside DDR)
        # (`fpc_past`: word `fpc` lies past DDR, kept in a register beside `fpc`: for word 0 from ENTRY, for word
        # fpc + 1 from `fpa`, one comparison with a constant)
        fbb = ddr_data_bits(cfg) // 8
        m.d.comb += [fetch.addr.eq(regs.ddr_base + regs.entry),
                     fetch.beats.eq(Mux(regs.entry < cfg.ddr_bytes,     # (the DDR base is beat-aligned)
                                        (cfg.ddr_bytes - (regs.entry & ~C(fbb - 1, 32))) >> log2(fbb), 0))]

        wb = isa.WORD_BYTES
        assert cfg.ddr_bytes >= 2 * wb
        past0, past1 = regs.entry > cfg.ddr_bytes - wb, fpa > cfg.ddr_bytes - 2 * wb
        m.d.comb += want.eq(running & ~failed & ~halting & ~fe_any_r & (~ir_valid | on))
        # (the bits the front end can raise, each its own register: a constant bit's comb process never runs in
        # Icarus, and an X through this register would stall the front end in simulation)
        fe_bits = [names.index(b) for b in ("illegal_opcode", "invalid", "address_range")]
        m.d.sync += [*[fe_err_r[i].eq(fe_err[i]) for i in fe_bits], fe_pc_r.eq(fe_pc), ck_sel.eq(0),
                     fe_any_r.eq(Cat(*[fe_err[i] for i in fe_bits]).any())]
        with m.If(want & ~fpc_past):
            m.d.comb += fetch.o.ready.eq(1)
            with m.If(fetch.o.valid):
                m.d.sync += [ir.eq(fetch.o.payload), ir_pd.eq(fetch.o_pd), ir_valid.eq(1), ir_pc.eq(fpc),
                             fpc.eq(fpc + 1), fpa.eq(fpa + wb), fpc_past.eq(past1), ck_sel.eq(1)]

        # ---- queues: pop at start, push at dispatch
        for u in range(U):
            q = qs[u]
            n_after = Mux(start[u], q_n[u] - 1, q_n[u])
            # (slot k takes the pushed word when n_after == k, tested on the register as q_n == k + start: no
            # subtraction before the comparison, the 300 MHz depth; the same for the in-flight slots)
            for k in range(Q):
                with m.If(push[u] & Mux(start[u], q_n[u] == k + 1, q_n[u] == k)):
                    m.d.sync += [q[k]["word"].eq(pf.word_out), q[k]["pc"].eq(ir_pc), q[k]["seq"].eq(seq),
                                 q[k]["fp"].eq(fp_new), q[k]["pos"].eq(pos), q[k]["tok"].eq(token)]
                if k + 1 < Q:
                    with m.Elif(start[u]):
                        m.d.sync += [q[k][f].eq(q[k + 1][f]) for f in SLOT_FIELDS]
            m.d.sync += q_n[u].eq(n_after + push[u])
            done = engines[u].ctl.done
            x = exs[u]
            x_after = Mux(done, ex_n[u] - 1, ex_n[u])
            for j in range(len(x)):
                with m.If(start[u] & Mux(done, ex_n[u] == j + 1, ex_n[u] == j)):
                    m.d.sync += [x[j][f].eq(q[0][f]) for f in SLOT_FIELDS]
                if j + 1 < len(x):
                    with m.Elif(done):
                        m.d.sync += [x[j][f].eq(x[j + 1][f]) for f in SLOT_FIELDS]
            m.d.sync += ex_n[u].eq(x_after + start[u])

        # ---- errors: the engines' (the oldest instruction's PC first), then the front end's. The first error's
        # candidates (each engine's flag, PC and sequence number, the front end's PC) are registered as `failed`
        # rises; ERROR_PC is chosen from them a cycle later (`rec`; the 300 MHz depth: the comparisons of sequence
        # numbers start from registers). The run ends at least two cycles after `failed` (FINISH, DRAIN).
        err_bits = Signal(len(STATUS))
        err_any = Signal()
        flags, eng_bits = [], []
        for u, e in enumerate(engines):
            bits = Cat(*[(e.ctl.err[bit] if bit in e.ERRORS else C(0, 1)) for bit in STATUS])
            flags.append(e.ctl.done & bits.any())
            eng_bits.append(Mux(e.ctl.done, bits, 0))
        have = Cat(*flags).any()
        m.d.comb += [err_bits.eq(_or_all([fe_err_r, *eng_bits], len(STATUS))), err_any.eq(err_bits.any())]
        rec = Signal()
        c_flag = [Signal(name=f"err_{e.UNIT.value}") for e in engines]
        c_pc = [Signal(32, name=f"err_{e.UNIT.value}_pc") for e in engines]
        c_seq = [Signal(SEQ_BITS, name=f"err_{e.UNIT.value}_seq") for e in engines]
        c_fe = Signal(32, name="err_fe_pc")
        # engine u's PC is chosen when it failed and no other failed engine ran an older instruction (ties, which
        # sequence numbers in flight together never make, to the lower u): one-hot
        win = [c_flag[u] & Cat(*[~c_flag[v] | (~older(c_seq[v], c_seq[u]) if v < u else older(c_seq[u], c_seq[v]))
                                 for v in range(U) if v != u]).all() for u in range(U)]
        err_pc = Mux(Cat(*c_flag).any(), _or_all([Mux(win[u], c_pc[u], 0) for u in range(U)], 32), c_fe)
        err_word = C(0, 32)
        for i, bit in enumerate(STATUS):
            err_word = err_word | Mux(err_bits[i], STATUS[bit], 0)
        with m.If(running):                               # (per bit: no error, no change; the 300 MHz depth)
            m.d.sync += status.eq(status | err_word)
        with m.If(running & err_any & ~failed):
            m.d.sync += [failed.eq(1), rec.eq(1), c_fe.eq(fe_pc_r), *[c_flag[u].eq(flags[u]) for u in range(U)],
                         *[c_pc[u].eq(ex[u]["pc"]) for u in range(U)], *[c_seq[u].eq(ex[u]["seq"]) for u in range(U)]]
        with m.If(rec):
            m.d.sync += [error_pc.eq(err_pc), rec.eq(0)]
        eng_err = Signal()                                # an engine reports an error this cycle
        m.d.comb += eng_err.eq(have)
        with m.If(running & eng_err):
            m.d.sync += eng_failed.eq(1)
        # after an engine's error, queued instructions that have not started are dropped; after the front end's,
        # they run (every older instruction was dispatched: the error is precise)
        with m.If(running & (eng_failed | eng_err)):
            for u in range(U):
                m.d.sync += q_n[u].eq(0)

        # ---- completion events (debug, registered)
        n_ev = U + 1
        ev = Signal(n_ev)
        halt_done = Signal()            # HALT retires: every unit idle (in RUN, below)
        m.d.comb += ev.eq(Cat(ctrl_ev | halt_done, *[e.ctl.done for e in engines]))
        m.d.sync += self.dbg_ev.eq(ev)
        with m.If(ev.any()):
            m.d.sync += self.dbg_tick.eq(~self.dbg_tick)
        m.d.sync += [self.dbg_ev_pc0.eq(ir_pc), self.dbg_ev_op0.eq(op)]
        for u in range(U):
            m.d.sync += [getattr(self, f"dbg_ev_pc{u + 1}").eq(ex[u]["pc"]),
                         getattr(self, f"dbg_ev_op{u + 1}").eq(ex[u]["word"].control.opcode)]

        # ---- run control
        with m.FSM():
            with m.State("IDLE"):
                with m.If(regs.start):
                    m.d.comb += [regs.accept.eq(1), fetch.start.eq(1), pf.run_start.eq(1)]
                    m.d.sync += [running.eq(1), fpc.eq(0), fpa.eq(regs.entry), fpc_past.eq(past0), ir_valid.eq(0), status.eq(0),
                                 error_pc.eq(0), failed.eq(0), rec.eq(0), eng_failed.eq(0), halting.eq(0), cycles.eq(0),
                                 *[b.eq(0) for b in busy]]
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(failed):                 # (after a front-end error the queued instructions run first)
                    with m.If(all_idle & ~Cat(*[e.ctl.busy for e in engines]).any()):
                        m.next = "FINISH"
                with m.Elif(halting & idle_r & ~err_any):
                    m.d.comb += halt_done.eq(1)
                    m.d.sync += status.eq(status | STATUS["halted"])
                    m.next = "FINISH"
            with m.State("FINISH"):
                m.d.comb += fetch.flush.eq(1)
                m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(fetch.idle & ~pf.rd_busy):
                    m.d.comb += regs.done.eq(1)
                    m.d.sync += [running.eq(0), ir_valid.eq(0), halting.eq(0)]
                    m.next = "IDLE"
        return m

    def _ddr_arbiter(self, m, fetch_port, dma_port, pf):
        """DDR: reads from the DMA, the batched-prefill unit's token-table port (`pf`, single beats) and the
        fetcher share AR (in that priority; a waiting request is never switched away from) and R (routed in AR
        order, by a FIFO of who asked); writes are the DMA's."""
        ddr = self.ddr
        bb = ddr_data_bits(self.cfg) // 8
        # (buffered: its head and `r_rdy` are registers, so the R routing starts from registers; an entry is at the
        # head two cycles after its AR, before any DDR read returns)
        m.submodules.ddr_order = order = SyncFIFOBuffered(width=2, depth=16)
        locked, held = Signal(), Signal(2)
        who = Signal(2)                                  # 0: fetcher, 1: DMA, 2: the token-table port
        m.d.comb += who.eq(Mux(locked, held, Mux(dma_port.arvalid, 1, Mux(pf.ar_valid, 2, 0))))
        src_valid = Mux(who == 1, dma_port.arvalid, Mux(who == 2, pf.ar_valid, fetch_port.arvalid))
        ctl = {"araddr": pf.ar_addr, "arlen": C(0, 8), "arsize": C(log2(bb), 3), "arburst": C(BURST_INCR, 2)}
        for nm in ("araddr", "arlen", "arsize", "arburst"):
            m.d.comb += getattr(ddr, nm).eq(Mux(who == 1, getattr(dma_port, nm),
                                                Mux(who == 2, ctl[nm], getattr(fetch_port, nm))))
        m.d.comb += [ddr.arvalid.eq(src_valid & order.w_rdy),
                     dma_port.arready.eq((who == 1) & ddr.arready & order.w_rdy),
                     pf.ar_ready.eq((who == 2) & ddr.arready & order.w_rdy),
                     fetch_port.arready.eq((who == 0) & ddr.arready & order.w_rdy),
                     order.w_en.eq(ddr.arvalid & ddr.arready), order.w_data.eq(who)]
        m.d.sync += [locked.eq(ddr.arvalid & ~ddr.arready), held.eq(who)]
        head = order.r_data
        for p, mine in ((dma_port, head == 1), (fetch_port, head == 0)):
            m.d.comb += [p.rvalid.eq(ddr.rvalid & order.r_rdy & mine), p.rdata.eq(ddr.rdata),
                         p.rresp.eq(ddr.rresp), p.rlast.eq(ddr.rlast)]
        m.d.comb += [pf.r_valid.eq(ddr.rvalid & order.r_rdy & (head == 2)), pf.r_data.eq(ddr.rdata),
                     ddr.rready.eq(order.r_rdy & Mux(head == 1, dma_port.rready,
                                                     Mux(head == 2, 1, fetch_port.rready))),
                     order.r_en.eq(ddr.rvalid & ddr.rready & ddr.rlast)]
        for nm in ("awvalid", "awaddr", "awlen", "awsize", "awburst", "wvalid", "wdata", "wstrb", "wlast",
                   "bready"):
            m.d.comb += getattr(ddr, nm).eq(getattr(dma_port, nm))
        for nm in ("awready", "wready", "bvalid", "bresp"):
            m.d.comb += getattr(dma_port, nm).eq(getattr(ddr, nm))


def _or_all(vals, width):
    out = C(0, width)
    for v in vals:
        out = out | v
    return out
