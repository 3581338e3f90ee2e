"""Weight formats: names, parameters, and the exact dequantisation the matrix unit performs (docs/design.md,
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
import struct
from dataclasses import dataclass, field

import numpy as np

from . import numerics as nx
from .errors import DfxError

KINDS = ("fp16", "int", "fp8e4m3", "fp8e5m2", "bcq")
GROUP_SIZES = (32, 64, 128)
INT_BITS = (8, 4, 3)
BCQ_PLANES = (1, 2, 3, 4)

# the 4-bit `wfmt` field of matrix instructions: kind and code width; axis, group and zero points come from
# the format descriptor (the compiler's per-matrix record; see docs/isa.md)
WFMT_CODES = {("fp16", 16): 0, ("int", 8): 1, ("int", 4): 2, ("int", 3): 3, ("fp8e4m3", 8): 4,
              ("fp8e5m2", 8): 5, ("bcq", 1): 6, ("bcq", 2): 7, ("bcq", 3): 8, ("bcq", 4): 9}

# dequantiser families: what `AccelConfig.weight_formats` lists (one per wfmt code; bcq covers 1-4 planes, the
# plane-serial dequantiser handles any Q)
FAMILIES = ("fp16", "int8", "int4", "int3", "fp8e4m3", "fp8e5m2", "bcq")

EXAMPLES = ("fp16", "int8-oc", "int8-oc-g128", "int4-oc-g128", "int4-ic-g128", "int4-oc-g64-asym", "int3-oc-g128",
            "fp8e4m3", "fp8e5m2", "fp8e4m3-ic-g128", "bcq3-oc-g128", "bcq4-oc-g128")

_NAME = re.compile(r"^(?:(?P<fp16>fp16)|int(?P<ibits>\d+)-(?P<iaxis>oc|ic)|(?P<fp8>fp8e4m3|fp8e5m2)(?:-(?P<faxis>oc|ic))?"
                   r"|bcq(?P<planes>\d+)-(?P<baxis>oc|ic))(?:-g(?P<group>\d+))?(?P<asym>-asym)?$")


class FormatError(DfxError, ValueError):
    """A weight format name or parameter that is not accepted (a DfxError: the CLI reports it in one line)."""


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
    def family(self) -> str:
        """The dequantiser this format needs (an entry of FAMILIES, as `AccelConfig.weight_formats` lists)."""
        return {"int": f"int{self.bits}"}.get(self.kind, self.kind)

    @property
    def code_bits(self) -> int:
        """Bits of code storage per weight (all planes for bcq)."""
        return self.bits

    def scale_shape(self, k: int, n: int, phase: int = 0) -> tuple[int, int]:
        """Shape of the per-group scales of a (K, N) matrix. `phase`: position of element 0 of the group axis
        inside its group (a column piece that starts mid-group, see `QuantWeight.cols`); 0 for whole matrices."""
        if self.kind == "fp16":
            return (0, 0)
        if self.axis == "oc":
            g = self.group or k
            return (-(-(k + phase) // g), n)
        g = self.group or n
        return (k, -(-(n + phase) // g))

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


ACCEPTED = ("fp16, int{8,4,3}-{oc,ic}[-g{32,64,128}][-asym], fp8e4m3|fp8e5m2[-{oc,ic}[-g{32,64,128}]], "
            "bcq{1,2,3,4}-{oc,ic}[-g{32,64,128}]")


def parse(name: str | WeightFormat) -> WeightFormat:
    """A format from its name; a FormatError naming the accepted forms otherwise."""
    if isinstance(name, WeightFormat):
        return name
    m = _NAME.match(str(name).strip().lower())
    if not m:
        raise FormatError(f"unknown weight format {name!r}; accepted: {ACCEPTED} (e.g. {', '.join(EXAMPLES[1:6])})")
    group = int(m["group"]) if m["group"] else None
    try:
        if m["fp16"]:
            if group or m["asym"]:
                raise FormatError("fp16 takes no group size or zero points")
            return FP16
        if m["ibits"]:
            return WeightFormat("int", int(m["ibits"]), m["iaxis"], group, bool(m["asym"]))
        if m["fp8"]:
            return WeightFormat(m["fp8"], 8, m["faxis"] or "oc", group, bool(m["asym"]))
        return WeightFormat("bcq", int(m["planes"]), m["baxis"], group, bool(m["asym"]))
    except FormatError as e:
        raise FormatError(f"weight format {name!r}: {e}; accepted: {ACCEPTED}") from None


def all_formats() -> list[WeightFormat]:
    """Every valid format (canonical forms), fp16 first."""
    out = [FP16]
    groups = (None, *GROUP_SIZES)
    for axis in ("oc", "ic"):
        for g in groups:
            out += [WeightFormat("int", b, axis, g, a) for b in INT_BITS for a in (False, True)]
            out += [WeightFormat(k, 8, axis, g) for k in ("fp8e4m3", "fp8e5m2")]
            out += [WeightFormat("bcq", q, axis, g) for q in BCQ_PLANES]
    return out


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
    phase: int = 0          # element 0 of the group axis sits at this position of its group (column pieces)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.codes.shape[-2:])

    def check(self) -> "QuantWeight":
        f, (k, n) = self.fmt, self.shape
        if f.kind == "fp16":
            if self.codes.dtype != np.float16:
                raise FormatError("fp16 weights must be float16")
            return self
        g = f.group or 0
        if not (self.phase == 0 or 0 < self.phase < g):
            raise FormatError(f"{f.name}: phase {self.phase} must be 0 or inside a group of {g}")
        ss = f.scale_shape(k, n, self.phase)
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
            if f.asym and self.zeros.size and (self.zeros.min() < 0 or self.zeros.max() > hi):
                raise FormatError(f"{f.name}: zero points outside [0, {hi}]")
        if f.kind.startswith("fp8") and np.isnan(FP8_TABLES[f.kind][self.codes]).any():
            raise FormatError(f"{f.name}: NaN/inf codes are illegal")
        if f.kind == "bcq" and (self.codes.shape[0] != f.bits or self.codes.max(initial=0) > 1):
            raise FormatError(f"{f.name}: codes must be {f.bits} planes of bits")
        return self

    def dequant(self) -> np.ndarray:
        """The binary16 (K, N) matrix the MPU multiplies with (see the module docstring)."""
        return dequant(self)

    def cols(self, c0: int, c1: int) -> "QuantWeight":
        """Columns c0:c1 (a device's piece): the same values, with the scales of the groups it touches and, for
        per-IC groups that the cut splits, the phase of column c0 in its group. dequant(cols) = dequant[:, c0:c1]."""
        f, (k, n) = self.fmt, self.shape
        if not 0 <= c0 < c1 <= n:
            raise FormatError(f"columns {c0}:{c1} are not inside 0:{n}")
        codes = self.codes[..., c0:c1]
        if f.kind == "fp16":
            return QuantWeight(f, codes, meta=self.meta)
        if f.axis == "oc":
            sl, phase = slice(c0, c1), self.phase
        elif f.group is None:
            sl, phase = slice(0, 1), 0
        else:
            g0, g1 = (c0 + self.phase) // f.group, (c1 - 1 + self.phase) // f.group + 1
            sl, phase = slice(g0, g1), (c0 + self.phase) % f.group
        return QuantWeight(f, codes, self.scales[..., sl], None if self.zeros is None else self.zeros[..., sl],
                           self.meta, phase).check()


def expand_groups(a: np.ndarray, fmt: WeightFormat, k: int, n: int, phase: int = 0) -> np.ndarray:
    """Per-group values (scale_shape) -> per-element (K, N) (leading axes kept)."""
    if fmt.axis == "oc":
        g = fmt.group or k
        return np.repeat(a, g, axis=-2)[..., phase:phase + k, :]
    g = fmt.group or n
    return np.repeat(a, g, axis=-1)[..., :, phase:phase + n]


def dequant(qw: QuantWeight) -> np.ndarray:
    f, (k, n) = qw.fmt, qw.shape
    if f.kind == "fp16":
        return np.asarray(qw.codes, np.float16)
    s = nx.widen16(nx.daz16(expand_groups(qw.scales, f, k, n, qw.phase)))
    if f.kind == "int":
        q = qw.codes.astype(np.int32)
        if f.asym:
            q = q - expand_groups(qw.zeros, f, k, n, qw.phase).astype(np.int32)
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


# ------------------------------------------------------------------------------------ HBM region of a matrix
# A quantized matrix (wfmt != 0) occupies one region of HBM; the MATRIX instruction's `w` points at its start,
# which is on an HBM beat (a multiple of `AccelConfig.beat_bytes`, every channel's beat; the compiler places every
# matrix so; the simulator and the core refuse a region elsewhere).
#
#   [descriptor, 64 B][codes][scale blocks][zero-point blocks (asym)]     each part starts 64-byte aligned
#
# Codes: the d x l tiles in the FP16 order (column-major grid: tile (i, j) is the (j*kt + i)-th; inside a tile
# lane-major, [lane][row], element e = lane*d + row), each tile's codes one little-endian bit stream: element e's
# b-bit code at bits [b*e, b*e + b) (two INT4 per byte, low nibble first; INT3 LSB-first across bytes; one byte
# for INT8/FP8). BCQ: the Q planes one after the other inside the tile, plane q's bit for element e at bit
# q*d*l + e (1 = +alpha). Integer codes are two's complement (symmetric) or unsigned (asym).
# Scale blocks (binary16; alphas for BCQ; zero points: the same blocks as uint8):
#   oc: array (nt, R, [Q,] l): block (j, r) holds the l lanes of column block j for row group r
#       (R = ceil((K + phase)/G)); tile (i, j) reads blocks (j, r) for the groups r its real rows touch.
#   ic: array (C, K, [Q]): block c holds the K rows' scales of column group c (C = ceil((n + phase)/G));
#       tile (i, j) reads rows i*d .. i*d+d-1 of the blocks c its real columns touch.
# In both cases a tile's scales are contiguous and the tiles, in stream order, read them front to back (oc) or
# one column group's K scales per group (ic, held for its G/l column blocks): every byte is read once per
# instruction, nothing is stored twice. The only overhead is lane padding (oc: nt*l - n scales per row group)
# and the 64-byte alignment of the parts.
DESC_BYTES = 64
DESC_MAGIC = 0x51584644                # b"DFXQ" little-endian
DESCRIPTOR = (                         # (field, struct code, meaning); packed little-endian from byte 0
    ("magic", "I", "0x51584644 (`DFXQ`)"),
    ("wfmt", "B", "weight format code; must equal the instruction's `wfmt`"),
    ("flags", "B", "bit 0: group axis (0 = oc: groups of rows, 1 = ic: groups of columns); bit 1: zero points"),
    ("bits", "B", "code bits per weight (BCQ: planes Q)"),
    ("reserved", "B", "0"),
    ("group", "H", "group size G along the axis; 0 = the whole extent (K for oc, n for ic)"),
    ("phase", "H", "position of element 0 of the axis inside its group (a column piece that starts mid-group)"),
    ("k", "H", "rows K; must equal the instruction's k"),
    ("n", "H", "columns n; must equal the instruction's n"),
    ("codes", "I", "byte offset of the codes from the region start"),
    ("scales", "I", "byte offset of the scale blocks"),
    ("zeros", "I", "byte offset of the zero-point blocks (0: none)"),
    ("size", "I", "bytes in the whole region"),
)
_DESC = "<" + "".join(c for _, c, _ in DESCRIPTOR)


def _a64(x: int) -> int:
    return -(-x // 64) * 64


@dataclass(frozen=True)
class RegionLayout:
    """Where everything of a quantized (K, n) matrix lies in its HBM region, for a d x l MPU."""
    fmt: WeightFormat
    k: int
    n: int
    d: int
    l: int
    phase: int = 0

    @property
    def kt(self) -> int:
        return -(-self.k // self.d)

    @property
    def nt(self) -> int:
        return -(-self.n // self.l)

    @property
    def tile_code_bytes(self) -> int:
        return self.d * self.l * self.fmt.bits // 8

    @property
    def gsize(self) -> int:
        return self.fmt.group or (self.k if self.fmt.axis == "oc" else self.n)

    @property
    def ngroups(self) -> int:
        """Groups along the axis: R (oc) or C (ic)."""
        return -(-((self.k if self.fmt.axis == "oc" else self.n) + self.phase) // self.gsize)

    @property
    def block_shape(self) -> tuple[int, ...]:
        """Shape of the stored scale array (zero points: the same without the plane axis)."""
        q = (self.fmt.bits,) if self.fmt.kind == "bcq" else ()
        if self.fmt.axis == "oc":
            return (self.nt, self.ngroups, *q, self.l)
        return (self.ngroups, self.k, *q)

    @property
    def codes_off(self) -> int:
        return DESC_BYTES

    @property
    def codes_bytes(self) -> int:
        return self.kt * self.nt * self.tile_code_bytes

    @property
    def scales_off(self) -> int:
        return self.codes_off + _a64(self.codes_bytes)

    @property
    def scales_bytes(self) -> int:
        return 2 * int(np.prod(self.block_shape))

    @property
    def zeros_off(self) -> int:
        return self.scales_off + _a64(self.scales_bytes) if self.fmt.asym else 0

    @property
    def zeros_bytes(self) -> int:
        return int(np.prod(self.block_shape)) if self.fmt.asym else 0

    @property
    def size(self) -> int:
        return self.scales_off + _a64(self.scales_bytes) + _a64(self.zeros_bytes)

    def descriptor(self) -> bytes:
        f = self.fmt
        vals = dict(magic=DESC_MAGIC, wfmt=f.wfmt, flags=(f.axis == "ic") | (f.asym << 1), bits=f.bits, reserved=0,
                    group=f.group or 0, phase=self.phase, k=self.k, n=self.n, codes=self.codes_off,
                    scales=self.scales_off, zeros=self.zeros_off, size=self.size)
        b = struct.pack(_DESC, *(vals[name] for name, _, _ in DESCRIPTOR))
        return b + bytes(DESC_BYTES - len(b))


def matrix_bytes(fmt: str | WeightFormat, k: int, n: int, d: int, l: int, phase: int = 0) -> int:
    """Exact HBM bytes a (K, n) matrix occupies (and the MPU streams per instruction) in `fmt` for a d x l MPU:
    FP16 tiles, or descriptor + codes + scale blocks (+ zero points), each part 64-byte aligned."""
    fmt = parse(fmt)
    if fmt.kind == "fp16":
        return -(-k // d) * -(-n // l) * d * l * 2
    return RegionLayout(fmt, k, n, d, l, phase).size


def piece_phase(fmt: str | WeightFormat, c0: int, phase: int = 0) -> int:
    """The phase of a column piece starting at column c0 of a matrix whose own phase is `phase` (0 for whole
    matrices): nonzero only for per-IC groups that the cut splits."""
    fmt = parse(fmt)
    if fmt.kind == "fp16" or fmt.axis == "oc" or fmt.group is None:
        return phase if fmt.kind != "fp16" and fmt.axis == "oc" else 0
    return (c0 + phase) % fmt.group


def _tile_order(a: np.ndarray, d: int, l: int) -> np.ndarray:
    """(..., K, N) -> (..., tiles, d*l) in the MPU's tile order (column-major grid, [lane][row] inside), zero padded."""
    *lead, k, n = a.shape
    kt, nt = -(-k // d), -(-n // l)
    p = np.zeros((*lead, kt * d, nt * l), a.dtype)
    p[..., :k, :n] = a
    t = p.reshape(*lead, kt, d, nt, l)
    t = np.moveaxis(t, (-4, -3, -2, -1), (-3, -1, -4, -2))        # (..., nt, kt, l, d)
    return np.ascontiguousarray(t).reshape(*lead, kt * nt, d * l)


def _untile_order(t: np.ndarray, k: int, n: int, d: int, l: int) -> np.ndarray:
    *lead, _, _ = t.shape
    kt, nt = -(-k // d), -(-n // l)
    a = t.reshape(*lead, nt, kt, l, d)
    a = np.moveaxis(a, (-4, -3, -2, -1), (-2, -4, -1, -3))        # (..., kt, d, nt, l)
    return a.reshape(*lead, kt * d, nt * l)[..., :k, :n]


def _bitstream(codes: np.ndarray, bits: int) -> np.ndarray:
    """(tiles, E) codes (low `bits` bits used) -> (tiles, E*bits/8) bytes, element e at bits [b*e, b*e+b)."""
    c = codes.astype(np.uint16) & ((1 << bits) - 1)
    b = ((c[..., None] >> np.arange(bits, dtype=np.uint16)) & 1).astype(np.uint8)   # (tiles, E, bits)
    return np.packbits(b.reshape(c.shape[0], -1), axis=-1, bitorder="little")


def _unbitstream(raw: np.ndarray, e: int, bits: int) -> np.ndarray:
    b = np.unpackbits(raw, axis=-1, bitorder="little").reshape(raw.shape[0], e, bits).astype(np.uint16)
    return (b << np.arange(bits, dtype=np.uint16)).sum(-1).astype(np.uint16)


def pack_region(qw: QuantWeight, d: int, l: int) -> bytes:
    """The HBM region of a quantized matrix (see the layout above); `unpack_region` is its inverse."""
    f, (k, n) = qw.fmt, qw.shape
    if f.kind == "fp16":
        raise FormatError("fp16 matrices are stored as plain tiles (dfx.program.tile_matrix), not as a region")
    qw.check()
    lay = RegionLayout(f, k, n, d, l, qw.phase)
    out = np.zeros(lay.size, np.uint8)
    out[:DESC_BYTES] = np.frombuffer(lay.descriptor(), np.uint8)
    if f.kind == "bcq":
        t = _tile_order(qw.codes.astype(np.uint8), d, l)                        # (Q, tiles, E)
        codes = np.concatenate([_bitstream(t[q], 1) for q in range(f.bits)], axis=-1)
    else:
        t = _tile_order(qw.codes.astype(np.int16).astype(np.uint16) if f.kind == "int" else qw.codes, d, l)
        codes = t.astype(np.uint8) if f.bits == 8 else _bitstream(t, f.bits)
    out[lay.codes_off:lay.codes_off + lay.codes_bytes] = codes.reshape(-1)
    sc = _stored(qw.scales.astype(np.float16), lay)
    out[lay.scales_off:lay.scales_off + lay.scales_bytes] = sc.view(np.uint8).reshape(-1)
    if f.asym:
        z = _stored(qw.zeros.astype(np.uint8), lay)
        out[lay.zeros_off:lay.zeros_off + lay.zeros_bytes] = z.reshape(-1)
    return out.tobytes()


def _stored(a: np.ndarray, lay: RegionLayout) -> np.ndarray:
    """QuantWeight-shaped per-group values -> the stored block array `lay.block_shape` (zero points: no Q)."""
    if lay.fmt.axis == "oc":                                     # a: ([Q,] R, n) -> (nt, R, [Q,] l)
        lead = a.shape[:-2]
        r, n = a.shape[-2:]
        p = np.zeros((*lead, r, lay.nt * lay.l), a.dtype)
        p[..., :n] = a
        p = p.reshape(*lead, r, lay.nt, lay.l)                   # ([Q,] R, nt, l)
        p = np.moveaxis(p, -2, 0)                                # (nt, [Q,] R, l)
        if lead:
            p = np.swapaxes(p, 1, 2)                             # (nt, R, Q, l)
        return np.ascontiguousarray(p)
    return np.ascontiguousarray(a.T)                             # ([Q,] K, C) -> (C, K, [Q])


def _unstored(b: np.ndarray, lay: RegionLayout, planes: bool) -> np.ndarray:
    if lay.fmt.axis == "oc":
        p = np.swapaxes(b, 1, 2) if planes else b                # (nt, [Q,] R, l)
        p = np.moveaxis(p, 0, -2)                                # ([Q,] R, nt, l)
        return p.reshape(*p.shape[:-2], -1)[..., :lay.n]
    return b.T                                                   # (C, K, [Q]) -> ([Q,] K, C)


def read_descriptor(raw) -> dict:
    b = bytes(raw[:DESC_BYTES]) if isinstance(raw, (bytes, bytearray)) else np.asarray(raw, np.uint8)[:DESC_BYTES].tobytes()
    if len(b) < DESC_BYTES:
        raise FormatError(f"a weight descriptor is {DESC_BYTES} bytes, not {len(b)}")
    vals = dict(zip((name for name, _, _ in DESCRIPTOR), struct.unpack_from(_DESC, b)))
    if vals["magic"] != DESC_MAGIC:
        raise FormatError(f"no weight descriptor here (magic 0x{vals['magic']:08x}, expected 0x{DESC_MAGIC:08x})")
    return vals


def region_format(desc: dict) -> WeightFormat:
    kinds = {v: k for k, v in WFMT_CODES.items()}
    if desc["wfmt"] not in kinds or desc["wfmt"] == 0:
        raise FormatError(f"descriptor wfmt {desc['wfmt']} is not a quantized format code "
                          f"({', '.join(str(c) for c in WFMT_CODES.values() if c)})")
    kind, bits = kinds[desc["wfmt"]]
    if desc["bits"] != bits:
        raise FormatError(f"descriptor bits {desc['bits']} do not match wfmt {desc['wfmt']} ({kind}, {bits} bits)")
    return WeightFormat(kind, bits, "ic" if desc["flags"] & 1 else "oc", desc["group"] or None,
                        bool(desc["flags"] & 2))


def unpack_region(raw, wfmt: int, k: int, n: int, d: int, l: int) -> QuantWeight:
    """Read a region (bytes or a uint8 array starting at the descriptor) as the MPU's dequantiser does: check the
    descriptor against the instruction (wfmt, k, n) and return the QuantWeight it holds."""
    raw = np.frombuffer(raw, np.uint8) if isinstance(raw, (bytes, bytearray)) else np.asarray(raw, np.uint8)
    desc = read_descriptor(raw)
    f = region_format(desc)
    if desc["wfmt"] != wfmt or desc["k"] != k or desc["n"] != n:
        raise FormatError(f"descriptor (wfmt {desc['wfmt']}, k {desc['k']}, n {desc['n']}) does not match the "
                          f"instruction (wfmt {wfmt}, k {k}, n {n})")
    lay = RegionLayout(f, k, n, d, l, desc["phase"])
    want = dict(codes=lay.codes_off, scales=lay.scales_off, zeros=lay.zeros_off, size=lay.size)
    got = {key: desc[key] for key in want}
    if got != want:
        raise FormatError(f"descriptor offsets {got} do not match the layout of {f.name} {k}x{n} ({want})")
    if raw.size < lay.size:
        raise FormatError(f"region of {raw.size} bytes is shorter than its descriptor's {lay.size}")
    e, tiles = d * l, lay.kt * lay.nt
    cb = raw[lay.codes_off:lay.codes_off + lay.codes_bytes].reshape(tiles, lay.tile_code_bytes)
    if f.kind == "bcq":
        pb = e // 8
        planes = [_unbitstream(cb[:, q * pb:(q + 1) * pb], e, 1) for q in range(f.bits)]
        codes = _untile_order(np.stack(planes).astype(np.uint8), k, n, d, l)
    else:
        t = cb.copy() if f.bits == 8 else _unbitstream(cb, e, f.bits)
        if f.kind == "int" and not f.asym:
            t = t.astype(np.int16)
            t = np.where(t >= 1 << (f.bits - 1), t - (1 << f.bits), t).astype(np.int8)
        codes = _untile_order(t.astype(np.int8 if f.kind == "int" and not f.asym else np.uint8), k, n, d, l)
    sc = raw[lay.scales_off:lay.scales_off + lay.scales_bytes].view(np.float16).reshape(lay.block_shape)
    scales = np.ascontiguousarray(_unstored(sc, lay, f.kind == "bcq"))
    zeros = None
    if f.asym:
        zshape = lay.block_shape
        zeros = np.ascontiguousarray(_unstored(raw[lay.zeros_off:lay.zeros_off + lay.zeros_bytes].reshape(zshape),
                                               lay, False))
    return QuantWeight(f, np.ascontiguousarray(codes), scales, zeros, phase=desc["phase"]).check()
