"""The performance model on compiled programs (dfx.perf.PerfModel, PerfReport): invariants (more bandwidth
never slows, decode grows with POS, breakdowns add up, the memo equals step by step), matrix-matrix prefill
(faster than token-serial prefill when the weight stream dominates, sub-linear in the chunk's tokens, decode
unchanged), quantized weights, and bad input."""
import dataclasses
import json

import pytest
from gpt2_fixtures import make_hf_gpt2
from perf_programs import SMALL, cycles, shapes

from dfx.compiler import compile_model
from dfx.config import PRESETS, load_config
from dfx.errors import DfxError, PerfError
from dfx.host.session import Session
from dfx.perf import MNEMONICS, PerfModel, Timing, load_board


def test_decode_grows_with_position_through_qk_sv():
    m = PerfModel(shapes(SMALL, "tiny"))
    c = [m.step_cycles("decode", p) for p in range(0, 250, 9)]
    assert all(b >= a for a, b in zip(c, c[1:]))
    assert c[-1] > c[0]
    by = lambda p: dict(zip(MNEMONICS, m.step("decode", p)[0].by_op))   # noqa: E731
    assert by(249)["SV"] + by(249)["QK"] > by(0)["SV"] + by(0)["QK"]


def test_memoised_run_equals_step_by_step():
    m = PerfModel(shapes(SMALL, "tiny", devices=2))
    fast = m.run(10, 25)
    slow = m.run(10, 25, memo=False)
    assert fast.total_cycles == slow.total_cycles
    assert fast.phases["decode"].by_op == slow.phases["decode"].by_op
    assert fast.phases["decode"].device_cycles == sum(m.step_cycles("decode", p, memo=False) for p in range(9, 34))
    assert fast.phases["prefill"].steps == 9 and fast.phases["decode"].steps == 25


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


def test_batched_prefill_beats_token_serial_when_weights_dominate(batched2):
    """With the weight stream the bottleneck (HBM at 5% efficiency), a chunk's cycles grow sub-linearly with
    its token count (the weights stream once per run) and batched prefill beats token-serial prefill: on the
    weight-stationary units (`engines="pipelined"`). The RTL's engines (the core streams a batched LINEAR's
    weights once per vector, docs/rtl_core.md "Batched prefill") charge the matrix work of k tokens k times."""
    slow_hbm = load_board("u280", {"hbm.efficiency": 0.05})
    rtl = PerfModel(batched2, slow_hbm)
    mpu = [rtl.step("prefill_batch", 16, k)[0].busy[0] for k in (1, 4)]
    assert mpu[1] > 3.9 * mpu[0]
    m = PerfModel(batched2, slow_hbm, engines="pipelined")
    c = [m.step_cycles("prefill_batch", 16, k) for k in range(1, 9)]
    assert all(b > a for a, b in zip(c, c[1:]))
    per_token = [x / k for k, x in enumerate(c, 1)]
    assert all(b < a for a, b in zip(per_token, per_token[1:]))
    assert c[1] - c[0] < 0.2 * c[0]
    assert c[-1] < 0.3 * sum(m.step_cycles("prefill", 16 + i) for i in range(8))
    assert m.run(33, 2).ms("prefill") < 0.5 * m.run(33, 2, batched=False).ms("prefill")
    full = PerfModel(batched2, engines="pipelined")          # full bandwidth: the tiny MPU is compute-bound...
    assert full.run(33, 2).ms("prefill") < full.run(33, 2, batched=False).ms("prefill")   # ...still no slower


def test_batched_prefill_leaves_decode_unchanged(batched2):
    plain = PerfModel(shapes(SMALL, "tiny", devices=2), engines="pipelined")
    batched = PerfModel(batched2, engines="pipelined")
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


def test_sim_backend_counters_charge_batched_prefill():
    """`dfx run --backend sim --stats`: the emulated kernel's cycle counters after a batched prefill run are
    the model's figures for that run's token count."""
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
        Timing(cfg, load_board("u280"))
    assert issubclass(PerfError, DfxError)


def _region_bytes(program, device=0):
    return sum(r.bytes for r in program.manifest.quantization.regions[device].values())


@pytest.mark.parametrize("fmt", ["int8-oc", "int4-oc-g128", "int4-ic-g64", "fp8e4m3", "bcq3-oc-g128"])
def test_quantized_decode_streams_exactly_its_regions(fmt):
    """A decode step reads every weight region once: the HBM bytes of a quantized program drop by exactly the
    difference of the region sizes (descriptor + codes + scale blocks) against FP16."""
    cfg = {"n_layer": 2, "n_embd": 256, "n_head": 4, "vocab_size": 512, "n_positions": 64, "layer_norm_epsilon": 1e-5}
    base = compile_model(cfg, "dfx", weights="fp16")
    q = compile_model(cfg, "dfx", weights=fmt)
    rb, rq = PerfModel(base, "u280").run(4, 4), PerfModel(q, "u280").run(4, 4)
    saved = _region_bytes(base) - _region_bytes(q)
    assert saved > 0
    assert rb.decode_bytes_per_token - rq.decode_bytes_per_token == pytest.approx(saved, rel=1e-9)


def test_quantized_matrix_without_region_is_refused():
    cfg = {"n_layer": 1, "n_embd": 64, "n_head": 2, "vocab_size": 64, "n_positions": 16, "layer_norm_epsilon": 1e-5}
    p = compile_model(cfg, "tiny", weights="int4-oc-g64")
    p.manifest = dataclasses.replace(p.manifest, quantization=dataclasses.replace(p.manifest.quantization,
                                                                                 regions=({},)))
    with pytest.raises(PerfError, match="no region in the manifest"):
        PerfModel(p, "u280")


def test_narrow_weights_speed_up_a_memory_bound_mpu():
    """With the MPU wider than the HBM ports can feed in FP16, INT4 weights make decode faster."""
    wide = PRESETS["dfx"].replace(name="l32-narrow-hbm", l=32, hbm_width=512)
    cfg = {"n_layer": 2, "n_embd": 1024, "n_head": 16, "vocab_size": 512, "n_positions": 64,
           "layer_norm_epsilon": 1e-5}
    f16 = PerfModel(compile_model(cfg, wide, weights="fp16"), "u280").run(4, 8).decode_ms_per_token
    i4 = PerfModel(compile_model(cfg, wide, weights="int4-oc-g128"), "u280").run(4, 8).decode_ms_per_token
    assert i4 < 0.8 * f16


def test_tile_scaled_core_moves_the_scale_multiply_after_the_tree():
    """A tile-scaled core (AccelConfig.tile_scale) reads the same INT4 bytes; its matrix pipeline holds one binary32
    multiply after the tree and the code register where the dequantising core has the dequantiser's multiply and
    rounding in front of the multipliers, and its FP16 matrices pass that multiply too (engines pipelined)."""
    from dfx import isa
    from dfx.formats import WFMT_CODES
    from dfx.perf.timing import Context
    cfg = {"n_layer": 1, "n_embd": 256, "n_head": 4, "vocab_size": 512, "n_positions": 64, "layer_norm_epsilon": 1e-5}
    ts = PRESETS["dfx"].replace(tile_scale=True)
    rp, rs = (PerfModel(compile_model(cfg, c, weights="int4-oc-g128"), "u280").run(4, 4) for c in (PRESETS["dfx"], ts))
    assert rp.decode_bytes_per_token == rs.decode_bytes_per_token
    board = load_board("u280")
    plain, scaled = (Timing(c, board, engines="pipelined") for c in (PRESETS["dfx"], ts))
    op = isa.BY_MNEMONIC["LINEAR"]
    f = {fl.name: 0 for fl in op.fmt.fields} | {"k": 256, "n": 256}
    q = f | {"wfmt": WFMT_CODES[("int", 4)]}
    ctx = Context(wbytes=40_000)
    assert scaled.cost(op, f, 1).latency - plain.cost(op, f, 1).latency == plain.mul32
    assert (scaled.cost(op, q, 1, ctx).latency - plain.cost(op, q, 1, ctx).latency
            == (1 + plain.mul32) - (plain.mul32 + plain.rnd))


def test_rtl_cycle_counts_of_a_config_no_core_is_built_for_are_one_error():
    """The RTL's cycle counts need the core's VPU (vpu_width == d): a config with a narrower VPU is a PerfError
    (one line), not the VPU constructor's ValueError."""
    from dfx.config import PRESETS
    from dfx.errors import PerfError
    from dfx.perf.timing import serial_costs
    with pytest.raises(PerfError, match="no RTL cycle counts"):
        serial_costs(PRESETS["tiny"].replace(d=16))
