"""The DMA engine's AXI traffic (hw/dma.py) in amaranth.sim against the behavioural AXI memories
(`dfx.verify.axi_mem`): STORE then LOAD round trips through HBM (striped over the pseudo-channels) and DDR, aligned
and not, across 4 KiB boundaries, with read latency and back-pressure. Every AR/AW is an INCR burst of at most
AXI_BURST_BEATS beats inside one 4 KiB page; no port ever has more than AXI_MAX_OUTSTANDING_READS read or
AXI_MAX_OUTSTANDING_WRITES write bursts unanswered; `done` comes only when every write is acknowledged; a long LOAD
runs at about one beat per cycle; the data comes back as the simulator's LOAD (DAZ) would load it."""
import numpy as np
import pytest
from amaranth import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from dfx import isa, numerics
from dfx.config import load_config
from dfx.hw.dma import (AXI_BURST_BEATS, AXI_MAX_OUTSTANDING_READS, AXI_MAX_OUTSTANDING_WRITES, DmaEngine,
                        ddr_data_bits, hbm_port_names)
from dfx.verify.axi_mem import AxiMem

CFG = load_config("tiny")
ENTRIES = 256


def _bench(instrs, token=0, latency=0, stall=0, seed=1):
    """Run `instrs` (one at a time) on a DmaEngine with AxiMem ports and a VBUF of ENTRIES entries holding random
    normal binary16 values with a few subnormals; return (VBUF before, VBUF after, cycles per instruction, the
    bursts seen per port, the most outstanding per port)."""
    cfg, d = CFG, CFG.d
    m = Module()
    m.submodules.dma = dma = DmaEngine(cfg)
    ports = [getattr(dma, n) for n in hbm_port_names(cfg)] + [dma.ddr]
    bws = [cfg.channel_beat_bytes] * cfg.hbm_channels + [ddr_data_bits(cfg) // 8]
    mems = []
    for i, p in enumerate(ports):
        mem = AxiMem(len(p.wdata), 11, seed=seed + i)
        m.submodules[f"mem{i}"] = mem
        wiring.connect(m, p, mem.axi)
        mems.append(mem)
    rng = np.random.default_rng(seed)
    vals = rng.uniform(-4, 4, ENTRIES * d).astype(np.float16).view(np.uint16)
    vals[rng.choice(vals.size, 16, replace=False)] = rng.integers(1, 0x400, 16) | (rng.integers(0, 2, 16) << 15)
    init = [int.from_bytes(vals[e * d:(e + 1) * d].tobytes(), "little") for e in range(ENTRIES)]
    m.submodules.vbuf = vb = Memory(shape=unsigned(16 * d), depth=ENTRIES, init=init)
    rp = vb.read_port()
    wp = vb.write_port(granularity=16)
    v = dma.ctl.vbuf
    m.d.comb += [rp.addr.eq(v.ra_addr), rp.en.eq(v.ra_en), v.ra_data.eq(rp.data), wp.addr.eq(v.w_addr),
                 wp.en.eq(v.w_en), wp.data.eq(v.w_data), v.w_rdy.eq(1)]
    sim = Simulator(m)
    sim.add_clock(1e-8)
    out = {"cycles": [], "bursts": [[] for _ in ports], "most": [[0, 0] for _ in ports], "after": None}
    state = {"rd": [0] * len(ports), "wr": [0] * len(ports), "stop": False}

    async def monitor(ctx):
        sigs = []
        for p in ports:
            sigs += [p.arvalid, p.arready, p.araddr, p.arlen, p.rvalid, p.rready, p.rlast,
                     p.awvalid, p.awready, p.awaddr, p.awlen, p.bvalid, p.bready]
        sigs.append(dma.ctl.done)
        async for _clk, _rst, *vals in ctx.tick().sample(*sigs):
            for i in range(len(ports)):
                arv, arr, ara, arl, rv, rr, rl, awv, awr, awa, awl, bv, br = vals[13 * i:13 * i + 13]
                if arv and arr:
                    out["bursts"][i].append(("r", ara, arl + 1))
                    state["rd"][i] += 1
                if rv and rr and rl:
                    state["rd"][i] -= 1
                if awv and awr:
                    out["bursts"][i].append(("w", awa, awl + 1))
                    state["wr"][i] += 1
                if bv and br:
                    state["wr"][i] -= 1
                most = out["most"][i]
                most[0], most[1] = max(most[0], state["rd"][i]), max(most[1], state["wr"][i])
            if vals[-1]:
                # done: every read arrived and every write acknowledged (nothing in flight on any port)
                assert state["rd"] == [0] * len(ports) and state["wr"] == [0] * len(ports), state

    async def bench(ctx):
        for mem in mems:
            ctx.set(mem.ctl.latency, latency)
            ctx.set(mem.ctl.stall, stall)
        ctx.set(dma.token, token)
        for ins in instrs:
            ctx.set(dma.ctl.word.as_value(), ins.encode())
            ctx.set(dma.ctl.start, 1)
            await ctx.tick()
            ctx.set(dma.ctl.start, 0)
            n = 1
            while not ctx.get(dma.ctl.done):
                await ctx.tick()
                n += 1
                assert n < 20000, ins
            assert not ctx.get(dma.ctl.err.as_value()), ins
            out["cycles"].append(n)
            await ctx.tick()
        out["after"] = np.array([[(ctx.get(vb.data[e]) >> (16 * j)) & 0xFFFF for j in range(d)]
                                 for e in range(ENTRIES)], np.uint16)
        out["errors"] = [ctx.get(mem.error) for mem in mems]

    sim.add_process(monitor)
    sim.add_testbench(bench)
    sim.run()
    return vals.reshape(ENTRIES, d), out, bws


def _check_bursts(out, bws):
    assert out["errors"] == [0] * len(bws)            # no range or protocol fault (wlast, burst type, size)
    for i, bursts in enumerate(out["bursts"]):
        for kind, addr, beats in bursts:
            assert 1 <= beats <= AXI_BURST_BEATS and addr % bws[i] == 0
            assert addr // 4096 == (addr + beats * bws[i] - 1) // 4096, (i, kind, addr, beats)
        assert out["most"][i][0] <= AXI_MAX_OUTSTANDING_READS and out["most"][i][1] <= AXI_MAX_OUTSTANDING_WRITES


@pytest.mark.parametrize("hbm,addr,token,n,latency,stall", [
    (1, 16384 - 256, 0, 300, 0, 0),            # HBM, aligned, each channel's run crosses its 4 KiB page
    (1, 16384 - 256, 1, 203, 20, 3),           # HBM, 2 bytes off the beat (TOKEN x stride 2): two pieces a beat
    (0, 4096 - 96, 1, 150, 20, 5),             # DDR, off the beat, across 4 KiB
    (0, 4096 - 30, 11, 77, 3, 1),              # DDR, 52 bytes off the beat: pieces cut by beats and entries
    (1, 0, 13, 45, 5, 2),                      # HBM, 26 bytes off the beat, a short run
    (1, 256, 5, 1, 0, 0),                      # a one-element run
])
def test_round_trip_in_bursts(hbm, addr, token, n, latency, stall):
    d = CFG.d
    field = addr // isa.HBM_UNIT if hbm else addr
    ins = [isa.Instr("STORE", vaddr=0, addr=field, n=n, hbm=hbm, index=1, stride=2),
           isa.Instr("LOAD", vaddr=100, addr=field, n=n, hbm=hbm, index=1, stride=2)]
    before, out, bws = _bench(ins, token=token, latency=latency, stall=stall)
    _check_bursts(out, bws)
    want = numerics.daz16(before.reshape(-1)[:n].view(np.float16)).view(np.uint16)
    got = out["after"].reshape(-1)
    assert np.array_equal(got[100 * d:100 * d + n], want)
    assert np.array_equal(got[100 * d + n:], before.reshape(-1)[100 * d + n:])      # lanes past n untouched
    ports = range(CFG.hbm_channels) if hbm else [CFG.hbm_channels]
    if n >= 150:                                        # (runs long enough for several beats on every port)
        assert all(max(b[2] for b in out["bursts"][i]) > 1 for i in ports)         # real bursts on every port
        if latency and hbm:
            assert max(out["most"][i][0] for i in ports) > 1                       # reads overlap the latency


def test_long_load_streams():
    """A 4,096-element LOAD from HBM (512 beats over 4 channels) with 20 cycles of read latency: about one beat
    per cycle (the descriptor FIFO and the outstanding bursts cover the latency)."""
    n = 4096
    before, out, bws = _bench([isa.Instr("LOAD", vaddr=0, addr=0, n=n, hbm=1)], latency=20)
    _check_bursts(out, bws)
    beats = n * 2 // CFG.channel_beat_bytes
    assert out["cycles"][0] < beats * 1.1 + 40, out["cycles"]


def test_cache_stores_in_bursts():
    """STORE_VT (n runs of one element) still moves its runs exactly: the V-cache layout written (element c of
    row POS in tile c // l, lane c % l: offset lane * d + POS % d in the tile), read back by one LOAD of the tiles."""
    d, l = CFG.d, CFG.l
    n = 24
    tiles = -(-n // l)
    ins = [isa.Instr("STORE_VT", vaddr=0, addr=0, n=n, hbm=1),
           isa.Instr("LOAD", vaddr=50, addr=0, n=tiles * d * l, hbm=1)]
    before, out, bws = _bench(ins, latency=7, stall=4)
    _check_bursts(out, bws)
    got = out["after"].reshape(-1)[50 * d:50 * d + tiles * d * l].reshape(tiles, l, d)
    src = numerics.daz16(before.reshape(-1)[:n].view(np.float16)).view(np.uint16)
    for c in range(n):                                   # POS = 0
        assert got[c // l, c % l, 0] == src[c], c
