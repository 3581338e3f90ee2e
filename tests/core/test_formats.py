"""Weight formats (dfx/formats.py): names, the exact dequantisation against float64 references, the FP8 tables
against the OCP definitions, RTN's error bounds, and the HBM region layout (pack/unpack, descriptor)."""
import struct

import numpy as np
import pytest

from dfx import formats as F
from dfx.compiler.quant.rtn import rtn

RNG = np.random.default_rng(1234)


# ------------------------------------------------------------------------------------------------ names
def test_every_format_round_trips_through_its_name():
    fmts = F.all_formats()
    assert len(fmts) == len(set(fmts)) == 97 and fmts[0] is F.FP16
    for f in fmts:
        assert F.parse(f.name) == f and F.parse(f) is f and str(f) == f.name


@pytest.mark.parametrize("text,canon", [
    ("FP16", "fp16"), (" int8-oc ", "int8-oc"), ("fp8e4m3-oc", "fp8e4m3"), ("fp8e5m2", "fp8e5m2"),
    ("fp8e4m3-ic-g64", "fp8e4m3-ic-g64"), ("fp8e4m3-oc-g32", "fp8e4m3-oc-g32"), ("int4-oc-g64-asym", "int4-oc-g64-asym"),
    ("bcq3-ic-g128", "bcq3-ic-g128"), ("int3-ic", "int3-ic"),
])
def test_alternative_spellings(text, canon):
    assert F.parse(text).name == canon


@pytest.mark.parametrize("bad,why", [
    ("int4", "unknown weight format"), ("int4-oc-g48", "group size 48 is not one of 32, 64, 128"),
    ("int5-oc", "integer widths are 8, 4, 3"), ("int16-ic", "integer widths"), ("bcq5-oc", "planes are 1, 2, 3, 4"),
    ("bcq0-oc", "planes are"), ("fp16-g32", "fp16 takes no group"), ("fp16-asym", "fp16 takes no group"),
    ("fp8e4m3-asym", "applies to int formats"), ("bcq2-oc-asym", "applies to int formats"), ("fp8e3m4", "unknown"),
    ("int4-xc", "unknown"), ("", "unknown"), ("int4-oc-g", "unknown"), ("int4-oc-g0", "group size 0"),
])
def test_bad_names_say_what_is_accepted(bad, why):
    with pytest.raises(F.FormatError, match=why) as e:
        F.parse(bad)
    assert "accepted: fp16, int{8,4,3}-{oc,ic}" in str(e.value)
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("kw,why", [
    (dict(kind="int2", bits=2, axis="oc"), "kind 'int2' is not one of"),
    (dict(kind="fp16", bits=16, axis="oc"), "fp16 takes no axis"),
    (dict(kind="int", bits=4, axis="row"), "axis must be 'oc' or 'ic'"),
    (dict(kind="int", bits=4, axis="oc", group=16), "group size 16"),
    (dict(kind="fp8e4m3", bits=4, axis="oc"), "8-bit codes"),
    (dict(kind="bcq", bits=8, axis="ic"), "planes are"),
])
def test_bad_parameters(kw, why):
    with pytest.raises(F.FormatError, match=why):
        F.WeightFormat(**kw)


def test_families_and_wfmt_codes():
    assert F.parse("int4-ic-g128").family == "int4" and F.parse("bcq3-oc").family == "bcq"
    assert {f.family for f in F.all_formats()} == set(F.FAMILIES)
    codes = {f.wfmt for f in F.all_formats()}
    assert codes == set(F.WFMT_CODES.values()) and max(codes) < 16 and F.FP16.wfmt == 0


# ------------------------------------------------------------------------------------------------ FP8
def _ocp_fp8(code: int, e_bits: int, m_bits: int, bias: int, kind: str) -> float:
    """The OCP 8-bit floating point spec (v1.0), written out: NaN/inf codes -> nan."""
    s, e, m = code >> 7, (code >> m_bits) & ((1 << e_bits) - 1), code & ((1 << m_bits) - 1)
    if kind == "e4m3" and e == 15 and m == 7:
        return float("nan")                                         # E4M3: S.1111.111 is NaN, no infinities
    if kind == "e5m2" and e == 31:
        return float("nan")                                         # E5M2: IEEE-like inf/NaN (illegal here)
    v = 2.0 ** (1 - bias) * m / 2 ** m_bits if e == 0 else 2.0 ** (e - bias) * (1 + m / 2 ** m_bits)
    return -v if s else v


@pytest.mark.parametrize("name,args", [("fp8e4m3", (4, 3, 7, "e4m3")), ("fp8e5m2", (5, 2, 15, "e5m2"))])
def test_fp8_tables_are_the_ocp_formats(name, args):
    t = F.FP8_TABLES[name]
    ref = np.array([_ocp_fp8(c, *args) for c in range(256)])
    assert np.array_equal(np.isnan(t), np.isnan(ref))
    ok = ~np.isnan(ref)
    assert np.array_equal(t[ok].astype(np.float64), ref[ok])
    assert np.array_equal(np.signbit(t[ok]), np.signbit(ref[ok]))               # 0x80 is -0
    assert np.nanmax(t) == {"fp8e4m3": 448.0, "fp8e5m2": 57344.0}[name]
    assert not t.flags.writeable
    torch = pytest.importorskip("torch")
    dt = {"fp8e4m3": torch.float8_e4m3fn, "fp8e5m2": torch.float8_e5m2}[name]
    tv = torch.arange(256, dtype=torch.uint8).view(dt).float().numpy()
    assert np.array_equal(t[ok].astype(np.float32), tv[ok])


@pytest.mark.parametrize("name", ["fp8e4m3", "fp8e5m2"])
def test_fp8_encode_is_round_to_nearest_even_with_saturation(name):
    t = F.FP8_TABLES[name].astype(np.float64)
    vals = np.unique(t[~np.isnan(t)])                                          # sorted, one zero
    mids = (vals[1:] + vals[:-1]) / 2
    x = np.concatenate([vals, mids, RNG.uniform(-1.2, 1.2, 4000) * vals[-1], [vals[-1] * 3, -vals[-1] * 3]])
    codes = F.fp8_encode(x, name)
    got = t[codes]
    for xi, gi in zip(x, got):
        xc = np.clip(xi, vals[0], vals[-1])
        dist = np.abs(vals - xc)
        best = vals[dist == dist.min()]
        if len(best) == 1:
            assert gi == best[0], (xi, gi, best)
        else:                                                                  # a tie: the even code wins
            even = [v for v in best if int(F.fp8_encode(np.array([v]), name)[0]) % 2 == 0]
            assert gi == even[0], (xi, gi, best)
    assert not np.isnan(got).any()


def test_fp8_nan_codes_are_illegal():
    qw = F.QuantWeight(F.parse("fp8e4m3"), np.full((4, 2), 0x7F, np.uint8), np.ones((1, 2), np.float16))
    with pytest.raises(F.FormatError, match="NaN/inf codes are illegal"):
        qw.check()
    with pytest.raises(F.FormatError, match="NaN/inf codes are illegal"):
        qw.dequant()


# ------------------------------------------------------------------------------------------------ dequant
def _ref16(x64: np.ndarray) -> np.ndarray:
    """float64 -> binary16 by one RNE rounding, subnormals flushed to a signed zero (the datapath's to_fp16)."""
    with np.errstate(over="ignore"):
        y = np.asarray(x64, np.float64).astype(np.float16)
    return np.where(np.abs(y.astype(np.float64)) < 2.0 ** -14, np.copysign(np.float16(0), y), y).astype(np.float16)


def _scales(shape):
    """Scales over the whole binary16 range, with subnormals (read as 0), zeros and huge values (overflow)."""
    s = (RNG.standard_normal(shape) * 2.0 ** RNG.integers(-20, 12, shape)).astype(np.float16)
    s.flat[::7] = np.float16(3e-6)                                  # subnormal: DAZ -> 0
    s.flat[::11] = np.float16(60000)                                # times a large code -> inf
    return s


def _daz64(s: np.ndarray) -> np.ndarray:
    s64 = s.astype(np.float64)
    return np.where(np.abs(s64) < 2.0 ** -14, np.copysign(0.0, s64), s64)


def _same(a, b):
    assert a.dtype == b.dtype == np.float16
    np.testing.assert_array_equal(a.view(np.uint16), b.view(np.uint16))


@pytest.mark.parametrize("name", ["int8-oc", "int4-oc-g32", "int3-ic-g32", "int8-ic", "int4-ic-g64-asym",
                                  "int3-oc-g32-asym", "int8-oc-g128-asym"])
def test_int_dequant_is_the_correctly_rounded_product(name):
    f = F.parse(name)
    k, n = 100, 70                                                  # 32 does not divide either: short last groups
    ss = f.scale_shape(k, n)
    s = _scales(ss)
    if f.asym:
        u = RNG.integers(0, 1 << f.bits, (k, n)).astype(np.uint8)
        z = RNG.integers(0, 1 << f.bits, ss).astype(np.uint8)
        qw = F.QuantWeight(f, u, s, z).check()
        q64 = u.astype(np.float64) - F.expand_groups(z, f, k, n).astype(np.float64)
    else:
        q = RNG.integers(-(1 << (f.bits - 1)), 1 << (f.bits - 1), (k, n)).astype(np.int8)
        qw = F.QuantWeight(f, q, s).check()
        q64 = q.astype(np.float64)
    ref = _ref16(q64 * F.expand_groups(_daz64(s), f, k, n))
    _same(qw.dequant(), ref)
    assert np.isinf(ref.astype(np.float32)).any() and (ref == 0).any()     # the corners were exercised


@pytest.mark.parametrize("name", ["fp8e4m3", "fp8e5m2-ic-g32", "fp8e4m3-oc-g64", "fp8e5m2"])
def test_fp8_dequant_is_the_correctly_rounded_product(name):
    f = F.parse(name)
    k, n = 96, 40
    table = F.FP8_TABLES[f.kind]
    legal = np.nonzero(~np.isnan(table))[0].astype(np.uint8)
    c = RNG.choice(legal, (k, n))
    s = _scales(f.scale_shape(k, n))
    qw = F.QuantWeight(f, c, s).check()
    ref = _ref16(table[c].astype(np.float64) * F.expand_groups(_daz64(s), f, k, n))
    _same(qw.dequant(), ref)


def _bcq_ref(bits, alphas, f, k, n):
    """Plane 0 first, a binary32 rounding after every add (emulated with float64 + a float32 cast), then fp16."""
    a = F.expand_groups(_daz64(alphas), f, k, n)
    acc = np.zeros((k, n), np.float64)
    for i in range(f.bits):
        acc = (acc + np.where(bits[i] == 1, a[i], -a[i])).astype(np.float32).astype(np.float64)
    return _ref16(acc)


@pytest.mark.parametrize("name", ["bcq1-oc", "bcq3-oc-g32", "bcq4-ic-g32", "bcq2-ic"])
def test_bcq_dequant_is_the_plane_ordered_binary32_sum(name):
    f = F.parse(name)
    k, n = 72, 50
    b = RNG.integers(0, 2, (f.bits, k, n)).astype(np.uint8)
    al = np.abs(_scales((f.bits, *f.scale_shape(k, n))))
    qw = F.QuantWeight(f, b, al).check()
    _same(qw.dequant(), _bcq_ref(b, al, f, k, n))


def test_bcq_sum_order_is_pinned():
    """alphas 1024, 0.5, 2^-14, 2^-14, all bits +: plane order gives 1024.5 in binary32 (each 2^-14 is a tie that
    rounds to even), which rounds to 1024 in binary16; the reverse order (or exact arithmetic) gives 1025."""
    f = F.parse("bcq4-oc")
    al = np.array([1024, 0.5, 2 ** -14, 2 ** -14], np.float16).reshape(4, 1, 1)
    qw = F.QuantWeight(f, np.ones((4, 1, 1), np.uint8), al).check()
    assert qw.dequant()[0, 0] == 1024
    assert _ref16(np.array([1024 + 0.5 + 2 ** -13]))[0] == 1025


def test_dequant_rejects_bad_containers():
    f = F.parse("int4-oc-g32")
    with pytest.raises(F.FormatError, match=r"scales must be float16 of shape \(2, 3\)"):
        F.QuantWeight(f, np.zeros((40, 3), np.int8), np.zeros((1, 3), np.float16)).check()
    with pytest.raises(F.FormatError, match=r"codes outside \[-8, 7\]"):
        F.QuantWeight(f, np.full((40, 3), 8, np.int8), np.zeros((2, 3), np.float16)).check()
    fa = F.parse("int4-oc-g32-asym")
    with pytest.raises(F.FormatError, match="zero points of shape"):
        F.QuantWeight(fa, np.zeros((40, 3), np.uint8), np.zeros((2, 3), np.float16)).check()
    with pytest.raises(F.FormatError, match=r"zero points outside \[0, 15\]"):
        F.QuantWeight(fa, np.zeros((40, 3), np.uint8), np.zeros((2, 3), np.float16), np.full((2, 3), 16, np.uint8)).check()
    with pytest.raises(F.FormatError, match="planes of bits"):
        F.QuantWeight(F.parse("bcq2-oc"), np.full((2, 4, 3), 2, np.uint8), np.zeros((2, 1, 3), np.float16)).check()


# ------------------------------------------------------------------------------------------------ RTN
def _group_absmax(w, f):
    k, n = w.shape
    from dfx.compiler.quant.rtn import group_view
    blocks, _ = group_view(np.abs(w), f)
    m = blocks.max(-1)
    return F.expand_groups(m, f, k, n)


@pytest.mark.parametrize("name", ["int8-oc", "int8-ic-g128", "int4-oc-g128", "int4-ic-g32", "int4-oc-g32",
                                  "int3-oc-g64", "int4-oc-g32-asym", "int3-ic-g32-asym", "int8-ic-asym"])
@pytest.mark.parametrize("shape", [(96, 64), (100, 70)])          # the second: G divides neither dimension
def test_rtn_int_error_bound(name, shape):
    f = F.parse(name)
    w = (RNG.standard_normal(shape) * np.exp(RNG.normal(0, 1, shape))).astype(np.float32)
    w[:, 3] = 0                                                     # an all-zero column (all-zero oc groups)
    w[5, :] = np.abs(w[5, :])                                       # a one-signed row
    qw = rtn(w, f)
    assert qw.meta["method"] == "rtn" and qw.scales.shape == f.scale_shape(*shape)
    dq = qw.dequant().astype(np.float64)
    s = F.expand_groups(qw.scales.astype(np.float64), f, *shape)
    gmax = _group_absmax(w.astype(np.float64), f)
    # s/2 from the code rounding; 2^-11 relative for the binary16 result and for the scale's own rounding (a
    # code clipped at qmax because s was rounded down)
    bound = s / 2 + 2.0 ** -11 * (np.abs(dq) + gmax) + 1e-30
    err = np.abs(w - dq)
    assert (err <= bound).all(), float((err / bound).max())
    assert (dq[:, 3] == 0).all()
    if not f.asym:
        assert np.abs(qw.codes).max() <= (1 << (f.bits - 1)) - 1  # symmetric: -2^(b-1) is never used


def test_rtn_short_last_group_uses_only_its_own_rows():
    f = F.parse("int4-oc-g32")
    w = RNG.standard_normal((80, 6)).astype(np.float32)
    w[64:] *= 0.01                                                  # the last group: 16 rows of small weights
    qw = rtn(w, f)
    assert qw.scales.shape == (3, 6)
    want = F.parse("int4-oc").name and np.abs(w[64:]).max(0) / 7
    np.testing.assert_allclose(qw.scales[2].astype(np.float64), want, rtol=2 ** -10)
    fi = F.parse("int4-ic-g32")
    qi = rtn(w.T.copy(), fi)                                        # (6, 80): last column group of 16
    assert qi.scales.shape == (6, 3)
    np.testing.assert_array_equal(qi.scales, qw.scales.T)


@pytest.mark.parametrize("name", ["fp8e4m3", "fp8e5m2", "fp8e4m3-ic-g32", "fp8e5m2-oc-g64"])
def test_rtn_fp8_error_bound(name):
    f = F.parse(name)
    w = (RNG.standard_normal((100, 70)) * np.exp(RNG.normal(0, 1, (100, 70)))).astype(np.float32)
    qw = rtn(w, f)
    dq = qw.dequant().astype(np.float64)
    s = F.expand_groups(qw.scales.astype(np.float64), f, *w.shape)
    m, sub = {"fp8e4m3": (3, 2.0 ** -9), "fp8e5m2": (2, 2.0 ** -16)}[f.kind]
    fmax = np.nanmax(F.FP8_TABLES[f.kind].astype(np.float64))
    r = np.abs(w) / np.where(s > 0, s, 1)
    bound = s * (np.maximum(r * 2.0 ** -(m + 1), sub / 2) + fmax * 2.0 ** -11) + 2.0 ** -11 * np.abs(dq) + 1e-30
    assert (np.abs(w - dq) <= bound).all()


def test_rtn_refuses_bcq_and_keeps_fp16():
    with pytest.raises(F.FormatError, match="compiler.quant.bcq"):
        rtn(np.ones((4, 4)), "bcq2-oc")
    q = rtn(np.array([[1.0, 1e-6]], np.float32), "fp16")
    assert q.codes.dtype == np.float16 and q.codes[0, 1] == 0      # FTZ


# ------------------------------------------------------------------------------------------------ regions
def _some(f, k, n):
    if f.kind == "bcq":
        from dfx.compiler.quant.bcq import bcq
        return bcq(RNG.standard_normal((k, n)).astype(np.float32), f, iters=2)
    return rtn(RNG.standard_normal((k, n)).astype(np.float32), f)


@pytest.mark.parametrize("name", ["int8-oc", "int4-oc-g32", "int4-ic-g32", "int3-oc-g64", "int3-ic-g32-asym",
                                  "int4-oc-g32-asym", "fp8e4m3", "fp8e5m2-ic-g32", "bcq3-oc-g32", "bcq2-ic-g32",
                                  "bcq4-ic"])
@pytest.mark.parametrize("d,l", [(8, 4), (64, 16)])
def test_region_round_trip_and_size(name, d, l):
    f = F.parse(name)
    k, n = 100, 76
    qw = _some(f, k, n)
    full = qw.dequant()
    for c0, c1 in [(0, n), (8, 60), (40, 76)]:                     # pieces that start mid-group (phase)
        p = qw.cols(c0, c1)
        _same(p.dequant(), full[:, c0:c1])
        raw = F.pack_region(p, d, l)
        assert len(raw) == F.matrix_bytes(f, k, c1 - c0, d, l, p.phase) and len(raw) % 64 == 0
        u = F.unpack_region(raw, f.wfmt, k, c1 - c0, d, l)
        _same(u.dequant(), full[:, c0:c1])
        assert u.phase == p.phase and u.fmt == f


def test_region_layout_is_pinned():
    """int4-oc-g32, K=16, n=8, d=8, l=4: tile (i, j) is the (j*2 + i)-th, lane-major; two codes per byte, low
    nibble first; scale blocks (column block, row group, lane)."""
    f = F.parse("int4-oc-g32")
    codes = (np.arange(16 * 8).reshape(16, 8) % 16 - 8).astype(np.int8)
    scales = np.arange(1, 9, dtype=np.float16).reshape(1, 8)
    raw = F.pack_region(F.QuantWeight(f, codes, scales), 8, 4)
    desc = F.read_descriptor(raw)
    assert desc == dict(magic=F.DESC_MAGIC, wfmt=2, flags=0, bits=4, reserved=0, group=32, phase=0, k=16, n=8,
                        codes=64, scales=128, zeros=0, size=192)
    assert raw[:4] == b"DFXQ" and len(raw) == 192
    c = raw[64:128]
    # tile 0 = rows 0..7, cols 0..3; element e = lane*8 + row: e0 = codes[0, 0], e1 = codes[1, 0]
    assert c[0] == ((codes[0, 0] & 15) | (codes[1, 0] & 15) << 4)
    assert c[4] == ((codes[0, 1] & 15) | (codes[1, 1] & 15) << 4)           # lane 1 starts at element 8 = byte 4
    assert c[16] == ((codes[8, 0] & 15) | (codes[9, 0] & 15) << 4)          # tile 1 = rows 8..15 of block 0
    assert c[32] == ((codes[0, 4] & 15) | (codes[1, 4] & 15) << 4)          # tile 2 = column block 1
    assert np.frombuffer(raw[128:144], np.float16).tolist() == list(range(1, 9))


def test_int3_and_bcq_bit_streams_are_lsb_first():
    f = F.parse("int3-oc")
    codes = np.zeros((8, 4), np.int8)
    codes[0, 0], codes[1, 0], codes[2, 0] = 3, -1, 2            # elements 0, 1, 2 of tile 0
    raw = F.pack_region(F.QuantWeight(f, codes, np.ones((1, 4), np.float16)), 8, 4)
    bits = 3 | (0b111 << 3) | (2 << 6)
    assert raw[64] == bits & 0xFF and raw[65] == bits >> 8
    fb = F.parse("bcq2-oc")
    b = np.zeros((2, 8, 4), np.uint8)
    b[0, 1, 0] = 1                                               # plane 0, element 1
    b[1, 0, 1] = 1                                               # plane 1, element 8 (lane 1) -> bit 32 + 8
    raw = F.pack_region(F.QuantWeight(fb, b, np.ones((2, 1, 4), np.float16)), 8, 4)
    t = np.frombuffer(raw[64:72], np.uint8)
    assert t.tolist() == [2, 0, 0, 0, 0, 1, 0, 0]


def test_unpack_checks_the_descriptor():
    f = F.parse("int8-oc")
    raw = bytearray(F.pack_region(_some(f, 16, 8), 8, 4))
    with pytest.raises(F.FormatError, match="does not match the instruction"):
        F.unpack_region(raw, f.wfmt, 16, 12, 8, 4)
    with pytest.raises(F.FormatError, match="does not match the instruction"):
        F.unpack_region(raw, 2, 16, 8, 8, 4)
    bad = bytearray(raw)
    struct.pack_into("<I", bad, 24, 4096)
    with pytest.raises(F.FormatError, match="descriptor offsets"):
        F.unpack_region(bad, f.wfmt, 16, 8, 8, 4)
    with pytest.raises(F.FormatError, match="no weight descriptor"):
        F.unpack_region(bytes(64) + raw, f.wfmt, 16, 8, 8, 4)


def test_matrix_bytes():
    assert F.matrix_bytes("fp16", 768, 2304, 64, 16) == 768 * 2304 * 2
    # int4-oc-g128 at the DFX geometry: codes 0.5 B/weight, scales 2 B per 128 weights, 64-B descriptor
    b = F.matrix_bytes("int4-oc-g128", 768, 2304, 64, 16)
    assert b == 64 + 768 * 2304 // 2 + 6 * 2304 * 2
    # int4-ic-g128: one scale per row per 128 columns
    assert F.matrix_bytes("int4-ic-g128", 768, 2304, 64, 16) == 64 + 768 * 2304 // 2 + 18 * 768 * 2
    # asym adds one byte per group (64-B aligned)
    assert F.matrix_bytes("int4-oc-g128-asym", 768, 2304, 64, 16) == b + 6 * 2304


def test_rtn_scales_never_underflow_to_zero():
    """FP8 E5M2's s = absmax/57344 is subnormal in binary16 for |w| < 3.5 (every GPT-2 weight); DAZ would read it
    as 0. RTN raises such scales to 2^-14, so small weights keep their precision."""
    w = (np.random.default_rng(5).standard_normal((64, 32)) * 0.02).astype(np.float32)
    for name in ("fp8e5m2", "fp8e4m3-ic-g32", "int4-oc-g32"):
        qw = rtn(w, name)
        assert (qw.scales >= np.float16(2 ** -14)).all()
        rel = np.abs(qw.dequant() - w).max() / np.abs(w).max()
        # half a step: 2^-3 of the value (E5M2), 2^-4 (E4M3), s/2 = absmax/14 (INT4), plus binary16 rounding
        assert rel < {"fp8e5m2": 0.126, "fp8e4m3-ic-g32": 0.063, "int4-oc-g32": 0.072}[name], (name, rel)


def test_config_weight_formats_are_dequantiser_families():
    from dfx.config import PRESETS
    from dfx.errors import ConfigError
    assert set(PRESETS["tiny"].weight_formats) == set(PRESETS["dfx"].weight_formats) == set(F.FAMILIES)
    with pytest.raises(ConfigError, match=r"'int4-oc-g128' is not one of fp16, int8, int4, int3.*need their family"):
        PRESETS["tiny"].replace(weight_formats=("fp16", "int4-oc-g128"))
    with pytest.raises(ConfigError, match="must include fp16"):
        PRESETS["tiny"].replace(weight_formats=("int8",))
