"""The scheduler (dfx.perf.schedule): the ISA's dependency rules by hand (queues, RAW, WAR, FENCE, the ring),
serial issue as the sum of its instructions, batched runs by hand, and the exact shortcuts (device
deduplication, layer periodicity, the per-POS-class memo) against the plain simulation."""
import math

import pytest
from perf_programs import BATCHED, SMALL, cycles, hand, shapes

from dfx import isa
from dfx.config import load_config
from dfx.errors import PerfError
from dfx.perf import PerfModel, Timing, isolated_cycles, serial_costs
from dfx.perf.timing import BATCH_READ_CYCLES, FETCH_DEPTH


def test_vector_queue_and_raw_by_hand(board):
    prog = hand(["""
        VADD dst=10 a=0 b=2 n=16     # t=0: 2 chunks of 8, latency 11 + 2 VBUF cycles: done at 15
        VMUL dst=12 a=10 b=10 n=16   # RAW on entries 10-11: starts at 15, done at 15 + 2 + 6 + 2 = 25
        VADD dst=20 a=0 b=2 n=16     # independent, but behind the VMUL in the in-order VPU queue: 17 + 2 + 13
        HALT"""])
    assert cycles(prog) == 32


def test_fence_serialises_dma(board):
    ddr_lat = math.ceil(board.value("ddr", "read_latency_ns") * 0.2)
    store_end = 0 + 2 + ddr_lat + 1           # 128 B over the 64 B/cycle DDR port, latency, VBUF
    free = hand(["STORE vaddr=0 n=64\nVADD dst=20 a=30 b=40 n=8\nHALT"])
    fenced = hand(["STORE vaddr=0 n=64\nFENCE units=4\nVADD dst=20 a=30 b=40 n=8\nHALT"])
    assert cycles(free) == store_end               # the VADD ran under the store
    assert cycles(fenced) == store_end + 1 + 11 + 2   # ...but not across the FENCE


def test_rtl_engines_by_hand(board):
    """The default timing, the scoreboard core of hw/core.py: an instruction reaches its engine ISSUE_CYCLES after
    dispatch, a dependant starts WAKE_CYCLES after the completion it waited for (HALT retires FENCE_CYCLES after
    it), a running instruction holds its operands against younger writers until it completes, and a matrix
    instruction and an HBM DMA instruction do not share the HBM ports."""
    cfg = load_config("tiny")
    t = Timing(cfg, board)
    r = serial_costs(cfg)
    cost = {x: t.cost(i.op, i.fields(), 1) for x in ("VADD", "VMUL", "LOADH", "LOADD", "LINEAR")
            for i in [isa.assemble_line({"VADD": "VADD dst=10 a=0 b=2 n=16", "VMUL": "VMUL dst=12 a=10 b=10 n=16",
                                         "LOADH": "LOAD vaddr=0 n=8 +hbm addr=64", "LOADD": "LOAD vaddr=0 n=8",
                                         "LINEAR": "LINEAR dst=4 src=0 k=16 n=8"}[x])]}
    fin = lambda c, start: start + c.occupancy + c.latency               # noqa: E731  the engine's completion
    done = lambda c, start: fin(c, start) + r.wake                        # noqa: E731  completion seen
    vadd = done(cost["VADD"], r.issue_cycles)
    # RAW: the VMUL starts when the VADD's completion is seen
    assert cycles(hand(["VADD dst=10 a=0 b=2 n=16\nVMUL dst=12 a=10 b=10 n=16\nHALT"]), engines="rtl") == \
        fin(cost["VMUL"], vadd) + r.fence
    # WAR: a LOAD into entry 0, which the VADD reads, waits for the VADD to complete (not just its operand feed)
    war = cycles(hand(["VADD dst=10 a=0 b=2 n=16\nLOAD vaddr=0 n=8\nHALT"]), engines="rtl")
    assert war == fin(cost["LOADD"], vadd) + r.fence
    # the HBM ports: an HBM LOAD into an unrelated entry waits for the LINEAR; a DDR one does not
    lin = done(cost["LINEAR"], r.issue_cycles)
    hbm = cycles(hand(["LINEAR dst=4 src=0 k=16 n=8\nLOAD vaddr=200 n=8 +hbm addr=64\nHALT"]), engines="rtl")
    ddr = cycles(hand(["LINEAR dst=4 src=0 k=16 n=8\nLOAD vaddr=200 n=8\nHALT"]), engines="rtl")
    assert hbm == fin(cost["LOADH"], lin) + r.fence and ddr == lin - r.wake + r.fence


def test_war_waits_for_the_reader():
    # the LOAD overwrites entry 0 that the long LINEAR still reads: it must wait for the LINEAR's operands
    prog = hand(["LINEAR dst=4 src=0 k=64 n=64\nLOAD vaddr=0 n=8\nHALT"])
    m = PerfModel(prog, engines="pipelined")
    dev = m.step("decode", 0)[0]
    lin = isolated_cycles("LINEAR dst=4 src=0 k=64 n=64", m.cfg, engines="pipelined")
    assert dev.cycles > lin["total"] - lin["latency"] + 20     # LOAD started after the LINEAR's stream ended


def test_allgather_and_send_recv_on_two_devices(board):
    cfg = load_config("tiny")
    t = Timing(cfg, board)
    ag = "ALLGATHER vaddr=0 n=64 devices=2 gran=1\nHALT"
    two = hand([ag, ag])
    xfer = (2 - 1) * (math.ceil(2 * 32 / t.link_bpc) + t.hop) + 2
    assert t.gather_cycles(64, 2, 1) == xfer
    assert cycles(two) == xfer
    # device 1 is late (a long VPU op produces its chunk first): the gather waits for it on both devices
    late = hand([ag, "VADD dst=0 a=200 b=300 n=512\n" + ag])
    steps = PerfModel(late, engines="pipelined").step("decode", 0)
    ready = 64 + 11 + 2                                       # 64 chunks of 8, then add + VBUF latency
    assert steps[0].cycles == steps[1].cycles == ready + xfer
    assert steps[0].sync_wait == ready and steps[1].sync_wait == 0
    # ...while an independent VPU op does not delay it (the scoreboard lets them overlap)
    indep = PerfModel(hand([ag, "VADD dst=100 a=200 b=300 n=512\n" + ag]), engines="pipelined").step("decode", 0)
    assert indep[0].cycles == 1 + xfer and indep[1].cycles == ready
    p2p = hand(["SEND vaddr=0 n=64\nHALT", "RECV vaddr=0 n=64\nHALT"])
    occ = math.ceil(128 / t.link_bpc)
    assert PerfModel(p2p, engines="pipelined").step("decode", 0)[1].cycles == occ + t.hop + 1
    with pytest.raises(PerfError, match="deadlock"):
        PerfModel(hand(["RECV vaddr=0 n=64\nHALT", "RECV vaddr=0 n=64\nHALT"])).step("decode", 0)


@pytest.mark.parametrize("devices,overlap", [(1, 1), (4, 1), (4, 2)])
def test_shortcuts_are_exact(devices, overlap):
    """Device deduplication and layer periodicity give the plain simulation's figures exactly."""
    prog = shapes(dict(SMALL, n_layer=6, n_head=5, n_embd=320), "tiny", devices=devices, overlap=overlap)
    fast, slow = PerfModel(prog), PerfModel(prog, fast=False)
    for stream, pos in (("decode", 0), ("decode", 77), ("prefill", 200)):
        assert fast.step(stream, pos, memo=False) == slow.step(stream, pos, memo=False)


def test_serial_run_is_the_sum_of_its_instructions():
    """In serial issue an instruction starts only when the previous one retired: a run takes exactly the sum
    of its instructions' isolated costs (dynamic ones at their POS), more than the overlapped schedule of
    independent work."""
    prog = shapes(SMALL, "tiny")
    cfg = prog.config
    m = PerfModel(prog, serial_issue=True)
    for stream, pos in (("prefill", 0), ("decode", 37)):
        want = sum(isolated_cycles(ins, cfg, "u280", pos, serial_issue=True)["total"]
                   for ins in prog.devices[0].streams[stream])
        assert m.step_cycles(stream, pos) == want
        dev = m.step(stream, pos)[0]
        assert sum(dev.by_op) == want
    indep = hand(["LOAD vaddr=0 addr=0 n=64\nVADD dst=100 a=200 b=300 n=64\nLINEAR dst=400 src=500 k=16 n=8\nHALT"])
    s, o = PerfModel(indep, serial_issue=True).step_cycles("decode", 0), PerfModel(indep).step_cycles("decode", 0)
    assert s > o


@pytest.mark.parametrize("devices,overlap", [(1, 1), (4, 2)])
def test_serial_shortcuts_are_exact(devices, overlap):
    """Device deduplication, layer periodicity and the per-POS-class memo stay exact in serial issue (DMA costs
    there depend on the address's alignment, which the instruction signature carries)."""
    prog = shapes(dict(SMALL, n_layer=6, n_head=5, n_embd=320), "tiny", devices=devices, overlap=overlap)
    fast, slow = PerfModel(prog, serial_issue=True), PerfModel(prog, fast=False, serial_issue=True)
    for stream, pos in (("decode", 0), ("decode", 77), ("prefill", 200)):
        assert fast.step(stream, pos, memo=False) == slow.step(stream, pos, memo=False)
    r = fast.run(6, 20)
    assert r.phases["decode"].device_cycles == sum(fast.step_cycles("decode", p, memo=False) for p in range(5, 25))


def test_batched_linear_by_hand(board):
    """BATCH m + LINEAR: the weights stream once (same HBM bytes), each tile meets the m vectors (kt x max(m x nt,
    fp_add) MPU cycles), the pipeline latency is the LINEAR's; the scoreboard tracks every output vector."""
    add = board.value("core", "fp_add_cycles")
    one = cycles(hand(["LINEAR dst=40 src=0 k=16 n=8\nHALT"]))        # 111: kt = nt = 2, accumulation-bound
    for m in (1, 4, 8):
        prog = hand([f"BATCH m={m} src_stride=2 dst_stride=1\nLINEAR dst=40 src=0 k=16 n=8\nHALT"])
        dev = PerfModel(prog, engines="pipelined").step("decode", 0)[0]
        assert dev.cycles == one - 2 * max(2, add) + 2 * max(m * 2, add)
        assert dev.hbm_bytes == 4 * 64
    lin = "BATCH m=8 src_stride=2 dst_stride=1\nLINEAR dst=40 src=0 k=16 n=8\n"
    last = cycles(hand([lin + "VADD dst=100 a=47 b=47 n=8\nHALT"]))       # reads output 7 (entry 40 + 7)
    after = cycles(hand([lin + "VADD dst=100 a=48 b=48 n=8\nHALT"]))      # the entry after the outputs
    assert after == 121 and last == 121 + 1 + add + 2


def test_batched_allgather_by_hand(board):
    """BATCH m + ALLGATHER: one sync, m chunks per ring step, the hop latency once per step."""
    t = Timing(load_config("tiny"), board)
    ag = "BATCH m=3 src_stride=8 dst_stride=8\nALLGATHER vaddr=0 n=64 devices=2 gran=1\nHALT"
    steps = PerfModel(hand([ag, ag]), engines="pipelined").step("decode", 0)
    assert steps[0].cycles == t.gather_cycles(64, 2, 1, 3) == math.ceil(2 * 3 * 32 / t.link_bpc) + t.hop + 2
    assert steps[0].cycles < 3 * t.gather_cycles(64, 2, 1)
    assert steps[0].link_bytes == 3 * 64




@pytest.mark.parametrize("count", [1, 2, 3])
def test_batched_run_serial_issue_by_hand(count):
    """Serial issue (the in-order RTL core), instruction by instruction: CHUNK and a taken SLOT = issue + one
    DDR read (+ `BATCH_READ_CYCLES`; CHUNK behind the fetcher's first prefetch); a skipping SLOT = issue + its skip (the words dropped one per cycle); the
    BATCH word = issue; slot i's QK at POS + i; the batched LINEAR = COUNT unbatched LINEARs (one dispatch
    each); and the sections of the slots past COUNT skipped."""
    cfg = load_config("tiny")
    m = PerfModel(hand(["HALT"], batch=[BATCHED], cap=3), serial_issue=True)
    c, t = serial_costs(cfg), m.timing
    iso = lambda text, pos=0: isolated_cycles(text, cfg, "u280", pos, serial_issue=True)["total"]   # noqa: E731
    pos = 11                                                  # QK: POS + 1 = 12 is 3 column tiles, 13 is 4
    read = c.issue_cycles + t.ddr_lat + BATCH_READ_CYCLES
    want = (read * (1 + count) + FETCH_DEPTH - 1                                         # CHUNK, SLOTs taken
            + (c.issue_cycles + 5 - 2 * count if count < 3 else 0)                      # the SLOT that skips
            + sum(iso("QK dst=100 src=0 k=8 +dyn_n", pos + i) for i in range(count))
            + c.issue_cycles + count * iso("LINEAR dst=200 src=0 k=8 n=4")              # BATCH, LINEAR
            + iso("HALT"))
    assert m.step_cycles("prefill_batch", pos, count) == want


@pytest.mark.parametrize("devices,overlap,serial_issue", [(1, 1, False), (4, 2, False), (4, 2, True)])
def test_batched_shortcuts_are_exact(devices, overlap, serial_issue):
    """Device deduplication, layer periodicity and the memo (keyed by every token slot's POS class) give the
    plain simulation's figures for batched runs, full and partial chunks."""
    prog = shapes(dict(SMALL, n_layer=6, n_head=5, n_embd=320), "tiny", devices=devices, overlap=overlap,
                  prefill_batch=3)
    fast, slow = PerfModel(prog, serial_issue=serial_issue), PerfModel(prog, fast=False, serial_issue=serial_issue)
    for pos, count in ((0, 3), (13, 3), (77, 2), (200, 1)):
        assert fast.step("prefill_batch", pos, count, memo=False) == slow.step("prefill_batch", pos, count, memo=False)
    for pos, count in ((16, 3), (17, 3), (40, 2), (41, 2)):   # 17 and 41 hit the memo of 16 and 40 (g0 = 4)
        assert fast.step("prefill_batch", pos, count) == slow.step("prefill_batch", pos, count, memo=False)
    assert fast.simulated_steps == 2
