"""The VPU against `dfx.numerics` in amaranth.sim (tiny config): every VPU opcode of the ISA once or more,
with corner values (signed zeros, subnormals, inf, NaN), partial last chunks, empty vectors, backpressure.
The cocotb testbench in test_cocotb.py runs longer random programs."""
import numpy as np
import pytest
from hw_helpers import run_streams
from hw_vectors import C16, vpu_expected

from dfx import isa
from dfx.config import PRESETS
from dfx.hw.vpu import STAGES_300MHZ, VPU, vpu_beats

CFG = PRESETS["tiny"]


def vpu_cases(rng):
    c16 = np.array(list(C16.values()), np.uint16).view(np.float16)

    def rv(n, scale=1.0):
        return (rng.standard_normal(n) * scale).astype(np.float16)

    cases = []
    for op in ("VADD", "VSUB", "VMUL"):
        cases.append((op, dict(a=np.concatenate([rv(5), c16[:6]]), b=np.concatenate([rv(5), c16[6:12]]))))
    cases += [("VMOV", dict(a=rv(3))), ("VEXP", dict(a=np.concatenate([rv(6, 4), c16[10:20]]))),
              ("VGELU", dict(a=np.concatenate([rv(6, 4), c16[20:30]])))]
    for op in ("VADDS", "VSUBS", "VMULS"):                       # the double-rounding example of the spec
        cases.append((op, dict(a=np.array([-0.340087890625, 1.0, 0.0], np.float16),
                               s=np.float32(np.uint32(0x3FF91BC0).view(np.float32)))))
    for op in ("VSUM", "VDOT", "VMAX"):
        cases.append((op, dict(a=rv(19), b=rv(19))))            # 3 chunks, the last partial
        cases.append((op, dict(a=c16[:13], b=c16[13:26])))      # inf, NaN, subnormals
    cases += [("VMAX", dict(a=np.full(5, -np.inf, np.float16))), ("VMAX", dict(a=np.zeros(0, np.float16))),
              ("VSUM", dict(a=np.zeros(0, np.float16))), ("VMAX", dict(a=np.array([-0.0, 0.0, -0.0], np.float16))),
              ("VMAX", dict(a=np.array([-0.0, -0.0], np.float16)))]
    for op in ("SMOVI", "SADDI", "SMULI", "SRECIP", "SRSQRT"):
        cases.append((op, dict(s=np.float32(3.7), imm=np.float32(-1.25))))
    cases += [("SADDI", dict(s=np.float32(1e-38), imm=np.float32(-1.1e-38))),      # subnormal sum: -0
              ("SMULI", dict(s=np.float32(2.0 ** -100), imm=np.float32(2.0 ** -30))),  # underflow: +0
              ("SRECIP", dict(s=np.float32(0.0))), ("SRSQRT", dict(s=np.float32(-4.0)))]
    return cases


def run_vpu(dut, cases, stall=0.2, seed=0):
    ins, want, spans = [], [], []
    for op, kw in cases:
        ins += vpu_beats(CFG, op, **kw)
        exp = vpu_expected(CFG, op, **kw)
        spans.append((op, len(want), len(exp)))
        want += exp
    got = run_streams(dut, {"i": ins}, {"o": len(want)}, stall=stall, seed=seed)["o"]
    for op, k, n in spans:
        assert got[k:k + n] == want[k:k + n], (op, [hex(v) for v in got[k:k + n]], [hex(v) for v in want[k:k + n]])


def test_every_vpu_opcode_is_covered():
    covered = {op for op, _ in vpu_cases(np.random.default_rng(0))}
    assert covered == {op.mnemonic for op in isa.OPS if op.unit is isa.Unit.VPU}


def test_vpu_matches_numerics():
    run_vpu(VPU(CFG), vpu_cases(np.random.default_rng(5)))


def test_pipelined_reduction_is_bit_exact():
    """A 3-stage VSUM/VDOT accumulator (reduction beats spaced 4 cycles apart by `i.ready`) gives the same
    results for every opcode, reductions of several beats included."""
    dut = VPU(CFG, red_stages=3)
    run_vpu(dut, vpu_cases(np.random.default_rng(6)), stall=0.1, seed=4)


@pytest.mark.parametrize("share", [2, 8])
def test_shared_sfus_are_bit_exact(share):
    """One exp and one GELU unit per `share` lanes (each VEXP/VGELU beat in `share` slots, its results
    reassembled) gives the same results for every opcode, under backpressure."""
    run_vpu(VPU(CFG, sfu_share=share), vpu_cases(np.random.default_rng(7)), stall=0.2, seed=share)


def test_deep_shared_vpu_is_bit_exact():
    """The 300 MHz depths (every operator cut, registered glue, pipelined accumulator) with shared SFUs."""
    run_vpu(VPU(CFG, **STAGES_300MHZ, sfu_share=4), vpu_cases(np.random.default_rng(9)), stall=0.1, seed=2)


@pytest.mark.parametrize("red_stages", [0, STAGES_300MHZ["red_stages"]])
def test_dsp_adders_are_bit_exact(red_stages):
    """dsp_add="model" (the deep core's VPU, `VectorEngine.vpu_params`): the lanes' adders, the reduction tree,
    its accumulator (single-cycle and pipelined) and the scalar adder on the DSP48E2 configuration, with the
    LUT adders' results and latencies."""
    kw = dict(STAGES_300MHZ, red_stages=red_stages, sfu_share=4)
    dut = VPU(CFG, **kw, dsp_add="model")
    assert dut.latencies == VPU(CFG, **kw).latencies
    run_vpu(dut, vpu_cases(np.random.default_rng(13)), stall=0.1, seed=3)


def accept_cycles(dut, beats) -> int:
    """Cycles from the first beat's presentation to the last one's acceptance, with no stalls on either side."""
    from amaranth.sim import Simulator
    from hw_helpers import raw
    seen = []

    async def feed(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        cycle = 0
        for b in beats:
            ctx.set(raw(dut.i.payload), b)
            while True:
                _, _, ready = await ctx.tick().sample(dut.i.ready)
                cycle += 1
                if ready:
                    seen.append(cycle)
                    break
        ctx.set(dut.i.valid, 0)

    async def drain(ctx):
        ctx.set(dut.o.ready, 1)
    sim = Simulator(dut)
    sim.add_clock(5e-9)
    sim.add_testbench(feed)
    sim.add_testbench(drain)
    sim.run()
    return seen[-1]


@pytest.mark.parametrize("op, kw", [("VEXP", dict(share=4)), ("VGELU", dict(share=8)),
                                    ("VSUM", dict(red_stages=3)), ("VDOT", dict(red_stages=2)),
                                    ("VADD", dict(share=8, red_stages=3))])
def test_beat_cycles_match_the_unit(op, kw):
    """`VPU.beat_cycles` (what hw/core_vpu.py and the performance model charge) is the input occupancy the
    unit shows: a 19-element vector (3 beats), twice."""
    dut = VPU(CFG, sfu_share=kw.get("share", 1), red_stages=kw.get("red_stages", 0))
    one = vpu_beats(CFG, op, a=np.ones(19, np.float16), b=np.ones(19, np.float16))
    assert accept_cycles(dut, one + one) == 2 * dut.beat_cycles(op, len(one))


def test_vpu_refuses_bad_dsp_mode():
    with pytest.raises(ValueError, match="dsp_add must be one of None, 'model', 'primitive', not 'yes'"):
        VPU(CFG, dsp_add="yes")


def test_vpu_refuses_bad_sharing():
    with pytest.raises(ValueError, match="sfu_share must be a power of two"):
        VPU(CFG, sfu_share=3)


def test_vpu_refuses_other_widths():
    with pytest.raises(ValueError, match="vpu_width == d"):
        VPU(CFG.replace(vpu_width=4))


def result_cycles(dut, beats) -> list[int]:
    """Cycles from the first beat's presentation to each result, with no stalls on either side."""
    from amaranth.sim import Simulator
    from hw_helpers import raw
    seen = []

    async def feed(ctx):
        ctx.set(dut.i.valid, 1)
        for b in beats:
            ctx.set(raw(dut.i.payload), b)
            while not (await ctx.tick().sample(dut.i.ready))[2]:
                pass
        ctx.set(dut.i.valid, 0)

    async def drain(ctx):
        ctx.set(dut.o.ready, 1)
        cycle = 0
        while len(seen) < len(beats):
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            cycle += 1
            if valid:
                seen.append(cycle)
    sim = Simulator(dut)
    sim.add_clock(5e-9)
    sim.add_testbench(feed)
    sim.add_testbench(drain)
    sim.run()
    return seen


def test_each_operation_completes_at_its_own_latency():
    """`VPU.op_latency` is what the unit shows for a lone beat, a short operation behind a long one waits only
    as long as it would overtake it (results in order, one per cycle), and the VADD is not padded to rsqrt's."""
    dut = VPU(CFG, red_stages=3)
    one = {op: vpu_beats(CFG, op, a=np.ones(3, np.float16), b=np.ones(3, np.float16), s=np.float32(2.0),
                         imm=np.float32(1.0)) for op in ("VADD", "SRSQRT", "VMAX", "SMOVI")}
    assert dut.op_latency("VADD") < dut.op_latency("SRSQRT") == dut.latency
    for op, beats in one.items():
        assert result_cycles(dut, beats) == [1 + dut.op_latency(op)], op       # accepted on the first edge
    # SRSQRT then VADD: the VADD's result leaves the cycle after the SRSQRT's, not a full latency later
    assert result_cycles(dut, one["SRSQRT"] + one["VADD"]) == [1 + dut.latency, 2 + dut.latency]
