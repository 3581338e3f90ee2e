"""The special-function units (GELU, exp, reciprocal, rsqrt) against `dfx.numerics`' operation sequences,
in amaranth.sim: corner cases, random inputs (half over every bit pattern, half in the busy range), under
backpressure. The exhaustive runs over all 65536 binary16 inputs are in test_cocotb.py (slow)."""
import numpy as np
import pytest
from hw_helpers import built_only, run_stream
from hw_vectors import leaf_units, ref_exp16, ref_gelu16, ref_recip, ref_rsqrt

from dfx import numerics as nx
from dfx.hw.fp import ADD_MAX_STAGES, MUL32_CUTS
from dfx.hw.sfu import Exp16Unit, Gelu16Unit, RecipUnit, RsqrtUnit

PINNED = [
    (Gelu16Unit, 0x4800, 0x4800, "gelu(8) = 8 (x >= 8 passes through)"),
    (Gelu16Unit, 0xC800, 0x8000, "gelu(-8) = -0"),
    (Gelu16Unit, 0xFC00, 0x8000, "gelu(-inf) = -0"),
    (Gelu16Unit, 0x7C00, 0x7C00, "gelu(inf) = inf"),
    (Gelu16Unit, 0x0000, 0x0000, "gelu(0) = the table's interpolation at 0, rounded"),
    (Gelu16Unit, 0xFE00, 0x7E00, "NaN -> 0x7E00"),
    (Exp16Unit, 0x0000, 0x3C00, "exp(0) = 1"),
    (Exp16Unit, 0x8000, 0x3C00, "exp(-0) = 1"),
    (Exp16Unit, 0xFC00, 0x0000, "exp(-inf) = +0"),
    (Exp16Unit, 0x7C00, 0x7C00, "exp(inf) = inf"),
    (Exp16Unit, 0x498D, 0x7C00, "exp(11.1) overflows"),
    (Exp16Unit, 0xCC53, 0x0000, "exp(-17.3) is below 2^-14: flushed"),
    (Exp16Unit, 0x7E01, 0x7E00, "NaN -> NaN"),
    (RecipUnit, 0x00000000, 0x7F800000, "1/+0 = +inf"),
    (RecipUnit, 0x80000001, 0xFF800000, "1/(-subnormal) = -inf (DAZ)"),
    (RecipUnit, 0xFF800000, 0x80000000, "1/-inf = -0"),
    (RecipUnit, 0x3F800000, 0x3F800000, "1/1 = 1"),
    (RecipUnit, 0x7F000000, 0x00000000, "1/2^127 = 2^-127 is below 2^-126: +0"),
    (RecipUnit, 0x7E800000, 0x00800000, "1/2^126 = 2^-126, the smallest normal"),
    (RsqrtUnit, 0x80000000, 0xFF800000, "rsqrt(-0) = -inf"),
    (RsqrtUnit, 0xBF800000, 0x7FC00000, "rsqrt(-1) = NaN"),
    (RsqrtUnit, 0x7F800000, 0x00000000, "rsqrt(inf) = +0"),
    (RsqrtUnit, 0x40800000, 0x3F000000, "rsqrt(4) = 0.5"),
]


@pytest.mark.parametrize("unit", [Gelu16Unit, Exp16Unit, RecipUnit, RsqrtUnit], ids=lambda u: u.__name__)
def test_pinned_cases(unit):
    rows = [r for r in PINNED if r[0] is unit]
    ref = {Gelu16Unit: ref_gelu16, Exp16Unit: ref_exp16, RecipUnit: ref_recip, RsqrtUnit: ref_rsqrt}[unit]
    got = run_stream(unit(), [r[1] for r in rows])
    for (_, x, want, what), g in zip(rows, got):
        assert int(ref(np.array([x]))[0]) == want, f"reference disagrees with the table: {what}"
        assert g == want, f"{what}: got {g:#x}, want {want:#x}"


@pytest.mark.parametrize("name", ["gelu16", "exp16", "recip", "rsqrt"])
def test_unit_matches_numerics(name):
    factory, words, expected = leaf_units(300, seed=3)[name]
    got = run_stream(factory(), words, stall=0.1, seed=4)
    bad = [k for k, (g, e) in enumerate(zip(got, expected)) if g != int(e)]
    assert not bad, f"{len(bad)} mismatches, first: " + ", ".join(
        f"{words[k]:#x} -> {got[k]:#x} (want {int(expected[k]):#x})" for k in bad[:5])


@pytest.mark.parametrize("unit", [Gelu16Unit, Exp16Unit, RecipUnit, RsqrtUnit], ids=lambda u: u.__name__)
def test_deep_units_match_numerics(unit):
    """The 300 MHz configuration (every adder and multiplier cut, registers between the operators) gives
    the same results on the pinned cases and random vectors."""
    name = {Gelu16Unit: "gelu16", Exp16Unit: "exp16", RecipUnit: "recip", RsqrtUnit: "rsqrt"}[unit]
    _, words, expected = leaf_units(300, seed=8)[name]
    rows = [r for r in PINNED if r[0] is unit]
    words, expected = [r[1] for r in rows] + list(words), [r[2] for r in rows] + [int(e) for e in expected]
    dut = unit(add_stages=ADD_MAX_STAGES, mul_stages=len(MUL32_CUTS))
    assert run_stream(dut, words, stall=0.1, seed=5) == expected


@pytest.mark.parametrize("fn, table", [("gelu16", "GELU_TABLE"), ("exp16", "EXP_TABLE"),
                                       ("recip", "RECIP_SEED"), ("rsqrt", "RSQRT_SEED")])
def test_roms_come_from_the_numerics_tables(fn, table):
    """Each unit's ROM holds the numerics table's binary32 bits (generated, not copied)."""
    from amaranth import C, Module, Signal

    from dfx.hw import sfu
    from dfx.hw.pipe import Pipe, T
    m = Module()
    m._MustUse__silence = True
    p = Pipe(m, C(1, 1))
    getattr(sfu, fn)(p, T(Signal(16 if fn.endswith("16") else 32), 0))
    want = [int(v) for v in nx.fp32_bits(getattr(nx, table))]
    if fn == "exp16":                    # two ROMs at one address: T[0..255] and T[1..256]
        assert [[int(v) for v in r.init] for r in p.roms] == [want[:-1], want[1:]]
        return
    assert len(p.roms) == 1
    assert [int(v) for v in p.roms[0].init] == want


def test_interpolating_units_have_documented_latency():
    lat = [built_only(u).latency for u in (Gelu16Unit(), Exp16Unit(), RecipUnit(), RsqrtUnit(),
                                             Gelu16Unit(add_stages=1, mul_stages=1))]
    assert lat == [12, 12, 17, 21, 7]
