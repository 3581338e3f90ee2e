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
or exactly in place, and its two inputs are the same range or disjoint (the ISA does not define a partial overlap:
docs/isa.md, rule 7).

Options (each off by default, so a seed's default program does not change):
- `devices=2`: the same stream on a ring of two cores, each with its own DDR and HBM data, and every ALLGATHER
  over both (chunks of `gran` entries at their edges); the reference is `dfx.sim.ring.Ring`.
- `wformats` (families of `dfx.hw.qfetch.CORE_FAMILIES`, the core's `MatrixEngine(wformats=...)`): some
  LINEARs read a quantized region (wfmt != 0) of a random format of those families that the fetcher reads
  (axis oc or ic, group whole / 32 / 64 / 128, zero points for int, phase 0; ic only with k a multiple of d),
  with random legal codes, scales and zero points, in an HBM area after the FP16 one that no store touches.
- `batched` (default `BATCHED`: off, so a seed's default program stays ISA version 1): a token table in DDR (COUNT 1, cap
  or between), one CHUNK early in the body, BATCH-prefixed LINEARs (m 1, 2, the most that fits, or +dyn_m =
  COUNT; strides 0, exactly one vector, one entry more, or the most that fits) and batched ALLGATHERs, and
  SLOTs (i below, at and past COUNT; skip 0, 1 or a few instructions, whose effects the generator forgets when
  the slot is empty).

Not drawn (reported as not covered by benchmarks/difftest.py): SEND / RECV (the ring runs ALLGATHER only).
"""
from __future__ import annotations

import random
import struct
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from dfx import formats, isa, isa_check
from dfx.config import AccelConfig

from .difftest_quant import quant_formats, random_quant

BATCHED = False               # draw BATCH / CHUNK / SLOT (`--batched`; the default programs stay ISA version 1)
UNSUPPORTED = {"BATCH": "batched prefill: only in runs with `--batched` (the default programs stay ISA version 1)",
               "CHUNK": "batched prefill: only in runs with `--batched` (the default programs stay ISA version 1)",
               "SLOT": "batched prefill: only in runs with `--batched` (the default programs stay ISA version 1)",
               "SEND": "point-to-point ring messages are not drawn (ALLGATHER over 2 devices is, `--devices 2`)",
               "RECV": "point-to-point ring messages are not drawn (ALLGATHER over 2 devices is, `--devices 2`)"}
SUPPORTED = tuple(op.mnemonic for op in isa.OPS if op.mnemonic not in UNSUPPORTED)
NOT_COVERED = {("LINEAR", "wfmt", "quantized"): "only in runs with `--wformats` (a core built with the fetchers)",
               ("ALLGATHER", "devices", "2"): "only in runs with `--devices 2` (a ring of two cores)"}
# the formats a family's fetcher reads (`dfx.hw.qfetch`): axis, group, zero points are per region
QUANT_UNITS = 256             # HBM units after the FP16 area holding quantized regions (no store reaches them)

DDR_DATA = 16 << 10           # DDR bytes of data (the stream follows, 4 KiB aligned)
HBM_UNITS = 512               # HBM image: 512 x 64 bytes; weights in the first half, stores anywhere
MAX_POS, MAX_TOKEN = 15, 7
TABLE_BYTES = 4 * (MAX_POS + 2)   # batched: the token table at the end of the DDR data (no DMA reaches it)
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
    peers: list = field(default_factory=list)    # devices 1.. of a ring: [(ddr, hbm)] (they run the same stream)

    @property
    def devices(self) -> int:
        return 1 + len(self.peers)

    @property
    def images(self) -> list[tuple[bytearray, bytearray]]:
        """(DDR data, HBM image) per device."""
        return [(self.ddr, self.hbm)] + list(self.peers)

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

    def __init__(self, cfg: AccelConfig, seed: int, body: tuple[int, int] = (8, 40), subnormals: bool = True,
                 devices: int = 1, wformats: tuple[str, ...] = (), batched: bool | None = None):
        self.cfg, self.seed, self.subnormals = cfg, seed, subnormals
        self.devices, self.batched = devices, BATCHED if batched is None else batched
        self.qformats = quant_formats(wformats)
        self.regions: list[tuple[int, bytes]] = []      # quantized regions: (HBM unit, bytes)
        self.qnext = HBM_UNITS                           # next free unit of the quantized area
        self.count = 0                                   # batched: COUNT of the token table (0: no CHUNK yet)
        self.cap = 0
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
        isa_check.check_instr(ins, self.cfg, self.devices)
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
        if any(rd[0] == "b" for rd in op.reads):        # b is a itself or apart from it, so that an output in
            #                                                 place (dst = a) never partly overlaps an input
            f["b"] = r.choice([f["a"], self.vrange(n, mn, "b", avoid=[(f["a"], n)])])
            if f["b"] is None:
                f["b"] = f["a"]
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

    def matrix(self, op: isa.Op, batch: bool = False):
        cfg, r = self.cfg, self.r
        mn, d, l = op.mnemonic, cfg.d, cfg.l
        if mn == "LINEAR" and self.qformats and r.random() < 0.5:
            return self.quantized(batch)
        if batch:
            return self.batched_linear()
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
            top = DDR_DATA - (TABLE_BYTES if self.batched else 0) - 2 * n - reg_max * f["stride"]
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

    def allgather(self, op: isa.Op, batch: bool = False):
        n = self.length(16 * self.cfg.d, "ALLGATHER", "n")
        self.hit("ALLGATHER", "devices", str(self.devices))
        if self.devices > 1:         # chunks of one entry, of several, or one device holding the whole vector
            ents = -(-n // self.cfg.d)
            gran = self.r.choice([1, 2, max(1, ents // self.devices), ents, (1 << 16) - 1])
            self.hit("ALLGATHER", "gran", "1" if gran == 1 else ("max" if gran >= ents else "split"))
        else:
            gran = self.r.choice([1, 2, (1 << 16) - 1])
            self.hit("ALLGATHER", "gran", "1" if gran == 1 else ("max" if gran > 2 else "2"))
        if batch:
            return self.batched_allgather(n, gran)
        vaddr = self.vrange(n, "ALLGATHER", "vaddr")
        self.emit("ALLGATHER", vaddr=vaddr, n=n, devices=self.devices, gran=gran)
        if self.devices > 1:
            self.recent.append((vaddr, n))

    # ------------------------------------------------------------------ quantized weights
    def quantized(self, batch: bool = False):
        """A LINEAR on a quantized region (a fresh one, or one drawn before: the simulator and the core both
        cache nothing across instructions that could hide a wrong re-read)."""
        cfg, r, mn = self.cfg, self.r, "LINEAR"
        fmt = r.choice(self.qformats)
        k = self.length(6 * cfg.d, mn, "k")
        n = self.length(8 * cfg.l, mn, "n")
        if fmt.axis == "ic":
            k = -(-k // cfg.d) * cfg.d
        qw = random_quant(fmt, k, n, self.np)
        region = formats.pack_region(qw, cfg.d, cfg.l)
        units = len(region) // isa.HBM_UNIT
        if self.qnext + units > HBM_UNITS + QUANT_UNITS:
            return None                                       # the quantized area is full
        w = self.qnext
        self.qnext += units
        self.regions.append((w, region))
        self.hit(mn, "wfmt", fmt.family if fmt.kind != "bcq" else f"bcq{fmt.bits}")
        self.hit(mn, "wfmt.axis", fmt.axis)
        self.hit(mn, "wfmt.group", str(fmt.group or "whole"))
        if fmt.asym:
            self.hit(mn, "wfmt.asym", "set")
        f = {"w": w, "k": k, "n": n, "wfmt": fmt.wfmt}
        for flag in ("has_bias", "gelu", "scale"):
            if r.random() < 0.35:
                f[flag] = 1
        if f.get("scale"):
            f["s"] = self.sreg(mn, "s")
        if batch:
            return self.batched_linear(f)
        f["src"] = self.vrange(k, mn, "src")
        if f.get("has_bias"):
            f["bias"] = self.vrange(n, mn, "bias")
        f["dst"] = self.vrange(n, mn, "dst", avoid=[(f["src"], k), (f.get("bias"), n) if f.get("has_bias") else None],
                               reuse=False)
        self.emit(mn, **f)
        self.recent.append((f["dst"], n))

    # ------------------------------------------------------------------ batched prefill
    def stride_place(self, n: int, m: int, mn: str, fld: str, avoid=()) -> tuple[int, int] | None:
        """(first entry, stride) for m vectors of n elements in the low window, the stride at an edge: 0 (one
        vector for all; only for inputs), exactly one vector, one entry more, or the most that fits; the m copies
        keep off `avoid` [(entry, elems)]."""
        r, d = self.r, self.cfg.d
        lo, hi = self.windows[0]
        ents = -(-n // d)
        choices = ([0] if fld == "src_stride" else []) + [ents, ents + 1]
        if m > 1:
            choices.append(max(ents, (hi - lo - ents) // (m - 1)))
        for _ in range(20):
            st = r.choice(choices)
            span = ents + st * (m - 1)
            if span > hi - lo:
                continue
            e = r.choice([lo, hi - span, r.randint(lo, hi - span)])
            copies = [(e + i * st, n) for i in range(m)]
            if any(self._overlaps(a, b, avoid) for a, b in copies):
                continue
            self.hit("BATCH", fld, "0" if st == 0 else ("exact" if st == ents else
                                                         ("gap" if st == ents + 1 else "widest")))
            return e, st
        return None

    def batch_m(self) -> tuple[int, int]:
        """(m the generator plans with, dyn_m): 1, 2, a few, or +dyn_m (= COUNT, after the CHUNK)."""
        r = self.r
        if self.count and r.random() < 0.3:
            self.hit("BATCH", "m", "dyn_m")
            return self.count, 1
        m = r.choice([1, 2, r.randint(1, 6)])
        self.hit("BATCH", "m", "1" if m == 1 else ("2" if m == 2 else "few"))
        return m, 0

    def batched_linear(self, f=None):
        cfg, r, mn = self.cfg, self.r, "LINEAR"
        m, dyn_m = self.batch_m()
        if f is None:                                            # FP16: static k and n (a BATCH rule)
            k, n = self.length(6 * cfg.d, mn, "k"), self.length(8 * cfg.l, mn, "n")
            tiles = -(-k // cfg.d) * -(-n // cfg.l)
            f = {"k": k, "n": n, "w": r.randint(0, HBM_UNITS - tiles)}
            self.fence_for("HBM", f["w"] * isa.HBM_UNIT, (f["w"] + tiles) * isa.HBM_UNIT)
            for flag in ("has_bias", "gelu", "mask", "scale"):
                if r.random() < 0.35:
                    f[flag] = 1
            if f.get("scale"):
                f["s"] = self.sreg(mn, "s")
        k, n = f["k"], f["n"]
        if f.get("has_bias"):
            f["bias"] = self.vrange(n, mn, "bias", reuse=False)
        src = self.stride_place(k, m, mn, "src_stride", avoid=[(f.get("bias"), n)] if f.get("has_bias") else ())
        if src is None:
            return
        srcs = [(src[0] + i * src[1], k) for i in range(m)]
        dst = self.stride_place(n, m, mn, "dst_stride", avoid=srcs + ([(f["bias"], n)] if f.get("has_bias") else []))
        if dst is None:
            return
        f["src"], f["dst"] = src[0], dst[0]
        self.emit("BATCH", m=0 if dyn_m else m, dyn_m=dyn_m, src_stride=src[1], dst_stride=dst[1])
        self.hit("BATCH", "next", mn)
        self.emit(mn, **f)
        self.recent.append((f["dst"], n))

    def batched_allgather(self, n: int, gran: int):
        m, dyn_m = self.batch_m()
        at = self.stride_place(n, m, "ALLGATHER", "dst_stride")
        if at is None:
            return
        self.emit("BATCH", m=0 if dyn_m else m, dyn_m=dyn_m, src_stride=at[1], dst_stride=at[1])
        self.hit("BATCH", "next", "ALLGATHER")
        self.emit("ALLGATHER", vaddr=at[0], n=n, devices=self.devices, gran=gran)

    def chunk(self, table_addr: int):
        self.emit("CHUNK", addr=table_addr, cap=self.cap)
        self.hit("CHUNK", "count", "1" if self.count == 1 else ("cap" if self.count == self.cap else "mid"))
        self.hit("CHUNK", "cap", "1" if self.cap == 1 else "more")

    def slot(self, plain):
        """SLOT i skip=s, then s instructions; when slot i is empty (i >= COUNT, known here: the table is
        fixed) the core skips them, so what they did is forgotten."""
        r = self.r
        i = r.choice([0, self.count - 1, self.count, self.cap - 1, r.randrange(self.cap)])
        i = max(i, 0)
        skip = r.choice([0, 1, r.randint(2, 5)])
        self.hit("SLOT", "i", "empty" if i >= self.count else ("last" if i == self.count - 1 else "taken"))
        self.hit("SLOT", "skip", "0" if skip == 0 else ("1" if skip == 1 else "few"))
        self.emit("SLOT", i=i, skip=skip)
        saved = (list(self.recent), list(self.dirty))
        start = len(self.out)
        while len(self.out) - start < skip:
            plain()
        del self.out[start + skip:]                  # a class may emit two (FENCE + LOAD): keep exactly `skip`
        if i >= self.count:
            self.recent, self.dirty = saved

    # ------------------------------------------------------------------ the program
    def plain(self, op: isa.Op, batch: bool = False):
        if op.unit is isa.Unit.MPU:
            self.matrix(op, batch)
        elif op.fmt is isa.SCALAR:
            self.scalar(op)
        elif op.unit is isa.Unit.VPU:
            self.vector(op)
        elif op.unit is isa.Unit.DMA:
            self.dma(op)
        elif op.mnemonic == "ALLGATHER":
            self.allgather(op, batch)
        else:
            self.control(op)

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
        ops = [isa.BY_MNEMONIC[m] for m in SUPPORTED if m != "HALT" and m not in isa.BATCHED_OPS]
        table = DDR_DATA - TABLE_BYTES
        body = r.randint(*self.body)
        chunk_at = r.randrange(body) if self.batched else -1
        if self.batched:                                 # the token table: COUNT 1, cap, or between
            self.cap = r.choice([1, 2, r.randint(1, 8), 8])
            self.count = 0
            count = r.choice([1, self.cap, r.randint(1, self.cap)])
        for at in range(body):
            if at == chunk_at:
                self.count = count
                self.chunk(table)
            op = r.choice(ops)
            if self.batched and r.random() < 0.25:
                if self.count and r.random() < 0.4:
                    self.slot(lambda: self.plain(r.choice(ops)))
                else:
                    self.plain(isa.BY_MNEMONIC[r.choice(isa.BATCHABLE)], batch=True)
            else:
                self.plain(op)
        self.emit("HALT")
        isa_check.check_stream(self.out, cfg, self.devices)
        top_pos = MAX_POS - (self.cap - 1 if self.batched else 0)       # POS0 + i stays <= MAX_POS
        steps = [("main", r.randint(0, MAX_TOKEN), r.randint(0, top_pos)) for _ in range(r.choice([1, 1, 2]))]
        for _, tok, pos in steps:
            self.hit("run", "POS", "0" if pos == 0 else ("max" if pos == top_pos else "mid"))
        if self.regions:
            hbm.extend(bytes(QUANT_UNITS * isa.HBM_UNIT))
        images = [(ddr, hbm)] + [(bytearray(_f16_data(self.np, DDR_DATA // 2, self.subnormals).tobytes()),
                                  bytearray(_f16_data(self.np, len(hbm) // 2, self.subnormals).tobytes()))
                                 for _ in range(self.devices - 1)]
        for dev_ddr, dev_hbm in images:
            for w, region in self.regions:
                dev_hbm[w * isa.HBM_UNIT:w * isa.HBM_UNIT + len(region)] = region
            if self.batched:
                tokens = [r.randint(0, MAX_TOKEN) for _ in range(self.cap)]
                dev_ddr[table:table + 4 + 4 * self.cap] = np.array([count] + tokens, "<u4").tobytes()
        return RandomProgram(self.seed, self.out, ddr, hbm, steps, list(self.windows), self.bins, images[1:])


def generate(cfg: AccelConfig, seed: int, subnormals: bool = True, devices: int = 1, wformats: tuple[str, ...] = (),
             batched: bool | None = None) -> RandomProgram:
    """The random program of `seed` for `cfg` (see the module docstring); `subnormals`: the memory images hold
    binary16 subnormals (which the core's DMA must flush on LOAD, as the simulator does); `devices`, `wformats`,
    `batched`: the options of the module docstring."""
    return Generator(cfg, seed, subnormals=subnormals, devices=devices, wformats=wformats, batched=batched).program()


__all__ = ["BATCHED", "NOT_COVERED", "RandomProgram", "SUPPORTED", "UNSUPPORTED", "generate"]
