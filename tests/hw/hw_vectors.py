"""Test vectors for the arithmetic units: named corner cases plus random ones, and the `dfx.numerics` reference
each unit must match bit for bit. Shared by the amaranth.sim tests and the cocotb testbenches."""
import numpy as np

from dfx import numerics as nx

# ---------------------------------------------------------------------------------------------- corner values
C32 = {
    "+0": 0x00000000, "-0": 0x80000000,
    "min subnormal": 0x00000001, "-max subnormal": 0x807FFFFF, "max subnormal": 0x007FFFFF,
    "min normal": 0x00800000, "-min normal": 0x80800000, "min normal+ulp": 0x00800001,
    "2 min normal": 0x01000000, "2 min normal-ulp": 0x00FFFFFF,
    "max": 0x7F7FFFFF, "-max": 0xFF7FFFFF, "2^127": 0x7F000000,
    "half ulp of max": 0x73000000, "2^103+": 0x73000001,
    "+inf": 0x7F800000, "-inf": 0xFF800000,
    "qNaN": 0x7FC00000, "sNaN": 0x7F800001, "-NaN payload": 0xFFC00001,
    "1": 0x3F800000, "-1": 0xBF800000, "1+ulp": 0x3F800001, "1-ulp": 0x3F7FFFFF, "-(1+ulp)": 0xBF800001,
    "2^-24": 0x33800000, "-2^-24": 0xB3800000, "3*2^-25": 0x33C00000, "2^-23": 0x34000000,
    "2^-25+": 0x33000001, "1.5": 0x3FC00000, "3": 0x40400000, "2^24": 0x4B800000, "2^24+2": 0x4B800001,
    "0.5": 0x3F000000, "1-2^-24 (even)": 0x3F7FFFFF, "1.1": 0x3F8CCCCD, "pi": 0x40490FDB,
    "2^-126*(2-2^-23)": 0x00FFFFFF, "2^-63": 0x20000000, "2^-64": 0x1F800000, "2^63": 0x5F000000,
    "65504": 0x477FE000, "65520": 0x477FF000, "2^-14": 0x38800000, "2^-14-2^-25": 0x387FE000, "2^-14-2^-25+ulp": 0x387FE001,
    "2^-14-2^-25-ulp": 0x387FDFFF, "2^-15": 0x38000000, "2^-24 f16": 0x33800000,
}
C16 = {
    "+0": 0x0000, "-0": 0x8000, "min subnormal": 0x0001, "max subnormal": 0x03FF, "-subnormal": 0x8200,
    "min normal": 0x0400, "-min normal": 0x8400, "max": 0x7BFF, "-max": 0xFBFF, "+inf": 0x7C00,
    "-inf": 0xFC00, "qNaN": 0x7E00, "sNaN": 0x7C01, "-NaN": 0xFE00, "1": 0x3C00, "-1": 0xBC00,
    "1+ulp": 0x3C01, "1-ulp": 0x3BFF, "2": 0x4000, "0.5": 0x3800, "8": 0x4800, "-8": 0xC800,
    "8-ulp": 0x47FF, "-(8-ulp)": 0xC7FF, "8+ulp": 0x4801, "-(8+ulp)": 0xC801, "11.09": 0x498C, "11.1": 0x498D,
    "-17.3": 0xCC53, "-16.6": 0xCC26, "pi": 0x4248, "2^-14+ulp": 0x0401, "tiny": 0x1000, "-tiny": 0x9000,
    "0.044": 0x29A2, "-3.5": 0xC300, "5.6": 0x459A, "-5.6": 0xC59A, "1e-3": 0x1419, "-1e-3": 0x9419,
    "100": 0x5640, "-100": 0xD640, "-0.0039": 0x9BFF,
}


def _u32(a):
    return np.asarray(a, np.uint64).astype(np.uint32)


def _near_exponents(rng, a, spread=3):
    """b with an exponent within `spread` of a's and a random significand and sign."""
    e = ((a >> 23) & 0xFF).astype(np.int64) + rng.integers(-spread, spread + 1, a.size)
    e = np.clip(e, 0, 255).astype(np.uint32)
    return (rng.integers(0, 2, a.size).astype(np.uint32) << 31) | (e << 23) | \
        rng.integers(0, 1 << 23, a.size).astype(np.uint32)


def _rand32(rng, n):
    return _u32(rng.integers(0, 1 << 32, n, dtype=np.uint64))


def pairs32(n_random: int, seed: int = 0):
    """(a, b) binary32 bit arrays: every pair of corner values, then random pairs of which half have nearby
    exponents (cancellation, alignment by 0-3 places) and some are exact ties."""
    rng = np.random.default_rng(seed)
    c = np.array(list(C32.values()), np.uint32)
    a, b = np.meshgrid(c, c)
    a, b = [a.ravel()], [b.ravel()]
    ra = _rand32(rng, n_random)
    rb = _rand32(rng, n_random)
    h = n_random // 2
    rb[:h] = _near_exponents(rng, ra[:h])
    q = n_random // 8                                    # ties: b = a's half ulp (times an odd number)
    ea = ((ra[:q] >> 23) & 0xFF).astype(np.int64)
    eb = np.clip(ea - 24, 1, 254).astype(np.uint32)
    rb[h:h + q] = (ra[:q] & 0x80000000) ^ (rng.integers(0, 2, q).astype(np.uint32) << 31) | (eb << 23) | \
        (rng.integers(0, 2, q).astype(np.uint32) << 22)
    a.append(ra)
    b.append(rb)
    return np.concatenate(a), np.concatenate(b)


def mul_underflow_pairs(n: int, seed: int = 0):
    """Products just around 2^-126 (the FTZ boundary, where gradual-underflow rounding decides between 0 and
    2^-126) and around the overflow threshold, with both signs."""
    rng = np.random.default_rng(seed)
    k = n // 2

    def r(lo, bits, m):
        return np.uint32(lo) | _u32(rng.integers(0, 1 << bits, m))

    sign = _u32(rng.integers(0, 2, n)) << 31
    a = np.concatenate([r(0x3F7FFF00, 8, k), r(0x3FFFFF00, 8, n - k)])     # just below 1, just below 2
    b = np.concatenate([r(0x00800000, 9, k), r(0x7EFFFF00, 8, n - k)]) | sign
    edge = np.array([0x3F7FFFFF, 0x00800000, 0x3F7FFFFE, 0x00800000, 0x3F7FFFFF, 0x00800001,
                     0x3F000000, 0x00800000, 0x3F7FFFFF, 0x80800000, 0x7F7FFFFF, 0x3F800001,
                     0x7F000000, 0x40000000, 0x3FFFFFFF, 0x007FFFFF], np.uint32)
    return np.concatenate([edge[0::2], a]), np.concatenate([edge[1::2], b])


def pairs16(n_random: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    c = np.array(list(C16.values()), np.uint16)
    a, b = np.meshgrid(c, c)
    ra = rng.integers(0, 1 << 16, n_random).astype(np.uint16)
    rb = rng.integers(0, 1 << 16, n_random).astype(np.uint16)
    return np.concatenate([a.ravel(), ra]), np.concatenate([b.ravel(), rb])


def singles16(n_random: int, seed: int = 0, lo: float = -12.0, hi: float = 12.0):
    """Corner binary16 values, then random bit patterns and random values in [lo, hi] (the busy range)."""
    rng = np.random.default_rng(seed)
    c = np.array(list(C16.values()), np.uint16)
    r1 = rng.integers(0, 1 << 16, n_random // 2).astype(np.uint16)
    r2 = nx.fp16_bits(rng.uniform(lo, hi, n_random - n_random // 2).astype(np.float16))
    return np.concatenate([c, r1, r2])


def singles32(n_random: int, seed: int = 0):
    """Corner binary32 values, then random patterns (half over every exponent, half in [2^-4, 2^4])."""
    rng = np.random.default_rng(seed)
    c = np.array(list(C32.values()), np.uint32)
    r1 = _rand32(rng, n_random // 2)
    m = n_random - n_random // 2
    r2 = (_u32(rng.integers(0, 2, m)) << 31) | (_u32(rng.integers(123, 132, m)) << 23) | \
        _u32(rng.integers(0, 1 << 23, m))
    return np.concatenate([c, r1, r2])


def rounding16_inputs(n_random: int, seed: int = 0):
    """binary32 values around every binary16 rounding decision: ties, overflow, the FTZ boundary."""
    rng = np.random.default_rng(seed)
    c = np.array(list(C32.values()), np.uint32)
    e = _u32(rng.integers(100, 145, n_random))                       # binary16's range and around it
    low = _u32(rng.integers(0, 1 << 13, n_random))
    low[: n_random // 4] = 0x1000                                      # exact ties
    low[n_random // 4: n_random // 2] = _u32(rng.choice([0x0FFF, 0x1001, 0x1FFF, 0x0000], n_random // 4))
    x = (_u32(rng.integers(0, 2, n_random)) << 31) | (e << 23) | (_u32(rng.integers(0, 1 << 10, n_random)) << 13) | low
    return np.concatenate([c, x, _rand32(rng, n_random // 4)])


# ---------------------------------------------------------------------------------------------- references
def _f32(u):
    return nx.from_fp32_bits(_u32(u))


def ref_add32(a, b, sub=False):
    with np.errstate(all="ignore"):
        x, y = nx.ftz32(_f32(a)), nx.ftz32(_f32(b))
        return nx.fp32_bits(nx.ftz32(x - y if sub else x + y))


def ref_mul32(a, b):
    with np.errstate(all="ignore"):
        return nx.fp32_bits(nx.ftz32(nx.ftz32(_f32(a)) * nx.ftz32(_f32(b))))


def ref_mul16(a, b):
    """The MPU's product: exact in binary32 (NaN canonical)."""
    with np.errstate(all="ignore"):
        a32 = nx.widen16(nx.from_fp16_bits(np.asarray(a, np.uint16)))
        b32 = nx.widen16(nx.from_fp16_bits(np.asarray(b, np.uint16)))
        return nx.fp32_bits(nx.ftz32(a32 * b32))


def ref_round16(x):
    with np.errstate(all="ignore"):
        return nx.fp16_bits(nx.to_fp16(_f32(x)))


def ref_widen16(x):
    return nx.fp32_bits(nx.widen16(nx.from_fp16_bits(np.asarray(x, np.uint16))))


def ref_gelu16(x):
    with np.errstate(all="ignore"):
        return nx.fp16_bits(nx.gelu16_arith(nx.from_fp16_bits(np.asarray(x, np.uint16))))


def ref_exp16(x):
    with np.errstate(all="ignore"):
        return nx.fp16_bits(nx.exp16_arith(nx.from_fp16_bits(np.asarray(x, np.uint16))))


def ref_recip(x):
    with np.errstate(all="ignore"):
        return nx.fp32_bits(nx.recip_array(_f32(x)))


def ref_rsqrt(x):
    with np.errstate(all="ignore"):
        return nx.fp32_bits(nx.rsqrt_array(_f32(x)))


def pack2(a, b, width: int) -> list[int]:
    """{a, b} operand structs as ints (a in the low half)."""
    return [int(x) | int(y) << width for x, y in zip(a, b)]


def leaf_units(n: int, seed: int = 0):
    """name -> (unit factory, input payloads, expected payloads, inputs for messages): every leaf unit with
    its corner cases and `n` random vectors (fewer for the slower special-function units' busy range)."""
    from dfx.hw.fp import Fp16MulUnit, Fp32AddUnit, Fp32MulUnit, Fp32ToFp16Unit, Widen16Unit
    from dfx.hw.sfu import Exp16Unit, Gelu16Unit, RecipUnit, RsqrtUnit
    a, b = pairs32(n, seed)
    ma, mb = mul_underflow_pairs(max(n // 4, 16), seed)
    ma, mb = np.concatenate([a, ma]), np.concatenate([b, mb])
    ha, hb = pairs16(n, seed)
    r16 = rounding16_inputs(n, seed)
    s16 = singles16(n, seed)
    s32 = singles32(n, seed)
    pos32 = s32 & np.uint32(0x7FFFFFFF)
    return {
        "add32": (Fp32AddUnit, pack2(a, b, 32), ref_add32(a, b)),
        "sub32": (lambda: Fp32AddUnit(sub=True), pack2(a, b, 32), ref_add32(a, b, sub=True)),
        "mul32": (Fp32MulUnit, pack2(ma, mb, 32), ref_mul32(ma, mb)),
        "mul16": (Fp16MulUnit, pack2(ha, hb, 16), ref_mul16(ha, hb)),
        "round16": (Fp32ToFp16Unit, list(r16), ref_round16(r16)),
        "widen16": (Widen16Unit, list(s16), ref_widen16(s16)),
        "gelu16": (Gelu16Unit, list(s16), ref_gelu16(s16)),
        "exp16": (Exp16Unit, list(s16), ref_exp16(s16)),
        "recip": (RecipUnit, list(s32), ref_recip(s32)),
        "rsqrt": (RsqrtUnit, list(np.concatenate([s32, pos32])), ref_rsqrt(np.concatenate([s32, pos32]))),
    }


# ---------------------------------------------------------------------------------------------- VPU reference
def vpu_expected(cfg, op: str, a=None, b=None, s=None, imm=None) -> list[int]:
    """The `o` payloads (ints) the VPU must produce for `hw.vpu.vpu_beats(cfg, op, a, b, s, imm)`: the
    numerics result; element-wise ops are computed on the zero-padded chunks (padding lanes included)."""
    from dfx.hw.mpu import pack16
    from dfx.hw.vpu import _ELEMENTWISE, _SCALAR, out_layout
    w, d = cfg.vpu_width, cfg.d
    lay = out_layout(cfg)
    f32 = np.float32
    with np.errstate(all="ignore"):
        if op in _SCALAR:
            sv, iv = f32(0 if s is None else s), f32(0 if imm is None else imm)
            r = {"SMOVI": lambda: iv, "SADDI": lambda: nx.sadd(sv, iv), "SMULI": lambda: nx.smul(sv, iv),
                 "SRECIP": lambda: nx.recip(sv), "SRSQRT": lambda: nx.rsqrt(sv)}[op]()
            return [lay.const({"v": [0] * w, "s": int(np.asarray(r, f32).view(np.uint32))}).as_bits()]
        a = np.asarray(a, np.float16).reshape(-1)
        b = np.zeros_like(a) if b is None else np.asarray(b, np.float16).reshape(-1)
        n = a.size
        beats = max(1, -(-n // w))
        if op not in _ELEMENTWISE:
            r = {"VSUM": lambda: nx.reduce_sum(a, d), "VDOT": lambda: nx.reduce_dot(a, b, d),
                 "VMAX": lambda: nx.reduce_max(a)}[op]()
            return [lay.const({"v": [0] * w, "s": int(np.asarray(r, f32).view(np.uint32))}).as_bits()]
        ap = np.zeros(beats * w, np.float16)
        bp = np.zeros(beats * w, np.float16)
        ap[:n], bp[:n] = a, b
        sv = f32(0 if s is None else s)
        y = {"VADD": lambda: nx.vadd(ap, bp), "VSUB": lambda: nx.vsub(ap, bp), "VMUL": lambda: nx.vmul(ap, bp),
             "VMOV": lambda: ap, "VADDS": lambda: nx.vadd_scalar(ap, sv), "VSUBS": lambda: nx.vsub_scalar(ap, sv),
             "VMULS": lambda: nx.vmul_scalar(ap, sv), "VEXP": lambda: nx.exp16(ap),
             "VGELU": lambda: nx.gelu16(ap)}[op]()
        imm_bits = 0
        return [pack16(y[k * w:(k + 1) * w]) | imm_bits << (16 * w) for k in range(beats)]
