"""The cycle-level performance model (dfx.sim.perf): hand-computed cycle counts, the ISA's dependency rules,
and invariants on compiled programs (more bandwidth never slows, decode grows with POS, the exact
shortcuts equal the plain simulation); matrix-matrix prefill (BATCH, CHUNK, SLOT: faster than token-serial
prefill when the weight stream dominates, sub-linear in the chunk's tokens, decode unchanged)."""
import json
import math
from unittest import mock

import pytest
from click.testing import CliRunner

from dfx import isa
from dfx.config import load_config
from dfx.errors import ConfigError, DfxError
from dfx.program import DeviceImage, Program, save_program
from dfx.sim import perf
from dfx.sim.perf import PerfError, PerfModel, compare_rtl, isolated_cycles
from dfx.sim.perf_board import available_boards, load_board
from dfx.sim.perf_cli import perf as perf_cmd

SMALL = dict(vocab_size=500, n_positions=256, n_embd=256, n_layer=3, n_head=4, layer_norm_epsilon=1e-5)


def shapes(model: dict, config="tiny", devices=1, overlap=1, max_seq=None, prefill_batch=None) -> Program:
    """A shapes-only program for arbitrary GPT-2 hyper-parameters (compile_model takes named sizes)."""
    import dfx.compiler.compile as cc
    from dfx.compiler.capture import capture_state
    with mock.patch.object(cc, "capture", lambda src: (capture_state(model, None), None)):
        return cc.compile_model("shapes", config, devices=devices, overlap=overlap, max_seq=max_seq,
                                prefill_batch=prefill_batch)


def hand(streams: list[str], config="tiny", n_layer=1, max_seq=64, batch: list[str] | None = None,
         cap: int = 0) -> Program:
    """A program from assembly text, one text per device (the same text for prefill and decode); `batch`: the
    texts of a prefill_batch stream taking up to `cap` tokens per run."""
    cfg = load_config(config)
    devs = [DeviceImage({"prefill": isa.assemble(t), "decode": isa.assemble(t)}, bytearray(), bytearray())
            for t in streams]
    n = len(devs)
    manifest = {"isa_version": isa.ISA_VERSION, "config": cfg.to_dict(), "config_hash": cfg.config_hash,
                "devices": n, "ring": list(range(n)), "model": {"n_layer": n_layer, "vocab_size": 64},
                "max_seq": max_seq, "weights": False, "memory": [], "streams": ["prefill", "decode"],
                "symbols": {"logits_pieces": [[[0, 64 // n]] for _ in range(n)]}}
    if batch:
        for dev, text in zip(devs, batch):
            dev.streams["prefill_batch"] = isa.assemble(text)
        manifest["streams"].append("prefill_batch")
        manifest["symbols"]["prefill_batch"] = {"stream": "prefill_batch", "max_tokens": cap, "tokens": 0}
    return Program(manifest, devs)


def cycles(prog, stream="decode", pos=0, board="u280"):
    return PerfModel(prog, board).step_cycles(stream, pos)


@pytest.fixture(scope="module")
def board():
    return load_board("u280")


@pytest.fixture(scope="module")
def small4():
    return shapes(SMALL, "tiny", devices=4)


# ------------------------------------------------------------------------------------------------ board data
def test_board_every_constant_has_a_source(board):
    assert "u280" in available_boards()
    consts = board.describe()
    assert len(consts) > 40
    for name, value, unit, src in consts:
        assert src.strip(), name
    assert board.value("resources", "DSP") == 9024
    assert board.hbm_peak_gbytes_per_s == pytest.approx(460.0)
    # QSFP28: 4 x 25.78125 Gb/s, 64b/66b: 100 Gb/s before Aurora framing
    assert board.link_gbytes_per_s == pytest.approx(12.5 * 0.99, rel=1e-4)


@pytest.mark.parametrize("edit,msg", [
    (lambda d: d["hbm"]["efficiency"].update(value=1.5), "hbm.efficiency must be in (0, 1]"),
    (lambda d: d["core"]["fp_add_cycles"].pop("source"), "core.fp_add_cycles has no source"),
    (lambda d: d["link"].pop("lanes"), "link.lanes is missing"),
    (lambda d: d.pop("pcie"), "section 'pcie' is missing"),
    (lambda d: d["resources"]["DSP"].update(value="many"), "resources.DSP must be a number"),
])
def test_invalid_board_files(tmp_path, board, edit, msg):
    data = json.loads(json.dumps(board.data))
    edit(data)
    p = tmp_path / "board.json"
    p.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load_board(p)
    with pytest.raises(ConfigError, match="is not valid JSON"):
        (tmp_path / "bad.json").write_text("{")
        load_board(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="neither a known board"):
        load_board("u999")


# ------------------------------------------------------------------------------------------------ hand-computed
def test_matrix_instruction_by_hand(board):
    # tiny: d=8, l=4 -> a tile is 64 B; 4 HBM channels x 128 bit = 64 B per cycle at the core's ports
    prog = hand(["LINEAR dst=4 src=0 k=16 n=8\nHALT"])
    v = board.value
    hbm_lat = math.ceil(v("hbm", "read_latency_ns") * 0.2)                  # 200 MHz
    assert 4 * v("hbm", "channel_peak_gbps") * 1e9 * v("hbm", "efficiency") / 200e6 > 64   # port-bound
    tiles = 2 * 2                                                            # ceil(16/8) x ceil(8/4)
    mem = tiles * 64 / 64
    add, mul = v("core", "fp_add_cycles"), v("core", "fp16_mul_cycles")
    comp = 2 * max(2, add)                      # 2 column blocks < add latency: in-order accumulation waits
    occ = max(mem, comp)
    lat = v("core", "vbuf_cycles") * 2 + mul + 3 * add + add + v("core", "fp_round_cycles")
    assert cycles(prog) == hbm_lat + occ + lat == 105
    assert isolated_cycles("LINEAR dst=4 src=0 k=16 n=8", load_config("tiny"))["total"] == 105


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


def test_war_waits_for_the_reader():
    # the LOAD overwrites entry 0 that the long LINEAR still reads: it must wait for the LINEAR's operands
    prog = hand(["LINEAR dst=4 src=0 k=64 n=64\nLOAD vaddr=0 n=8\nHALT"])
    m = PerfModel(prog)
    dev = m.step("decode", 0)[0]
    lin = isolated_cycles("LINEAR dst=4 src=0 k=64 n=64", m.cfg)
    assert dev.cycles > lin["total"] - lin["latency"] + 20     # LOAD started after the LINEAR's stream ended


def test_allgather_and_send_recv_on_two_devices(board):
    cfg = load_config("tiny")
    t = perf.Timing(cfg, board)
    ag = "ALLGATHER vaddr=0 n=64 devices=2 gran=1\nHALT"
    two = hand([ag, ag])
    xfer = (2 - 1) * (math.ceil(2 * 32 / t.link_bpc) + t.hop) + 2
    assert t.gather_cycles(64, 2, 1) == xfer
    assert cycles(two) == xfer
    # device 1 is late (a long VPU op produces its chunk first): the gather waits for it on both devices
    late = hand([ag, "VADD dst=0 a=200 b=300 n=512\n" + ag])
    steps = PerfModel(late).step("decode", 0)
    ready = 64 + 11 + 2                                       # 64 chunks of 8, then add + VBUF latency
    assert steps[0].cycles == steps[1].cycles == ready + xfer
    assert steps[0].sync_wait == ready and steps[1].sync_wait == 0
    # ...while an independent VPU op does not delay it (the scoreboard lets them overlap)
    indep = PerfModel(hand([ag, "VADD dst=100 a=200 b=300 n=512\n" + ag])).step("decode", 0)
    assert indep[0].cycles == 1 + xfer and indep[1].cycles == ready
    p2p = hand(["SEND vaddr=0 n=64\nHALT", "RECV vaddr=0 n=64\nHALT"])
    occ = math.ceil(128 / t.link_bpc)
    assert PerfModel(p2p).step("decode", 0)[1].cycles == occ + t.hop + 1
    with pytest.raises(PerfError, match="deadlock"):
        PerfModel(hand(["RECV vaddr=0 n=64\nHALT", "RECV vaddr=0 n=64\nHALT"])).step("decode", 0)


# ------------------------------------------------------------------------------------------------ compiled programs
def test_decode_grows_with_position_through_qk_sv():
    m = PerfModel(shapes(SMALL, "tiny"))
    c = [m.step_cycles("decode", p) for p in range(0, 250, 9)]
    assert all(b >= a for a, b in zip(c, c[1:]))
    assert c[-1] > c[0]
    by = lambda p: dict(zip(perf.MNEMONICS, m.step("decode", p)[0].by_op))   # noqa: E731
    assert by(249)["SV"] + by(249)["QK"] > by(0)["SV"] + by(0)["QK"]


def test_memoised_run_equals_step_by_step():
    m = PerfModel(shapes(SMALL, "tiny", devices=2))
    fast = m.run(10, 25)
    slow = m.run(10, 25, memo=False)
    assert fast.total_cycles == slow.total_cycles
    assert fast.phases["decode"].by_op == slow.phases["decode"].by_op
    assert fast.phases["decode"].device_cycles == sum(m.step_cycles("decode", p, memo=False) for p in range(9, 34))
    assert fast.phases["prefill"].steps == 9 and fast.phases["decode"].steps == 25


@pytest.mark.parametrize("devices,overlap", [(1, 1), (4, 1), (4, 2)])
def test_shortcuts_are_exact(devices, overlap):
    """Device deduplication and layer periodicity give the plain simulation's figures exactly."""
    prog = shapes(dict(SMALL, n_layer=6, n_head=5, n_embd=320), "tiny", devices=devices, overlap=overlap)
    fast, slow = PerfModel(prog), PerfModel(prog, fast=False)
    for stream, pos in (("decode", 0), ("decode", 77), ("prefill", 200)):
        assert fast.step(stream, pos, memo=False) == slow.step(stream, pos, memo=False)


def test_breakdowns_add_up(small4):
    r = PerfModel(small4).run(8, 8)
    for ph in r.phases.values():
        assert sum(ph.by_op.values()) == ph.device_cycles == sum(ph.by_bin)
    names = list(r.by_layer())
    assert names[0] == "embed" and names[-1] == "final" and len(names) == SMALL["n_layer"] + 2
    assert all(v > 0 for v in r.by_layer().values())
    u = r.utilisation()
    assert 0 < u["mpu"] <= 1 and 0 < u["router"] <= 1
    assert r.hbm_gbps() > 0 and 0 < r.roofline_pct("port") <= 100
    d = json.loads(json.dumps(r.to_dict()))
    assert d["phases"]["decode"]["steps"] == 8 and d["devices"] == 4


def test_more_hbm_bandwidth_never_slows():
    prog = shapes(SMALL, "tiny")
    times = [cycles(prog, pos=30, board=load_board("u280", {"hbm.efficiency": e})) for e in (0.05, 0.1, 0.2, 0.5, 1.0)]
    assert all(b <= a for a, b in zip(times, times[1:]))
    assert times[0] > times[-1]


def test_doubling_config_hbm_width_speeds_up_mpu_bound_work():
    base = load_config("tiny").replace(name="narrow", l=8, hbm_channels=4, hbm_width=128)   # 128 B tiles, 64 B/cycle
    wide = base.replace(name="wide", hbm_width=256)
    rn = PerfModel(shapes(SMALL, base)).run(4, 4)
    rw = PerfModel(shapes(SMALL, wide)).run(4, 4)
    assert rw.by_op()["LINEAR"] < 0.7 * rn.by_op()["LINEAR"]
    assert rw.total_cycles < rn.total_cycles


def test_overlap_beats_blocking_when_the_ring_dominates():
    slow_link = load_board("u280", {"link.lane_rate_gbps": 0.5})
    model = dict(SMALL, n_embd=512, n_head=8)
    block = PerfModel(shapes(model, "tiny", devices=4, overlap=1), slow_link).step_cycles("decode", 10)
    over = PerfModel(shapes(model, "tiny", devices=4, overlap=2), slow_link).step_cycles("decode", 10)
    assert over < block


def test_faster_link_never_slows(small4):
    t = [cycles(small4, pos=5, board=load_board("u280", {"link.lane_rate_gbps": r})) for r in (1.0, 5.0, 25.78125)]
    assert t[0] > t[1] >= t[2]


# ------------------------------------------------------------------------------------------ serial issue (RTL core)
def serial(instr: str, cfg, board="u280") -> int:
    return isolated_cycles(instr, cfg, board, serial_issue=True)["total"]


def test_serial_costs_are_the_rtls():
    """Serial issue charges what hw/ defines: the controller's issue cycles, each engine's setup and feed, the
    MPU's and the VPU's own pipeline latencies (one for every VPU operation), a beat per tile or chunk."""
    from dfx.hw.core import Core
    from dfx.hw.mpu import MPU
    from dfx.hw.vpu import VPU
    cfg = load_config("tiny")
    c = perf.serial_costs(cfg)
    mpu, vpu = MPU(cfg), VPU(cfg)
    mpu._MustUse__silence = vpu._MustUse__silence = True
    assert (c.issue_cycles, c.mpu_latency, c.vpu_latency) == (Core.ISSUE_CYCLES, mpu.latency, vpu.latency)
    vec = c.issue_cycles + c.setup["vpu"] + c.feed["vpu"] + c.vpu_latency
    assert serial("VADD dst=10 a=0 b=2 n=16", cfg) == serial("VEXP dst=10 a=0 n=16", cfg) == vec + 2
    assert serial("VSUM a=0 n=17 sd=1", cfg) == vec + 3 and serial("SRSQRT sd=1 sa=2", cfg) == vec + 1
    hbm_lat = perf.Timing(cfg, load_board("u280")).hbm_read_lat
    assert serial("LINEAR dst=4 src=0 k=16 n=8", cfg) == (c.issue_cycles + c.setup["mpu"] + hbm_lat + c.feed["mpu"]
                                                          + c.mpu_latency + 2 * 2)
    assert serial("NOP", cfg) == serial("HALT", cfg) == c.issue_cycles


def test_serial_dma_counts_pieces():
    """DMA pieces as hw/dma.py cuts them (tiny: d = 8, DDR beat 16 B = one VBUF entry, HBM channel beat 16 B)."""
    cfg = load_config("tiny")
    t = perf.Timing(cfg, load_board("u280"), serial_issue=True)
    f = lambda text: isa.assemble_line(text).fields()                       # noqa: E731
    assert t.dma_pieces("LOAD", f("LOAD vaddr=0 addr=64 n=16")) == (1, 2)     # aligned: one entry per beat
    assert t.dma_pieces("LOAD", f("LOAD vaddr=0 addr=66 n=16")) == (1, 4)     # 7 + 1 + 7 + 1 elements
    assert t.dma_pieces("STORE_K", f("STORE_K vaddr=0 addr=1 n=12 +hbm")) == (2, 2)   # a row per tile
    assert t.dma_pieces("STORE_VT", f("STORE_VT vaddr=0 addr=1 n=5 +hbm")) == (5, 5)  # an element per run
    c, ddr_lat = t.rtl, t.ddr_lat
    load = serial("LOAD vaddr=0 addr=66 n=16", cfg)
    store = serial("STORE vaddr=0 addr=66 n=16", cfg)
    assert load == c.issue_cycles + c.setup["dma"] + c.dma_run + 4 * c.load_piece + ddr_lat + c.load_drain
    assert store == c.issue_cycles + c.setup["dma"] + c.dma_run + 4 * c.store_piece + ddr_lat + c.store_drain


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


# ------------------------------------------------------------------------------------ matrix-matrix prefill
def test_batched_linear_by_hand(board):
    """BATCH m + LINEAR: the weights stream once (same HBM bytes), each tile meets the m vectors (kt x max(m x nt,
    fp_add) MPU cycles), the pipeline latency is the LINEAR's; the scoreboard tracks every output vector."""
    add = board.value("core", "fp_add_cycles")
    one = cycles(hand(["LINEAR dst=40 src=0 k=16 n=8\nHALT"]))        # 105: kt = nt = 2, accumulation-bound
    for m in (1, 4, 8):
        prog = hand([f"BATCH m={m} src_stride=2 dst_stride=1\nLINEAR dst=40 src=0 k=16 n=8\nHALT"])
        dev = PerfModel(prog).step("decode", 0)[0]
        assert dev.cycles == one - 2 * max(2, add) + 2 * max(m * 2, add)
        assert dev.hbm_bytes == 4 * 64
    lin = "BATCH m=8 src_stride=2 dst_stride=1\nLINEAR dst=40 src=0 k=16 n=8\n"
    last = cycles(hand([lin + "VADD dst=100 a=47 b=47 n=8\nHALT"]))       # reads output 7 (entry 40 + 7)
    after = cycles(hand([lin + "VADD dst=100 a=48 b=48 n=8\nHALT"]))      # the entry after the outputs
    assert after == 115 and last == 115 + 1 + add + 2


def test_batched_allgather_by_hand(board):
    """BATCH m + ALLGATHER: one sync, m chunks per ring step, the hop latency once per step."""
    t = perf.Timing(load_config("tiny"), board)
    ag = "BATCH m=3 src_stride=8 dst_stride=8\nALLGATHER vaddr=0 n=64 devices=2 gran=1\nHALT"
    steps = PerfModel(hand([ag, ag])).step("decode", 0)
    assert steps[0].cycles == t.gather_cycles(64, 2, 1, 3) == math.ceil(2 * 3 * 32 / t.link_bpc) + t.hop + 2
    assert steps[0].cycles < 3 * t.gather_cycles(64, 2, 1)
    assert steps[0].link_bytes == 3 * 64


BATCHED = """
    CHUNK addr=0 cap=3
    SLOT i=0 skip=5
    QK dst=100 src=0 k=8 +dyn_n
    SLOT i=1 skip=3
    QK dst=100 src=0 k=8 +dyn_n
    SLOT i=2 skip=1
    QK dst=100 src=0 k=8 +dyn_n
    BATCH src_stride=1 dst_stride=1 +dyn_m
    LINEAR dst=200 src=0 k=8 n=4
    HALT"""


@pytest.mark.parametrize("count", [1, 2, 3])
def test_batched_run_serial_issue_by_hand(count):
    """Serial issue, instruction by instruction: CHUNK = issue + the token table's DDR read; a SLOT (taken or
    skipping) and the BATCH word = issue; slot i's QK at POS + i; the batched LINEAR one cycle per tile and
    vector; and the sections of the slots past COUNT skipped."""
    cfg = load_config("tiny")
    m = PerfModel(hand(["HALT"], batch=[BATCHED], cap=3), serial_issue=True)
    c, t = perf.serial_costs(cfg), m.timing
    iso = lambda text, pos=0: isolated_cycles(text, cfg, "u280", pos, serial_issue=True)["total"]   # noqa: E731
    pos = 11                                                  # QK: POS + 1 = 12 is 3 column tiles, 13 is 4
    want = (c.issue_cycles + t.ddr_lat + math.ceil(16 / t.ddr_bpc)                      # CHUNK
            + c.issue_cycles * (count + (count < 3))                                      # SLOTs run
            + sum(iso("QK dst=100 src=0 k=8 +dyn_n", pos + i) for i in range(count))
            + c.issue_cycles + iso("LINEAR dst=200 src=0 k=8 n=4") + count - 1          # BATCH, LINEAR
            + iso("HALT"))
    assert m.step_cycles("prefill_batch", pos, count) == want


@pytest.fixture(scope="module")
def batched2():
    return shapes(SMALL, "tiny", devices=2, prefill_batch=8)


def test_batched_prefill_beats_token_serial_when_weights_dominate(batched2):
    """With the weight stream the bottleneck (HBM at 5% efficiency), a chunk's cycles grow sub-linearly with
    its token count (the weights stream once per run) and batched prefill beats token-serial prefill."""
    m = PerfModel(batched2, load_board("u280", {"hbm.efficiency": 0.05}))
    c = [m.step_cycles("prefill_batch", 16, k) for k in range(1, 9)]
    assert all(b > a for a, b in zip(c, c[1:]))
    per_token = [x / k for k, x in enumerate(c, 1)]
    assert all(b < a for a, b in zip(per_token, per_token[1:]))
    assert c[1] - c[0] < 0.2 * c[0]
    assert c[-1] < 0.3 * sum(m.step_cycles("prefill", 16 + i) for i in range(8))
    assert m.run(33, 2).ms("prefill") < 0.5 * m.run(33, 2, batched=False).ms("prefill")
    full = PerfModel(batched2)                                # full bandwidth: the tiny MPU is compute-bound...
    assert full.run(33, 2).ms("prefill") < full.run(33, 2, batched=False).ms("prefill")   # ...still no slower


def test_batched_prefill_leaves_decode_unchanged(batched2):
    plain, batched = PerfModel(shapes(SMALL, "tiny", devices=2)), PerfModel(batched2)
    for pos in (0, 9, 100):
        assert plain.step("decode", pos) == batched.step("decode", pos)
    a, b = plain.run(20, 6), batched.run(20, 6)
    assert a.phases["decode"] == b.phases["decode"] and a.roofline_pct() == b.roofline_pct()
    assert b.ms("prefill") < a.ms("prefill")


@pytest.mark.parametrize("T", [1, 2, 8, 9, 17, 20])
def test_run_counts_batched_steps(batched2, T):
    """ceil((T-1)/8) batched runs, the last with the rest of the prompt, then the decode steps."""
    m = PerfModel(batched2)
    r = m.run(T, 3)
    chunks = [(p, min(8, T - 1 - p)) for p in range(0, T - 1, 8)]
    pre = r.phases["prefill"]
    assert (pre.steps, pre.tokens, r.phases["decode"].steps) == (len(chunks), T - 1, 3)
    assert pre.device_cycles == sum(m.step_cycles("prefill_batch", p, k, memo=False) for p, k in chunks)
    slow = m.run(T, 3, memo=False)
    assert slow.total_cycles == r.total_cycles and slow.phases["prefill"].by_op == pre.by_op
    assert r.prefill_batch == (8 if T > 1 else None)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["phases"]["prefill"]["tokens"] == T - 1 and d["prefill_batch"] == r.prefill_batch
    if T > 1:
        assert r.prefill_ms_per_token == pytest.approx(r.ms("prefill") / (T - 1))
        assert sum(pre.by_op.values()) == pre.device_cycles == sum(pre.by_bin)
    serial = m.run(T, 3, batched=False).phases["prefill"]
    assert (serial.steps, serial.tokens) == (T - 1, T - 1)


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
    assert len(fast._memo) == 2


def test_batched_errors(batched2):
    m = PerfModel(batched2)
    for args, msg in ((("prefill_batch", 0), r"batched prefill: give its token count, an integer in 1\.\.8, not None"),
                      (("prefill_batch", 0, 9), "not 9"),
                      (("prefill_batch", 250, 8), "run past the program's context"),
                      (("decode", 0, 2), "runs one token per step, not count 2")):
        with pytest.raises(PerfError, match=msg):
            m.step(*args)
    with pytest.raises(PerfError, match="no batched prefill stream; compile it with prefill_batch"):
        PerfModel(shapes(SMALL, "tiny")).run(4, 4, batched=True)
    with pytest.raises(PerfError, match="BATCH must be followed by LINEAR or ALLGATHER, not VADD"):
        PerfModel(hand(["BATCH m=2 src_stride=1 dst_stride=1\nVADD dst=0 a=0 b=0 n=8\nHALT"]))
    with pytest.raises(PerfError, match="SLOT before CHUNK"):
        PerfModel(hand(["HALT"], batch=["SLOT i=0 skip=0\nCHUNK addr=0 cap=2\nHALT"], cap=2)).step(
            "prefill_batch", 0, 1)


def test_sim_backend_counters_charge_batched_prefill():
    """`dfx run --backend sim --stats`: the emulated kernel's cycle counters after a batched prefill run are
    the model's figures for that run's token count."""
    from gpt2_fixtures import make_hf_gpt2
    from dfx.compiler import compile_model
    from dfx.host.session import Session
    small = make_hf_gpt2(3, n_embd=36, n_head=3, n_layer=2, n_positions=24, vocab_size=70)
    prog = compile_model(small, "tiny", devices=2, prefill_batch=4)
    s = Session(prog, "sim")
    s.feed(list(range(1, 11)))
    assert [(r.stream, r.pos, r.count) for r in s.steps] == [("prefill_batch", 0, 4), ("prefill_batch", 4, 4),
                                                               ("prefill_batch", 8, 1), ("decode", 9, 1)]
    m = PerfModel(prog, check_fit=False)
    for r in s.steps:
        want = m.step(r.stream, r.pos, r.count if r.stream == "prefill_batch" else None)
        assert r.cycles == [d.cycles for d in want] and min(r.cycles) > 0


# ------------------------------------------------------------------------------------------------ bad input
def test_program_that_does_not_fit_the_board(small4):
    tiny_hbm = load_board("u280", {"hbm.capacity_gb": 1e-6})
    with pytest.raises(PerfError, match=r"device 0 needs .* GiB of HBM .* board u280 has"):
        PerfModel(small4, tiny_hbm)


def test_bad_runs(small4):
    m = PerfModel(small4)
    with pytest.raises(PerfError, match="context"):
        m.run(200, 100)
    with pytest.raises(PerfError, match="output_tokens must be"):
        m.run(4, 0)
    cfg = load_config("tiny").replace(hbm_channels=64)
    with pytest.raises(PerfError, match="64 HBM channels"):
        perf.Timing(cfg, load_board("u280"))
    assert issubclass(PerfError, DfxError)


# ------------------------------------------------------------------------------------------------ calibration, CLI
def test_calibration_hook():
    rows = compare_rtl([{"asm": "LINEAR dst=4 src=0 k=16 n=8", "cycles": 126},
                        {"asm": "VADD dst=1 a=2 b=3 n=8", "cycles": 14}], load_config("tiny"))
    assert rows[0]["model"] == 105 and rows[0]["ratio"] == pytest.approx(1.2) and rows[0]["class"] == "matrix"
    assert rows[1]["model"] == 1 + 11 + 2
    with pytest.raises(PerfError, match="record 0"):
        compare_rtl([{"asm": "VADD"}], load_config("tiny"))
    with pytest.raises(PerfError, match="record 0: unknown mnemonic"):
        compare_rtl([{"asm": "FOO x=1", "cycles": 3}], load_config("tiny"))


def test_cli(tmp_path):
    path = save_program(shapes(SMALL, "tiny", devices=4, max_seq=48), tmp_path / "small.dfx")
    runner = CliRunner()
    res = runner.invoke(perf_cmd, [str(path), "--input-tokens", "8", "--output-tokens", "4", "--table",
                                   "--json", str(tmp_path / "r.json"), "--plots", str(tmp_path / "plots")])
    assert res.exit_code == 0, res.output
    assert "decode: 4 steps" in res.output and "| 32 | 16 |" in res.output
    assert "| 128 | 256 | - | needs 383 positions, the program has 48 |" in res.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["input_tokens"] == 8 and len(data["dfx_workloads"]) == 9
    assert {p.name for p in (tmp_path / "plots").iterdir()} >= {"breakdown.png", "layers.png", "roofline.png"}
    for args, msg in ([["no-such-model"], "neither a checkpoint directory"],
                      [[str(path), "--devices", "2"], "compiled for 4 device(s)"],
                      [[str(path), "--set", "hbm.efficiency=2"], "hbm.efficiency must be in"],
                      [[str(path), "--output-tokens", "0"], "--output-tokens must be"]):
        res = runner.invoke(perf_cmd, args)
        assert res.exit_code == 2 and msg in res.output, (args, res.output)
    calib = tmp_path / "rtl.json"
    calib.write_text(json.dumps([{"asm": "VADD dst=1 a=2 b=3 n=8", "cycles": 14}]))
    res = runner.invoke(perf_cmd, ["--rtl-cycles", str(calib), "--config", "tiny"])
    assert res.exit_code == 0 and "1.00" in res.output


def test_cli_overlap_auto_and_prefill_batch(tmp_path):
    runner = CliRunner()
    for args, msg in ((["124M", "--overlap", "fast"], "--overlap fast: expected auto or a segment count >= 1"),
                      (["124M", "--overlap", "0"], "--overlap 0: expected auto or a segment count >= 1"),
                      (["124M", "--prefill-batch", "0"], "--prefill-batch must be an integer >= 1"),
                      (["124M", "--prefill-batch", "x"], "--prefill-batch must be an integer >= 1")):
        res = runner.invoke(perf_cmd, args)
        assert res.exit_code == 2 and msg in res.output and res.output.count("\n") == 1, (args, res.output)
    path = save_program(shapes(SMALL, "tiny", devices=2, max_seq=48, prefill_batch=4), tmp_path / "b.dfx")
    res = runner.invoke(perf_cmd, [str(path), "--input-tokens", "10", "--output-tokens", "2", "--json",
                                   str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert "prefill: 3 steps (matrix-matrix, up to 4 tokens each)" in res.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["prefill_batch"] == 4 and data["phases"]["prefill"]["tokens"] == 9
    for args, msg in (([str(path), "--prefill-batch", "3"], "compiled with --prefill-batch 4, not --prefill-batch 3"),
                      ([str(path), "--overlap", "auto"], "compiled with overlap 1, not --overlap auto")):
        res = runner.invoke(perf_cmd, args)
        assert res.exit_code == 2 and msg in res.output, (args, res.output)
    res = runner.invoke(perf_cmd, ["124M", "--devices", "2", "--overlap", "auto", "--prefill-batch", "4",
                                   "--input-tokens", "9", "--output-tokens", "2"])      # the compile path
    assert res.exit_code == 0 and "prefill: 2 steps (matrix-matrix, up to 4 tokens each)" in res.output, res.output
    res = runner.invoke(perf_cmd, ["124M", "--devices", "1", "--prefill-batch", "1000"])
    assert res.exit_code == 2 and "the largest chunk that fits is" in res.output and res.output.count("\n") == 1


# ------------------------------------------------------------------------------------------ quantized weights
def _region_bytes(program, device=0):
    return sum(r["bytes"] for r in program.manifest["quantization"]["regions"][device].values())


@pytest.mark.parametrize("fmt", ["int8-oc", "int4-oc-g128", "int4-ic-g64", "fp8e4m3", "bcq3-oc-g128"])
def test_quantized_decode_streams_exactly_its_regions(fmt):
    """A decode step reads every weight region once: the HBM bytes of a quantized program drop by exactly the
    difference of the region sizes (descriptor + codes + scale blocks) against FP16."""
    from dfx.compiler import compile_model
    cfg = {"n_layer": 2, "n_embd": 256, "n_head": 4, "vocab_size": 512, "n_positions": 64, "layer_norm_epsilon": 1e-5}
    base = compile_model(cfg, "dfx", weights="fp16")
    q = compile_model(cfg, "dfx", weights=fmt)
    rb, rq = PerfModel(base, "u280").run(4, 4), PerfModel(q, "u280").run(4, 4)
    saved = _region_bytes(base) - _region_bytes(q)
    assert saved > 0
    assert rb.decode_bytes_per_token - rq.decode_bytes_per_token == pytest.approx(saved, rel=1e-9)


def test_quantized_matrix_without_region_is_refused():
    from dfx.compiler import compile_model
    cfg = {"n_layer": 1, "n_embd": 64, "n_head": 2, "vocab_size": 64, "n_positions": 16, "layer_norm_epsilon": 1e-5}
    p = compile_model(cfg, "tiny", weights="int4-oc-g64")
    p.manifest["quantization"]["regions"] = [{}]
    with pytest.raises(PerfError, match="no region in the manifest"):
        PerfModel(p, "u280")


def test_narrow_weights_speed_up_a_memory_bound_mpu():
    """With the MPU wider than the HBM ports can feed in FP16, INT4 weights make decode faster."""
    from dfx.compiler import compile_model
    from dfx.config import PRESETS
    wide = PRESETS["dfx"].replace(name="l32-narrow-hbm", l=32, hbm_width=512)
    cfg = {"n_layer": 2, "n_embd": 1024, "n_head": 16, "vocab_size": 512, "n_positions": 64,
           "layer_norm_epsilon": 1e-5}
    f16 = PerfModel(compile_model(cfg, wide, weights="fp16"), "u280").run(4, 8).decode_ms_per_token
    i4 = PerfModel(compile_model(cfg, wide, weights="int4-oc-g128"), "u280").run(4, 8).decode_ms_per_token
    assert i4 < 0.8 * f16
