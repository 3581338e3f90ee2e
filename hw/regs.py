"""The host register block: an AXI4-Lite slave implementing `dfx.regmap` (Vitis `ap_ctrl_hs` at 0x00, the
kernel arguments, the read-only identity, status and counter registers). Every offset comes from
`dfx.regmap.regmap(cfg)`; nothing here names an address.

Protocol (Vitis ap_ctrl_hs): the host writes CTRL.ap_start = 1; the core takes it (`start` is high while
ap_start is set and the core is idle; the core answers `accept` for one cycle, which clears ap_start unless
auto_restart is set); at the end of the run the core pulses `done`: ap_done and ap_ready become 1 and stay 1
until CTRL is read; ap_idle is 1 whenever no run is in progress. ISR bit 0 records a done when IER bit 0 is
set (write 1 to clear); `interrupt` = GIE and (ISR and IER).

AXI4-Lite: one transaction at a time per direction; a write waits for both AW and W, honours WSTRB, and
answers OKAY; reads answer OKAY with the register (0 for undecoded offsets). Writes to read-only registers
are ignored.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

from amaranth import C, Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from dfx import isa, regmap
from dfx.config import AccelConfig

from .dma import AXI_ADDR_BITS


def axil_addr_bits(cfg: AccelConfig) -> int:
    return (regmap.span(cfg) - 1).bit_length()


def axil_signature(addr_bits: int) -> wiring.Signature:
    """AXI4-Lite, the master's view (the register block takes it flipped)."""
    return wiring.Signature({
        "awvalid": Out(1), "awready": In(1), "awaddr": Out(addr_bits),
        "wvalid": Out(1), "wready": In(1), "wdata": Out(32), "wstrb": Out(4),
        "bvalid": In(1), "bready": Out(1), "bresp": In(2),
        "arvalid": Out(1), "arready": In(1), "araddr": Out(addr_bits),
        "rvalid": In(1), "rready": Out(1), "rdata": In(32), "rresp": In(2),
    })


class Registers(wiring.Component):
    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        self.regs = regmap.by_name(cfg)
        super().__init__({
            "axil": In(axil_signature(axil_addr_bits(cfg))),
            "interrupt": Out(1),
            # to the core
            "start": Out(1), "accept": In(1), "done": In(1), "running": In(1),
            "hbm_base": Out(data.ArrayLayout(AXI_ADDR_BITS, cfg.hbm_channels)),
            "ddr_base": Out(AXI_ADDR_BITS), "entry": Out(32), "token": Out(32), "pos": Out(32),
            "ring_pos": Out(32), "ring_size": Out(32),
            # from the core
            "status": In(32), "error_pc": In(32), "cycles": In(64),
            "busy": In(data.ArrayLayout(64, len(regmap.COUNTER_UNITS))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        a = self.axil
        ap_start, ap_done, ap_ready, auto_restart = Signal(), Signal(), Signal(), Signal()
        gie, ier, isr = Signal(), Signal(), Signal()

        # ---- the value of every 32-bit word, and where a write of it goes
        hbm_names = [r.name for r in regmap.regmap(cfg) if r.port and r.port.startswith("m_axi_hbm")]
        storage = {"DDR": self.ddr_base, "ENTRY": self.entry, "TOKEN": self.token, "POS": self.pos,
                   "RING_POS": self.ring_pos, "RING_SIZE": self.ring_size}
        for i, nm in enumerate(hbm_names):
            storage[nm] = self.hbm_base[i]
        ctrl = Cat(ap_start, ap_done, ~self.running, ap_ready, C(0, 3), auto_restart)
        values = {
            "CTRL": ctrl, "GIE": gie, "IER": ier, "ISR": isr,
            "ID": C(regmap.DFX_MAGIC, 32), "ISA_VERSION": C(isa.ISA_VERSION, 32),
            "CONFIG_HASH": C(regmap.config_hash_word(cfg), 64),
            "STATUS": self.status, "ERROR_PC": self.error_pc, "CYCLES": self.cycles,
            **{f"BUSY_{u}": self.busy[i] for i, u in enumerate(regmap.COUNTER_UNITS)},
            **storage,
        }
        missing = set(self.regs) - set(values)
        assert not missing, f"registers without hardware: {missing}"
        words = {}                            # word index -> (register, word within it)
        for r in self.regs.values():
            for k in range(r.words):
                words[r.offset // 4 + k] = (r, k)

        # ---- ap_ctrl_hs
        m.d.comb += [self.start.eq(ap_start & ~self.running), self.interrupt.eq(gie & isr & ier)]
        with m.If(self.accept):
            m.d.sync += ap_start.eq(auto_restart)
        with m.If(self.done):
            m.d.sync += [ap_done.eq(1), ap_ready.eq(1)]
            with m.If(ier):
                m.d.sync += isr.eq(1)

        # ---- reads
        rvalid, rdata = Signal(), Signal(32)
        m.d.comb += [a.rvalid.eq(rvalid), a.rdata.eq(rdata), a.rresp.eq(0), a.arready.eq(~rvalid)]
        with m.If(a.rvalid & a.rready):
            m.d.sync += rvalid.eq(0)
        with m.If(a.arvalid & ~rvalid):
            m.d.sync += [rvalid.eq(1), rdata.eq(0)]
            with m.Switch(a.araddr >> 2):
                for w, (r, k) in words.items():
                    with m.Case(w):
                        v = values[r.name]
                        m.d.sync += rdata.eq(v.as_value()[32 * k:32 * k + 32] if hasattr(v, "as_value")
                                             else v[32 * k:32 * k + 32])
                        if r.name == "CTRL":                  # ap_done / ap_ready clear on read
                            m.d.sync += [ap_done.eq(self.done), ap_ready.eq(self.done)]

        # ---- writes
        bvalid = Signal()
        take = a.awvalid & a.wvalid & ~bvalid
        m.d.comb += [a.awready.eq(take), a.wready.eq(take), a.bvalid.eq(bvalid), a.bresp.eq(0)]
        with m.If(a.bvalid & a.bready):
            m.d.sync += bvalid.eq(0)
        bytemask = Cat(*[a.wstrb[i].replicate(8) for i in range(4)])

        def merged(old):
            return (old & ~bytemask) | (a.wdata & bytemask)

        with m.If(take):
            m.d.sync += bvalid.eq(1)
            with m.Switch(a.awaddr >> 2):
                for w, (r, k) in words.items():
                    if r.access not in ("rw",):
                        continue
                    with m.Case(w):
                        if r.name == "CTRL":
                            with m.If(a.wstrb[0] & a.wdata[0]):
                                m.d.sync += ap_start.eq(1)
                            with m.If(a.wstrb[0]):
                                m.d.sync += auto_restart.eq(a.wdata[7])
                        elif r.name in ("GIE", "IER"):
                            with m.If(a.wstrb[0]):
                                m.d.sync += (gie if r.name == "GIE" else ier).eq(a.wdata[0])
                        elif r.name == "ISR":
                            with m.If(a.wstrb[0] & a.wdata[0]):
                                m.d.sync += isr.eq(0)
                        else:
                            sig = storage[r.name]
                            sig = sig.as_value() if hasattr(sig, "as_value") else sig
                            part = sig[32 * k:32 * k + 32]
                            m.d.sync += part.eq(merged(part))
        return m
