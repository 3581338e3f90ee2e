"""Simulation wrappers of the ring kernel (`dfx.hw.ring_kernel.RingKernel`) over a lossy, delayed link model.

`LossyLink` stands in for one direction of an Aurora 64B/66B channel (PG074, streaming mode): 256-bit words
in at `s_axi_tx` (with `tready`), out at `m_axi_rx` (no back-pressure) `latency` cycles later, and, from a
seeded xorshift64 generator, per word: a drop (the word never arrives), a single flipped bit (at a random
position), or a cycle of `tready` low on the sending side (as Aurora's clock compensation does). `channel_up`
rises `up_after` cycles after reset. Probabilities are per word, in units of 1/65536.

`KernelPair`: two ring kernels, A's cage 0 joined to B's cage 1 by two `LossyLink`s (data forward, ACK words
back); A's `s_axis_tx`, B's `m_axis_rx` and both status ports as top-level ports (`a_`/`b_` prefixes). Clocks:
`ap_clk` for both kernels' core side, `user_clk` for the links (independent, as on a board).

`KernelRing`: n cores as `RingTop` joins them, but each core's `ring_tx` goes through its own ring kernel, a
`LossyLink` pair, and the next core's ring kernel. Same ports as `RingTop` (one `ap_clk`, `dev<k>_` prefixes)
plus the kernels' and links' counters, and the same Verilog top name (`dfx.hw.top.ring_name`), so the RTL ring
co-simulation driver (`dfx.verify.rtl_core.RtlCore` / `dfx.verify.core_tb`) runs it unchanged; the links' user
clock is ap_clk inverted (a second clock domain with its own edges; the kernel-pair test uses independent
clocks). The cores and kernels are `Instance`s of one core module (`dfx.hw.top.verilog(cfg)`) and one kernel
module (`KernelShell`, `shell_verilog`), each generated once: converting n copies of the core took Amaranth and
Yosys most of an hour for n = 4, one copy takes under two minutes.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

from dataclasses import dataclass

from amaranth import C, Cat, ClockDomain, ClockSignal, DomainRenamer, Instance, Module, ResetSignal, Shape, Signal
from amaranth.back import verilog as back
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from dfx.config import AccelConfig

from .ring_kernel import GT_LANES, STATUS_REGS, RingKernel
from .ring_link import LINK_BITS
from .top import TOP_NAME, Top, ring_name
from .top import verilog as top_verilog

PAIR_NAME = "dfx_ring_pair"


@dataclass(frozen=True)
class LinkModel:
    """One direction's impairments: `latency` cycles; drop, bit-flip and TX-stall probabilities per word in
    units of 1/65536; `seed` of the generator (non-zero); `up_after` cycles before channel_up."""
    latency: int = 16
    drop: int = 0
    flip: int = 0
    stall: int = 0
    seed: int = 1
    up_after: int = 8

    def __post_init__(self):
        for name in ("drop", "flip", "stall"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v < 65536:
                raise ValueError(f"{name} must be an integer 0..65535 (per 65536 words), not {v!r}")
        if not isinstance(self.latency, int) or self.latency < 1:
            raise ValueError(f"latency must be an integer >= 1, not {self.latency!r}")
        if not isinstance(self.seed, int) or not 0 < self.seed < 1 << 64:
            raise ValueError(f"seed must be an integer 1..2**64-1, not {self.seed!r}")

    def reseeded(self, k: int) -> "LinkModel":
        """The same impairments with a seed of its own for link `k`."""
        return LinkModel(self.latency, self.drop, self.flip, self.stall,
                         (self.seed * 0x9E3779B97F4A7C15 + k + 1) % (1 << 64) or 1, self.up_after)


class LossyLink(wiring.Component):
    """One direction of a link (domain `sync`); see the module docstring."""

    def __init__(self, model: LinkModel):
        self.model = model
        super().__init__({"tx_tdata": In(LINK_BITS), "tx_tvalid": In(1), "tx_tready": Out(1),
                          "rx_tdata": Out(LINK_BITS), "rx_tvalid": Out(1), "channel_up": Out(1),
                          "dropped": Out(32), "flipped": Out(32)})

    def elaborate(self, platform):
        m = Module()
        md = self.model
        x = Signal(64, init=md.seed)
        x1 = x ^ (x << 13)[:64]
        x2 = x1 ^ (x1 >> 7)
        m.d.sync += x.eq(x2 ^ (x2 << 17)[:64])                       # xorshift64
        drop, flip, pos, stall = x[0:16] < md.drop, x[16:32] < md.flip, x[32:40], x[40:56] < md.stall
        up_cnt = Signal(range(md.up_after + 1))
        with m.If(up_cnt != md.up_after):
            m.d.sync += up_cnt.eq(up_cnt + 1)
        m.d.comb += [self.channel_up.eq(up_cnt == md.up_after), self.tx_tready.eq(self.channel_up & ~stall)]
        take = self.tx_tvalid & self.tx_tready
        mask = Signal(LINK_BITS)
        m.d.comb += mask.eq(Cat(*[flip & (pos == b) for b in range(LINK_BITS)]))
        with m.If(take & drop):
            m.d.sync += self.dropped.eq(self.dropped + 1)
        with m.Elif(take & flip):
            m.d.sync += self.flipped.eq(self.flipped + 1)
        data, valid = self.tx_tdata ^ mask, take & ~drop
        for k in range(md.latency):                                 # the wire: a delay line
            d, v = Signal(LINK_BITS, name=f"d{k}"), Signal(name=f"v{k}")
            m.d.sync += [d.eq(data), v.eq(valid)]
            data, valid = d, v
        m.d.comb += [self.rx_tdata.eq(data), self.rx_tvalid.eq(valid)]
        return m


def _join(m: Module, src, dst, link: LossyLink, back: LossyLink) -> None:
    """src kernel's cage 0 -> `link` -> dst kernel's cage 1; dst's ACK words -> `back` -> src's cage 0."""
    c0, c1 = src.cage0, dst.cage1
    up = link.channel_up & back.channel_up
    m.d.comb += [link.tx_tdata.eq(c0.tx_tdata), link.tx_tvalid.eq(c0.tx_tvalid), c0.tx_tready.eq(link.tx_tready),
                 c1.rx_tdata.eq(link.rx_tdata), c1.rx_tvalid.eq(link.rx_tvalid),
                 back.tx_tdata.eq(c1.tx_tdata), back.tx_tvalid.eq(c1.tx_tvalid), c1.tx_tready.eq(back.tx_tready),
                 c0.rx_tdata.eq(back.rx_tdata), c0.rx_tvalid.eq(back.rx_tvalid),
                 c0.channel_up.eq(up), c1.channel_up.eq(up),
                 c0.lane_up.eq(up.replicate(GT_LANES)), c1.lane_up.eq(up.replicate(GT_LANES))]


def _links(m: Module, k: int, model: LinkModel) -> tuple:
    fwd = DomainRenamer("user")(LossyLink(model.reseeded(2 * k)))
    back = DomainRenamer("user")(LossyLink(model.reseeded(2 * k + 1)))
    m.submodules[f"link{k}"], m.submodules[f"ack{k}"] = fwd, back
    return fwd, back


class KernelPair(wiring.Component):
    def __init__(self, core_bits: int, model: LinkModel = LinkModel(), **kernel):
        self.core_bits, self.model, self.kernel = core_bits, model, kernel
        self.a, self.b = RingKernel(core_bits, **kernel), RingKernel(core_bits, **kernel)
        members = {"ap_clk": In(1), "ap_rst_n": In(1), "user_clk": In(1), "user_rst": In(1),
                   "s_axis_tx_tdata": In(core_bits), "s_axis_tx_tlast": In(1), "s_axis_tx_tvalid": In(1),
                   "s_axis_tx_tready": Out(1), "m_axis_rx_tdata": Out(core_bits), "m_axis_rx_tlast": Out(1),
                   "m_axis_rx_tvalid": Out(1), "m_axis_rx_tready": In(1)}
        for p, k in (("a", self.a), ("b", self.b)):
            axil = k.signature.members["axil"].signature.members
            members.update({f"{p}_s_axi_control_{n}": mb for n, mb in axil.items()})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync", local=True)
        m.domains.user = ClockDomain("user", local=True)
        m.d.comb += [ClockSignal("sync").eq(self.ap_clk), ResetSignal("sync").eq(~self.ap_rst_n),
                     ClockSignal("user").eq(self.user_clk), ResetSignal("user").eq(self.user_rst)]
        m.submodules.a = DomainRenamer({"l0": "user", "l1": "user"})(self.a)
        m.submodules.b = DomainRenamer({"l0": "user", "l1": "user"})(self.b)
        fwd, back = _links(m, 0, self.model)
        _join(m, self.a, self.b, fwd, back)
        tx, rx = self.a.s_axis_tx, self.b.m_axis_rx
        m.d.comb += [tx.payload.data.eq(self.s_axis_tx_tdata), tx.payload.last.eq(self.s_axis_tx_tlast),
                     tx.valid.eq(self.s_axis_tx_tvalid), self.s_axis_tx_tready.eq(tx.ready),
                     self.m_axis_rx_tdata.eq(rx.payload.data), self.m_axis_rx_tlast.eq(rx.payload.last),
                     self.m_axis_rx_tvalid.eq(rx.valid), rx.ready.eq(self.m_axis_rx_tready)]
        for p, k in (("a", self.a), ("b", self.b)):
            for n, mb in k.axil.signature.members.items():
                flat = getattr(self, f"{p}_s_axi_control_{n}")
                m.d.comb += (getattr(k.axil, n).eq(flat) if mb.flow == In else flat.eq(getattr(k.axil, n)))
        # the unused cages: A's cage 1 and B's cage 0 see an idle link that is up
        for cage in (self.a.cage1, self.b.cage0):
            m.d.comb += [cage.channel_up.eq(1), cage.tx_tready.eq(1), cage.lane_up.eq(C(-1, GT_LANES))]
        return m


SHELL_NAME = "dfx_ring_kernel_sim"
# the sender's and receiver's counters a `KernelShell` brings out (`dfx.hw.ring_kernel.STATUS_REGS` names)
COUNTERS = tuple((name, src) for _, name, src in STATUS_REGS if src)


def _widths(sig: wiring.Signature) -> dict:
    """{port: (flow, width)} of a component with flat (single-signal) ports."""
    return {n: (mb.flow, Shape.cast(mb.shape).width) for n, mb in sig.members.items()}


def core_ports(cfg: AccelConfig) -> dict:
    """The ports of one core (`dfx.hw.top.Top`, Verilog module `dfx.hw.top.TOP_NAME`): {name: (flow, width)}."""
    top = Top(cfg)
    for x in (top, top.core, getattr(top, "reset_pipe", None)):
        if x is not None:
            x._MustUse__silence = True                                  # only its signature is wanted
    return _widths(top.signature)


class KernelShell(wiring.Component):
    """`RingKernel` with flat ports and its clocks as ports, so that one Verilog module (`SHELL_NAME`) serves
    every kernel of a ring: `ap_clk`/`ap_rst_n` (core side, `sync`), `l0_clk`/`l0_rst` and `l1_clk`/`l1_rst`
    (the cages' user clocks), `s_axis_tx_*`/`m_axis_rx_*` (the core's ring stream), `s_axi_control_*`,
    `cage<k>_<sig>` (one Aurora user interface each, `aurora_signature`), and the endpoints' counters as
    outputs (`stat_<name>`, `COUNTERS`; in their user clock's domain) for simulations to read at the end."""

    def __init__(self, core_bits: int, **kernel):
        self.kernel = RingKernel(core_bits, **kernel)
        sig = self.kernel.signature.members
        members = {n: In(1) for n in ("ap_clk", "ap_rst_n", "l0_clk", "l0_rst", "l1_clk", "l1_rst")}
        for port, flow in (("s_axis_tx", In), ("m_axis_rx", Out)):
            members.update({f"{port}_tdata": flow(core_bits), f"{port}_tlast": flow(1), f"{port}_tvalid": flow(1),
                            f"{port}_tready": (Out if flow is In else In)(1)})
        members.update({f"s_axi_control_{n}": mb for n, mb in sig["axil"].signature.members.items()})
        for k in range(2):
            members.update({f"cage{k}_{n}": mb for n, mb in sig[f"cage{k}"].signature.members.items()})
        members.update({f"stat_{name.lower()}": Out(32) for name, _ in COUNTERS})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync", local=True)
        m.domains.l0 = ClockDomain("l0", local=True)
        m.domains.l1 = ClockDomain("l1", local=True)
        m.d.comb += [ClockSignal("sync").eq(self.ap_clk), ResetSignal("sync").eq(~self.ap_rst_n),
                     ClockSignal("l0").eq(self.l0_clk), ResetSignal("l0").eq(self.l0_rst),
                     ClockSignal("l1").eq(self.l1_clk), ResetSignal("l1").eq(self.l1_rst)]
        m.submodules.kernel = k = self.kernel
        tx, rx = k.s_axis_tx, k.m_axis_rx
        m.d.comb += [tx.payload.data.eq(self.s_axis_tx_tdata), tx.payload.last.eq(self.s_axis_tx_tlast),
                     tx.valid.eq(self.s_axis_tx_tvalid), self.s_axis_tx_tready.eq(tx.ready),
                     self.m_axis_rx_tdata.eq(rx.payload.data), self.m_axis_rx_tlast.eq(rx.payload.last),
                     self.m_axis_rx_tvalid.eq(rx.valid), rx.ready.eq(self.m_axis_rx_tready)]
        inner = {"s_axi_control": k.axil, "cage0": k.cage0, "cage1": k.cage1}
        for prefix, port in inner.items():
            for n, mb in port.signature.members.items():
                flat = getattr(self, f"{prefix}_{n}")
                m.d.comb += (getattr(port, n).eq(flat) if mb.flow == In else flat.eq(getattr(port, n)))
        for name, src in COUNTERS:
            side, port = src.split(".")
            m.d.comb += getattr(self, f"stat_{name.lower()}").eq(getattr(k.tx_ep if side == "tx" else k.rx_ep, port))
        return m


class KernelRing(wiring.Component):
    """n cores, each behind its ring kernel, joined by lossy links; ports as `dfx.hw.top.RingTop`, plus each
    kernel's counters (`ring<k>_<counter>`, `COUNTERS`) and each link's (`link<k>_dropped`, `link<k>_flipped`
    forward, `ack<k>_...` back). The cores and the kernels are `Instance`s of the modules `dfx.hw.top.TOP_NAME`
    and `SHELL_NAME`, generated once each (`dfx.hw.top.verilog(cfg)`, `shell_verilog`): this wrapper's own
    Verilog (`ring_wrapper_verilog`) holds only the links and the wiring, and a simulator compiles each module
    once however many instances the ring has."""

    def __init__(self, cfg: AccelConfig, n: int, model: LinkModel = LinkModel(), kernel: dict | None = None):
        if not isinstance(n, int) or not 2 <= n <= cfg.devices:
            self._MustUse__silence = True
            raise ValueError(f"n must be an integer 2..{cfg.devices} (AccelConfig.devices), not {n!r}")
        self.cfg, self.n, self.model = cfg, n, model
        self.core = core_ports(cfg)
        shell = KernelShell(16 * cfg.d, **(kernel or {}))
        for x in (shell, shell.kernel, shell.kernel.tx_ep, shell.kernel.rx_ep):
            x._MustUse__silence = True                                  # only its signature is wanted
        self.shell = _widths(shell.signature)
        members = {"ap_clk": In(1), "ap_rst_n": In(1)}
        for k in range(n):
            for name, (flow, width) in self.core.items():
                if name not in ("ap_clk", "ap_rst_n") and not name.startswith("ring_"):
                    members[f"dev{k}_{name}"] = flow(width)
            members.update({f"ring{k}_{name.lower()}": Out(32) for name, _ in COUNTERS})
            for link in ("link", "ack"):
                members.update({f"{link}{k}_dropped": Out(32), f"{link}{k}_flipped": Out(32)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.domains.user = ClockDomain("user", local=True)
        m.d.comb += [ClockSignal("user").eq(~self.ap_clk), ResetSignal("user").eq(~self.ap_rst_n)]
        clocks = {"ap_clk": self.ap_clk, "ap_rst_n": self.ap_rst_n}
        ring = [{n: Signal(w, name=f"d{k}_{n}") for n, (_, w) in self.core.items() if n.startswith("ring_")}
                for k in range(self.n)]
        cages = [{n: Signal(w, name=f"k{k}_{n}") for n, (_, w) in self.shell.items() if n.startswith("cage")}
                 for k in range(self.n)]
        for k in range(self.n):
            conns = {}
            for name, (flow, width) in self.core.items():
                sig = clocks[name] if name in clocks else ring[k].get(name)
                if sig is None:
                    sig = getattr(self, f"dev{k}_{name}")
                conns[("o_" if flow == Out else "i_") + name] = sig
            m.submodules[f"dev{k}"] = Instance(TOP_NAME, **conns)
            r = ring[k]
            kconns = {**clocks, "l0_clk": ClockSignal("user"), "l0_rst": ResetSignal("user"),
                      "l1_clk": ClockSignal("user"), "l1_rst": ResetSignal("user"),
                      "s_axis_tx_tdata": r["ring_tx_tdata"], "s_axis_tx_tlast": r["ring_tx_tlast"],
                      "s_axis_tx_tvalid": r["ring_tx_tvalid"], "s_axis_tx_tready": r["ring_tx_tready"],
                      "m_axis_rx_tdata": r["ring_rx_tdata"], "m_axis_rx_tlast": r["ring_rx_tlast"],
                      "m_axis_rx_tvalid": r["ring_rx_tvalid"], "m_axis_rx_tready": r["ring_rx_tready"],
                      **cages[k]}
            kconns.update({f"stat_{name.lower()}": getattr(self, f"ring{k}_{name.lower()}") for name, _ in COUNTERS})
            conns = {}
            for name, (flow, width) in self.shell.items():
                sig = kconns.get(name)
                if sig is None:                             # the status port: idle (the counters come out)
                    sig = C(0, width) if flow == In else Signal(width, name=f"k{k}_{name}")
                conns[("o_" if flow == Out else "i_") + name] = sig
            m.submodules[f"ring{k}"] = Instance(SHELL_NAME, **conns)
        for k in range(self.n):
            fwd, back = _links(m, k, self.model)
            src, dst = cages[k], cages[(k + 1) % self.n]
            up = fwd.channel_up & back.channel_up
            m.d.comb += [fwd.tx_tdata.eq(src["cage0_tx_tdata"]), fwd.tx_tvalid.eq(src["cage0_tx_tvalid"]),
                         src["cage0_tx_tready"].eq(fwd.tx_tready),
                         dst["cage1_rx_tdata"].eq(fwd.rx_tdata), dst["cage1_rx_tvalid"].eq(fwd.rx_tvalid),
                         back.tx_tdata.eq(dst["cage1_tx_tdata"]), back.tx_tvalid.eq(dst["cage1_tx_tvalid"]),
                         dst["cage1_tx_tready"].eq(back.tx_tready),
                         src["cage0_rx_tdata"].eq(back.rx_tdata), src["cage0_rx_tvalid"].eq(back.rx_tvalid),
                         src["cage0_channel_up"].eq(up), dst["cage1_channel_up"].eq(up),
                         src["cage0_lane_up"].eq(up.replicate(GT_LANES)),
                         dst["cage1_lane_up"].eq(up.replicate(GT_LANES))]
            for name, link in (("link", fwd), ("ack", back)):
                m.d.comb += [getattr(self, f"{name}{k}_dropped").eq(link.dropped),
                             getattr(self, f"{name}{k}_flipped").eq(link.flipped)]
        return m


class PlainRing(wiring.Component):
    """n cores joined in a forward ring, core k's `ring_tx` feeding core (k+1) % n's `ring_rx` directly (no
    kernel, no link): the ports and the Verilog top name of `dfx.hw.top.RingTop`, but each core is an `Instance`
    (named `dev<k>`) of the one core module `dfx.hw.top.TOP_NAME`, generated once (`dfx.hw.top.verilog(cfg)`)
    however many cores the ring has. The multi-device `rtl` backend runs programs on it."""

    def __init__(self, cfg: AccelConfig, n: int):
        if not isinstance(n, int) or not 2 <= n <= cfg.devices:
            self._MustUse__silence = True
            raise ValueError(f"n must be an integer 2..{cfg.devices} (AccelConfig.devices), not {n!r}")
        self.cfg, self.n = cfg, n
        self.core = core_ports(cfg)
        members = {"ap_clk": In(1), "ap_rst_n": In(1)}
        for k in range(n):
            for name, (flow, width) in self.core.items():
                if name not in ("ap_clk", "ap_rst_n") and not name.startswith("ring_"):
                    members[f"dev{k}_{name}"] = flow(width)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        ring = [{n: Signal(w, name=f"d{k}_{n}") for n, (_, w) in self.core.items() if n.startswith("ring_")}
                for k in range(self.n)]
        for k in range(self.n):
            conns = {}
            for name, (flow, width) in self.core.items():
                if name in ("ap_clk", "ap_rst_n"):
                    sig = getattr(self, name)
                elif name.startswith("ring_"):
                    sig = ring[k][name]
                else:
                    sig = getattr(self, f"dev{k}_{name}")
                conns[("o_" if flow == Out else "i_") + name] = sig
            m.submodules[f"dev{k}"] = Instance(TOP_NAME, **conns)
        for k in range(self.n):
            tx, rx = ring[k], ring[(k + 1) % self.n]
            m.d.comb += [rx["ring_rx_tdata"].eq(tx["ring_tx_tdata"]), rx["ring_rx_tlast"].eq(tx["ring_tx_tlast"]),
                         rx["ring_rx_tvalid"].eq(tx["ring_tx_tvalid"]), tx["ring_tx_tready"].eq(rx["ring_rx_tready"])]
        return m


def plain_ring_verilog(cfg: AccelConfig, n: int) -> str:
    """Verilog of `PlainRing` alone (top `dfx.hw.top.ring_name(n)`; it instantiates `TOP_NAME`, whose module
    comes from `dfx.hw.top.verilog(cfg)`)."""
    return back.convert(PlainRing(cfg, n), name=ring_name(n), emit_src=False)


def pair_verilog(core_bits: int, model: LinkModel = LinkModel(), **kernel) -> str:
    return back.convert(KernelPair(core_bits, model, **kernel), name=PAIR_NAME, emit_src=False)


def shell_verilog(core_bits: int, **kernel) -> str:
    """Verilog of `KernelShell` (module `SHELL_NAME` and its submodules)."""
    return back.convert(KernelShell(core_bits, **kernel), name=SHELL_NAME, emit_src=False)


def ring_wrapper_verilog(cfg: AccelConfig, n: int, model: LinkModel = LinkModel(), kernel: dict | None = None) -> str:
    """Verilog of `KernelRing` alone (top `dfx.hw.top.ring_name(n)`; it instantiates `TOP_NAME` and
    `SHELL_NAME`, whose modules come from `dfx.hw.top.verilog(cfg)` and `shell_verilog`)."""
    return back.convert(KernelRing(cfg, n, model, kernel), name=ring_name(n), emit_src=False)


def ring_verilog(cfg: AccelConfig, n: int, model: LinkModel = LinkModel(), kernel: dict | None = None) -> str:
    """The whole ring as one Verilog text: one core module, one kernel module, the wrapper (`KernelRing`)."""
    return "\n".join((top_verilog(cfg), shell_verilog(16 * cfg.d, **(kernel or {})),
                      ring_wrapper_verilog(cfg, n, model, kernel)))
