"""Batched prefill in the RTL core (ISA version 2: BATCH, CHUNK, SLOT; hw/core_batch.py): hand-written streams on
the fast harness (`dfx.verify.fast_core`, the tiny build the harness's own tests use), bit-exact to the functional
simulator in VBUF and the scalar registers; every rule of "Batched prefill" broken stops the run with its STATUS
bit at the PC the simulator names. The embedded model compiled with `--prefill-batch 4` on the rtl backend is the
slow end-to-end test at the bottom."""
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from dfx import isa, regmap
from dfx.errors import DfxError
from dfx.program import DeviceImage, load_program
from dfx.sim.functional import Device

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "verify"))
from verify_helpers import FIX, need_fast_rtl  # noqa: E402

pytestmark = pytest.mark.cocotb
S = regmap.STATUS_BITS
TABLE = 8192                      # token tables appended to the fixture's DDR image (7360 bytes)
TABLES = {TABLE: [3, 5, 9, 13], TABLE + 64: [0], TABLE + 128: [5, 1, 2, 3, 4, 5]}   # u32 COUNT, then tokens
TOKEN, POS = 1, 2                 # the host's registers for the batched runs


def asm(lines):
    return [isa.assemble(x)[0] for x in lines]


def _section(i, skip_extra=()):
    """Slot i's per-token work: a TOKEN-indexed LOAD, a POS-long (dyn_n) VADD, anything else given."""
    body = [f"LOAD vaddr={100 + i} addr=64 n=8 index=1 stride=16", f"VADD dst={110 + i} a={2 * i} b={2 * i + 1} "
            "n=1 +dyn_n", *skip_extra]
    return [f"SLOT i={i} skip={len(body)}", *body]


GOOD = {
    "prefill": asm([
        "LOAD n=512",                                                  # entries 0..63 from DDR 0
        f"CHUNK addr={TABLE} cap=4",                                   # COUNT 3, POS0 = POS
        # a masked LINEAR dispatched with slot 0's POS while the next SLOTs change POS (rule 6)
        *_section(0, ["LINEAR dst=130 w=0 k=32 n=16 +mask"]), *_section(1), *_section(2),
        *_section(3),                                                  # i >= COUNT: skipped
        "LOAD vaddr=120 n=8 index=2 stride=16",                        # row POS (the last slot's)
        "BATCH m=0 src_stride=4 dst_stride=3 +dyn_m",                  # m = COUNT
        "LINEAR dst=200 w=0 k=32 n=16 +has_bias bias=60",
        "BATCH m=2 src_stride=5 dst_stride=2",
        "LINEAR dst=300 src=3 w=64 k=24 n=12 +gelu +mask",
        "BATCH m=3 src_stride=2 dst_stride=2",
        "ALLGATHER vaddr=400 n=16 devices=1 gran=1",                   # one device: the gathers move nothing
        "VMUL dst=500 a=200 b=203 n=64",                               # reads the batched outputs (RAW)
        "HALT"]),
    "unbatched": asm([                                                 # the same LINEARs one vector at a time
        "LINEAR dst=600 w=0 k=32 n=16 +has_bias bias=60",
        "LINEAR dst=603 src=4 w=0 k=32 n=16 +has_bias bias=60",
        "LINEAR dst=606 src=8 w=0 k=32 n=16 +has_bias bias=60",
        "HALT"]),
}

BAD = {   # name: (stream, STATUS bit, PC)
    "chunk_ok": (asm([f"CHUNK addr={TABLE} cap=3", "HALT"]), "halted", 0),
    "slot_first": (asm(["NOP", "SLOT i=0 skip=0", "HALT"]), "invalid", 1),      # COUNT is 0 at every start
    "dyn_m_first": (asm(["NOP", "BATCH src_stride=4 dst_stride=4 +dyn_m", "LINEAR dst=200 k=8 n=8", "HALT"]),
                    "invalid", 1),
    "batch_vadd": (asm([f"CHUNK addr={TABLE} cap=4", "BATCH m=2", "VADD dst=9 n=8", "HALT"]), "invalid", 1),
    "batch_m0": (asm(["BATCH m=0", "LINEAR dst=200 k=8 n=8", "HALT"]), "invalid", 0),
    "batch_dyn_k": (asm(["NOP", "NOP", "BATCH m=2 src_stride=1 dst_stride=1", "LINEAR dst=200 k=8 n=8 +dyn_k",
                         "HALT"]), "invalid", 2),
    "gather_strides": (asm(["BATCH m=2 src_stride=1 dst_stride=2", "ALLGATHER n=8 devices=1 gran=1", "HALT"]),
                       "invalid", 0),
    "batch_halt": (asm(["NOP", "BATCH m=2", "HALT"]), "invalid", 1),
    "batch_range": (asm(["NOP", "BATCH m=3 dst_stride=2000", "LINEAR dst=100 k=8 n=8", "HALT"]),
                    "address_range", 2),
    # m - 1 = 8192 = 2**13, one past the tiny VBUF's 4,096 entries' width: the core keeps m - 1 mod 8192 (0) and a
    # flag (hw/core_batch.py), which alone puts the last vector past VBUF
    "batch_big": (asm(["NOP", "BATCH m=8193 src_stride=0 dst_stride=1", "LINEAR dst=100 k=8 n=8", "HALT"]),
                  "address_range", 2),
    "chunk_zero": (asm([f"CHUNK addr={TABLE + 64} cap=4", "HALT"]), "invalid", 0),
    "chunk_cap": (asm([f"CHUNK addr={TABLE + 128} cap=4", "HALT"]), "invalid", 0),
    "chunk_align": (asm([f"CHUNK addr={TABLE + 2} cap=4", "HALT"]), "invalid", 0),
    "chunk_ddr": (asm(["NOP", "CHUNK addr=0x10000000 cap=4", "HALT"]), "address_range", 1),
}


def images(streams):
    """(sim image, fast-harness job images): the fixture's memories with the token tables and `streams`."""
    from dfx.verify.rtl_core import _append_stream
    prog = load_program(FIX / "tiny_1dev.dfx")
    ddr = bytearray(prog.devices[0].ddr)
    ddr.extend(b"\0" * (TABLE + 256 - len(ddr)))
    for a, words in TABLES.items():
        ddr[a:a + 4 * len(words)] = np.array(words, "<u4").tobytes()
    hbm = bytes(prog.devices[0].hbm)
    full = bytearray(ddr)
    entries = {name: _append_stream(full, isa.encode_stream(s)) for name, s in streams.items()}
    return prog, DeviceImage(streams, bytearray(hbm), bytearray(full)), {"ddr": bytes(full), "hbm": hbm}, entries


def sim_error_pc(dev, name, token=TOKEN, pos=POS):
    """None when the run halts on the simulator, else the PC its error names."""
    try:
        dev.run(name, token, pos)
    except DfxError as e:
        return int(re.search(r"pc (\d+)", str(e)).group(1))
    return None


@pytest.fixture(scope="module")
def fast():
    need_fast_rtl()
    from dfx.config import load_config
    from dfx.verify.fast_core import FastCore
    return FastCore(load_config("tiny"))


@pytest.fixture(scope="module")
def results(fast):
    from dfx.verify.fast_core import FastJob
    steps = [["prefill", TOKEN, POS], ["unbatched", 0, 0], ["prefill", 7, 5]]
    prog, _, img, ent = images(GOOD)
    good = FastJob([img], [ent], steps, vbuf=[(0, prog.config.vbuf_entries)], sregs=True)
    _, _, img_b, ent_b = images({k: v[0] for k, v in BAD.items()})
    bad = FastJob([img_b], [ent_b], [[k, TOKEN, POS] for k in BAD])
    return fast.run([good, bad])


def test_batched_streams_bitexact(results):
    """CHUNK, SLOT (taken and skipped), TOKEN/POS-indexed loads, dyn_n and masked LINEARs dispatched between SLOTs,
    BATCH +dyn_m / static m with strides, +bias, +gelu, +mask, a one-device batched ALLGATHER: every run halts and
    VBUF and the scalar registers equal the simulator's bit for bit; the batched LINEAR's rows equal the
    unbatched ones."""
    good = results[0]
    assert [r["status"] for r in good["runs"]] == [S["halted"]] * 3, good["runs"]
    prog, img, _, _ = images(GOOD)
    dev = Device.of_image(prog.config, img)
    for stream, tok, pos in [("prefill", TOKEN, POS), ("unbatched", 0, 0), ("prefill", 7, 5)]:
        dev.run(stream, tok, pos)
    got = good["vbuf"][0]
    diff = np.flatnonzero(got.view(np.uint16) != dev.vbuf.view(np.uint16))
    assert diff.size == 0, f"{diff.size} VBUF elements differ, first at entry {diff[0] // prog.config.d}"
    assert np.array_equal(np.asarray(good["sregs"][0]).view(np.uint32)[:len(dev.s)], dev.s.view(np.uint32))
    d = prog.config.d
    rows = [got[a * d:(a + 9) * d].reshape(3, 3 * d)[:, :2 * d].view(np.uint16) for a in (200, 600)]
    assert np.array_equal(*rows)


def test_batched_rule_breaks_halt_with_status(results):
    """Each rule of "Batched prefill" broken (BATCH before something it may not prefix, dyn_m before CHUNK, m = 0,
    dyn_k on a batched LINEAR, unequal ALLGATHER strides, a batched operand past VBUF, a token table that is empty,
    over capacity, unaligned or past DDR, SLOT before CHUNK in a run after one that ran CHUNK) stops the run with
    its STATUS bit and ERROR_PC at the PC where the simulator stops."""
    bad = results[1]
    _, img, _, _ = images({k: v[0] for k, v in BAD.items()})
    from dfx.config import load_config
    dev = Device.of_image(load_config("tiny"), img)
    for (name, (_, bit, pc)), r in zip(BAD.items(), bad["runs"]):
        want_pc = sim_error_pc(dev, name)
        if bit == "halted":
            assert r["status"] == S["halted"] and want_pc is None, (name, r)
            continue
        assert (r["status"], r["error_pc"]) == (S[bit], pc), (name, r)
        assert want_pc == pc, (name, want_pc)
        # (precise: found before the first vector goes, not by the engine thousands of vectors on)
        assert r["cycles"] < 2000, (name, r["cycles"])


# ------------------------------------------------------------------------------------------ compiled programs
TINY_GPT2 = dict(n_embd=32, n_head=2, n_layer=1, n_positions=16, vocab_size=64)
PROMPT = [5, 17, 42, 9]


@pytest.fixture(scope="module")
def batched_program():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from gpt2_fixtures import make_hf_gpt2
    from dfx.compiler import compile_model
    return compile_model(make_hf_gpt2(8, **TINY_GPT2), "tiny", prefill_batch=4)


def batched_steps(program, prompt, new):
    """The functional simulator's batched generation: the prompt but its last token through the batched stream
    in one run (the host's token table), then `new` greedy decode steps. Returns (table bytes, steps, logits)."""
    sym = program.symbols
    pb = sym.prefill_batch
    head = prompt[:-1]
    table = np.array([len(head), *head], "<u4").tobytes()
    dev = Device(program)
    dev.ddr[pb.tokens:pb.tokens + len(table)] = np.frombuffer(table, np.uint8)
    steps = [(pb.stream, head[0], 0)]
    dev.run(pb.stream, head[0], 0)
    tok, pos, logits = prompt[-1], len(head), []
    for _ in range(new):
        steps.append(("decode", tok, pos))
        dev.run("decode", tok, pos)
        logits.append(np.frombuffer(bytes(dev.ddr[sym.logits:sym.logits + 2 * sym.vocab_size]), np.float16).copy())
        tok, pos = int(np.argmax(logits[-1])), pos + 1
    return table, steps, logits


def test_compiled_batched_prefill_bitexact_and_calibrated(fast, batched_program):
    """The tiny GPT-2 compiled with --prefill-batch 4: its batched prefill stream (3 prompt tokens in one run)
    then two decode steps on the RTL: every run halts, the decode logits are bit-exact to the functional
    simulator's; the performance model with the RTL's engines (`engines="rtl"`: the batched LINEARs run as m
    vectors one after the other, docs/rtl_core.md "Batched prefill") is within 5% of the RTL's cycles in total
    (the batched run alone within 10%: 7% measured, see docs/rtl_core.md)."""
    from dfx.perf.calibrate import rtl_board
    from dfx.perf.model import PerfModel
    from dfx.verify.fast_core import FastCore
    prog = batched_program
    table, steps, want = batched_steps(prog, PROMPT, 2)
    job = FastCore.job_for(prog, steps, logits=True)
    tokens = prog.symbols.prefill_batch.tokens
    ddr = bytearray(job.images[0]["ddr"])
    ddr[tokens:tokens + len(table)] = table
    job.images[0]["ddr"] = bytes(ddr)
    [res] = fast.run([job])
    assert [r["status"] for r in res["runs"]] == [S["halted"]] * len(steps), res["runs"]
    for g, w in zip(res["logits"], want):
        assert np.array_equal(g.view(np.uint16), w.view(np.uint16))
    model = PerfModel(prog, rtl_board(prog.config), engines="rtl")
    counts = [len(PROMPT) - 1] + [None] * (len(steps) - 1)
    got = [r["cycles"] for r in res["runs"]]
    est = [model.step_cycles(s, p, c) for (s, _, p), c in zip(steps, counts)]
    assert abs(sum(est) / sum(got) - 1) <= 0.05, (est, got)
    assert abs(est[0] / got[0] - 1) <= 0.10, (est, got)       # the batched run alone (docs/rtl_core.md)


@pytest.mark.slow
@pytest.mark.skipif(__import__("dfx.verify.toolchain", fromlist=["x"]).missing_simulator("verilator") is not None,
                    reason="Verilator is missing")
def test_embedded_model_batched_on_rtl_backend(tmp_path, monkeypatch):
    """The embedded default model compiled with --prefill-batch 4: `dfx run --backend rtl` (SIM=verilator, the
    prompt through prefill_batch in chunks of 4) prints the text `--backend sim` prints. Its FP16 image (1.78 MiB
    per HBM pseudo-channel) sizes the harness's memories (`dfx.verify.fast_top.program_abits`: 2 MiB each); the
    core has every weight family ($DFX_RTL_WFORMATS=all): the build benchmarks/rtl_formats.py runs, one
    Verilator build for both. (Its logits, bit-exact to the simulator's, are benchmarks/rtl_core_cycles.py
    --prefill-batch 4's check.)"""
    from click.testing import CliRunner

    from dfx.cli import main
    prog = tmp_path / "b.dfx"
    r = CliRunner().invoke(main, ["compile", "-o", str(prog), "--prefill-batch", "4"])
    assert r.exit_code == 0, r.stderr
    monkeypatch.setenv("SIM", "verilator")
    monkeypatch.setenv("DFX_RTL_WFORMATS", "all")
    args = ["run", str(prog), "-p", "def f", "-n", "2"]              # one full chunk of 4, 2 decode steps
    sim = CliRunner().invoke(main, [*args, "--backend", "sim"])
    rtl = CliRunner().invoke(main, [*args, "--backend", "rtl"])
    assert sim.exit_code == rtl.exit_code == 0, rtl.stderr
    assert rtl.stdout == sim.stdout
