"""Random valid DFX programs for differential testing (riscv-dv style), drawn from the ISA tables (`dfx.isa`) and
kept valid by `dfx.isa_check` and the run-time rules of `dfx.isa`.

`generate(cfg, seed)` returns a `RandomProgram`: one stream `main` (a prologue that defines every VBUF entry and
scalar register the body may read, a body of random instructions, HALT), the DDR and HBM images it runs on, the
runs (TOKEN, POS) and the coverage bins it hit. The same seed gives the same program.

What the body draws: every opcode the RTL core implements (`SUPPORTED`), with lengths at their edges (1, below
and at d / vpu_width / l, multiples, the largest that fits), operands at the edges of VBUF (a window ending at
the last entry), scalar registers S0..S15, FP32 immediates that are 0, -0, subnormal, huge, inf or NaN, the
dyn_k / dyn_n / mask / gelu / scale / bias / rowmajor flags, DMA to DDR and HBM with every row index register
and strides, K/V cache appends at the run's POS, FENCEs with random unit masks (and a FENCE wherever rule 2 of
the ISA's dependency rules needs one: a read of off-chip data a DMA store wrote), and dependency chains (an
operand taken from an earlier instruction's output, so the core's hazard logic is exercised). Operands of one
matrix instruction do not overlap its output; a vector instruction's output is either disjoint from its inputs
or exactly in place (the ISA does not define a partial overlap).

Not drawn (reported as not covered by benchmarks/difftest.py): BATCH, CHUNK and SLOT (the RTL core refuses
them), quantized weights (wfmt != 0: the RTL core's MPU reads FP16 only), SEND / RECV and ALLGATHER over more
than one device (the fast harness runs one core).
"""
from __future__ import annotations

import random
import struct
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from dfx import isa, isa_check
from dfx.config import AccelConfig

UNSUPPORTED = {"BATCH": "batched prefill: the RTL core stops with illegal_opcode",
               "CHUNK": "batched prefill: the RTL core stops with illegal_opcode",
               "SLOT": "batched prefill: the RTL core stops with illegal_opcode",
               "SEND": "needs a ring of cores (the fast harness runs one)",
               "RECV": "needs a ring of cores (the fast harness runs one)"}
SUPPORTED = tuple(op.mnemonic for op in isa.OPS if op.mnemonic not in UNSUPPORTED)
NOT_COVERED = {("MATRIX", "wfmt", "quantized"): "the RTL core's MPU reads FP16 weights only",
               ("ALLGATHER", "devices", ">1"): "needs a ring of cores (the fast harness runs one)"}

DDR_DATA = 16 << 10           # DDR bytes of data (the stream follows, 4 KiB aligned)
HBM_UNITS = 512               # HBM image: 512 x 64 bytes; weights in the first half, stores anywhere
MAX_POS, MAX_TOKEN = 15, 7
F32_EDGES = {"zero": 0.0, "-zero": -0.0, "one": 1.0, "subnormal": 1e-40, "huge": 3.0e38, "tiny": 1e-30,
             "inf": float("inf"), "-inf": float("-inf"), "nan": float("nan")}


@dataclass
class RandomProgram:
    seed: int
    instrs: list
    ddr: bytearray
    hbm: bytearray
    steps: list                     # [("main", token, pos)]
    vbuf: list                      # VBUF entry ranges [(lo, hi)) the program defines
    bins: Counter = field(default_factory=Counter)

    @property
    def streams(self) -> dict:
        return {"main": self.instrs}


def _f16_data(rng: np.random.Generator, n: int, subnormals: bool = True, specials: float = 0.01) -> np.ndarray:
    """n binary16 values: mostly normal(0, 1) scaled by random powers of two, with some zeros, inf, NaN and (with
    `subnormals`) subnormals; without, every subnormal is flushed to a signed zero."""
    x = (rng.standard_normal(n) * np.exp2(rng.integers(-6, 4, n))).astype(np.float16)
    sp = rng.random(n) < specials
    pool = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 6e-8, -3e-5, 65504.0], np.float16)
    x[sp] = pool[rng.integers(0, len(pool), int(sp.sum()))]
    if not subnormals:
        u = x.view(np.uint16)
        u[(u & 0x7C00) == 0] &= 0x8000
    return x


def _len_bin(n: int, cfg: AccelConfig, cap: int) -> str:
    if n == cap:
        return "max"
    if n == 1:
        return "1"
    for name, q in (("d", cfg.d), ("l", cfg.l), ("vpu", cfg.vpu_width)):
        if n == q:
            return name
        if n == q - 1:
            return f"{name}-1"
        if n == q + 1:
            return f"{name}+1"
    return "mult_d" if n % cfg.d == 0 else "other"


class Generator:
    """Draws one program per seed (see the module docstring)."""

    def __init__(self, cfg: AccelConfig, seed: int, body: tuple[int, int] = (8, 40), subnormals: bool = True):
        self.cfg, self.seed, self.subnormals = cfg, seed, subnormals
        self.r = random.Random(seed)
        self.np = np.random.default_rng(seed)
        e = cfg.vbuf_entries
        self.windows = [(0, 48), (e - 16, e)]           # low and top-of-VBUF windows (entries)
        self.body = body
        self.bins: Counter = Counter()
        self.out: list[isa.Instr] = []
        self.recent: list[tuple[int, int]] = []          # (entry, elements) outputs of recent instructions
        self.dirty: list[tuple[str, int, int]] = []      # off-chip byte ranges stored since the last FENCE

    # ------------------------------------------------------------------ helpers
    def hit(self, *key):
        self.bins[key] += 1

    def length(self, cap: int, mn: str, fld: str) -> int:
        cfg, r = self.cfg, self.r
        picks = [1, cfg.d, cfg.d - 1, cfg.d + 1, cfg.l, cfg.l + 1, cfg.vpu_width, cfg.vpu_width + 1, 2 * cfg.d,
                 cap, r.randint(1, cap)]
        n = min(max(1, r.choice(picks)), cap)
        self.hit(mn, fld, _len_bin(n, cfg, cap))
        return n

    def vrange(self, n: int, mn: str, fld: str, avoid=None, reuse: bool = True) -> int | None:
        """A VBUF entry for an operand of n elements inside a window, not overlapping `avoid` [(entry, n)]; None
        when there is no such place."""
        d, r = self.cfg.d, self.r
        ents = -(-n // d)
        if reuse and self.recent and r.random() < 0.4:
            e, m = r.choice(self.recent[-3:])
            if self._fits(e, ents) and not self._overlaps(e, n, avoid):
                self.hit("dep", "reads-recent-output")
                return e
        for _ in range(50):
            lo, hi = self.windows[0] if r.random() < 0.75 else self.windows[1]
            if hi - lo < ents:
                continue
            e = r.choice([lo, hi - ents, r.randint(lo, hi - ents)])
            if not self._overlaps(e, n, avoid):
                self.hit(mn, fld, "top" if e + ents == self.cfg.vbuf_entries else ("zero" if e == 0 else "mid"))
                return e
        return None

    def _fits(self, e, ents):
        return any(lo <= e and e + ents <= hi for lo, hi in self.windows)

    def _overlaps(self, e, n, avoid) -> bool:
        d = self.cfg.d
        for a in avoid or ():
            if a is not None and e < a[0] + -(-a[1] // d) and a[0] < e + -(-n // d):
                return True
        return False

    def sreg(self, mn, fld) -> int:
        s = self.r.choice([0, self.cfg.sregs - 1, self.r.randrange(self.cfg.sregs)])
        self.hit(mn, fld, "S0" if s == 0 else ("Smax" if s == self.cfg.sregs - 1 else "Smid"))
        return s

    def emit(self, mn: str, **f) -> isa.Instr:
        ins = isa.Instr(mn, **f)
        isa_check.check_instr(ins, self.cfg, 1)
        self.out.append(ins)
        self.hit(mn)
        return ins

    def fence_for(self, space: str, lo: int, hi: int):
        """A FENCE (with the DMA bit) when the off-chip range [lo, hi) was stored since the last one."""
        if any(s == space and a < hi and lo < b for s, a, b in self.dirty):
            units = self.r.choice([isa.UNIT_BITS[isa.Unit.DMA], isa.ALL_UNITS, 0b0111, 0b1100])
            self.emit("FENCE", units=units)
            self.hit("FENCE", "units", "ordering-a-store")
            self.dirty.clear()

    # ------------------------------------------------------------------ instruction classes
    def vector(self, op: isa.Op):
        cfg, r = self.cfg, self.r
        mn, f = op.mnemonic, {}
        dyn = r.random() < 0.15
        n = MAX_POS + 1 if dyn else self.length(len(range(*self.windows[0])) * cfg.d, mn, "n")
        if dyn:
            f["dyn_n"] = 1
            f["n"] = r.choice([0, r.randrange(1 << 16)])          # ignored
            self.hit(mn, "dyn_n", "set")
        else:
            f["n"] = n
        f["a"] = self.vrange(n, mn, "a")
        if any(rd[0] == "b" for rd in op.reads):
            f["b"] = r.choice([f["a"], self.vrange(n, mn, "b")])
            if f["b"] == f["a"]:
                self.hit(mn, "b", "same-as-a")
        if op.sreads:
            f["sa"] = self.sreg(mn, "sa")
        if op.swrites:
            f["sd"] = self.sreg(mn, "sd")
        if op.writes:
            if r.random() >= 0.3:
                f["dst"] = self.vrange(n, mn, "dst", avoid=[(f["a"], n), (f.get("b"), n) if "b" in f else None],
                                       reuse=False)
            if f.get("dst") is None:
                f["dst"] = f["a"]
                self.hit(mn, "dst", "in-place")
        self.emit(mn, **f)
        if op.writes:
            self.recent.append((f["dst"], n))

    def scalar(self, op: isa.Op):
        mn, r = op.mnemonic, self.r
        name = r.choice(list(F32_EDGES) + ["random"] * 4)
        imm = F32_EDGES[name] if name != "random" else struct.unpack("<f", struct.pack("<f", r.gauss(0, 10)))[0]
        self.hit(mn, "imm", name)
        f = {"sd": self.sreg(mn, "sd"), "imm": imm}
        if op.sreads:
            f["sa"] = self.sreg(mn, "sa")
        self.emit(mn, **f)

    def matrix(self, op: isa.Op):
        cfg, r = self.cfg, self.r
        mn, d, l = op.mnemonic, cfg.d, cfg.l
        f = {}
        dyn_k, dyn_n = r.random() < 0.2, r.random() < 0.2
        k = MAX_POS + 1 if dyn_k else self.length(6 * d, mn, "k")
        n = MAX_POS + 1 if dyn_n else self.length(8 * l, mn, "n")
        for flag, on, val in (("dyn_k", dyn_k, k), ("dyn_n", dyn_n, n)):
            name = flag[-1]
            if on:
                f[flag], f[name] = 1, r.choice([0, 7, (1 << 14) - 1])    # the field is ignored
                self.hit(mn, flag, "set")
            else:
                f[name] = val
        tiles = -(-k // d) * -(-n // l)
        f["w"] = r.choice([0, HBM_UNITS - tiles, r.randint(0, HBM_UNITS - tiles)])
        self.hit(mn, "w", "zero" if f["w"] == 0 else ("end" if f["w"] == HBM_UNITS - tiles else "mid"))
        self.fence_for("HBM", f["w"] * isa.HBM_UNIT, (f["w"] + tiles) * isa.HBM_UNIT)
        f["src"] = self.vrange(k, mn, "src")
        for flag in ("has_bias", "gelu", "mask", "scale", "rowmajor"):
            if r.random() < 0.35:
                f[flag] = 1
                self.hit(mn, flag, "set")
        if f.get("has_bias"):
            f["bias"] = self.vrange(n, mn, "bias")
        if f.get("scale"):
            f["s"] = self.sreg(mn, "s")
        f["dst"] = self.vrange(n, mn, "dst", avoid=[(f["src"], k), (f.get("bias"), n) if f.get("has_bias") else None],
                               reuse=False)
        self.emit(mn, **f)
        self.recent.append((f["dst"], n))

    def dma(self, op: isa.Op):
        cfg, r = self.cfg, self.r
        mn = op.mnemonic
        cache = mn in ("STORE_K", "STORE_VT")
        hbm = 1 if cache else r.choice([0, 1])
        n = self.length(48 * cfg.d if not cache else 6 * cfg.d, mn, "n")
        f = {"n": n, "hbm": hbm}
        self.hit(mn, "hbm", "HBM" if hbm else "DDR")
        f["index"] = r.choice([0, 1, 2])
        reg_max = {0: 0, 1: MAX_TOKEN, 2: MAX_POS}[f["index"]]
        f["stride"] = r.choice([0, 2, 64, 2 * r.randint(1, 64)])
        self.hit(mn, "index", isa.INDEX_REGS[f["index"]] or "none")
        self.hit(mn, "stride", "zero" if not f["stride"] else "nonzero")
        if cache:
            kt, nt = -(-n // cfg.d), -(-n // cfg.l)
            span = ((MAX_POS // cfg.l + 1) * kt if mn == "STORE_K" else (MAX_POS // cfg.d + 1) * nt)
            f["addr"] = r.randint(0, HBM_UNITS - span)
            lo, hi = f["addr"] * isa.HBM_UNIT, (f["addr"] + span) * isa.HBM_UNIT
        elif hbm:
            top = HBM_UNITS * isa.HBM_UNIT - 2 * n - reg_max * f["stride"]
            f["addr"] = r.choice([0, top // isa.HBM_UNIT, r.randint(0, top // isa.HBM_UNIT)])
            lo = f["addr"] * isa.HBM_UNIT
            hi = lo + 2 * n + reg_max * f["stride"]
        else:
            top = DDR_DATA - 2 * n - reg_max * f["stride"]
            f["addr"] = 2 * r.choice([0, top // 2, r.randint(0, top // 2)])
            self.hit(mn, "addr", "zero" if f["addr"] == 0 else ("end" if f["addr"] == 2 * (top // 2) else "mid"))
            lo, hi = f["addr"], f["addr"] + 2 * n + reg_max * f["stride"]
        space = "HBM" if hbm else "DDR"
        if mn == "LOAD":
            self.fence_for(space, lo, hi)
            f["vaddr"] = self.vrange(n, mn, "vaddr", reuse=False)
            self.emit(mn, **f)
            self.recent.append((f["vaddr"], n))
        else:
            f["vaddr"] = self.vrange(n, mn, "vaddr")
            self.emit(mn, **f)
            self.dirty.append((space, lo, hi))

    def control(self, op: isa.Op):
        r, mn = self.r, op.mnemonic
        if mn == "FENCE":
            units = r.randrange(32)
            self.emit("FENCE", units=units)
            self.hit(mn, "units", "all" if units & isa.ALL_UNITS else ("none" if not units else "some"))
            if isa.fence_units(units) & isa.UNIT_BITS[isa.Unit.DMA]:
                self.dirty.clear()
        elif mn == "NOP":
            self.emit("NOP")

    def allgather(self, op: isa.Op):
        n = self.length(16 * self.cfg.d, "ALLGATHER", "n")
        self.hit("ALLGATHER", "devices", "1")
        gran = self.r.choice([1, 2, (1 << 16) - 1])
        self.hit("ALLGATHER", "gran", "1" if gran == 1 else ("max" if gran > 2 else "2"))
        self.emit("ALLGATHER", vaddr=self.vrange(n, "ALLGATHER", "vaddr"), n=n, devices=1, gran=gran)

    # ------------------------------------------------------------------ the program
    def program(self) -> RandomProgram:
        cfg, r = self.cfg, self.r
        ddr = bytearray(_f16_data(self.np, DDR_DATA // 2, self.subnormals).tobytes())
        hbm = bytearray(_f16_data(self.np, HBM_UNITS * isa.HBM_UNIT // 2, self.subnormals).tobytes())
        for lo, hi in self.windows:                      # prologue: define every VBUF entry and scalar register
            n = (hi - lo) * cfg.d
            self.emit("LOAD", vaddr=lo, addr=2 * r.randrange((DDR_DATA - 2 * n) // 2), n=n)
        for s in range(cfg.sregs):
            self.emit("SMOVI", sd=s, imm=r.gauss(0, 4))
        self.bins.clear()
        ops = [isa.BY_MNEMONIC[m] for m in SUPPORTED if m != "HALT"]
        for _ in range(r.randint(*self.body)):
            op = r.choice(ops)
            if op.unit is isa.Unit.MPU:
                self.matrix(op)
            elif op.fmt is isa.SCALAR:
                self.scalar(op)
            elif op.unit is isa.Unit.VPU:
                self.vector(op)
            elif op.unit is isa.Unit.DMA:
                self.dma(op)
            elif op.mnemonic == "ALLGATHER":
                self.allgather(op)
            else:
                self.control(op)
        self.emit("HALT")
        isa_check.check_stream(self.out, cfg, 1)
        steps = [("main", r.randint(0, MAX_TOKEN), r.randint(0, MAX_POS)) for _ in range(r.choice([1, 1, 2]))]
        for _, tok, pos in steps:
            self.hit("run", "POS", "0" if pos == 0 else ("max" if pos == MAX_POS else "mid"))
        return RandomProgram(self.seed, self.out, ddr, hbm, steps, list(self.windows), self.bins)


def generate(cfg: AccelConfig, seed: int, subnormals: bool = True) -> RandomProgram:
    """The random program of `seed` for `cfg` (see the module docstring); `subnormals`: the memory images hold
    binary16 subnormals (which the core's DMA must flush on LOAD, as the simulator does)."""
    return Generator(cfg, seed, subnormals=subnormals).program()


__all__ = ["NOT_COVERED", "RandomProgram", "SUPPORTED", "UNSUPPORTED", "generate"]
