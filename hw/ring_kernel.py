"""`dfx_ring`: the RTL kernel between the core's ring stream and the two Aurora 64B/66B cores of a U280's QSFP28
cages (boards/u280/RING.md).

    core ring_tx (ap_clk, 16*d bits) -> AsyncFIFO -> Packer (-> 256-bit words) -> TxEndpoint -> aurora_qsfp0 TX
                                                                            ACK words <- aurora_qsfp0 RX
    aurora_qsfp1 RX -> RxEndpoint -> Unpacker (-> 16*d-bit beats) -> AsyncFIFO -> core ring_rx (ap_clk)
                         ACK words -> aurora_qsfp1 TX

Cage 0 carries this card's data to the next card and brings back its acknowledgements and credits; cage 1
brings the previous card's data and returns ours (`dfx.hw.ring_link`: framing, CRC-32, go-back-N replay,
credit-based flow control). The width converters and the link endpoints run at each cage's Aurora user_clk
(390.625 MHz for 4 x 25.78125 Gb/s: faster than ap_clk, so the 256-bit side never limits a 16*d-bit beat
stream); the clock crossing is an `amaranth.lib.fifo.AsyncFIFO` of whole core beats per direction.

Core beats and link words: when 16*d >= 256 (the dfx preset: 1024) a beat is 16*d/256 words; when 16*d < 256
(tiny: 128) a word packs up to 256/(16*d) beats, closed early at `last`. Either way `last` survives.

Status (AXI4-Lite `s_axi_control`, read-only, ap_clk; `STATUS_REGS`): ID, parameters, LINK (channel_up of
each cage; lane_up), and per-direction counters (frames, go-back-N replays, bad ACK words, CRC errors,
buffer overflows, desynchronised words, duplicate frames), each gray-coded across from its user_clk domain.
Vitis has no side channel between kernels, so loss of link reaches the host through LINK (the host checks it
before a run and when a run times out), not through the core's STATUS.

`RingKernel` is all of the logic (domains `sync` = ap_clk, `l0`/`l1` = the cages' user clocks; what the
simulations instantiate); `DfxRing` is the Vitis kernel: `RingKernel` plus the two Aurora IP instances, with
the port names of connectivity_ring.cfg (`python -m dfx.hw.ring_kernel --config tiny -o dfx_ring.v`).
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

import argparse
from pathlib import Path

from amaranth import C, Cat, ClockDomain, ClockSignal, DomainRenamer, Instance, Module, ResetSignal, Signal
from amaranth.back import verilog as back
from amaranth.lib import data, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.fifo import AsyncFIFO
from amaranth.lib.wiring import In, Out

from dfx.config import AccelConfig, load_config

from .regs import axil_signature
from .ring_link import LINK_BITS, RxEndpoint, TxEndpoint, word_layout

KERNEL_NAME = "dfx_ring"
AXIL_ADDR_BITS = 12
KERNEL_ID = 0x44465852                 # "DFXR"
AURORA = ("aurora_qsfp0", "aurora_qsfp1")      # module names of the Aurora IP (aurora/gen_aurora_ip.tcl)
GT_LANES = 4
# (offset, name, source): source is a counter of an endpoint ("tx.<port>" / "rx.<port>") or a fixed value
STATUS_REGS = (
    (0x00, "ID", None), (0x04, "PARAMS", None), (0x10, "LINK", None),
    (0x14, "TX_FRAMES", "tx.frames"), (0x18, "TX_REPLAYS", "tx.replays"), (0x1C, "ACK_ERRORS", "tx.ack_errors"),
    (0x20, "RX_FRAMES", "rx.frames"), (0x24, "CRC_ERRORS", "rx.crc_errors"), (0x28, "OVERFLOWS", "rx.overflows"),
    (0x2C, "DESYNCS", "rx.desyncs"), (0x30, "DUPLICATES", "rx.duplicates"),
)


def beat_layout(core_bits: int) -> data.StructLayout:
    return data.StructLayout({"data": core_bits, "last": 1})


def check_width(core_bits: int) -> None:
    if not isinstance(core_bits, int) or core_bits < 16 or (
            core_bits % LINK_BITS if core_bits >= LINK_BITS else LINK_BITS % core_bits):
        raise ValueError(f"the core's ring beat must be a multiple or a divisor of {LINK_BITS} bits, not {core_bits!r}")


def slot_bits(core_bits: int) -> int:
    """Bits of a link word's `n` field: log2(beats per word), at least 1."""
    k = LINK_BITS // core_bits if core_bits < LINK_BITS else 1
    return max(1, (k - 1).bit_length())


class Packer(wiring.Component):
    """Core beats -> link words (split a wide beat, or pack narrow beats up to `last`)."""

    def __init__(self, core_bits: int):
        check_width(core_bits)
        self.w = core_bits
        super().__init__({"i": In(stream.Signature(beat_layout(core_bits))),
                          "o": Out(stream.Signature(word_layout(slot_bits(core_bits))))})

    def elaborate(self, platform):
        m = Module()
        W, i, o = self.w, self.i, self.o
        if W >= LINK_BITS:                              # split one beat into W/256 words
            r = W // LINK_BITS
            hold, hlast, full, j = Signal(W), Signal(), Signal(), Signal(range(r))
            m.d.comb += [o.valid.eq(full), o.payload.data.eq(hold.word_select(j, LINK_BITS)),
                         o.payload.last.eq(hlast & (j == r - 1)), i.ready.eq(~full)]
            with m.If(o.valid & o.ready):
                m.d.sync += j.eq(j + 1)
                with m.If(j == r - 1):
                    m.d.sync += [full.eq(0), j.eq(0)]
            with m.If(i.valid & i.ready):
                m.d.sync += [hold.eq(i.payload.data), hlast.eq(i.payload.last), full.eq(1), j.eq(0)]
        else:                                           # pack up to 256/W beats, closing early at `last`
            k = LINK_BITS // W
            buf, cnt, full = Signal(LINK_BITS), Signal(range(k)), Signal()
            n, last = Signal(slot_bits(W)), Signal()
            m.d.comb += [o.valid.eq(full), o.payload.data.eq(buf), o.payload.n.eq(n), o.payload.last.eq(last),
                         i.ready.eq(~full)]
            with m.If(o.valid & o.ready):
                m.d.sync += full.eq(0)
            with m.If(i.valid & i.ready):
                for s in range(k):
                    with m.If(cnt == s):
                        m.d.sync += buf[s * W:(s + 1) * W].eq(i.payload.data)
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(i.payload.last | (cnt == k - 1)):
                    m.d.sync += [full.eq(1), n.eq(cnt), last.eq(i.payload.last), cnt.eq(0)]
        return m


class Unpacker(wiring.Component):
    """Link words -> core beats (the inverse of `Packer`)."""

    def __init__(self, core_bits: int):
        check_width(core_bits)
        self.w = core_bits
        super().__init__({"i": In(stream.Signature(word_layout(slot_bits(core_bits)))),
                          "o": Out(stream.Signature(beat_layout(core_bits)))})

    def elaborate(self, platform):
        m = Module()
        W, i, o = self.w, self.i, self.o
        if W >= LINK_BITS:                              # gather W/256 words into one beat
            r = W // LINK_BITS
            buf, last, full, j = Signal(W), Signal(), Signal(), Signal(range(r))
            m.d.comb += [o.valid.eq(full), o.payload.data.eq(buf), o.payload.last.eq(last), i.ready.eq(~full)]
            with m.If(o.valid & o.ready):
                m.d.sync += full.eq(0)
            with m.If(i.valid & i.ready):
                for s in range(r):
                    with m.If(j == s):
                        m.d.sync += buf[s * LINK_BITS:(s + 1) * LINK_BITS].eq(i.payload.data)
                m.d.sync += j.eq(j + 1)
                with m.If(j == r - 1):
                    m.d.sync += [full.eq(1), last.eq(i.payload.last), j.eq(0)]
        else:                                           # split a word into its n+1 beats
            hold, hn, hlast, full = Signal(LINK_BITS), Signal(slot_bits(W)), Signal(), Signal()
            c = Signal(slot_bits(W))
            m.d.comb += [o.valid.eq(full), o.payload.data.eq(hold.word_select(c, W)),
                         o.payload.last.eq(hlast & (c == hn)), i.ready.eq(~full)]
            with m.If(o.valid & o.ready):
                m.d.sync += c.eq(c + 1)
                with m.If(c == hn):
                    m.d.sync += [full.eq(0), c.eq(0)]
            with m.If(i.valid & i.ready):
                m.d.sync += [hold.eq(i.payload.data), hn.eq(i.payload.n), hlast.eq(i.payload.last), full.eq(1),
                             c.eq(0)]
        return m


def aurora_signature() -> wiring.Signature:
    """One cage's Aurora user interface (streaming mode), as the kernel sees it."""
    return wiring.Signature({"tx_tdata": Out(LINK_BITS), "tx_tvalid": Out(1), "tx_tready": In(1),
                             "rx_tdata": In(LINK_BITS), "rx_tvalid": In(1), "channel_up": In(1),
                             "lane_up": In(GT_LANES)})


def _gray_sync(m: Module, value: Signal, src: str, name: str) -> Signal:
    """`value` (a counter of domain `src` that steps by at most 1 per cycle) as seen in `sync`: gray-coded,
    two flip-flops, decoded."""
    g = Signal(len(value), name=f"{name}_gray")
    m.d[src] += g.eq(value ^ (value >> 1))
    gs = Signal(len(value), name=f"{name}_gray_s")
    m.submodules[f"{name}_cdc"] = FFSynchronizer(g, gs, o_domain="sync")
    b = Signal(len(value), name=f"{name}_s")
    m.d.comb += b.eq(Cat(*[gs[k:].xor() for k in range(len(value))]))
    return b


def _stream_to_fifo(m: Module, s, fifo) -> None:
    m.d.comb += [fifo.w_data.eq(s.payload), fifo.w_en.eq(s.valid), s.ready.eq(fifo.w_rdy)]


def _fifo_to_stream(m: Module, fifo, s) -> None:
    m.d.comb += [s.payload.eq(fifo.r_data), s.valid.eq(fifo.r_rdy), fifo.r_en.eq(s.ready)]


class RingKernel(wiring.Component):
    """The ring kernel's logic for a `core_bits`-wide ring (domains: `sync` = ap_clk, `l0`, `l1` = the user
    clocks of cage 0 and cage 1, all provided by the parent)."""

    def __init__(self, core_bits: int, frame_words: int = 8, window: int = 16, timeout: int = 512,
                 keepalive: int = 32, fifo_depth: int = 16):
        check_width(core_bits)
        self.core_bits = core_bits
        self.params = dict(frame_words=frame_words, window=window)
        self.tx_ep = TxEndpoint(slot_bits(core_bits), frame_words, window, timeout)
        self.rx_ep = RxEndpoint(slot_bits(core_bits), frame_words, window, keepalive)
        self.fifo_depth = fifo_depth
        super().__init__({"s_axis_tx": In(stream.Signature(beat_layout(core_bits))),
                          "m_axis_rx": Out(stream.Signature(beat_layout(core_bits))),
                          "axil": In(axil_signature(AXIL_ADDR_BITS)),
                          "cage0": Out(aurora_signature()), "cage1": Out(aurora_signature())})

    def elaborate(self, platform):
        m = Module()
        W = self.core_bits
        tx, rx = DomainRenamer("l0")(self.tx_ep), DomainRenamer("l1")(self.rx_ep)
        m.submodules.tx_ep, m.submodules.rx_ep = tx, rx
        m.submodules.packer = packer = DomainRenamer("l0")(Packer(W))
        m.submodules.unpacker = unpacker = DomainRenamer("l1")(Unpacker(W))
        m.submodules.tx_fifo = tx_fifo = AsyncFIFO(width=W + 1, depth=self.fifo_depth, w_domain="sync",
                                                   r_domain="l0")
        m.submodules.rx_fifo = rx_fifo = AsyncFIFO(width=W + 1, depth=self.fifo_depth, w_domain="l1",
                                                   r_domain="sync")
        # ap_clk -> l0: beats, packed into words, framed, out on cage 0
        _stream_to_fifo(m, self.s_axis_tx, tx_fifo)
        _fifo_to_stream(m, tx_fifo, packer.i)
        wiring.connect(m, packer.o, tx.words)
        c0, c1 = self.cage0, self.cage1
        m.d.comb += [c0.tx_tdata.eq(tx.tx.payload), c0.tx_tvalid.eq(tx.tx.valid), tx.tx.ready.eq(c0.tx_tready),
                     tx.ack_data.eq(c0.rx_tdata), tx.ack_valid.eq(c0.rx_tvalid), tx.up.eq(c0.channel_up)]
        # cage 1 -> l1: frames checked, words unpacked into beats -> ap_clk
        m.d.comb += [rx.rx_data.eq(c1.rx_tdata), rx.rx_valid.eq(c1.rx_tvalid), rx.up.eq(c1.channel_up),
                     c1.tx_tdata.eq(rx.tx.payload), c1.tx_tvalid.eq(rx.tx.valid), rx.tx.ready.eq(c1.tx_tready)]
        wiring.connect(m, rx.words, unpacker.i)
        _stream_to_fifo(m, unpacker.o, rx_fifo)
        _fifo_to_stream(m, rx_fifo, self.m_axis_rx)
        self._status(m, tx, rx)
        return m

    def _status(self, m: Module, tx, rx) -> None:
        """The AXI4-Lite status registers (read-only; writes are answered OKAY and ignored)."""
        link = Signal(32)
        ups = []
        for k, cage in enumerate((self.cage0, self.cage1)):
            up = Signal(1 + GT_LANES, name=f"up{k}_s")
            m.submodules[f"up{k}_cdc"] = FFSynchronizer(Cat(cage.channel_up, cage.lane_up), up, o_domain="sync")
            ups.append(up)
        m.d.comb += link.eq(Cat(ups[0][0], ups[1][0], C(0, 6), ups[0][1:], ups[1][1:]))
        p = self.params
        values = {"ID": C(KERNEL_ID, 32), "LINK": link,
                  "PARAMS": C(self.core_bits | p["frame_words"] << 16 | p["window"] << 24, 32)}
        for _, name, src in STATUS_REGS:
            if src:
                side, port = src.split(".")
                ep, dom = (tx, "l0") if side == "tx" else (rx, "l1")
                values[name] = _gray_sync(m, getattr(ep, port), dom, name.lower())
        a = self.axil
        m.d.comb += [a.awready.eq(a.awvalid & a.wvalid & ~a.bvalid), a.wready.eq(a.awvalid & a.wvalid & ~a.bvalid),
                     a.arready.eq(~a.rvalid)]
        with m.If(a.awvalid & a.wvalid & ~a.bvalid):
            m.d.sync += a.bvalid.eq(1)
        with m.If(a.bvalid & a.bready):
            m.d.sync += a.bvalid.eq(0)
        with m.If(a.arvalid & a.arready):
            m.d.sync += [a.rvalid.eq(1), a.rdata.eq(0)]
            for off, name, _ in STATUS_REGS:
                with m.If(a.araddr[2:] == off >> 2):
                    m.d.sync += a.rdata.eq(values[name])
        with m.If(a.rvalid & a.rready):
            m.d.sync += a.rvalid.eq(0)


class DfxRing(wiring.Component):
    """The Vitis RTL kernel `dfx_ring` (ap_ctrl_none): `RingKernel` and the two Aurora cores, flat port names
    as boards/u280/RING.md and connectivity_ring.cfg use them."""

    def __init__(self, cfg: AccelConfig, **kernel):
        self.cfg = cfg
        self.kernel = RingKernel(16 * cfg.d, **kernel)
        sig = self.kernel.signature.members
        members = {"ap_clk": In(1), "ap_rst_n": In(1), "init_clk": In(1)}
        for port, flow in (("s_axis_tx", In), ("m_axis_rx", Out)):
            back_flow = Out if flow is In else In
            members.update({f"{port}_tdata": flow(16 * cfg.d), f"{port}_tlast": flow(1),
                            f"{port}_tvalid": flow(1), f"{port}_tready": back_flow(1)})
        members.update({f"s_axi_control_{n}": mb for n, mb in sig["axil"].signature.members.items()})
        for k in range(2):
            members.update({f"gt_refclk{k}_p": In(1), f"gt_refclk{k}_n": In(1),
                            f"gt_port{k}_rxp": In(GT_LANES), f"gt_port{k}_rxn": In(GT_LANES),
                            f"gt_port{k}_txp": Out(GT_LANES), f"gt_port{k}_txn": Out(GT_LANES)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync", local=True)
        m.domains.init = ClockDomain("init", local=True, reset_less=True)
        m.d.comb += [ClockSignal("sync").eq(self.ap_clk), ResetSignal("sync").eq(~self.ap_rst_n),
                     ClockSignal("init").eq(self.init_clk)]
        m.submodules.kernel = k = self.kernel
        for port, inner in (("s_axis_tx", k.s_axis_tx), ("m_axis_rx", k.m_axis_rx)):
            outward = port == "m_axis_rx"
            pairs = [("tdata", inner.payload.data), ("tlast", inner.payload.last), ("tvalid", inner.valid)]
            for n, sig in pairs:
                flat = getattr(self, f"{port}_{n}")
                m.d.comb += (flat.eq(sig) if outward else sig.eq(flat))
            ready = getattr(self, f"{port}_tready")
            m.d.comb += (inner.ready.eq(ready) if outward else ready.eq(inner.ready))
        for n, mb in k.axil.signature.members.items():
            flat = getattr(self, f"s_axi_control_{n}")
            m.d.comb += (getattr(k.axil, n).eq(flat) if mb.flow == In else flat.eq(getattr(k.axil, n)))
        # Aurora reset (PG074, Reset and Power Down): pma_init high, reset_pb high, pma_init released after
        # 2**16 init_clk cycles (655 us at 100 MHz), reset_pb after 2**17; redone whenever ap_rst_n is low.
        rst_sync = Signal(init=1)
        m.submodules.rst_cdc = FFSynchronizer(~self.ap_rst_n, rst_sync, o_domain="init", init=1)
        seq = Signal(18)
        with m.If(rst_sync):
            m.d.init += seq.eq(0)
        with m.Elif(~seq[17]):
            m.d.init += seq.eq(seq + 1)
        pma_init, reset_pb = ~seq[16] & ~seq[17], ~seq[17]
        for i, cage in enumerate((k.cage0, k.cage1)):
            dom = f"l{i}"
            setattr(m.domains, dom, ClockDomain(dom, local=True))
            user_clk, sys_reset = Signal(name=f"user_clk{i}"), Signal(name=f"sys_reset{i}")
            m.d.comb += [ClockSignal(dom).eq(user_clk), ResetSignal(dom).eq(sys_reset)]
            m.submodules[AURORA[i]] = Instance(
                AURORA[i],
                i_s_axi_tx_tdata=cage.tx_tdata, i_s_axi_tx_tvalid=cage.tx_tvalid, o_s_axi_tx_tready=cage.tx_tready,
                o_m_axi_rx_tdata=cage.rx_tdata, o_m_axi_rx_tvalid=cage.rx_tvalid,
                i_rxp=getattr(self, f"gt_port{i}_rxp"), i_rxn=getattr(self, f"gt_port{i}_rxn"),
                o_txp=getattr(self, f"gt_port{i}_txp"), o_txn=getattr(self, f"gt_port{i}_txn"),
                i_gt_refclk1_p=getattr(self, f"gt_refclk{i}_p"), i_gt_refclk1_n=getattr(self, f"gt_refclk{i}_n"),
                i_init_clk=self.init_clk, i_reset_pb=reset_pb, i_pma_init=pma_init, i_power_down=C(0, 1),
                i_loopback=C(0, 3), i_gt_rxcdrovrden_in=C(0, 1),
                o_channel_up=cage.channel_up, o_lane_up=cage.lane_up, o_hard_err=Signal(name=f"hard_err{i}"),
                o_soft_err=Signal(name=f"soft_err{i}"), o_user_clk_out=user_clk, o_sys_reset_out=sys_reset)
        return m


def verilog(cfg: AccelConfig, **kernel) -> str:
    """Verilog of the Vitis kernel `dfx_ring` for `cfg`'s ring width (instantiates `aurora_qsfp0/1`)."""
    return back.convert(DfxRing(cfg, **kernel), name=KERNEL_NAME, emit_src=False)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m dfx.hw.ring_kernel", description="Write dfx_ring's Verilog.")
    ap.add_argument("--config", default="tiny", help="tiny, dfx or a config JSON file (default tiny)")
    ap.add_argument("-o", "--output", default=f"{KERNEL_NAME}.v")
    a = ap.parse_args()
    Path(a.output).write_text(verilog(load_config(a.config)))
    print(a.output)
