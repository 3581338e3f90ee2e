"""The binary16/binary32 operators against `dfx.numerics`, in amaranth.sim: named corner cases (pinned bit
patterns from docs/numerics.md), every pair of corner values, random vectors, under random backpressure."""
import re

import numpy as np
import pytest
from hw_helpers import run_stream
from hw_vectors import leaf_units, pack2, ref_add32, ref_mul16, ref_mul32, ref_round16

from dfx.hw.fp import ADD_MAX_STAGES, MUL32_CUTS, Fp16MulUnit, Fp32AddUnit, Fp32MulUnit, Fp32ToFp16Unit, Widen16Unit, lzc_tree

# (unit, operands, expected bits): the spec's policies, one line each
PINNED = [
    ("add", (0x3F800000, 0x33800000), 0x3F800000, "1 + 2^-24: a tie, to even (stays 1)"),
    ("add", (0x3F800001, 0x33800000), 0x3F800002, "(1+ulp) + 2^-24: a tie, to even (up)"),
    ("add", (0x3F800000, 0xBF800000), 0x00000000, "x + (-x) = +0"),
    ("add", (0x80000000, 0x80000000), 0x80000000, "(-0) + (-0) = -0"),
    ("add", (0x00C00000, 0x80800000), 0x00000000, "1.5*2^-126 - 2^-126 is subnormal: flushed to +0"),
    ("add", (0x80C00000, 0x00800000), 0x80000000, "... and to -0 with the sign of the result"),
    ("add", (0x00000001, 0x00000000), 0x00000000, "a subnormal operand reads as zero (DAZ)"),
    ("add", (0x7F7FFFFF, 0x73000000), 0x7F800000, "max + half an ulp: a tie to even overflows to inf"),
    ("add", (0x7F800000, 0xFF800000), 0x7FC00000, "inf - inf = the canonical NaN"),
    ("add", (0xFFC00001, 0x3F800000), 0x7FC00000, "a NaN operand gives the canonical NaN"),
    ("mul", (0x3F7FFFFF, 0x00800000), 0x00800000, "(1-2^-24) * 2^-126 rounds (gradual underflow) to 2^-126"),
    ("mul", (0x3F7FFFFE, 0x00800000), 0x00000000, "(1-2^-23) * 2^-126 is subnormal: flushed"),
    ("mul", (0x7F800000, 0x00000000), 0x7FC00000, "inf * 0 = NaN"),
    ("mul", (0x7F000000, 0x40000000), 0x7F800000, "2^127 * 2 overflows to inf"),
    ("mul", (0x80000000, 0x3F800000), 0x80000000, "-0 * 1 = -0"),
    ("mul16", (0x7BFF, 0x7BFF), 0x4F7FC004, "65504^2, exact in binary32"),
    ("mul16", (0x0400, 0x0400), 0x31800000, "2^-14 * 2^-14 = 2^-28, normal in binary32"),
    ("mul16", (0x03FF, 0x3C00), 0x00000000, "a subnormal binary16 reads as +0 (DAZ)"),
    ("mul16", (0x8001, 0x3C00), 0x80000000, "... and a negative one as -0"),
    ("mul16", (0x7C00, 0x8000), 0x7FC00000, "inf * -0 = NaN"),
    ("round16", (0x477FEFFF,), 0x7BFF, "just below 65520 rounds to 65504"),
    ("round16", (0x477FF000,), 0x7C00, "65520 (the tie between 65504 and 2^16) overflows to inf"),
    ("round16", (0x387FE000,), 0x0400, "2^-14 - 2^-25 (the tie) rounds up to 2^-14, normal"),
    ("round16", (0x387FDFFF,), 0x0000, "just below it rounds to a subnormal: flushed to +0"),
    ("round16", (0xB87FDFFF,), 0x8000, "... or -0"),
    ("round16", (0x3F801000,), 0x3C00, "1 + 2^-11 (a tie) rounds to even: 1"),
    ("round16", (0x3F803000,), 0x3C02, "1 + 3*2^-11 (a tie) rounds to even: 1 + 2^-9"),
    ("round16", (0x7F800001,), 0x7E00, "NaN -> 0x7E00"),
]


def _unit(kind):
    return {"add": (Fp32AddUnit, 32), "mul": (Fp32MulUnit, 32), "mul16": (Fp16MulUnit, 16),
            "round16": (Fp32ToFp16Unit, None)}[kind]


@pytest.mark.parametrize("kind", ["add", "mul", "mul16", "round16"])
def test_pinned_corner_cases(kind):
    rows = [r for r in PINNED if r[0] == kind]
    factory, width = _unit(kind)
    words = [ops[0] if width is None else ops[0] | ops[1] << width for _, ops, _, _ in rows]
    ref = {"add": lambda o: ref_add32(*o), "mul": lambda o: ref_mul32(*o), "mul16": lambda o: ref_mul16(*o),
           "round16": lambda o: ref_round16(o[0])}[kind]
    got = run_stream(factory(), words)
    for (_, ops, want, what), g in zip(rows, got):
        assert int(ref([np.array([v]) for v in ops])[0]) == want, f"reference disagrees with the table: {what}"
        assert g == want, f"{what}: got {g:#x}, want {want:#x}"


@pytest.mark.parametrize("name", ["add32", "sub32", "mul32", "mul16", "round16", "widen16"])
def test_unit_matches_numerics(name):
    """Every pair of corner values plus 600 random vectors (nearby exponents, ties, the underflow and
    overflow boundaries), with random backpressure on both streams."""
    factory, words, expected = leaf_units(600, seed=1)[name]
    got = run_stream(factory(), words, stall=0.15, seed=2)
    bad = [k for k, (g, e) in enumerate(zip(got, expected)) if g != int(e)]
    assert not bad, f"{len(bad)} mismatches, first: " + ", ".join(
        f"{words[k]:#x} -> {got[k]:#x} (want {int(expected[k]):#x})" for k in bad[:5])


@pytest.mark.parametrize("stages", range(ADD_MAX_STAGES + 1))
def test_adder_stages_change_latency_not_results(stages):
    a = np.array([0x3F800000, 0x7F7FFFFF, 0x00C00000, 0x40490FDB], np.uint32)
    b = np.array([0x33800000, 0x73000000, 0x80800000, 0xC0490FDA], np.uint32)
    dut = Fp32AddUnit(stages=stages)
    assert dut.latency == max(stages, 1)                    # a combinational operator gets an output register
    assert run_stream(dut, pack2(a, b, 32), stall=0.3) == [int(v) for v in ref_add32(a, b)]


@pytest.mark.parametrize("name, unit", [("mul32", lambda: Fp32MulUnit(stages=4)),
                                        pytest.param("mul32", lambda: Fp32MulUnit(stages=len(MUL32_CUTS)), id="mul32-deepest"),
                                        ("mul16", lambda: Fp16MulUnit(stages=3)),
                                        ("round16", lambda: Fp32ToFp16Unit(stages=2))])
def test_deepest_multipliers_match_numerics(name, unit):
    """Every multiplier and rounding cut (partial products, registered significands, before the rounding
    increment) keeps the results."""
    _, words, expected = leaf_units(300, seed=5)[name]
    assert run_stream(unit(), words, stall=0.2, seed=6) == [int(e) for e in expected]


@pytest.mark.parametrize("sub", [False, True])
def test_deepest_adder_matches_numerics(sub):
    """The adder with every register cut (the depth-closing configuration) on the corner and random
    vectors, with backpressure."""
    factory, words, expected = leaf_units(300, seed=4)["sub32" if sub else "add32"]
    got = run_stream(Fp32AddUnit(stages=ADD_MAX_STAGES, sub=sub), words, stall=0.2, seed=3)
    assert got == [int(e) for e in expected]


@pytest.mark.parametrize("n", [3, 11, 24, 27])
def test_lzc_tree_counts_leading_zeros(n):
    from amaranth import Module, Signal
    from amaranth.sim import Simulator
    v, out = Signal(n), Signal(8)
    m = Module()
    m.d.comb += out.eq(lzc_tree(v))
    rng = np.random.default_rng(n)
    values = [0, 1, (1 << n) - 1, 1 << (n - 1)] + [int(x) >> int(s) for x, s in
                                                   zip(rng.integers(0, 1 << n, 200), rng.integers(0, n, 200))]

    async def bench(ctx):
        for x in values:
            ctx.set(v, x)
            assert ctx.get(out) == n - x.bit_length(), x

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def test_latency_is_what_the_unit_reports():
    """One input, no backpressure: the result appears exactly `latency` cycles later."""
    from amaranth.sim import Simulator
    from hw_helpers import raw
    for dut in (Fp32AddUnit(), Fp32MulUnit(), Fp16MulUnit(), Fp32ToFp16Unit(), Widen16Unit()):
        seen = []

        async def bench(ctx, dut=dut, seen=seen):
            ctx.set(dut.o.ready, 1)
            ctx.set(raw(dut.i.payload), 0x3F80_0000_3F80_0000 if len(raw(dut.i.payload)) == 64 else 0x3C00)
            ctx.set(dut.i.valid, 1)
            await ctx.tick()
            ctx.set(dut.i.valid, 0)
            for cycle in range(1, 10):
                if ctx.get(dut.o.valid):
                    seen.append(cycle)
                await ctx.tick()

        sim = Simulator(dut)
        sim.add_clock(5e-9)
        sim.add_testbench(bench)
        sim.run()
        assert seen == [dut.latency], (type(dut).__name__, seen)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match=f"stages must be an integer 0..{ADD_MAX_STAGES}, not 9"):
        Fp32AddUnit(stages=9)
    with pytest.raises(ValueError, match=f"stages must be an integer 0..{len(MUL32_CUTS)}, not {len(MUL32_CUTS) + 1}"):
        Fp32MulUnit(stages=len(MUL32_CUTS) + 1)


# ---------------------------------------------------------------------------------------------- DSP48E2 adder
def _alignment_pairs(seed: int, per_shift: int = 24):
    """(a, b) with every exponent difference 0..40 (both orders, both signs), significands random or at their
    extremes (1.0, all ones, one below a tie): every alignment shift and its sticky bits."""
    rng = np.random.default_rng(seed)
    a, b = [], []
    for d in range(41):
        for k in range(per_shift):
            ea = int(rng.integers(d + 1, 255 - 1)) if d < 253 else 254
            fa, fb = (int(x) for x in rng.integers(0, 1 << 23, 2))
            if k < 4:
                fa, fb = [(0, 0), ((1 << 23) - 1, (1 << 23) - 1), (0, (1 << 23) - 1), (1 << 22, 1)][k]
            sa, sb = (int(x) for x in rng.integers(0, 2, 2))
            x, y = (sa << 31) | (ea << 23) | fa, (sb << 31) | ((ea - d) << 23) | fb
            a += [x, y]
            b += [y, x]
    return np.array(a, np.uint32), np.array(b, np.uint32)


def test_dsp_alignment_is_the_shifter():
    """`dsp_align` (multiplexer + DSP multiply by a one-hot) equals the 4:1-multiplexer shifter on every
    shift 0..27 for significands at their extremes and random ones, and its sticky bit is the OR of the
    bits shifted out."""
    from amaranth import Cat, Module, Signal
    from amaranth.sim import Simulator

    from dfx.hw.fp import dsp_align, shift_right
    from dfx.hw.pipe import Pipe
    m_sml, dc, got, want, sticky = Signal(24), Signal(5), Signal(27), Signal(27), Signal()
    m = Module()
    p = Pipe(m, 1)
    shifted, st = dsp_align(p, m_sml, dc, "model")
    m.d.comb += [got.eq(shifted), sticky.eq(st), want.eq(shift_right(p, Cat(0, 0, 0, m_sml), dc))]
    rng = np.random.default_rng(7)
    ms = [1 << 23, (1 << 24) - 1, (1 << 23) | 1, 0] + [int(x) | 1 << 23 for x in rng.integers(0, 1 << 23, 24)]

    async def bench(ctx):
        for s in range(28):
            for x in ms:
                ctx.set(m_sml, x)
                ctx.set(dc, s)
                assert ctx.get(got) == ctx.get(want) == (x << 3) >> s, (hex(x), s)
                assert ctx.get(sticky) == (x & ((1 << max(s - 3, 0)) - 1) != 0), (hex(x), s)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("sub, stages", [(False, 2), (True, 0), (False, ADD_MAX_STAGES), (True, ADD_MAX_STAGES)])
def test_dsp_adder_matches_numerics(sub, stages):
    """The DSP48E2 adder (behavioural model) against `numerics`: every pair of corner values, random and
    nearby-exponent pairs, and every exponent difference 0..40 in both orders and signs; its latency is the
    LUT adder's."""
    _, words, expected = leaf_units(300, seed=11)["sub32" if sub else "add32"]
    a, b = _alignment_pairs(12)
    words = words + pack2(a, b, 32)
    expected = [int(e) for e in expected] + [int(v) for v in ref_add32(a, b, sub=sub)]
    dut = Fp32AddUnit(stages=stages, sub=sub, dsp="model")
    assert dut.latency == Fp32AddUnit(stages=stages).latency
    got = run_stream(dut, words, stall=0.1, seed=13)
    bad = [k for k, (g, e) in enumerate(zip(got, expected)) if g != e]
    assert not bad, f"{len(bad)} of {len(words)} differ, first: " + ", ".join(
        f"{words[k]:#x} -> {got[k]:#x} (want {expected[k]:#x})" for k in bad[:5])


def _regs(inst: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"\.(\w+REG)\(32'd(\d+)\)", inst)}


@pytest.mark.parametrize("stages", [2, 4, ADD_MAX_STAGES])
def test_dsp_adder_primitive_instantiates_two_dsp48e2(stages):
    """dsp="primitive" writes two DSP48E2 instances, the multiplier and the 48-bit adder (UG579's OPMODE
    and ALUMODE encodings), whose own registers stand for the adder's cuts: the multiplier's A/B registers
    for the cut after the shift-amount clamp, its P register for the cut after alignment, the adder's C and
    ALUMODE registers for that cut too, its P register for the cut after the add; never MREG."""
    from amaranth.back import verilog

    from dfx.hw.fp import ADD_CUTS
    on = set(ADD_CUTS[:stages])
    text = verilog.convert(Fp32AddUnit(stages=stages, dsp="primitive"), name="add32dsp", emit_src=False)
    insts = re.findall(r"DSP48E2 #\((.*?)\) \w+ \(", text, re.S)
    assert len(insts) == 2
    by = {re.search(r"\.USE_MULT\(\"(\w+)\"\)", i)[1]: _regs(i) for i in insts}
    mul, add = by["MULTIPLY"], by["NONE"]
    assert (mul["AREG"], mul["BREG"], mul["PREG"], mul["MREG"], mul["CREG"]) == (7 in on, 7 in on, 0 in on, 0, 0)
    assert (add["AREG"], add["CREG"], add["ALUMODEREG"], add["PREG"]) == (0, 0 in on, 0 in on, 3 in on)
    mul_inst = next(i for i in insts if '"MULTIPLY"' in i)
    assert '.USE_PATTERN_DETECT("PATDET")' in mul_inst and "48'hffffffffe000" in mul_inst   # the sticky bits
    with pytest.raises(ValueError, match="dsp must be one of None, 'model', 'primitive', not 'ip'"):
        Fp32AddUnit(dsp="ip")
