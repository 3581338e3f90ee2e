"""The DFX instruction set, defined once, as data (docs/design.md, contract 2).

Everything else derives from the tables in this module: the compiler's encoder, the simulators' decoder, the
text assembler/disassembler, the RTL decoder (hw/ builds Amaranth layouts from `FORMATS`) and `docs/isa.md`
(`python -m dfx.isa_doc`, which adds the prose). Nobody writes an opcode number, a field width or a bit slice
anywhere else. The rules an executor enforces are functions here too: `operand_ranges` / `check_operands` (the
on-chip operands of the `reads` / `writes` tables and their bounds), `fence_units` (what a FENCE drains) and
`check_batch` / `check_chunk` / `check_slot` (batched prefill), raising `RuleError`.

Word: every instruction is one 128-bit little-endian word. Bits [7:0] hold the opcode; the fields of the
opcode's format follow from bit 8 upward, in the order listed, each `width` bits wide; unused high bits are 0.

Machine model the semantics refer to (all sizes from `AccelConfig`):
- VBUF: the on-chip vector buffer, `vbuf_entries` entries of d FP16 elements. Vector operands are addressed by
  entry (d-aligned) and have a length in elements.
- S0..S15: FP32 scalar registers (reductions, reciprocal, rsqrt, scales).
- HBM: the striped weight/KV space. Address unit: 64 bytes. Byte b of the striped space lives in pseudo-channel
  (b // channel_beat) % channels, so one address run of `beat_bytes` bytes is one beat on every channel.
  Matrices live there as d x l FP16 tiles (see `dfx.program.tile_matrix`), or as quantized regions (below).
- DDR: byte-addressed tables (embeddings, biases, LayerNorm parameters) and the logits output.
- TOKEN, POS: integer registers the host writes before each run (the input token and its position). In a batched
  run, SLOT sets them for each token of the chunk.
- COUNT, POS0, TBASE: the batched-prefill registers (ISA version 2, "Batched prefill" below). Every run starts
  with COUNT = 0; CHUNK loads COUNT (tokens in this run) from the token table in DDR, remembers the table's
  address in TBASE and latches POS0 = POS; SLOT i then sets TOKEN = table[i], POS = POS0 + i.
"""
from __future__ import annotations

import enum
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .errors import EncodeError, RuleError

ISA_VERSION = 2        # 2: BATCH, CHUNK, SLOT (matrix-matrix prefill)
WORD_BITS = 128
WORD_BYTES = WORD_BITS // 8
OPCODE_BITS = 8
HBM_UNIT = 64          # bytes per HBM address unit


class Unit(enum.Enum):
    """Execution units; each has its own in-order queue behind the dispatcher."""
    MPU = "mpu"        # matrix processing unit (+ SFU_M: bias, scale, mask, GELU on its output)
    VPU = "vpu"        # vector unit (+ SFU_V: reductions, exp, reciprocal, rsqrt)
    DMA = "dma"        # HBM/DDR <-> VBUF
    ROUTER = "router"  # ring links
    CTRL = "ctrl"      # fences, end of stream


@dataclass(frozen=True)
class Field:
    name: str
    width: int
    kind: str = "u"     # u: unsigned int, f32: IEEE binary32 bits, flag: 1-bit boolean
    doc: str = ""

    def check(self, value, op: str, raw: bool = False) -> int:
        """Range-check and convert a Python value to the field's bits, naming the field when it does not fit.

        FP32 fields take a number (rounded to binary32), or with `raw` their bit pattern."""
        if self.kind == "f32" and not raw:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise EncodeError(f"{op}.{self.name} must be a number, not {value!r}")
            try:
                return struct.unpack("<I", struct.pack("<f", float(value)))[0]
            except OverflowError:
                raise EncodeError(f"{op}.{self.name}={value!r} does not fit in binary32") from None
        if self.kind == "flag":
            if value not in (0, 1, True, False):
                raise EncodeError(f"{op}.{self.name} is a flag and must be 0 or 1, not {value!r}")
            return int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise EncodeError(f"{op}.{self.name} must be an integer, not {value!r}")
        if not 0 <= value < (1 << self.width):
            raise EncodeError(f"{op}.{self.name}={value} does not fit in {self.width} bits "
                              f"(accepted: 0..{(1 << self.width) - 1})")
        return value


@dataclass(frozen=True)
class Format:
    name: str
    fields: tuple[Field, ...]
    doc: str = ""

    def __post_init__(self):
        used = OPCODE_BITS + sum(f.width for f in self.fields)
        assert used <= WORD_BITS, f"format {self.name} uses {used} bits"

    def offsets(self) -> dict[str, tuple[int, int]]:
        """Field name -> (lsb, width) within the word."""
        out, lsb = {}, OPCODE_BITS
        for f in self.fields:
            out[f.name] = (lsb, f.width)
            lsb += f.width
        return out

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


# ---------------------------------------------------------------------------------------------- formats
VADDR_BITS = 16                    # VBUF entry address
LEN_BITS = 16                      # vector length in elements
SREG_BITS = 4                      # scalar register number
VBUF_ENTRIES_MAX = 1 << VADDR_BITS     # the most VBUF entries an instruction can address
SREG_COUNT = 1 << SREG_BITS            # S0..S15

MATRIX = Format("MATRIX", (
    Field("dst", VADDR_BITS, doc="VBUF entry of the output vector (n elements)"),
    Field("src", VADDR_BITS, doc="VBUF entry of the input vector (k elements)"),
    Field("bias", VADDR_BITS, doc="VBUF entry of the FP16 bias vector (n elements), used when has_bias"),
    Field("w", 28, doc="HBM address (64-byte units) of the first d x l weight tile"),
    Field("k", 14, doc="reduction length (rows of W); ignored when dyn_k"),
    Field("n", 14, doc="output length (columns of W); ignored when dyn_n"),
    Field("has_bias", 1, "flag", "add the bias vector"),
    Field("gelu", 1, "flag", "apply GELU (SFU_M) to the rounded output"),
    Field("mask", 1, "flag", "causal mask: outputs j > POS become -inf"),
    Field("scale", 1, "flag", "multiply the FP32 accumulator by scalar register s before rounding"),
    Field("dyn_k", 1, "flag", "k = POS + 1 (score x V over the cached tokens)"),
    Field("dyn_n", 1, "flag", "n = POS + 1 (q x K^T over the cached tokens)"),
    Field("s", SREG_BITS, doc="scalar register holding the scale"),
    Field("wfmt", 4, doc="weight format code (see Weight formats): 0 = FP16 tiles at `w`; otherwise `w` is a "
                         "quantized region (descriptor, codes, scales) dequantised to FP16 in front of the MPU "
                         "(LINEAR only)"),
    Field("rowmajor", 1, "flag", "tile (i, j) of W is at w + i*ceil(n/l) + j (V cache); "
                                 "else at w + j*ceil(k/d) + i (weights, K cache); in tile units"),
), "MPU: y = act(round16(scale * (x . W + b))) over d x l weight tiles streamed from HBM")

VECTOR = Format("VECTOR", (
    Field("dst", VADDR_BITS, doc="VBUF entry written (vector results)"),
    Field("a", VADDR_BITS, doc="VBUF entry of operand a"),
    Field("b", VADDR_BITS, doc="VBUF entry of operand b"),
    Field("n", LEN_BITS, doc="length in elements; ignored when dyn_n"),
    Field("sd", SREG_BITS, doc="scalar register written (reductions)"),
    Field("sa", SREG_BITS, doc="scalar register read (vector-scalar ops)"),
    Field("dyn_n", 1, "flag", "n = POS + 1"),
), "VPU: element-wise ops, vector-scalar ops and reductions on FP16 vectors in VBUF")

SCALAR = Format("SCALAR", (
    Field("sd", SREG_BITS, doc="scalar register written"),
    Field("sa", SREG_BITS, doc="scalar register read"),
    Field("imm", 32, "f32", doc="FP32 immediate"),
), "VPU scalar path (SFU_V): FP32 operations on scalar registers")

DMA = Format("DMA", (
    Field("vaddr", VADDR_BITS, doc="VBUF entry"),
    Field("addr", 36, doc="off-chip byte address (DDR) or 64-byte unit (HBM) of the base"),
    Field("n", LEN_BITS, doc="elements moved"),
    Field("hbm", 1, "flag", "off-chip space: 1 = HBM, 0 = DDR"),
    Field("index", 2, doc="row index register: 0 none, 1 TOKEN, 2 POS"),
    Field("stride", 24, doc="bytes per index step (row pitch of an indexed table)"),
), "DMA: moves FP16 vectors between VBUF and HBM/DDR")

ROUTE = Format("ROUTE", (
    Field("vaddr", VADDR_BITS, doc="VBUF entry: SEND/RECV data; ALLGATHER: start of the whole gathered vector"),
    Field("n", LEN_BITS, doc="elements: SEND/RECV the message; ALLGATHER the whole gathered vector"),
    Field("devices", 6, doc="ALLGATHER: devices in the ring (the vector is split among them, see below)"),
    Field("gran", VADDR_BITS, doc="ALLGATHER: split granule in VBUF entries (a head's entries, or 1)"),
    Field("dir", 1, "flag", "SEND/RECV: direction of travel, 0 = forward (SEND to the next device, RECV from "
                            "the previous one), 1 = backward"),
), "Router: vectors over the ring; ALLGATHER chunk i (of `devices`) is `chunk_bounds(n, devices, gran*d)[i]`")

CONTROL = Format("CONTROL", (
    Field("units", 5, doc="FENCE: bit mask of units to drain (1 MPU, 2 VPU, 4 DMA, 8 ROUTER, 16 all)"),
), "Controller")

BATCH = Format("BATCH", (
    Field("m", LEN_BITS, doc="inputs (>= 1); ignored when dyn_m"),
    Field("src_stride", VADDR_BITS, doc="VBUF entries from one input vector to the next (LINEAR src)"),
    Field("dst_stride", VADDR_BITS, doc="VBUF entries from one output vector to the next (LINEAR dst, ALLGATHER "
                                    "vaddr; for ALLGATHER src_stride must equal it)"),
    Field("dyn_m", 1, "flag", "m = COUNT (the tokens of this batched run)"),
), "Controller prefix: the next instruction (LINEAR or ALLGATHER) runs over m vectors (see Batched prefill)")

SLOT = Format("SLOT", (
    Field("addr", 36, doc="CHUNK: DDR byte address of the token table (4-byte aligned)"),
    Field("cap", LEN_BITS, doc="CHUNK: the table's capacity; COUNT must be 1..cap"),
    Field("i", LEN_BITS, doc="SLOT: token index within the chunk"),
    Field("skip", LEN_BITS, doc="SLOT: instructions skipped when token i does not exist (i >= COUNT)"),
), "Controller: the token slots of a batched run (see Batched prefill)")

FORMATS = (MATRIX, VECTOR, SCALAR, DMA, ROUTE, CONTROL, BATCH, SLOT)


# ---------------------------------------------------------------------------------------------- opcodes
# An operand token ending in "?" is accessed only when this flag of the instruction is set.
OPTIONAL = {"n?": "has_bias", "s?": "scale"}


class OperandSpec(NamedTuple):
    """One on-chip operand of an opcode: its `reads` / `writes` (VBUF) or `sreads` / `swrites` (scalar) entry,
    parsed once (`Op.operands`). Every executor reads operands through these (`operand_ranges`; the RTL's
    decode-stage check in hw/core.py builds its comparators from them)."""
    field: str              # the field holding the first VBUF entry, or the scalar register number
    length: str | None      # VBUF: the field holding the length in elements; None: a scalar register
    dyn: str | None         # the flag that makes the length POS + 1 (dyn_k, dyn_n), when the format has it
    when: str | None        # the flag without which the operand is not accessed (`OPTIONAL`)
    write: bool

    @property
    def scalar(self) -> bool:
        return self.length is None


def _operand_specs(fmt: Format, reads, writes, sreads, swrites) -> tuple[OperandSpec, ...]:
    names = {f.name for f in fmt.fields}
    out = []
    for table, write in ((reads, False), (writes, True)):
        for addr, token in table:
            length = token.rstrip("?")
            dyn = f"dyn_{length}"
            out.append(OperandSpec(addr, length, dyn if dyn in names else None, OPTIONAL.get(token), write))
    for table, write in ((sreads, False), (swrites, True)):
        for token in table:
            out.append(OperandSpec(token.rstrip("?"), None, None, OPTIONAL.get(token), write))
    for spec in out:
        assert {spec.field, spec.length or spec.field, spec.dyn or spec.field, spec.when or spec.field} <= names, \
            (fmt.name, spec)
    return tuple(out)


@dataclass(frozen=True)
class Op:
    mnemonic: str
    code: int
    fmt: Format
    unit: Unit
    doc: str
    # VBUF operands as (address field, length token), scalar registers as field tokens; a token ending in "?" is
    # optional (`OPTIONAL`). `operands` holds them parsed; `operand_ranges` interprets them.
    reads: tuple[tuple[str, str], ...] = ()
    writes: tuple[tuple[str, str], ...] = ()
    sreads: tuple[str, ...] = ()
    swrites: tuple[str, ...] = ()
    operands: tuple[OperandSpec, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "operands",
                           _operand_specs(self.fmt, self.reads, self.writes, self.sreads, self.swrites))


def _m(mn, code, doc, **kw):
    return Op(mn, code, MATRIX, Unit.MPU, doc, reads=(("src", "k"), ("bias", "n?")), writes=(("dst", "n"),),
              sreads=("s?",), **kw)


OPS: tuple[Op, ...] = (
    # control
    Op("NOP", 0x00, CONTROL, Unit.CTRL, "do nothing"),
    Op("HALT", 0x01, CONTROL, Unit.CTRL, "end of stream: wait for every unit to drain, raise done"),
    Op("FENCE", 0x02, CONTROL, Unit.CTRL,
       "wait until the units in the mask have completed every older instruction (orders off-chip hazards)"),
    Op("BATCH", 0x03, BATCH, Unit.CTRL,
       "prefix: the next instruction, which must be LINEAR or ALLGATHER, runs for i = 0..m-1 on the vectors at "
       "src + i*src_stride, dst + i*dst_stride (LINEAR: W streamed once, bias shared)"),
    Op("CHUNK", 0x04, SLOT, Unit.CTRL,
       "start a batched run: COUNT = u32 DDR[addr] (1..cap), TBASE = addr + 4, POS0 = POS"),
    Op("SLOT", 0x05, SLOT, Unit.CTRL,
       "token slot i: if i < COUNT, TOKEN = u32 DDR[TBASE + 4i] and POS = POS0 + i; else skip the next `skip` "
       "instructions"),
    # matrix (MPU + SFU_M)
    _m("LINEAR", 0x10, "Conv1D: dst[0:n] = act(src[0:k] . W[k x n] + bias) (GPT-2 c_attn, c_proj, c_fc)"),
    _m("QK", 0x11, "masked q . K^T: dst[0:n] = scale * (q . Kcache[:, 0:n]), n = POS+1 when dyn_n, masked"),
    _m("SV", 0x12, "score x V: dst[0:n] = p[0:k] . Vcache[0:k, 0:n], k = POS+1 when dyn_k (V stored transposed)"),
    _m("LMHEAD", 0x13, "LM head: dst[0:n] = h . WTE^T[:, chunk] (a chunk of the vocabulary)"),
    # vector (VPU)
    Op("VADD", 0x20, VECTOR, Unit.VPU, "dst = a + b (FP16, RNE)", reads=(("a", "n"), ("b", "n")), writes=(("dst", "n"),)),
    Op("VSUB", 0x21, VECTOR, Unit.VPU, "dst = a - b", reads=(("a", "n"), ("b", "n")), writes=(("dst", "n"),)),
    Op("VMUL", 0x22, VECTOR, Unit.VPU, "dst = a * b", reads=(("a", "n"), ("b", "n")), writes=(("dst", "n"),)),
    Op("VMOV", 0x23, VECTOR, Unit.VPU, "dst = a", reads=(("a", "n"),), writes=(("dst", "n"),)),
    Op("VADDS", 0x24, VECTOR, Unit.VPU, "dst = a + S[sa] (FP32 op, rounded to FP16)", reads=(("a", "n"),),
       writes=(("dst", "n"),), sreads=("sa",)),
    Op("VSUBS", 0x25, VECTOR, Unit.VPU, "dst = a - S[sa]", reads=(("a", "n"),), writes=(("dst", "n"),), sreads=("sa",)),
    Op("VMULS", 0x26, VECTOR, Unit.VPU, "dst = a * S[sa]", reads=(("a", "n"),), writes=(("dst", "n"),), sreads=("sa",)),
    Op("VEXP", 0x27, VECTOR, Unit.VPU, "dst = exp(a) (SFU_V table + interpolation)", reads=(("a", "n"),),
       writes=(("dst", "n"),)),
    Op("VGELU", 0x28, VECTOR, Unit.VPU, "dst = gelu(a) (2048-sample LUT on [-8, 8])", reads=(("a", "n"),),
       writes=(("dst", "n"),)),
    Op("VSUM", 0x30, VECTOR, Unit.VPU, "S[sd] = sum(a[0:n]) in FP32 (adder tree per d-chunk)", reads=(("a", "n"),),
       swrites=("sd",)),
    Op("VMAX", 0x31, VECTOR, Unit.VPU, "S[sd] = max(a[0:n])", reads=(("a", "n"),), swrites=("sd",)),
    Op("VDOT", 0x32, VECTOR, Unit.VPU, "S[sd] = sum(a * b) in FP32 (a = b gives the sum of squares)",
       reads=(("a", "n"), ("b", "n")), swrites=("sd",)),
    # scalar (SFU_V)
    Op("SMOVI", 0x38, SCALAR, Unit.VPU, "S[sd] = imm", swrites=("sd",)),
    Op("SADDI", 0x39, SCALAR, Unit.VPU, "S[sd] = S[sa] + imm (FP32)", sreads=("sa",), swrites=("sd",)),
    Op("SMULI", 0x3A, SCALAR, Unit.VPU, "S[sd] = S[sa] * imm (FP32)", sreads=("sa",), swrites=("sd",)),
    Op("SRECIP", 0x3B, SCALAR, Unit.VPU, "S[sd] = 1 / S[sa]", sreads=("sa",), swrites=("sd",)),
    Op("SRSQRT", 0x3C, SCALAR, Unit.VPU, "S[sd] = 1 / sqrt(S[sa])", sreads=("sa",), swrites=("sd",)),
    # DMA
    Op("LOAD", 0x40, DMA, Unit.DMA, "VBUF[vaddr][0:n] = mem[addr + index * stride] (contiguous FP16)",
       writes=(("vaddr", "n"),)),
    Op("STORE", 0x41, DMA, Unit.DMA, "mem[addr + index * stride] = VBUF[vaddr][0:n]", reads=(("vaddr", "n"),)),
    Op("STORE_K", 0x42, DMA, Unit.DMA,
       "store an n-vector as column POS of a column-major tiled HBM matrix with ceil(n/d) row tiles (K cache append)",
       reads=(("vaddr", "n"),)),
    Op("STORE_VT", 0x43, DMA, Unit.DMA,
       "transposed store: an n-vector as row POS of a row-major tiled HBM matrix with ceil(n/l) column tiles "
       "(V cache append)",
       reads=(("vaddr", "n"),)),
    # router
    Op("SEND", 0x50, ROUTE, Unit.ROUTER, "send VBUF[vaddr][0:n] to the ring neighbour in direction `dir`", reads=(("vaddr", "n"),)),
    Op("RECV", 0x51, ROUTE, Unit.ROUTER, "receive n elements travelling in direction `dir` into VBUF[vaddr]",
       writes=(("vaddr", "n"),)),
    Op("ALLGATHER", 0x52, ROUTE, Unit.ROUTER,
       "ring all-gather of VBUF[vaddr][0:n]: this device's chunk (by ring position) is in place; the other "
       "chunks arrive from the other devices", reads=(("vaddr", "n"),), writes=(("vaddr", "n"),)),
)

BY_MNEMONIC = {op.mnemonic: op for op in OPS}
BATCHED_OPS = ("BATCH", "CHUNK", "SLOT")      # ISA version 2: matrix-matrix prefill
BATCHABLE = ("LINEAR", "ALLGATHER")           # what a BATCH prefix may precede
TOKEN_TABLE_HEADER = 4                        # bytes of COUNT (u32) before the tokens in a CHUNK table
BY_CODE = {op.code: op for op in OPS}
assert len(BY_CODE) == len(OPS) and len(BY_MNEMONIC) == len(OPS)
INDEX_REGS = {0: None, 1: "TOKEN", 2: "POS"}                             # DMA index -> row index register
INDEX_CODE = {reg: code for code, reg in INDEX_REGS.items() if reg}       # "TOKEN" -> 1, "POS" -> 2
SPACE_CODE = {"DDR": 0, "HBM": 1}                                          # DMA hbm flag: the off-chip space


def chunk_bounds(n: int, parts: int, granule: int) -> list[tuple[int, int]]:
    """How ALLGATHER (and the compiler's column/head split) cut n elements among `parts` devices.

    The vector is cut into units of `granule` elements (the last one may be short); device i gets
    units // parts units, plus one more if i < units % parts, in ring order. Returns [start, end) per device.
    """
    units = -(-n // granule)
    base, extra = divmod(units, parts)
    out, u = [], 0
    for i in range(parts):
        k = base + (i < extra)
        out.append((min(u * granule, n), min((u + k) * granule, n)))
        u += k
    return out
UNIT_BITS = {Unit.MPU: 1, Unit.VPU: 2, Unit.DMA: 4, Unit.ROUTER: 8}     # FENCE units: one bit per unit
ALL_UNITS = 16                                                           # FENCE units: every unit
MAX_DEVICES = (1 << ROUTE.field("devices").width) - 1    # the largest ring an ALLGATHER can name


# ---------------------------------------------------------------------------------------------- instructions
class Instr:
    """One instruction: an opcode and its field values. Immutable, hashable, compares by value."""
    __slots__ = ("op", "_vals")

    def __init__(self, op: Op | str, _raw: bool = False, **fields):
        if isinstance(op, str):
            try:
                op = BY_MNEMONIC[op.upper()]
            except KeyError:
                raise EncodeError(f"unknown mnemonic {op!r}; accepted: {', '.join(BY_MNEMONIC)}") from None
        vals = {}
        for f in op.fmt.fields:
            v = fields.pop(f.name, 0)
            vals[f.name] = f.check(v, op.mnemonic, _raw)
        if fields:
            raise EncodeError(f"{op.mnemonic} has no field(s) {', '.join(sorted(fields))}; "
                              f"accepted: {', '.join(f.name for f in op.fmt.fields)}")
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "_vals", tuple(vals[f.name] for f in op.fmt.fields))

    def __setattr__(self, k, v):
        raise AttributeError("Instr is immutable")

    def __getattr__(self, name):
        op = object.__getattribute__(self, "op")
        for f, v in zip(op.fmt.fields, object.__getattribute__(self, "_vals")):
            if f.name == name:
                if f.kind == "f32":
                    return struct.unpack("<f", struct.pack("<I", v))[0]
                return v
        raise AttributeError(f"{op.mnemonic} has no field {name!r}")

    def bits(self, name: str) -> int:
        """The raw field bits (f32 immediates as their IEEE bit pattern)."""
        for f, v in zip(self.op.fmt.fields, self._vals):
            if f.name == name:
                return v
        raise AttributeError(f"{self.op.mnemonic} has no field {name!r}")

    def fields(self) -> dict[str, int]:
        return {f.name: v for f, v in zip(self.op.fmt.fields, self._vals)}

    def __eq__(self, other):
        return isinstance(other, Instr) and self.op is other.op and self._vals == other._vals

    def __hash__(self):
        return hash((self.op.code, self._vals))

    def __repr__(self):
        return f"Instr({disassemble(self)!r})"

    def encode(self) -> int:
        word = self.op.code
        for (lsb, _), v in zip(self.op.fmt.offsets().values(), self._vals):
            word |= v << lsb
        return word

    def to_bytes(self) -> bytes:
        return self.encode().to_bytes(WORD_BYTES, "little")


def decode(word: int, pc: int | None = None) -> Instr:
    """Decode a 128-bit word. Unknown opcodes and set reserved bits are errors."""
    where = f" at pc {pc}" if pc is not None else ""
    code = word & ((1 << OPCODE_BITS) - 1)
    op = BY_CODE.get(code)
    if op is None:
        raise EncodeError(f"unknown opcode 0x{code:02x}{where}; known: "
                          + ", ".join(f"0x{o.code:02x} {o.mnemonic}" for o in OPS))
    vals = {}
    lsb = OPCODE_BITS
    for f in op.fmt.fields:
        vals[f.name] = (word >> lsb) & ((1 << f.width) - 1)
        lsb += f.width
    if word >> lsb:
        raise EncodeError(f"{op.mnemonic}{where}: reserved bits {lsb}..{WORD_BITS - 1} are not zero")
    return Instr(op, _raw=True, **vals)


def encode_stream(instrs) -> bytes:
    return b"".join(i.to_bytes() for i in instrs)


def decode_stream(blob: bytes) -> list[Instr]:
    if len(blob) % WORD_BYTES:
        raise EncodeError(f"instruction stream of {len(blob)} bytes is not a multiple of {WORD_BYTES}-byte words")
    return [decode(int.from_bytes(blob[i:i + WORD_BYTES], "little"), i // WORD_BYTES)
            for i in range(0, len(blob), WORD_BYTES)]


# ---------------------------------------------------------------------------------------------- rules
# What an executor (the functional simulator, the performance model, the RTL core) checks as it runs a stream.
# Each check raises `RuleError` with a one-line message; the caller adds where (device, PC) and its own error
# class.
BATCH_STRIDES = {"src": "src_stride", "dst": "dst_stride", "vaddr": "dst_stride"}   # operand field -> BATCH
#                                             stride field (LINEAR src and dst, ALLGATHER vaddr); others: shared


class OperandRange(NamedTuple):
    """One on-chip range an instruction reads or writes (`operand_ranges`)."""
    field: str              # the operand's field (its `OperandSpec.field`)
    start: int              # first VBUF entry, or the scalar register number
    elems: int | None       # VBUF elements from `start`; None: POS + 1 with POS not known yet; scalar: 1
    entries: int | None     # VBUF entries covered, ceil(elems / d) (None with elems); scalar: 1
    write: bool
    scalar: bool


class Batch(NamedTuple):
    """What a BATCH prefix does to the instruction after it (`check_batch`)."""
    m: int                  # vectors
    src_stride: int         # VBUF entries between inputs
    dst_stride: int         # VBUF entries between outputs


class ChunkRegs(NamedTuple):
    """The batched-prefill registers a CHUNK sets (`check_chunk`)."""
    count: int              # COUNT
    tbase: int              # TBASE: DDR byte address of token 0
    pos0: int               # POS0


def operand_ranges(op: Op, fields: Mapping[str, int], d: int, pos: int | None = None,
                   batch: Batch | None = None) -> list[OperandRange]:
    """The on-chip ranges an instruction reads and writes, from its opcode's `operands` (ISA dependency rules
    1 and 5), in table order; an optional operand whose flag is clear is left out. `fields`: the instruction's
    field values (`Instr.fields()`); `pos`: the POS it runs with (None: POS + 1 lengths stay None); `batch`: the
    BATCH prefix fused into it, whose strided operands (`BATCH_STRIDES`) count m times, copies that touch or
    overlap merged into one range (elems then a whole number of entries); the other operands count once."""
    out = []
    for spec in op.operands:
        if spec.when is not None and not fields[spec.when]:
            continue
        start = fields[spec.field]
        if spec.length is None:
            out.append(OperandRange(spec.field, start, 1, 1, spec.write, True))
            continue
        if spec.dyn is not None and fields[spec.dyn]:
            elems = None if pos is None else pos + 1
        else:
            elems = fields[spec.length]
        strided = batch is not None and spec.field in BATCH_STRIDES
        stride = getattr(batch, BATCH_STRIDES[spec.field]) if strided else 0
        entries = None if elems is None else -(-elems // d)
        if not stride or elems is None:
            out.append(OperandRange(spec.field, start, elems, entries, spec.write, False))
            continue
        runs: list[list[int]] = []
        for i in range(batch.m):
            a = start + i * stride
            if runs and a <= runs[-1][1]:
                runs[-1][1] = max(runs[-1][1], a + entries)
            else:
                runs.append([a, a + entries])
        out.extend(OperandRange(spec.field, a, elems if b - a == entries else (b - a) * d, b - a, spec.write, False)
                   for a, b in runs)
    return out


def check_operands(ranges, vbuf_entries: int, sregs: int = SREG_COUNT) -> None:
    """RuleError naming the first range that lies outside VBUF (`vbuf_entries` entries) or names a scalar register
    the core does not have: what the core flags as STATUS.address_range before it starts the instruction. A
    range of unknown length (elems None) is not checked."""
    for r in ranges:
        if r.scalar:
            if r.start >= sregs:
                raise RuleError(f"{r.field}: scalar register S{r.start} does not exist; accepted: S0..S{sregs - 1}")
        elif r.entries is not None and r.start + r.entries > vbuf_entries:
            raise RuleError(f"{r.field}: VBUF entries {r.start}..{r.start + r.entries} exceed the {vbuf_entries}-entry "
                            "buffer")


def fence_units(units: int) -> int:
    """The `UNIT_BITS` of the units a FENCE with field `units` drains."""
    every = sum(UNIT_BITS.values())
    return every if units & ALL_UNITS else units & every


def check_batch(prefix: Instr, nxt: Instr | None, count: int) -> Batch:
    """The vectors a BATCH prefix runs `nxt` (the next instruction; None at the end of the stream) over, with
    COUNT = `count` (0 before CHUNK); RuleError when the pair breaks a rule of "Batched prefill"."""
    if nxt is None or nxt.op.mnemonic not in BATCHABLE:
        raise RuleError(f"BATCH must be followed by {' or '.join(BATCHABLE)}, not "
                        f"{nxt.op.mnemonic if nxt is not None else 'the end of the stream'}")
    if prefix.dyn_m:
        if not count:
            raise RuleError("BATCH +dyn_m before CHUNK: COUNT is 0")
        m = count
    else:
        m = prefix.m
        if not m:
            raise RuleError("BATCH m=0: m must be >= 1")
    if nxt.op.mnemonic == "LINEAR" and (nxt.dyn_k or nxt.dyn_n):
        raise RuleError("a batched LINEAR has static k and n (dyn_k and dyn_n must be 0)")
    if nxt.op.mnemonic == "ALLGATHER" and prefix.src_stride != prefix.dst_stride:
        raise RuleError("a batched ALLGATHER is in place: src_stride must equal dst_stride")
    return Batch(m, prefix.src_stride, prefix.dst_stride)


def check_chunk(chunk: Instr, count: int, pos: int) -> ChunkRegs:
    """The registers a CHUNK sets when its token table holds `count` and POS is `pos`; RuleError when the table
    is not 4-byte aligned or `count` is not 1..cap."""
    if chunk.addr % 4:
        raise RuleError(f"the token table at DDR byte {chunk.addr} is not 4-byte aligned")
    if not 1 <= count <= chunk.cap:
        raise RuleError(f"the token table at DDR byte {chunk.addr} holds COUNT {count}; accepted: 1..{chunk.cap}")
    return ChunkRegs(count, chunk.addr + TOKEN_TABLE_HEADER, pos)


def check_slot(slot: Instr, count: int, left: int) -> bool:
    """Whether SLOT's token exists (i < COUNT; else the next `skip` instructions are skipped), with COUNT =
    `count` (0 before CHUNK) and `left` instructions after the SLOT; RuleError before CHUNK or when the skip
    runs past the end of the stream."""
    if not count:
        raise RuleError("SLOT before CHUNK: COUNT is 0")
    if slot.skip > left:
        raise RuleError(f"skip={slot.skip} runs past the end of the stream ({left} instructions follow)")
    return slot.i < count


# ---------------------------------------------------------------------------------------------- assembler
def _fmt_value(f: Field, v: int) -> str:
    if f.kind == "f32":
        x = struct.unpack("<f", struct.pack("<I", v))[0]
        if x != x or x in (float("inf"), float("-inf")):
            return f"0x{v:08x}"
        return str(np.float32(x))     # shortest text that round-trips the binary32 value
    if f.name in ("w", "addr"):
        return f"0x{v:x}"
    return str(v)


def disassemble(ins: Instr) -> str:
    """`MNEMONIC field=value ...`; flags print as `+name`; zero fields are left out."""
    parts = [ins.op.mnemonic]
    for f, v in zip(ins.op.fmt.fields, ins._vals):
        if f.kind == "flag":
            if v:
                parts.append(f"+{f.name}")
        elif v:
            parts.append(f"{f.name}={_fmt_value(f, v)}")
    return " ".join(parts)


_TOKEN = re.compile(r"^(?:\+(?P<flag>\w+)|(?P<k>\w+)=(?P<v>\S+))$")


def assemble_line(line: str, lineno: int | None = None) -> Instr | None:
    """Parse one line of assembly. `#` starts a comment; blank lines give None."""
    where = f"line {lineno}: " if lineno is not None else ""
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    head, *rest = text.split()
    op = BY_MNEMONIC.get(head.upper())
    if op is None:
        raise EncodeError(f"{where}unknown mnemonic {head!r}; accepted: {', '.join(BY_MNEMONIC)}")
    kw, raw = {}, False
    for tok in rest:
        m = _TOKEN.match(tok.rstrip(","))
        if not m:
            raise EncodeError(f"{where}cannot parse {tok!r}; write field=value or +flag")
        if m["flag"]:
            kw[m["flag"]] = 1
            continue
        name, v = m["k"], m["v"]
        try:
            f = op.fmt.field(name)
        except KeyError:
            raise EncodeError(f"{where}{op.mnemonic} has no field {name!r}; accepted: "
                              f"{', '.join(x.name for x in op.fmt.fields)}") from None
        try:
            if f.kind == "f32" and not v.lower().startswith("0x"):
                kw[name] = float(v)
            else:
                kw[name] = int(v, 0)
                raw = raw or f.kind == "f32"
        except ValueError:
            raise EncodeError(f"{where}{op.mnemonic}.{name}: {v!r} is not a number") from None
    try:
        if raw:   # an FP32 bit pattern was given: every other field is already an integer
            f32 = {f.name for f in op.fmt.fields if f.kind == "f32"}
            for k, v in kw.items():
                if k in f32 and isinstance(v, float):
                    kw[k] = struct.unpack("<I", struct.pack("<f", v))[0]
        return Instr(op, _raw=raw, **kw)
    except EncodeError as e:
        raise EncodeError(f"{where}{e}") from None


def assemble(text: str) -> list[Instr]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        ins = assemble_line(line, n)
        if ins is not None:
            out.append(ins)
    return out
