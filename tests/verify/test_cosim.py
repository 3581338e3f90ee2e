"""Compiled programs on the RTL: the instruction sequences the compiler produces for the embedded default
model (tiny config), with the MPU/VPU instructions executed by the Amaranth MPU and VPU, every other one by the
functional simulator, compared bit for bit with a functional `Device` after every RTL instruction
(`dfx.verify.cosim`).

amaranth.sim and Icarus are both slow on these flat units (tens to a few hundred cycles per second under load
on this machine, docs/rtl.md), so the default run co-simulates one attention head of layer 0 in amaranth.sim
and feeds one compiled LINEAR (2048 tiles) to the MPU in Icarus; all of layer 0 (two tokens, about 55k
cycles) in a Verilog simulator or in amaranth.sim, and the whole model, are `slow`.
"""
import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from dfx import isa
from dfx.config import PRESETS
from dfx.errors import SimError
from dfx.hw.mpu import MPU, finish_layout, mpu_beats, x_layout
from dfx.hw.vpu import vpu_beats
from dfx.sim.functional import Device
from dfx.verify.cosim import ComputeUnits, Payloads, RtlCosim, layer_pcs, pack16
from dfx.verify.toolchain import missing_simulator, run_module, sim_env, simulator, waves
from dfx.verify.units import build_unit, run_vectors

HERE = Path(__file__).resolve().parent

CFG = PRESETS["tiny"]
PROMPT = (ord("d"), ord("e"))          # two tokens: position 0 (prefill stream), position 1 (decode stream)


@pytest.fixture(scope="module")
def program():
    from dfx.compiler.compile import compile_model
    from dfx.models.checkpoint import load_default
    return compile_model(load_default(), "tiny")


def functional_run(program, runs) -> Device:
    dev = Device(program)
    for stream, token, pos in runs:
        dev.run(stream, token, pos)
    return dev


def runs_for(prompt):
    return [("prefill" if p < len(prompt) - 1 else "decode", t, p) for p, t in enumerate(prompt)]


def node_pcs(program, stream, node):
    """PCs of the node named `node`."""
    nodes = program.manifest.node_pcs[stream][0]
    end = len(program.devices[0].streams[stream])
    out = set()
    for i, (pc, name) in enumerate(nodes):
        if name == node:
            out.update(range(pc, nodes[i + 1][0] if i + 1 < len(nodes) else end))
    return out


# ============================================================================================ payloads
def test_payloads_equal_layout_constants():
    """The co-simulator's fast payload packing equals `Layout.const` (and the unit tests' beat builders)."""
    rng = np.random.default_rng(3)
    pay = Payloads(CFG)
    x = rng.standard_normal(CFG.d).astype(np.float16)
    bias = rng.standard_normal(CFG.l).astype(np.float16)
    fin = {"bias": [int(v) for v in bias.view(np.uint16)], "has_bias": 1, "scale": 0x3E000000, "scale_en": 1,
           "gelu": 1, "mask": 0b1010}
    want = x_layout(CFG).const({"x": [int(v) for v in x.view(np.uint16)], "last": 1, "fin": fin}).as_bits()
    got = pay.x_beat(x, 1, pay.finish(bias, 1, 0x3E000000, 1, 1, 0b1010))
    assert got == want
    assert pay.finish(bias, 1, 0x3E000000, 1, 1, 0b1010) == finish_layout(CFG).const(fin).as_bits()
    # against mpu_beats: one matrix, one output block, the last of two groups
    w = rng.standard_normal((2 * CFG.d, CFG.l)).astype(np.float16)
    xx = rng.standard_normal(2 * CFG.d).astype(np.float16)
    xs, _ = mpu_beats(CFG, xx, w, bias, np.float32(0.125), True, 1)
    mask = sum(1 << c for c in range(CFG.l) if c > 1)
    f = pay.finish(bias, 1, int(np.float32(0.125).view(np.uint32)), 1, 1, mask)
    assert [pay.x_beat(xx[:CFG.d], 0, f), pay.x_beat(xx[CFG.d:], 1, f)] == xs
    a, b = rng.standard_normal(CFG.vpu_width).astype(np.float16), rng.standard_normal(CFG.vpu_width).astype(np.float16)
    s = int(np.float32(-1.5).view(np.uint32))
    assert pay.vpu_beat("VMUL", a, b, s, 0, 0xFF, 1) == vpu_beats(CFG, "VMUL", a, b, s=np.float32(-1.5))[0]


def test_layer_pcs(program):
    pcs = layer_pcs(program, 0)
    ops = {program.devices[0].streams["decode"][pc].op.mnemonic for pc in pcs}
    assert {"LINEAR", "QK", "SV", "VSUM", "VDOT", "SRSQRT", "VEXP", "VMAX", "SRECIP"} <= ops
    assert not pcs & layer_pcs(program, 1)
    with pytest.raises(SimError, match=r"layer must be one of \[0, 1, 2, 3\], not 9"):
        layer_pcs(program, 9)


# ============================================================================================ amaranth.sim
def test_attention_head_amaranth_sim(program, tmp_path):
    """Layer 0, head 0 at position 1 (QK with the scale and the causal mask over two cached keys, softmax on
    the VPU, score x V from the transposed V cache) on the Amaranth MPU/VPU; then the same run with one K-cache
    element changed under the RTL only: the lock-step check must stop at that QK."""
    head0 = set(range(min(node_pcs(program, "decode", "h.0.attn")), 35))
    ops = [program.devices[0].streams["decode"][pc].op.mnemonic for pc in sorted(head0)]
    assert ops[-9:] == ["SMOVI", "QK", "VMAX", "VSUBS", "VEXP", "VSUM", "SRECIP", "VMULS", "SV"]
    vcd = str(tmp_path / "cosim.vcd") if waves() else None
    co = RtlCosim(program, rtl=set(), check=True, vcd=vcd)
    co.run("prefill", PROMPT[0], 0)                         # position 0 on the functional model
    co.rtl = head0
    n = co.run("decode", PROMPT[1], 1)
    assert n == len(program.devices[0].streams["decode"])   # ran to HALT
    assert sum(co.stats.rtl.values()) == 9 and co.stats.checked == 9
    assert co.stats.rtl["QK"] == co.stats.rtl["SV"] == 1
    # the MPU accepted one beat per cycle: busy cycles = beats + its latency, per instruction
    mpu, vpu = co.units()
    assert co.stats.cycles["MPU"] == co.stats.beats["MPU"] + 2 * mpu.latency
    want = functional_run(program, runs_for(PROMPT))
    np.testing.assert_array_equal(co.state.ddr, want.ddr)  # the logits
    np.testing.assert_array_equal(co.state.vbuf.view(np.uint16), want.vbuf.view(np.uint16))

    # a fault under the RTL only: K cache element 0 of head 0, position 0
    qk = next(pc for pc in sorted(head0) if program.devices[0].streams["decode"][pc].op.mnemonic == "QK")
    base = program.devices[0].streams["decode"][qk].fields()["w"] * isa.HBM_UNIT
    co.state.hbm[base:base + 2] = np.frombuffer(np.float16(100.0).tobytes(), np.uint8)
    with pytest.raises(SimError, match=rf"decode pc {qk} `QK .*RTL vs functional.*VBUF differs"):
        co.run("decode", PROMPT[1], 1)
    co.close()


@pytest.mark.slow
def test_layer0_amaranth_sim(program):
    """All of layer 0 at position 0 on the Amaranth MPU/VPU (about 26k cycles: tens of minutes here)."""
    co = RtlCosim(program, rtl=layer_pcs(program, 0, "decode"), check=True)
    co.run("decode", PROMPT[0], 0)
    assert co.stats.checked == sum(co.stats.rtl.values()) > 40
    np.testing.assert_array_equal(co.state.ddr, functional_run(program, [("decode", PROMPT[0], 0)]).ddr)


# ============================================================================================ cocotb
def run_cosim_cocotb(program, name, runs, rtl: dict, sim=None):
    """The co-simulation in a Verilog simulator (tests/verify/cocotb_cosim.py, loaded by module name from this
    folder, which pytest put on sys.path). Returns (results npz, stats)."""
    from dfx.program import save_program
    sim = simulator(sim)
    units = RtlCosim(program).units()
    runner, bdir = build_unit(ComputeUnits(*units), "compute_units_tiny", sim)
    prog_file = save_program(program, bdir / f"{name}.dfx")
    spec = bdir / f"{name}.json"
    out = bdir / f"{name}.result"
    log = bdir / f"{name}.log"
    spec.write_text(json.dumps({"program": str(prog_file), "runs": runs, "out": str(out), "check": True,
                                "rtl": {s: sorted(p) for s, p in rtl.items()}}))
    tests, fails = run_module(runner, "cocotb_cosim", "compute_units_tiny", bdir, HERE,
                              sim_env(DFX_COSIM=str(spec), COCOTB_LOG_LEVEL="WARNING"), log, waves=waves(),
                              results_xml=str(bdir / f"{name}.results.xml"))
    text = log.read_text(errors="replace")
    msg = [ln.strip() for ln in text.splitlines() if "SimError" in ln or "AssertionError" in ln]
    assert tests == 1 and fails == 0, f"cocotb ({sim}) {name}: " + ("\n".join(msg[-4:]) or text[-3000:])
    return np.load(str(out) + ".npz"), json.loads((out.parent / (out.name + ".json")).read_text())


needs_sim = pytest.mark.skipif(missing_simulator(axi=False) is not None, reason=str(missing_simulator(axi=False)))


@pytest.mark.cocotb
@needs_sim
def test_compiled_linear_on_mpu_cocotb(program):
    """The MPU alone in the Verilog simulator, fed one compiled LINEAR instruction (layer 0's attention output
    projection, 256 x 256: 2048 tiles) exactly as the co-simulator collects its operands after the functional
    model ran the program up to it; the outputs equal the functional simulator's result of that instruction."""
    stream = program.devices[0].streams["decode"]
    pc = min(node_pcs(program, "decode", "h.0.attn.c_proj"))
    pc += next(i for i, ins in enumerate(stream[pc:]) if ins.op.mnemonic == "LINEAR")
    f = stream[pc].fields()
    co, ref = RtlCosim(program, rtl=set()), RtlCosim(program, rtl=set())     # every instruction functional
    asyncio.run(co.execute("decode", PROMPT[0], 0, drive=None, stop=pc))
    asyncio.run(ref.execute("decode", PROMPT[0], 0, drive=None, stop=pc + 1))
    xs, ws, n = co.matrix_beats(f)
    assert len(xs) == 2048 and n == 256
    y = ref.state.vector(f["dst"], n)
    want = [pack16(y[j * CFG.l:(j + 1) * CFG.l]) for j in range(n // CFG.l)]
    run_vectors(MPU(CFG), "mpu_tiny", {"x": xs, "w": ws}, {"o": want}, seed=9, stall=0.0)


@pytest.mark.cocotb
@pytest.mark.slow
@needs_sim
def test_layer0_cocotb(program):
    """All MPU/VPU instructions of layer 0 on the RTL in a Verilog simulator, for two tokens (position 0 in
    the prefill stream, position 1 in the decode stream), checked after every instruction; the final VBUF,
    scalar registers and logits equal the functional simulator's."""
    runs = runs_for(PROMPT)
    rtl = {s: layer_pcs(program, 0, s) for s in ("prefill", "decode")}
    res, stats = run_cosim_cocotb(program, "layer0", runs, rtl)
    want = functional_run(program, runs)
    np.testing.assert_array_equal(res["vbuf"], want.vbuf.view(np.uint16))
    np.testing.assert_array_equal(res["s"], want.s.view(np.uint32))
    np.testing.assert_array_equal(res["ddr"], want.ddr)
    n_layer = sum(1 for s, _, _ in runs for pc in rtl[s]
                  if program.devices[0].streams[s][pc].op.unit in (isa.Unit.MPU, isa.Unit.VPU))
    assert sum(stats["rtl"].values()) == stats["checked"] == n_layer
    assert stats["rtl"]["LINEAR"] == 2 * 4 and stats["rtl"]["QK"] == stats["rtl"]["SV"] == 2 * 4
    assert stats["cycles"]["MPU"] >= stats["beats"]["MPU"] > 2 * 24000


@pytest.mark.cocotb
@pytest.mark.slow
@needs_sim
def test_whole_model_cocotb(program):
    """Every MPU/VPU instruction of the model (4 layers, final LayerNorm, LM head) on the RTL, three tokens."""
    prompt = (ord("d"), ord("e"), ord("f"))
    runs = runs_for(prompt)
    rtl = {s: set(range(len(program.devices[0].streams[s]))) for s in ("prefill", "decode")}
    res, stats = run_cosim_cocotb(program, "model", runs, rtl)
    want = functional_run(program, runs)
    np.testing.assert_array_equal(res["ddr"], want.ddr)
    np.testing.assert_array_equal(res["vbuf"], want.vbuf.view(np.uint16))
    assert stats["rtl"]["LMHEAD"] > 0 and stats["checked"] == sum(stats["rtl"].values())

