"""Weight formats: names, parameters, and the exact dequantisation the matrix unit performs (DESIGN.md,
contract 3; docs/numerics.md, "Weight formats").

A weight matrix W is (K, N): K inputs (rows, the reduction), N outputs (columns), as GPT-2's Conv1D stores it.
Every quantized format is dequantised to binary16 in front of the MPU's multipliers; the MPU itself (products,
adder trees, accumulation) is unchanged, so a quantized matrix instruction computes exactly
`numerics.mpu(x, dequant(qw), ...)`. The fake-quant golden model (`models/`) uses the same `dequant` values.

Names (`parse`):

    fp16                        DFX's format: no scales
    int{8,4,3}-{oc,ic}[-g{G}][-asym]
                                integer codes with binary16 group scales (and uint8 zero points with -asym)
    fp8e4m3|fp8e5m2[-{oc,ic}[-g{G}]]
                                OCP FP8 codes times a binary16 group scale (default: per output channel)
    bcq{Q}-{oc,ic}[-g{G}]       binary-coding quantization: W = sum_i alpha_i * b_i, b_i in {-1, +1}, Q planes,
                                binary16 alphas per group and plane

Groups. `oc` (per output channel): for each output column n, runs of G consecutive rows share one scale —
scales have shape (ceil(K/G), N). `ic` (per input channel): for each input row k, runs of G consecutive
columns share one scale — scales have shape (K, ceil(N/G)). Without `-gG` a group is the whole channel. The
last group of a dimension that G does not divide is shorter (padding, not an error). G is 32, 64 or 128.

Dequantisation, bit-exact (the RTL dequantiser implements exactly this):
- int, symmetric: codes q are signed, in [-2^(b-1), 2^(b-1) - 1]; w = to_fp16(f32(q) * f32(s)). The product
  is exact in binary32 (b + 11 <= 24 bits), so w is s*q correctly rounded to binary16 (with FTZ).
- int, asymmetric: codes u and zero points z are unsigned, in [0, 2^b - 1]; w = to_fp16(f32(u - z) * f32(s)),
  u - z computed exactly as an integer.
- fp8: the code's value v is exactly representable in binary16 (E4M3: max 448; E5M2 is binary16's upper
  byte); w = to_fp16(f32(v) * f32(s)), exact product. NaN codes (E4M3 0x7f/0xff, E5M2 exponent 31) are illegal.
- bcq: acc = +0 (binary32); for i = 0 .. Q-1: acc = RNE32(acc + (alpha_i if bit_i else -alpha_i)); w = to_fp16(acc).
- Scales and alphas are binary16 read with DAZ (subnormal scales act as zero); `to_fp16` flushes subnormal
  results to zero, as everywhere in the datapath.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from . import numerics as nx

KINDS = ("fp16", "int", "fp8e4m3", "fp8e5m2", "bcq")
GROUP_SIZES = (32, 64, 128)
INT_BITS = (8, 4, 3)
BCQ_PLANES = (1, 2, 3, 4)

# the 4-bit `wfmt` field of matrix instructions: kind and code width; axis, group and zero points come from
# the format descriptor (the compiler's per-matrix record; see docs/isa.md)
WFMT_CODES = {("fp16", 16): 0, ("int", 8): 1, ("int", 4): 2, ("int", 3): 3, ("fp8e4m3", 8): 4,
              ("fp8e5m2", 8): 5, ("bcq", 1): 6, ("bcq", 2): 7, ("bcq", 3): 8, ("bcq", 4): 9}

EXAMPLES = ("fp16", "int8-oc", "int8-oc-g128", "int4-oc-g128", "int4-ic-g128", "int4-oc-g64-asym", "int3-oc-g128",
            "fp8e4m3", "fp8e5m2", "fp8e4m3-ic-g128", "bcq3-oc-g128", "bcq4-oc-g128")

_NAME = re.compile(r"^(?:(?P<fp16>fp16)|int(?P<ibits>\d+)-(?P<iaxis>oc|ic)|(?P<fp8>fp8e4m3|fp8e5m2)(?:-(?P<faxis>oc|ic))?"
                   r"|bcq(?P<planes>\d+)-(?P<baxis>oc|ic))(?:-g(?P<group>\d+))?(?P<asym>-asym)?$")


class FormatError(ValueError):
    """A weight format name or parameter that is not accepted."""


@dataclass(frozen=True)
class WeightFormat:
    kind: str                 # one of KINDS
    bits: int                 # code bits per weight (16 fp16, 8/4/3 int, 8 fp8, Q planes for bcq)
    axis: str | None = None   # "oc" or "ic" (None for fp16)
    group: int | None = None  # group size, None = the whole channel
    asym: bool = False        # zero points (int only)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise FormatError(f"weight format kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == "fp16":
            if (self.bits, self.axis, self.group, self.asym) != (16, None, None, False):
                raise FormatError("fp16 takes no axis, group or zero points")
            return
        if self.axis not in ("oc", "ic"):
            raise FormatError(f"weight format {self.kind}: axis must be 'oc' or 'ic', not {self.axis!r}")
        if self.group is not None and self.group not in GROUP_SIZES:
            raise FormatError(f"group size {self.group} is not one of {', '.join(map(str, GROUP_SIZES))}")
        if self.kind == "int" and self.bits not in INT_BITS:
            raise FormatError(f"int{self.bits}: integer widths are {', '.join(map(str, INT_BITS))}")
        if self.kind.startswith("fp8") and self.bits != 8:
            raise FormatError("fp8 formats have 8-bit codes")
        if self.kind == "bcq" and self.bits not in BCQ_PLANES:
            raise FormatError(f"bcq{self.bits}: planes are {', '.join(map(str, BCQ_PLANES))}")
        if self.asym and self.kind != "int":
            raise FormatError(f"-asym (zero points) applies to int formats, not {self.kind}")

    @property
    def name(self) -> str:
        if self.kind == "fp16":
            return "fp16"
        head = {"int": f"int{self.bits}", "bcq": f"bcq{self.bits}"}.get(self.kind, self.kind)
        s = f"{head}-{self.axis}"
        if self.kind.startswith("fp8") and self.axis == "oc" and self.group is None:
            s = head
        if self.group is not None:
            s += f"-g{self.group}"
        return s + ("-asym" if self.asym else "")

    @property
    def wfmt(self) -> int:
        return WFMT_CODES[(self.kind, self.bits)]

    @property
    def code_bits(self) -> int:
        """Bits of code storage per weight (all planes for bcq)."""
        return self.bits

    def scale_shape(self, k: int, n: int) -> tuple[int, int]:
        if self.kind == "fp16":
            return (0, 0)
        if self.axis == "oc":
            g = self.group or k
            return (-(-k // g), n)
        g = self.group or n
        return (k, -(-n // g))

    def ideal_bytes(self, k: int, n: int) -> float:
        """Bytes of codes + scales (+ zero points) for a (K, N) matrix, without layout padding."""
        if self.kind == "fp16":
            return 2.0 * k * n
        sk, sn = self.scale_shape(k, n)
        per_group = 2 * (self.bits if self.kind == "bcq" else 1) + (1 if self.asym else 0)
        return k * n * self.bits / 8 + sk * sn * per_group

    def __str__(self) -> str:
        return self.name


FP16 = WeightFormat("fp16", 16)


def parse(name: str | WeightFormat) -> WeightFormat:
    """A format from its name; a FormatError naming the accepted forms otherwise."""
    if isinstance(name, WeightFormat):
        return name
    m = _NAME.match(str(name).strip().lower())
    if not m:
        raise FormatError(f"unknown weight format {name!r}; accepted: fp16, int{{8,4,3}}-{{oc,ic}}[-g{{32,64,128}}]"
                          f"[-asym], fp8e4m3|fp8e5m2[-{{oc,ic}}[-gG]], bcq{{1-4}}-{{oc,ic}}[-gG] "
                          f"(e.g. {', '.join(EXAMPLES[1:6])})")
    group = int(m["group"]) if m["group"] else None
    if m["fp16"]:
        if group or m["asym"]:
            raise FormatError("fp16 takes no group size or zero points")
        return FP16
    if m["ibits"]:
        return WeightFormat("int", int(m["ibits"]), m["iaxis"], group, bool(m["asym"]))
    if m["fp8"]:
        return WeightFormat(m["fp8"], 8, m["faxis"] or "oc", group, bool(m["asym"]))
    return WeightFormat("bcq", int(m["planes"]), m["baxis"], group, bool(m["asym"]))


# ------------------------------------------------------------------------------------------------ FP8 codes
def _fp8_table(exp_bits: int, man_bits: int, bias: int, nan_codes) -> np.ndarray:
    """binary16 value of every 8-bit code (NaN for the illegal codes)."""
    out = np.empty(256, np.float64)
    for c in range(256):
        s, e, m = c >> 7, (c >> man_bits) & ((1 << exp_bits) - 1), c & ((1 << man_bits) - 1)
        v = (m / (1 << man_bits)) * 2.0 ** (1 - bias) if e == 0 else (1 + m / (1 << man_bits)) * 2.0 ** (e - bias)
        out[c] = -v if s else v
    for c in nan_codes:
        out[c] = np.nan
    t = out.astype(np.float16)
    assert np.array_equal(t[~np.isnan(out)].astype(np.float64), out[~np.isnan(out)]), "fp8 value not exact in fp16"
    t.setflags(write=False)
    return t


FP8_E4M3 = _fp8_table(4, 3, 7, (0x7F, 0xFF))                       # OCP E4M3: no inf, max 448
FP8_E5M2 = _fp8_table(5, 2, 15, [c for c in range(256) if (c >> 2) & 0x1F == 0x1F])   # inf/NaN illegal
FP8_TABLES = {"fp8e4m3": FP8_E4M3, "fp8e5m2": FP8_E5M2}


def fp8_encode(v, kind: str) -> np.ndarray:
    """Round float values to the nearest FP8 code (ties to even code), saturating at the largest finite value."""
    table = FP8_TABLES[kind].astype(np.float64)
    ok = ~np.isnan(table)
    codes = np.nonzero(ok)[0]
    vals = table[ok]
    order = np.argsort(vals, kind="stable")
    codes, vals = codes[order], vals[order]
    keep = np.concatenate([[True], np.diff(vals) > 0])          # +0 and -0: keep the first (code 0x80 sorts... )
    codes, vals = codes[keep], vals[keep]
    x = np.clip(np.asarray(v, np.float64), vals[0], vals[-1])
    i = np.clip(np.searchsorted(vals, x), 1, len(vals) - 1)
    lo, hi = vals[i - 1], vals[i]
    pick_hi = (x - lo > hi - x) | ((x - lo == hi - x) & (codes[i] % 2 == 0))
    out = np.where(pick_hi, codes[i], codes[i - 1]).astype(np.uint8)
    out[np.asarray(x) == 0] = 0
    return out


# ------------------------------------------------------------------------------------------- quantized weight
@dataclass
class QuantWeight:
    """One quantized (K, N) weight matrix.

    codes: int: int8 (K, N) signed codes, or uint8 unsigned codes when asym; fp8: uint8 (K, N) codes;
           bcq: uint8 (Q, K, N) bits (1 = +alpha, 0 = -alpha); fp16: float16 (K, N) values.
    scales: float16, `fmt.scale_shape(K, N)` (bcq: (Q, *scale_shape), the alphas).
    zeros:  uint8, scale_shape (asym only).
    """
    fmt: WeightFormat
    codes: np.ndarray
    scales: np.ndarray | None = None
    zeros: np.ndarray | None = None
    meta: dict = field(default_factory=dict)     # quantizer name and its parameters, for reports

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.codes.shape[-2:])

    def check(self) -> "QuantWeight":
        f, (k, n) = self.fmt, self.shape
        if f.kind == "fp16":
            if self.codes.dtype != np.float16:
                raise FormatError("fp16 weights must be float16")
            return self
        ss = f.scale_shape(k, n)
        want = (f.bits, *ss) if f.kind == "bcq" else ss
        if self.scales is None or tuple(self.scales.shape) != want or self.scales.dtype != np.float16:
            raise FormatError(f"{f.name}: scales must be float16 of shape {want}, "
                              f"not {None if self.scales is None else (self.scales.dtype, self.scales.shape)}")
        if f.kind == "int":
            lo, hi = (0, (1 << f.bits) - 1) if f.asym else (-(1 << (f.bits - 1)), (1 << (f.bits - 1)) - 1)
            if self.codes.size and (self.codes.min() < lo or self.codes.max() > hi):
                raise FormatError(f"{f.name}: codes outside [{lo}, {hi}]")
            if f.asym and (self.zeros is None or tuple(self.zeros.shape) != ss):
                raise FormatError(f"{f.name}: zero points of shape {ss} are required")
        if f.kind.startswith("fp8") and np.isnan(FP8_TABLES[f.kind][self.codes]).any():
            raise FormatError(f"{f.name}: NaN/inf codes are illegal")
        if f.kind == "bcq" and (self.codes.shape[0] != f.bits or self.codes.max(initial=0) > 1):
            raise FormatError(f"{f.name}: codes must be {f.bits} planes of bits")
        return self

    def dequant(self) -> np.ndarray:
        """The binary16 (K, N) matrix the MPU multiplies with (see the module docstring)."""
        return dequant(self)


def expand_groups(a: np.ndarray, fmt: WeightFormat, k: int, n: int) -> np.ndarray:
    """Per-group values (scale_shape) -> per-element (K, N) (leading axes kept)."""
    if fmt.axis == "oc":
        g = fmt.group or k
        return np.repeat(a, g, axis=-2)[..., :k, :]
    g = fmt.group or n
    return np.repeat(a, g, axis=-1)[..., :, :n]


def dequant(qw: QuantWeight) -> np.ndarray:
    f, (k, n) = qw.fmt, qw.shape
    if f.kind == "fp16":
        return np.asarray(qw.codes, np.float16)
    s = nx.widen16(nx.daz16(expand_groups(qw.scales, f, k, n)))
    if f.kind == "int":
        q = qw.codes.astype(np.int32)
        if f.asym:
            q = q - expand_groups(qw.zeros, f, k, n).astype(np.int32)
        return nx.to_fp16(q.astype(np.float32) * s)
    if f.kind.startswith("fp8"):
        v = FP8_TABLES[f.kind][qw.codes]
        if np.isnan(v).any():
            raise FormatError(f"{f.name}: NaN/inf codes are illegal")
        return nx.to_fp16(v.astype(np.float32) * s)
    acc = np.zeros((k, n), np.float32)
    for i in range(f.bits):
        acc = (acc + np.where(qw.codes[i].astype(bool), s[i], -s[i])).astype(np.float32)
    return nx.to_fp16(acc)
