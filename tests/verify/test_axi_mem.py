"""The fast harness's AXI4 slave memory (`dfx.verify.axi_mem`) in amaranth.sim: INCR bursts written and read back
with several outstanding requests, read latency and random back-pressure; VALID never drops before its
handshake; out-of-range and protocol faults raise the sticky error bits. Its Verilog (with the RAM's file backdoor) under cocotbext-axi's AxiMaster, the
protocol checker, on Icarus or Verilator."""
import json
import random
from pathlib import Path

import pytest
from amaranth import ClockDomain, ClockSignal, Module, ResetSignal
from amaranth.back import verilog as back
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from dfx.verify.axi_mem import ERR_PROTOCOL, ERR_RANGE, RAM_VERILOG, AxiMem
from dfx.verify.core_build import kick_comb_processes
from dfx.verify.fast_top import BUILD
from dfx.verify.toolchain import missing_simulator, run_module, runner_build, sim_env, simulator

HERE = Path(__file__).parent

W = 64          # data bits
NB = W // 8


def _sim(latency, stall, script):
    dut = AxiMem(W, 6)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    out = {}

    async def bench(ctx):
        ctx.set(dut.ctl.latency, latency)
        ctx.set(dut.ctl.stall, stall)
        await script(ctx, dut, out)
    sim.add_testbench(bench)
    sim.run()
    return out


async def _write(ctx, a, addr, beats):
    """One INCR burst: AW, then W beats (AW first, W valid throughout); waits for B."""
    ctx.set(a.awaddr, addr)
    ctx.set(a.awlen, len(beats) - 1)
    ctx.set(a.awsize, 3)
    ctx.set(a.awburst, 1)
    ctx.set(a.awvalid, 1)
    while True:
        _, _, rdy = await ctx.tick().sample(a.awready)
        if rdy:
            break
    ctx.set(a.awvalid, 0)
    ctx.set(a.bready, 1)
    for i, v in enumerate(beats):
        ctx.set(a.wdata, v)
        ctx.set(a.wstrb, (1 << NB) - 1)
        ctx.set(a.wlast, i == len(beats) - 1)
        ctx.set(a.wvalid, 1)
        while True:
            _, _, rdy = await ctx.tick().sample(a.wready)
            if rdy:
                break
    ctx.set(a.wvalid, 0)
    while True:
        _, _, bv = await ctx.tick().sample(a.bvalid)
        if bv:
            break


async def _reads(ctx, a, bursts):
    """Issue every AR burst back to back (outstanding), collect the R beats; check VALID stability."""
    got, pending = [], list(bursts)
    ctx.set(a.rready, 0)
    issued = 0
    held = False
    while len(got) < sum(n for _, n in bursts) or issued < len(bursts):
        if issued < len(bursts):
            addr, n = pending[issued]
            ctx.set(a.araddr, addr)
            ctx.set(a.arlen, n - 1)
            ctx.set(a.arsize, 3)
            ctx.set(a.arburst, 1)
            ctx.set(a.arvalid, 1)
        rr = random.random() < 0.7
        ctx.set(a.rready, rr)
        _, _, arr, rv, rd, rl = await ctx.tick().sample(a.arready, a.rvalid, a.rdata, a.rlast)
        assert not held or rv, "rvalid dropped before its handshake"
        held = rv and not rr
        if issued < len(bursts) and arr:
            issued += 1
            if issued == len(bursts):
                ctx.set(a.arvalid, 0)
        if rv and rr:
            got.append((rd, rl))
    return got


@pytest.mark.parametrize("latency,stall", [(0, 0), (7, 0), (3, 9)])
def test_bursts_round_trip(latency, stall):
    random.seed(latency * 16 + stall)
    data = {i: random.getrandbits(W) for i in range(40)}

    async def script(ctx, dut, out):
        a = dut.axi
        await _write(ctx, a, 0, [data[i] for i in range(16)])
        await _write(ctx, a, 16 * NB, [data[i] for i in range(16, 40)])
        out["r"] = await _reads(ctx, a, [(0, 8), (8 * NB, 1), (9 * NB, 31)])
        out["err"] = ctx.get(dut.error)
    out = _sim(latency, stall, script)
    assert [v for v, _ in out["r"]] == [data[i] for i in range(40)]
    assert [i for i, (_, last) in enumerate(out["r"]) if last] == [7, 8, 39]
    assert out["err"] == 0


def test_errors_are_sticky():
    async def script(ctx, dut, out):
        a = dut.axi
        out["r"] = await _reads(ctx, a, [(64 * NB, 1)])          # word 64: outside the 2**6 words
        out["e1"] = ctx.get(dut.error)
        ctx.set(a.arsize, 2)                                     # a narrow read
        ctx.set(a.araddr, 0)
        ctx.set(a.arlen, 0)
        ctx.set(a.arvalid, 1)
        await ctx.tick()
        ctx.set(a.arvalid, 0)
        await ctx.tick()
        out["e2"] = ctx.get(dut.error)
    out = _sim(0, 0, script)
    assert out["r"] == [(0, 1)] and out["e1"] == ERR_RANGE and out["e2"] == ERR_RANGE | ERR_PROTOCOL


# ============================================================================================ cocotb
class _MemTop(wiring.Component):
    """One file-backed AxiMem with flat ports (`axi_<sig>`, `ctl_<sig>`, `error`) for a Verilog simulator."""

    def __init__(self):
        self.mem = AxiMem(128, 10, file="m0")
        members = {"clk": In(1), "rst": In(1), "error": Out(2)}
        for pre, port in (("axi", self.mem.axi), ("ctl", self.mem.ctl)):
            for name, member in port.signature.members.items():
                members[f"{pre}_{name}"] = (In if member.flow == In else Out)(member.shape)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.d.comb += [ClockSignal("sync").eq(self.clk), ResetSignal("sync").eq(self.rst), self.error.eq(self.mem.error)]
        m.submodules.mem = self.mem
        for pre, port in (("axi", self.mem.axi), ("ctl", self.mem.ctl)):
            for name, member in port.signature.members.items():
                outer, inner = getattr(self, f"{pre}_{name}"), getattr(port, name)
                m.d.comb += inner.eq(outer) if member.flow == In else outer.eq(inner)
        return m


@pytest.mark.cocotb
@pytest.mark.skipif(missing_simulator() is not None, reason=str(missing_simulator()))
@pytest.mark.parametrize("latency,stall", [(0, 0), (25, 11)])
def test_protocol_under_cocotbext_axi(latency, stall, tmp_path):
    """The Verilog of the memory model under cocotbext-axi's AxiMaster (which checks the protocol): 16-beat
    bursts read back a backdoor-loaded image, an unaligned write (partial strobes) lands, the backdoor dump
    sees it, and no error bit rises; with read latency and heavy back-pressure too."""
    sim = simulator()
    bdir = BUILD / f"axi_mem_{sim}"
    bdir.mkdir(parents=True, exist_ok=True)
    src = bdir / "axi_mem_top.v"
    text = back.convert(_MemTop(), name="axi_mem_top", emit_src=False) + RAM_VERILOG
    src.write_text(kick_comb_processes(text) if sim == "icarus" else text)
    runner = runner_build(sim, src, "axi_mem_top", bdir, fresh=True, waves=False)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"latency": latency, "stall": stall}))
    tests, fails = run_module(runner, "cocotb_axi_mem", "axi_mem_top", bdir, tmp_path,
                              sim_env(DFX_AXI_MEM=str(spec), PYTHONPATH=str(HERE)), tmp_path / "test.log")
    assert tests == 1 and fails == 0, (tmp_path / "test.log").read_text()[-3000:]
