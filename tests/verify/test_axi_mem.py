"""The fast harness's AXI4 slave memory (`dfx.verify.axi_mem`) in amaranth.sim: INCR bursts written and read back
with several outstanding requests, read latency and random back-pressure; VALID never drops before its
handshake; out-of-range and protocol faults raise the sticky error bits."""
import random

import pytest
from amaranth.sim import Simulator

from dfx.verify.axi_mem import ERR_PROTOCOL, ERR_RANGE, AxiMem

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
