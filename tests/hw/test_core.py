"""The integrated core (hw/top.py) under cocotb: compiled GPT-2 programs end to end on the RTL, bit-exact to
the functional simulator and token-exact to the PyTorch golden model; the register map; bad input.

SIM=icarus (default) or SIM=verilator. On a logits mismatch the test re-runs with the write trace and names
the first instruction (PC, device) and buffer that differ (`dfx.verify.rtl_core.bisect`)."""
import sys
from pathlib import Path

import numpy as np
import pytest

from dfx import isa, regmap
from dfx.symbols import Kind, sym_name
from dfx.verify.rtl_core import RtlCore, bisect
from dfx.verify.toolchain import missing_simulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gpt2_fixtures import make_hf_gpt2  # noqa: E402

pytestmark = [pytest.mark.cocotb,
              pytest.mark.skipif(missing_simulator() is not None, reason=str(missing_simulator()))]

# Small enough for CI on Icarus: 32-wide embedding, 2 heads of 16, one layer, 64-token vocabulary.
TINY_GPT2 = dict(n_embd=32, n_head=2, n_layer=1, n_positions=16, vocab_size=64)
PROMPT = [5, 17, 42]
NEW_TOKENS = 3


@pytest.fixture(scope="module")
def model():
    return make_hf_gpt2(8, **TINY_GPT2)       # seed 8: the greedy continuation changes token


@pytest.fixture(scope="module")
def program(model):
    from dfx.compiler import compile_model
    return compile_model(model, "tiny")


@pytest.fixture(scope="module")
def core(program):
    return RtlCore(program)


def functional_run(program, steps):
    """Logits after each decode step on the functional simulator (a ring of devices if the program has
    several), joined from every device's slices as the host reads them."""
    from dfx.sim.ring import Ring
    ring = Ring(program)
    sym = program.symbols
    out = []
    for stream, token, pos in steps:
        if len(ring.devices) == 1:
            ring.devices[0].run(stream, token, pos)
        else:
            ring.run(stream, token, pos)
        if stream == "decode":
            y = np.empty(sym.vocab_size, np.float16)
            for dev, pieces in zip(ring.devices, sym.logits_pieces):
                for a, b in pieces:
                    y[a:b] = dev.ddr[sym.logits + 2 * a:sym.logits + 2 * b].view(np.float16)
            out.append(y)
    return out


def golden_greedy(model, prompt, n):
    import torch
    ids = torch.tensor([prompt])
    toks = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(ids).logits[0, -1]
            t = int(torch.argmax(logits))
            toks.append(t)
            ids = torch.cat([ids, torch.tensor([[t]])], dim=1)
    return toks


@pytest.fixture(scope="module")
def generated(core):
    return core.generate(PROMPT, NEW_TOKENS)


def test_generate_bitexact_and_golden(core, program, model, generated):
    """Prefill + greedy decode on the RTL: every decode step's logits bit-exact to the functional simulator,
    the tokens equal to the PyTorch golden model's; registers and counters sane."""
    res = generated
    assert res.identity == {"ID": regmap.DFX_MAGIC, "ISA_VERSION": isa.ISA_VERSION,
                            "CONFIG_HASH": regmap.config_hash_word(program.config)}
    for r in res.runs:
        assert r["status"] == regmap.STATUS_BITS["halted"], r
        assert r["cycles"] > 0 and r["busy"]["MPU"] > 0 and r["busy"]["DMA"] > 0
    steps = [(r["stream"], r["token"], r["pos"]) for r in res.runs]
    ref = functional_run(program, steps)
    got = [r["logits"] for r in res.runs if r["stream"] == "decode"]
    assert len(got) == len(ref) == NEW_TOKENS
    for i, (g, w) in enumerate(zip(got, ref)):
        if not np.array_equal(g.view(np.uint16), w.view(np.uint16)):
            traced = core.run_steps(steps, trace=True)
            where = bisect(program, steps, traced)
            pytest.fail(f"decode step {i}: RTL logits differ from the functional simulator "
                        f"({int(np.sum(g.view(np.uint16) != w.view(np.uint16)))} of {g.size}); first divergence: "
                        f"{where}")
    assert res.tokens == golden_greedy(model, PROMPT, NEW_TOKENS)


def test_bad_input_halts_with_status(core, program):
    """An illegal opcode, reserved bits (also on BATCH, CHUNK and SLOT), an out-of-range VBUF operand, an
    out-of-range DDR or HBM address, an index register the ISA does not define and a backward ring transfer each
    set their STATUS bit (every error every engine declares), store ERROR_PC and end the run with ap_done (the
    harness times out otherwise). A FENCE holds back what follows it until its units are idle."""
    cfg = program.config
    nop, halt = isa.Instr("NOP").encode(), isa.Instr("HALT").encode()
    known = {op.code for op in isa.OPS}
    bad_code = next(c for c in range(256) if c not in known)
    reserved = isa.Instr("HALT").encode() | (1 << (isa.WORD_BITS - 1))
    vbuf_oob = isa.Instr("VADD", dst=0, a=cfg.vbuf_entries - 1, b=0, n=2 * cfg.d).encode()
    ddr_oob = isa.Instr("LOAD", vaddr=0, addr=cfg.ddr_bytes - 8, n=cfg.d).encode()
    hbm_oob = isa.Instr("LINEAR", dst=0, src=0, w=(cfg.hbm_bytes - cfg.tile_bytes) // isa.HBM_UNIT, k=cfg.d,
                        n=2 * cfg.l).encode()           # the second tile lies past the end of HBM
    no_index = isa.Instr("LOAD", vaddr=0, addr=0, n=cfg.d, index=3).encode()
    backward = isa.Instr("SEND", vaddr=0, n=cfg.d, dir=1).encode()
    # hostile words dfx.isa_check refuses (the host never loads them): the core validates them itself
    zero_n = isa.Instr("VADD", dst=4, a=0, b=0, n=0).encode()
    zero_k = isa.Instr("LINEAR", dst=4, src=0, w=0, k=0, n=cfg.l).encode()
    zero_gran = isa.Instr("ALLGATHER", vaddr=0, n=cfg.d, devices=1, gran=0).encode()
    quant_qk = isa.Instr("QK", dst=4, src=0, w=0, k=cfg.d, n=cfg.l, wfmt=1).encode()
    load = isa.Instr("LOAD", vaddr=2, addr=0, n=cfg.d).encode()
    # words the batch unit handles, with reserved bits: illegal_opcode at their own PC (they do not act)
    rsv = 1 << (isa.WORD_BITS - 1)
    batch_rsv = isa.Instr("BATCH", m=2, src_stride=1, dst_stride=1).encode() | rsv
    chunk_rsv = isa.Instr("CHUNK", addr=0, cap=4).encode() | rsv
    slot_rsv = isa.Instr("SLOT", i=0, skip=0).encode() | rsv
    # concurrency: a LINEAR, a VADD and a LOAD on disjoint VBUF ranges overlap; made dependent (RAW, WAW) they
    # run one after the other
    d = cfg.d
    lin = isa.Instr("LINEAR", dst=16, src=0, w=0, k=4 * d, n=8 * cfg.l).encode()
    vadd = lambda a: isa.Instr("VADD", dst=40, a=a, b=a, n=16 * d).encode()     # noqa: E731
    ld = lambda v: isa.Instr("LOAD", vaddr=v, addr=0, n=8 * d).encode()         # noqa: E731
    fence = isa.Instr("FENCE", units=isa.UNIT_BITS[isa.Unit.MPU]).encode()    # the VADD waits for the LINEAR
    streams = {"illegal": [nop, bad_code, halt], "reserved": [nop, nop, reserved, halt],
               "vbuf": [vbuf_oob, halt], "ddr": [nop, ddr_oob, halt], "hbm": [hbm_oob, halt],
               "index": [no_index, halt], "ring": [nop, nop, backward, halt], "ok": [nop, halt],
               "zero_n": [load, zero_n, halt], "zero_k": [zero_k, halt], "zero_gran": [nop, zero_gran, halt],
               "quant_qk": [quant_qk, halt],
               "overlap": [lin, vadd(20), ld(60), halt], "chain": [lin, vadd(16), ld(40), halt],
               "batch_rsv": [nop, batch_rsv, lin, halt], "chunk_rsv": [nop, chunk_rsv, halt],
               "slot_rsv": [nop, nop, slot_rsv, halt], "fence": [lin, fence, vadd(20), halt]}
    res = core.run_words(streams)
    by = {name: r for name, r in zip(streams, res.runs)}
    S = regmap.STATUS_BITS
    assert (by["illegal"]["status"], by["illegal"]["error_pc"]) == (S["illegal_opcode"], 1)
    assert (by["reserved"]["status"], by["reserved"]["error_pc"]) == (S["illegal_opcode"], 2)
    assert (by["vbuf"]["status"], by["vbuf"]["error_pc"]) == (S["address_range"], 0)
    assert (by["ddr"]["status"], by["ddr"]["error_pc"]) == (S["address_range"], 1)
    assert (by["hbm"]["status"], by["hbm"]["error_pc"]) == (S["address_range"], 0)
    assert (by["index"]["status"], by["index"]["error_pc"]) == (S["illegal_opcode"], 0)
    assert (by["ring"]["status"], by["ring"]["error_pc"]) == (S["ring"], 2)
    assert by["ok"]["status"] == S["halted"]
    for name, pc in (("zero_n", 1), ("zero_k", 0), ("zero_gran", 1), ("quant_qk", 0)):
        assert (by[name]["status"], by[name]["error_pc"]) == (S["invalid"], pc), (name, by[name])
    for name, pc in (("batch_rsv", 1), ("chunk_rsv", 1), ("slot_rsv", 2)):
        assert (by[name]["status"], by[name]["error_pc"]) == (S["illegal_opcode"], pc), (name, by[name])
    assert by["batch_rsv"]["busy"]["MPU"] == 0                     # nothing after the bad word ran
    f = by["fence"]
    assert f["status"] == S["halted"] and f["cycles"] >= f["busy"]["MPU"] + f["busy"]["VPU"], f
    assert by["zero_n"]["busy"]["DMA"] > 0 and by["zero_n"]["busy"]["VPU"] == 0   # the LOAD ran, the VADD not
    work = {k: sum(by[k]["busy"][u] for u in ("MPU", "VPU", "DMA")) for k in ("overlap", "chain")}
    assert by["overlap"]["status"] == by["chain"]["status"] == S["halted"]
    # overlapped: less than the units' busy cycles added up, and well under the same work made dependent
    assert by["overlap"]["cycles"] < min(work["overlap"], 0.85 * by["chain"]["cycles"]), \
        ([(k, by[k]["cycles"], by[k]["busy"]) for k in ("overlap", "chain")], "the three units did not overlap")
    assert by["chain"]["cycles"] >= work["chain"], (by["chain"], "a dependent instruction started early")


def test_cycle_calibration(program, generated):
    """The scoreboard core's cycles against the performance model's default mode (dfx.perf, `engines="rtl"`: the
    scoreboard controller issuing to hw/'s engines) on the same runs: within 5% in total and 10% per instruction
    class (the control class, a few cycles, within 2 cycles per run). Fewer in total than the serial-issue mode
    (the one-at-a-time core), and no fewer than the pipelined units of the DFX-style target. The table is in
    docs/rtl_core.md (benchmarks/rtl_calibration.py)."""
    from dfx.perf.calibrate import compare, table
    rows = compare(program, generated.runs)
    assert {r["class"] for r in rows} >= {"matrix", "vector", "scalar", "dma", "total"}
    for r in rows:
        if r["class"] == "total":
            assert abs(r["scoreboard_ratio"] - 1) <= 0.05, table(rows)
        elif r["class"] == "control":
            assert abs(r["scoreboard"] - r["rtl"]) <= 2 * len(generated.runs), table(rows)
        else:
            assert abs(r["scoreboard_ratio"] - 1) <= 0.10, (r["class"], table(rows))
    total = next(r for r in rows if r["class"] == "total")
    assert total["overlap"] <= total["rtl"] < 0.97 * total["serial"], table(rows)


@pytest.mark.slow      # its own build of the in-order core (Icarus: ~10 minutes here; Verilator reuses the benchmark's)
def test_in_order_calibration(program):
    """The core built in order (`Core(in_order=True)`) agrees with the performance model in serial-issue mode,
    its cycle counts read from hw/ (10% per class, 5% in total), and computes the same logits."""
    from dfx.perf.calibrate import compare, table
    res = RtlCore(program, in_order=True).generate(PROMPT, NEW_TOKENS)
    rows = compare(program, res.runs)
    bad = [r for r in rows if abs(r["serial_ratio"] - 1) > (0.05 if r["class"] == "total" else 0.10)]
    assert not bad, "calibration outside 10% per class / 5% overall:\n" + table(rows)
    steps = [(r["stream"], r["token"], r["pos"]) for r in res.runs]
    got = [r["logits"] for r in res.runs if r["stream"] == "decode"]
    for g, w in zip(got, functional_run(program, steps)):
        assert np.array_equal(g.view(np.uint16), w.view(np.uint16))


@pytest.mark.slow      # its own build of the deep core (Verilator: ~10 minutes here; reuses the benchmark's)
def test_deep_profile_calibration(program, monkeypatch):
    """The core `dfx build` writes ($DFX_RTL_PIPELINE=deep: the 300 MHz pipelines, the reorder buffer, the SLR
    slices) agrees with the performance model's RTL engines read from that same core (10% per class, 5% in
    total; control within 2 cycles per run), and computes the same logits: the cycle counts behind docs/perf.md's
    row at the clock the depth table supports (docs/rtl_core.md, benchmarks/rtl_calibration.py --profile deep)."""
    from dfx.config import PIPELINE_ENV
    from dfx.perf.calibrate import compare, table
    from dfx.perf.timing import serial_costs
    monkeypatch.setenv(PIPELINE_ENV, "deep")
    serial_costs.cache_clear()                     # (read again under the deep profile)
    try:
        res = RtlCore(program).generate(PROMPT, NEW_TOKENS)
        rows = compare(program, res.runs)
    finally:
        serial_costs.cache_clear()
    for r in rows:
        if r["class"] == "control":
            assert abs(r["scoreboard"] - r["rtl"]) <= 2 * len(res.runs), table(rows)
        else:
            assert abs(r["scoreboard_ratio"] - 1) <= (0.05 if r["class"] == "total" else 0.10), (r["class"], table(rows))
    steps = [(r["stream"], r["token"], r["pos"]) for r in res.runs]
    got = [r["logits"] for r in res.runs if r["stream"] == "decode"]
    for g, w in zip(got, functional_run(program, steps)):
        assert np.array_equal(g.view(np.uint16), w.view(np.uint16))


@pytest.fixture(scope="module")
def program2(model):
    from dfx.compiler import compile_model
    return compile_model(model, "tiny", devices=2)


def check_ring(program, want_tokens, prompt, new, sim=None):
    """Run `program` on its cores joined in a forward ring in one simulation: every run halts normally, the
    decode logits are bit-exact to the functional ring simulator's, and the tokens are `want_tokens`."""
    res = RtlCore(program, sim=sim).generate(prompt, new)
    for r in res.runs:
        assert r["status"] == regmap.STATUS_BITS["halted"], r
    steps = [(r["stream"], r["token"], r["pos"]) for r in res.runs]
    want = functional_run(program, steps)
    got = [r["logits"] for r in res.runs if r["stream"] == "decode"]
    assert len(got) == len(want) == new
    for i, (g, w) in enumerate(zip(got, want)):
        assert np.array_equal(g.view(np.uint16), w.view(np.uint16)), f"decode step {i}: ring logits differ"
    assert res.tokens == want_tokens


@pytest.mark.slow      # its own design: a cold build (Verilog + Icarus) takes ~10 minutes here; the run ~70 s
def test_ring_of_two_cores(program2, model):
    """Two cores joined in a forward ring in one simulation (heads and columns split, ALLGATHER over the
    ring links): logits bit-exact to the functional ring simulator, tokens equal to the golden model's."""
    prompt, new = PROMPT[1:], 2                        # 3 runs of both cores keep it within CI time
    check_ring(program2, golden_greedy(model, prompt, new), prompt, new)


@pytest.mark.slow      # a cold build of the 4-core design takes ~20 minutes here
def test_ring_of_four_cores():
    """Four cores in one simulation: a 4-head variant of the tiny model (attention is split by heads), the
    linears split by columns, ALLGATHER around the whole ring."""
    from dfx.compiler import compile_model
    model4 = make_hf_gpt2(8, **{**TINY_GPT2, "n_head": 4})
    prompt, new = PROMPT[1:], 2
    check_ring(compile_model(model4, "tiny", devices=4), golden_greedy(model4, prompt, new), prompt, new)


@pytest.mark.slow
@pytest.mark.skipif(missing_simulator("verilator") is not None, reason=str(missing_simulator("verilator")))
def test_embedded_model_on_ring_verilator():
    """The embedded default model on two RTL cores in a ring under Verilator: logits bit-exact to the
    functional ring, tokens equal to the golden model's. Tens of minutes."""
    from dfx.compiler import compile_model
    from dfx.models.checkpoint import DEFAULT_MODEL_DIR, load_default
    prompt, new = list(b"def "), 2
    check_ring(compile_model(DEFAULT_MODEL_DIR, "tiny", devices=2), list(load_default().generate(prompt, new)),
               prompt, new, sim="verilator")


@pytest.mark.slow
@pytest.mark.skipif(missing_simulator("verilator") is not None, reason=str(missing_simulator("verilator")))
def test_embedded_model_on_verilator():
    """The embedded default model (4 layers, 256 wide, byte vocabulary) compiled at the tiny config, on one
    RTL core under Verilator: logits bit-exact to the functional simulator, tokens equal to the golden
    model's. Several minutes."""
    from dfx.compiler import compile_model
    from dfx.models.checkpoint import DEFAULT_MODEL_DIR, load_default
    prog = compile_model(DEFAULT_MODEL_DIR, "tiny")
    prompt, new = list(b"def "), 3
    res = RtlCore(prog, sim="verilator").generate(prompt, new)
    steps = [(r["stream"], r["token"], r["pos"]) for r in res.runs]
    got = [r["logits"] for r in res.runs if r["stream"] == "decode"]
    for i, (g, w) in enumerate(zip(got, functional_run(prog, steps))):
        assert np.array_equal(g.view(np.uint16), w.view(np.uint16)), f"decode step {i}: logits differ"
    assert res.tokens == list(load_default().generate(prompt, new))


def test_bisection_names_first_divergence(program):
    """Divergence bisection: the RTL runs a program whose c_attn weight tile differs in one element from the
    simulator's (as a wrong weight path would); `bisect` names the first instruction that reads it (the
    first LINEAR, its PC) and the VBUF lane that differs."""
    from dfx.program import DeviceImage, Program
    img = program.devices[0]
    hbm = bytearray(img.hbm)
    a = program.manifest.memory[0].hbm.address(sym_name("h.0.attn.c_attn", Kind.WEIGHT, 0)) * isa.HBM_UNIT
    hbm[a:a + 2] = np.float16(3.0).tobytes()                         # lane 0, row 0 of tile 0
    bad = Program(program.manifest, [DeviceImage(img.streams, hbm, img.ddr)])
    steps = [("prefill", 5, 0)]
    traced = RtlCore(bad).run_steps(steps, trace=True)
    where = bisect(program, steps, traced)
    first = next(pc for pc, ins in enumerate(program.devices[0].streams["prefill"]) if ins.op.mnemonic == "LINEAR")
    assert where is not None and f"pc {first} `LINEAR" in where and "VBUF entry" in where, where
