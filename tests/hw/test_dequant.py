"""The dequantisers (`hw/dequant.py`, the per-element one and the per-group table) against `dfx.formats.dequant`, bit for bit, in amaranth.sim: every code
of the small formats, extreme codes and zero points, special scales (signed zeros, subnormals: DAZ, inf, NaN,
the largest binary16) and random elements, under backpressure."""
import numpy as np
import pytest
from hw_helpers import built_only, run_stream

from dfx import formats
from dfx.hw.dequant import STAGES_300MHZ, Dequantizer, TableDequantizer, dequant_layout, table_layout

SPECIAL16 = np.array([0x0000, 0x8000, 0x0001, 0x83FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0x3C00,
                      0x1000, 0xB555, 0x2E66], np.uint16).view(np.float16)
FORMATS = ("int8-oc", "int4-oc", "int3-oc", "int4-oc-asym", "int8-oc-asym", "fp8e4m3", "fp8e5m2", "bcq1-oc",
           "bcq3-oc", "bcq4-oc")


def legal_codes(fmt, n, rng):
    """n codes (bcq: (Q, n) bits), every legal code first, then random ones."""
    if fmt.kind == "bcq":
        return rng.integers(0, 2, (fmt.bits, n)).astype(np.uint8)
    if fmt.kind == "int":
        lo, hi = (0, (1 << fmt.bits) - 1) if fmt.asym else (-(1 << (fmt.bits - 1)), (1 << (fmt.bits - 1)) - 1)
        allc = np.arange(lo, hi + 1)
        c = np.concatenate([allc, rng.integers(lo, hi + 1, max(n - allc.size, 0))])[:n]
        return c.astype(np.uint8 if fmt.asym else np.int8)
    ok = np.flatnonzero(~np.isnan(formats.FP8_TABLES[fmt.kind]))
    return np.concatenate([ok, rng.choice(ok, max(n - ok.size, 0))])[:n].astype(np.uint8)


def case(name, n=400, seed=0):
    """(fmt, QuantWeight of shape (1, n): one scale per element)."""
    rng = np.random.default_rng(seed)
    fmt = formats.parse(name)
    codes = legal_codes(fmt, n, rng)
    shape = (fmt.bits, n) if fmt.kind == "bcq" else (n,)
    scales = (rng.standard_normal(shape) * 0.05).astype(np.float16)
    scales.reshape(-1)[1::7] *= np.float16(4096)        # large scales: an E5M2 subnormal code times them is normal
    flat = scales.reshape(-1)
    flat[:SPECIAL16.size] = SPECIAL16
    flat[-SPECIAL16.size:] = SPECIAL16[::-1]
    zeros = None
    if fmt.asym:
        zeros = rng.integers(0, 1 << fmt.bits, n).astype(np.uint8)
        zeros[:2] = (0, (1 << fmt.bits) - 1)
    qw = formats.QuantWeight(fmt, codes[..., None, :], scales[..., None, :],
                             None if zeros is None else zeros[None, :]).check()
    return fmt, qw, codes, scales, zeros


def payloads(fmt, codes, scales, zeros):
    lay = dequant_layout(fmt)
    n = codes.shape[-1]
    out = []
    for e in range(n):
        if fmt.kind == "bcq":
            v = {"code": sum(int(codes[i, e]) << i for i in range(fmt.bits)),
                 "scale": [int(s) for s in scales[:, e].view(np.uint16)]}
        else:
            v = {"code": int(codes[e]) & ((1 << fmt.bits) - 1), "scale": int(scales[e:e + 1].view(np.uint16)[0])}
            if fmt.asym:
                v["zero"] = int(zeros[e])
        out.append(lay.const(v).as_bits())
    return out


@pytest.mark.parametrize("name", FORMATS)
def test_dequantizer_matches_formats(name):
    fmt, qw, codes, scales, zeros = case(name, seed=FORMATS.index(name))
    with np.errstate(all="ignore"):
        want = formats.dequant(qw)[0].view(np.uint16)
    dut = Dequantizer(fmt)
    got = np.array(run_stream(dut, payloads(fmt, codes, scales, zeros), stall=0.2, seed=1), np.uint16)
    bad = np.flatnonzero(got != want)
    assert not bad.size, [(int(i), hex(got[i]), hex(want[i])) for i in bad[:5]]


@pytest.mark.parametrize("name", ("int4-oc", "int8-oc", "int4-oc-asym", "fp8e5m2", "bcq3-oc"))
def test_deep_dequantizer_matches_formats(name):
    """The 300 MHz depths (`STAGES_300MHZ`: the code's value registered, every multiplier and rounding cut)
    give the same weights."""
    fmt, qw, codes, scales, zeros = case(name, n=300, seed=11 + FORMATS.index(name))
    with np.errstate(all="ignore"):
        want = formats.dequant(qw)[0].view(np.uint16)
    dut = Dequantizer(fmt, **STAGES_300MHZ)
    got = np.array(run_stream(dut, payloads(fmt, codes, scales, zeros), stall=0.2, seed=3), np.uint16)
    bad = np.flatnonzero(got != want)
    assert not bad.size, [(int(i), hex(got[i]), hex(want[i])) for i in bad[:5]]
    assert dut.latency == built_only(Dequantizer(fmt)).latency + (1 if fmt.kind == "bcq" else 5)


def test_dequantizer_latency_and_refusals():
    lat = {k: built_only(Dequantizer(*k[:1], **dict(k[1:]))).latency
           for k in (("int4-oc",), ("int4-oc", ("mul_stages", 1)), ("bcq4-oc",), ("bcq4-oc", ("add_stages", 1)),
                     ("fp8e4m3",))}
    assert lat[("int4-oc", ("mul_stages", 1))] == lat[("int4-oc",)] - 1
    assert lat[("bcq4-oc", ("add_stages", 1))] == lat[("bcq4-oc",)] - 4      # four adders in a chain
    assert lat[("fp8e4m3",)] == lat[("int4-oc",)] + 1                       # + the code ROM read
    with pytest.raises(ValueError, match="not fp16"):
        Dequantizer("fp16")
    with pytest.raises(formats.FormatError):
        Dequantizer("int5-oc")
    with pytest.raises(ValueError, match="add_stages must be an integer 0..3, not 7"):
        Dequantizer("bcq2-oc", add_stages=7)


def test_latencies_as_documented():
    """The dequantiser latencies docs/rtl_core.md ("Quantized weights") quotes, per family at default stages."""
    from dfx.hw.qfetch import CORE_FAMILIES
    lat = {fam: built_only(Dequantizer(f)).latency for fam, f in CORE_FAMILIES.items()}
    assert lat == {"int8": 3, "int4": 3, "int3": 3, "fp8e4m3": 4, "fp8e5m2": 4, "bcq1": 3, "bcq2": 5, "bcq3": 7,
                   "bcq4": 9}


@pytest.mark.parametrize("name", ("int4-oc", "int4-oc-asym", "int3-oc", "int3-oc-asym"))
def test_table_dequantizer_matches_formats(name):
    """n = 4 elements per beat share one scale (and zero point): every code, every special scale, every zero
    point's extremes, bit-exact to `formats.dequant` under backpressure."""
    n, beats = 4, 48
    rng = np.random.default_rng(7)
    fmt = formats.parse(name)
    codes = legal_codes(fmt, n * beats, rng)
    scales = (rng.standard_normal(beats) * 0.05).astype(np.float16)
    scales[:SPECIAL16.size] = SPECIAL16
    zeros = rng.integers(0, 1 << fmt.bits, beats).astype(np.uint8) if fmt.asym else None
    if fmt.asym:
        zeros[[1, 2]] = (0, (1 << fmt.bits) - 1)
    qw = formats.QuantWeight(fmt, codes[None, :], np.repeat(scales, n)[None, :],
                             None if zeros is None else np.repeat(zeros, n)[None, :]).check()
    with np.errstate(all="ignore"):
        want = formats.dequant(qw)[0].view(np.uint16)
    lay, mask = table_layout(fmt, n), (1 << fmt.bits) - 1
    words = []
    for t in range(beats):
        v = {"code": [int(c) & mask for c in codes[t * n:(t + 1) * n]], "scale": int(scales[t:t + 1].view(np.uint16)[0])}
        if fmt.asym:
            v["zero"] = int(zeros[t])
        words.append(lay.const(v).as_bits())
    dut = TableDequantizer(fmt, n)
    out = run_stream(dut, words, stall=0.2, seed=2)
    got = np.array([(w >> (16 * e)) & 0xFFFF for w in out for e in range(n)], np.uint16)
    bad = np.flatnonzero(got != want)
    assert not bad.size, [(int(i), hex(got[i]), hex(want[i])) for i in bad[:5]]


def test_table_dequantizer_refusals_and_latency():
    assert built_only(TableDequantizer("int4-oc", 2, mul_stages=2, round_stages=1)).latency == \
        built_only(TableDequantizer("int4-oc", 2)).latency - 4
    for bad in ("int8-oc", "fp8e4m3", "bcq2-oc"):
        with pytest.raises(ValueError, match="at most 4 bits"):
            TableDequantizer(bad, 4)
    with pytest.raises(ValueError, match="n .elements per group. must be a positive integer, not 0"):
        TableDequantizer("int4-oc", 0)
