"""The top level of the DFX core, with Vitis RTL-kernel port names (so `package_xo` takes it without a
translating wrapper), and how to build and drive it.

Ports (all synchronous to `ap_clk`; widths for config `cfg`):

    ap_clk                      clock
    ap_rst_n                    reset, active low, synchronous
    interrupt                   level: GIE and (ISR and IER) of the register block
    s_axi_control_<sig>         AXI4-Lite slave, <sig> in awvalid awready awaddr wvalid wready wdata wstrb
                                bvalid bready bresp arvalid arready araddr rvalid rready rdata rresp;
                                32-bit data, address width log2(dfx.regmap.span(cfg)) (12 bits: 4 KiB);
                                the registers are exactly `dfx.regmap.regmap(cfg)`
    m_axi_hbmNN_<sig>           one AXI4 master per HBM pseudo-channel, NN = 00 .. cfg.hbm_channels-1
                                (`dfx.regmap.hbm_port_name`), data cfg.hbm_width bits
    m_axi_ddr_<sig>             AXI4 master to DDR (instruction streams, tables, logits), data 16*d bits
                                <sig> (both) in awid awvalid awready awaddr awlen awsize awburst wvalid wready
                                wdata wstrb wlast bvalid bready bresp arvalid arready araddr arlen arsize
                                arburst arid rvalid rready rdata rresp rlast rid bid; 64-bit addresses, INCR
                                bursts, IDs always 0, each port in order; channel bases 4 KiB aligned
    ring_tx_tdata/tvalid/tready/tlast   AXI4-Stream to the next device of the ring (16*d data bits: one
                                        VBUF entry per beat)
    ring_rx_tdata/tvalid/tready/tlast   AXI4-Stream from the previous device

Host protocol (`host/backends.py`, registers by name from `dfx.regmap`): write the HBMxx/DDR base pointers,
RING_POS/RING_SIZE once; per run write ENTRY (byte offset of the stream in DDR), TOKEN, POS, then CTRL =
ap_start; wait for CTRL.ap_done (or the interrupt); check STATUS (0x100 halted = success; error bits name
the problem, ERROR_PC the instruction); read the logits from DDR; CYCLES and BUSY_* give the run's counters.

Build: `verilog(cfg)` returns the Verilog text of module `dfx_core` (`verilog(cfg, devices=n)`: the
simulation-only `dfx_ring<n>` wrapper, n cores joined in a forward ring, ports prefixed `dev<k>_`) (`python -m dfx.hw.top --config tiny
-o dfx_core.v`). The cocotb harness that drives it (HBM/DDR as cocotbext-axi `AxiRam`s, the control port
through `AxiLiteMaster`) is `dfx.sim.rtl_core` (`RtlCore`, `run_program`); its API is stable for the host
`rtl` backend.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

import argparse
from pathlib import Path

from amaranth import Cat, ClockDomain, ClockSignal, Module, ResetSignal
from amaranth.back import verilog as back
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from dfx import regmap
from dfx.config import AccelConfig, load_config, pipeline_profile

from .core import Core
from .dma import hbm_port_names
from .pipe import DEEP_TOP
from .slr import ResetPipe, slice_chain

TOP_NAME = "dfx_core"
STREAM_NAMES = {"data": "tdata", "last": "tlast", "valid": "tvalid", "ready": "tready"}
# The five AXI channels of a master port: direction of the payload (Out: master to slave) and its fields.
AXI_CHANNELS = {"aw": (Out, ("awid", "awaddr", "awlen", "awsize", "awburst")),
                "w": (Out, ("wdata", "wstrb", "wlast")),
                "b": (In, ("bid", "bresp")), "ar": (Out, ("arid", "araddr", "arlen", "arsize", "arburst")),
                "r": (In, ("rid", "rdata", "rresp", "rlast"))}


def _flat(prefix: str, sig: wiring.Signature) -> dict:
    return {f"{prefix}_{name}": member for name, member in sig.members.items()}


class Top(wiring.Component):
    """`Core` with flat Vitis port names and its own clock domain from ap_clk / ap_rst_n.

    `reset_stages` (0..16): ap_rst_n through that many replicable registers (`slr.ResetPipe`) before it
    resets the core; `hbm_slr_stages` (0..4): that many register stages on every channel of every HBM port,
    the one at the port a full slice (`slr.RegSlice`: the port's `ready` registered), the others toward the
    core forward-registered (`slr.ForwardSlice`: payload and valid only, no multiplexer per bit). Both add
    latency only (the reset is held longer; each HBM read and write takes 2 x hbm_slr_stages cycles more
    round trip); 0 builds the top as before. None (the default): 0, or under the deep pipeline profile
    (`dfx.config.pipeline_profile`) `hw.pipe.DEEP_TOP`."""

    def __init__(self, cfg: AccelConfig, reset_stages: int | None = None, hbm_slr_stages: int | None = None,
                 **stages):
        top = DEEP_TOP if pipeline_profile() == "deep" else {"reset_stages": 0, "hbm_slr_stages": 0}
        reset_stages = top["reset_stages"] if reset_stages is None else reset_stages
        hbm_slr_stages = top["hbm_slr_stages"] if hbm_slr_stages is None else hbm_slr_stages
        if not isinstance(hbm_slr_stages, int) or isinstance(hbm_slr_stages, bool) or not 0 <= hbm_slr_stages <= 4:
            self._MustUse__silence = True
            raise ValueError(f"hbm_slr_stages must be an integer 0..4, not {hbm_slr_stages!r}")
        self.cfg = cfg
        self.reset_pipe = ResetPipe(reset_stages)
        self.reset_pipe._MustUse__silence = True     # elaborated with the top; silent when only its ports are read
        self.reset_stages, self.hbm_slr_stages = reset_stages, hbm_slr_stages
        self.core = Core(cfg, **stages)
        csig = self.core.signature.members
        members = {"ap_clk": In(1), "ap_rst_n": In(1), "interrupt": Out(1)}
        members.update(_flat("s_axi_control", csig["axil"].signature))
        self._ports = [("axil", "s_axi_control")]
        for i, nm in enumerate(hbm_port_names(cfg)):
            members.update(_flat(regmap.hbm_port_name(i), csig[nm].signature))
            self._ports.append((nm, regmap.hbm_port_name(i)))
        members.update(_flat("m_axi_ddr", csig["ddr"].signature))
        self._ports.append(("ddr", "m_axi_ddr"))
        for ring, flow in (("ring_tx", Out), ("ring_rx", In)):
            sig = csig[ring].signature
            lay = sig.members["payload"].shape
            members[f"{ring}_tdata"] = flow(lay["data"].shape)
            members[f"{ring}_tlast"] = flow(1)
            members[f"{ring}_tvalid"] = flow(1)
            members[f"{ring}_tready"] = (In if flow is Out else Out)(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync", local=True)     # local: several Tops may share a design
        m.domains.rst_src = ClockDomain("rst_src", reset_less=True, local=True)
        m.submodules.reset_pipe = rp = self.reset_pipe
        m.d.comb += [ClockSignal("sync").eq(self.ap_clk), ClockSignal("rst_src").eq(self.ap_clk),
                     rp.rst_in.eq(~self.ap_rst_n), ResetSignal("sync").eq(rp.rst_out)]
        m.submodules.core = core = self.core
        m.d.comb += self.interrupt.eq(core.interrupt)
        for inner, outer in self._ports:
            port = getattr(core, inner)
            if self.hbm_slr_stages and inner.startswith("hbm"):
                self._sliced_axi(m, port, outer)
                continue
            for name, member in port.signature.members.items():
                flat = getattr(self, f"{outer}_{name}")
                if member.flow == Out:
                    m.d.comb += flat.eq(getattr(port, name))
                else:
                    m.d.comb += getattr(port, name).eq(flat)
        self._ring(m, core)
        return m

    def _sliced_axi(self, m, port, outer: str):
        """Every channel of AXI master `port` to the flat ports `outer`_* through `hbm_slr_stages` stages: a
        master-to-slave channel from the core's port to the flat one, a slave-to-master channel back; the
        stage at the flat port a `RegSlice`, the others `ForwardSlice`s."""
        def flat(f):
            return getattr(self, f"{outer}_{f}")

        def inner(f):
            return getattr(port, f)
        n = self.hbm_slr_stages
        for ch, (flow, fields) in AXI_CHANNELS.items():
            src, dst = (inner, flat) if flow == Out else (flat, inner)
            d_in = Cat(*[src(f) for f in fields])
            # stage 0 is at the source: the full slice is the last stage toward the port, the first from it
            forward = range(n - 1) if flow == Out else range(1, n)
            v, r, d = slice_chain(m, f"{outer}_{ch}_slr", n, src(f"{ch}valid"), src(f"{ch}ready"), d_in,
                                  len(d_in), forward=forward)
            pos = 0
            for f in fields:
                m.d.comb += dst(f).eq(d[pos:pos + len(dst(f))])
                pos += len(dst(f))
            m.d.comb += [dst(f"{ch}valid").eq(v), r.eq(dst(f"{ch}ready"))]

    def _ring(self, m, core):
        tx, rx = core.ring_tx, core.ring_rx
        m.d.comb += [self.ring_tx_tdata.eq(tx.payload.data), self.ring_tx_tlast.eq(tx.payload.last),
                     self.ring_tx_tvalid.eq(tx.valid), tx.ready.eq(self.ring_tx_tready),
                     rx.payload.data.eq(self.ring_rx_tdata), rx.payload.last.eq(self.ring_rx_tlast),
                     rx.valid.eq(self.ring_rx_tvalid), self.ring_rx_tready.eq(rx.ready)]


class RingTop(wiring.Component):
    """Simulation wrapper: `n` cores in one design, core k's ring_tx feeding core (k+1) % n's ring_rx (the
    forward ring). Every core's other ports keep their Vitis names behind a `dev<k>_` prefix
    (`dev0_s_axi_control_awvalid`, `dev1_m_axi_hbm00_araddr`, ...); one ap_clk / ap_rst_n."""

    def __init__(self, cfg: AccelConfig, n: int, **stages):
        if not isinstance(n, int) or not 2 <= n <= cfg.devices:
            self._MustUse__silence = True
            raise ValueError(f"n must be an integer 2..{cfg.devices} (AccelConfig.devices), not {n!r}")
        self.cfg, self.n = cfg, n
        self.tops = [Top(cfg, **stages) for _ in range(n)]
        members = {"ap_clk": In(1), "ap_rst_n": In(1)}
        for k, t in enumerate(self.tops):
            for name, member in t.signature.members.items():
                if name in ("ap_clk", "ap_rst_n") or name.startswith("ring_"):
                    continue
                members[f"dev{k}_{name}"] = member
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for k, t in enumerate(self.tops):
            m.submodules[f"dev{k}"] = t
            m.d.comb += [t.ap_clk.eq(self.ap_clk), t.ap_rst_n.eq(self.ap_rst_n)]
            for name, member in t.signature.members.items():
                if name in ("ap_clk", "ap_rst_n") or name.startswith("ring_"):
                    continue
                outer = getattr(self, f"dev{k}_{name}")
                if member.flow == Out:
                    m.d.comb += outer.eq(getattr(t, name))
                else:
                    m.d.comb += getattr(t, name).eq(outer)
        for k, t in enumerate(self.tops):
            nxt = self.tops[(k + 1) % self.n]
            m.d.comb += [nxt.ring_rx_tdata.eq(t.ring_tx_tdata), nxt.ring_rx_tlast.eq(t.ring_tx_tlast),
                         nxt.ring_rx_tvalid.eq(t.ring_tx_tvalid), t.ring_tx_tready.eq(nxt.ring_rx_tready)]
        return m


def ring_name(n: int) -> str:
    return f"dfx_ring{n}"


def verilog(cfg: AccelConfig, devices: int = 1, **stages) -> str:
    """Verilog of `dfx_core` (devices=1) or of the `dfx_ring<n>` simulation wrapper."""
    if devices == 1:
        return back.convert(Top(cfg, **stages), name=TOP_NAME, emit_src=False)
    return back.convert(RingTop(cfg, devices, **stages), name=ring_name(devices), emit_src=False)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m dfx.hw.top", description="Write the core's Verilog.")
    ap.add_argument("--config", default="tiny", help="tiny, dfx or a config JSON file (default tiny)")
    ap.add_argument("-o", "--output", default=f"{TOP_NAME}.v")
    a = ap.parse_args()
    Path(a.output).write_text(verilog(load_config(a.config)))
    print(a.output)
