"""The functional simulator: executes DFX programs with the bit-exact numerics of `dfx.numerics`.

VBUF only ever holds DAZ-clean binary16 (every write is a `to_fp16` result or a `daz16`'d DMA load).

One `Device` holds one core's state (VBUF, scalar registers, TOKEN/POS, HBM and DDR images) and executes a
stream in program order (the ISA's dependency rules make that equal to the parallel machine's result). It is
vectorised with numpy: one matrix instruction is one `mpu_matvec` call over the whole weight matrix. Batched
prefill (ISA version 2): a BATCH-prefixed LINEAR runs the unbatched path (`_mpu`) once per input vector on the
weights read once, so every row is bit-identical by construction; CHUNK/SLOT set COUNT, TOKEN and POS from the
token table in DDR, and an empty slot's SLOT makes the executor skip forward.

It stops with a `SimError` naming the device, PC and instruction on anything the hardware would flag: an
out-of-range VBUF/HBM/DDR access or scalar register, a length beyond the capacity, a read of off-chip data
written by a DMA that no FENCE has ordered (rule 2 of the ISA's dependency rules), a BATCH/CHUNK/SLOT that
breaks the rules of a batched run. Every instruction is validated against the ISA when its stream is
predecoded (`dfx.isa_check.check_instr`: zero lengths and granules, device counts, operands outside VBUF, ...);
one that fails stops the run with that error when it is reached, as the core flags STATUS at decode, so no
handler ever sees an instruction the ISA refuses. A stream without HALT is refused when it is predecoded. The
run-time rules are `dfx.isa`'s (`operand_ranges` / `check_operands` for operands of length POS + 1,
`check_batch`, `check_chunk`, `check_slot`), so the handlers slice VBUF unchecked.

Two limits stop a run that goes on too long. The watchdog: a run executes at most `isa_check.run_budget` of its
stream instructions (a BATCH-fused instruction counts m times), or the `budget` given to the device. The
deadline: `run` / `steps` take a `time.monotonic()` deadline (the host's --timeout on the sim backend), checked
before every instruction and every vector of a batched one; passing it raises `DeadlineExceeded`.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import NamedTuple

import numpy as np

from dfx import formats as F
from dfx import fastmpu as fm
from dfx import isa, isa_check
from dfx import numerics as nx
from dfx.config import AccelConfig
from dfx.errors import RuleError, SimError
from dfx.program import DeviceImage, Program, tile_matrix
from dfx.tilescale import tile_scale_weights

_F16 = np.float16
_WFMTS = frozenset(F.WFMT_CODES.values())
_LINEAR = isa.BY_MNEMONIC["LINEAR"]


class _Tiles(NamedTuple):
    """A weight matrix as the MPU streams it: kt x nt tiles of d x l binary16 (`dfx.program.tile_matrix` layout)
    from element e0 of the uint16 array h (the device's HBM, or a dequantised copy); `scale`: tile-scaled codes'
    (kt, nt*l) widened scales, [row tile, column] (`AccelConfig.tile_scale`), else None."""
    h: np.ndarray
    e0: int
    kt: int
    nt: int
    rowmajor: bool
    scale: np.ndarray | None = None


class DeadlineExceeded(SimError):
    """A run passed the deadline its caller gave (`Device.run` / `Device.steps`)."""


def _failing(msg: str):
    """The handler of an instruction the ISA refuses: it stops the run with `msg` when it is reached."""
    def fail(f):
        raise SimError(msg)
    return fail


class Device:
    """One core. `budget`: the watchdog's instruction budget for every run (None: each stream's
    `isa_check.run_budget`)."""

    def __init__(self, program: Program, device: int = 0, check_fences: bool = True, fast: bool = True,
                 budget: int | None = None):
        if not program.has_weights:
            raise SimError("this program was compiled from a config alone (no weights); the simulator needs "
                           "weights: compile a checkpoint")
        if not 0 <= device < program.n_devices:
            raise SimError(f"device {device} does not exist; the program has {program.n_devices} device(s)")
        self._setup(program.config, program.devices[device], device, check_fences, fast, program.n_devices, budget)

    @classmethod
    def of_image(cls, cfg: AccelConfig, img: DeviceImage, device: int = 0, check_fences: bool = True,
                 fast: bool = True, ring: int = 1, budget: int | None = None, adopt: bool = False) -> Device:
        """A device running memory images without their program (the board emulator's view of its memory), in a
        ring of `ring` devices. `adopt`: the device's memory is `img.hbm` and `img.ddr` themselves (bytearrays the
        caller hands over), not a copy."""
        dev = cls.__new__(cls)
        dev._setup(cfg, img, device, check_fences, fast, ring, budget, adopt)
        return dev

    def _setup(self, cfg: AccelConfig, img: DeviceImage, device: int, check_fences: bool, fast: bool, ring: int,
               budget: int | None, adopt: bool = False):
        self.cfg = cfg
        self.device = device
        self.ring = ring                        # devices in the ring: what an ALLGATHER must name
        self.budget = budget
        self._budgets: dict[str, tuple[list, int]] = {}     # stream -> (its predecoded code, run_budget)
        self._spent = 0                         # instruction executions of the current run
        self._deadline: float | None = None
        # the device's own memory: one copy of the images (streamed from the program file: dfx.images)
        self.hbm = np.frombuffer(img.hbm if adopt else img.take_hbm(), np.uint8)
        self.ddr = np.frombuffer(img.ddr if adopt else img.take_ddr(), np.uint8)
        self.hbm16 = self.hbm[: self.hbm.size // 2 * 2].view(_F16)
        self.hbm_u16 = self.hbm16.view(np.uint16)   # the MPU reads its binary16 tiles from here, in place
        self.vbuf = np.zeros(cfg.vbuf_elems, _F16)
        self.s = np.zeros(cfg.sregs, np.float32)
        self.regs = {"TOKEN": 0, "POS": 0, "COUNT": 0, "POS0": 0, "TBASE": 0}
        self._pending: isa.Batch | None = None  # a BATCH prefix, until its instruction runs
        self.counts: Counter = Counter()
        self.check_fences = check_fences
        self.fast = fast                        # compiled closures for static vector instructions (_compile_vector)
        self._dirty = {isa.Unit.DMA: []}           # off-chip byte ranges written since the last FENCE
        self._wcache: dict = {}                 # dequantised matrices (wfmt != 0), as binary16 tiles
        self._wcache_end = 0                    # highest HBM byte any cached weight matrix covers
        self.threads = fm.cpu_count()           # threads one matrix instruction may use (a ring shares them out)
        self._rel_cache: dict = {}
        self.d, self.l = cfg.d, cfg.l
        self.tile_elems = cfg.tile_elems
        self._streams = {name: self._predecode(ins, name) for name, ins in img.streams.items()}

    # ---------------------------------------------------------------- plumbing
    def _predecode(self, instrs, name: str = "stream"):
        """The stream as (handler, fields, instr, unit) per pc, every instruction validated against the ISA
        (`isa_check.check_instr`): one that fails gets a handler that stops the run when it is reached."""
        if not any(ins.op.mnemonic == "HALT" for ins in instrs):
            raise SimError(f"device {self.device} {name}: the stream of {len(instrs)} instructions has no HALT: a "
                           "run would fall off its end")
        out = []
        for pc, ins in enumerate(instrs):
            op = ins.op
            f = ins.fields()
            if op.fmt is isa.SCALAR:
                f["imm"] = np.float32(ins.imm)
            elif op.mnemonic in isa.BATCHED_OPS:     # the rules (dfx.isa) take the instruction, what a BATCH
                f["_ins"] = ins                       # applies to and how far a SLOT may skip
                f["_next"] = instrs[pc + 1] if pc + 1 < len(instrs) else None
                f["_left"] = len(instrs) - pc - 1
            try:
                isa_check.check_instr(ins, self.cfg, self.ring)
            except RuleError as e:
                out.append((_failing(str(e)), f, ins, op.unit.value))
                continue
            handler = None if op.unit is isa.Unit.ROUTER else getattr(self, "_" + op.mnemonic.lower())
            if handler is not None and op.operands:
                checked = self._checked(op, f, handler)
                if checked is handler and self.fast and op.fmt is isa.VECTOR:
                    checked = self._compile_vector(op.mnemonic, f) or handler
                handler = checked
            out.append((handler, f, ins, op.unit.value))
        return out

    def _checked(self, op: isa.Op, f: dict, handler):
        """`handler` behind the ISA's operand check (`isa.check_operands`) for operands of length POS + 1, at
        every run; the static ones were checked when predecoding (`isa_check.check_instr`)."""
        entries, sregs, d = self.cfg.vbuf_entries, self.cfg.sregs, self.d
        if all(r.elems is not None for r in isa.operand_ranges(op, f, d)):
            return handler

        def checked(f):
            isa.check_operands(isa.operand_ranges(op, f, d, self.regs["POS"]), entries, sregs)
            return handler(f)
        return checked

    def _compile_vector(self, m: str, f: dict):
        """A closure for a vector instruction whose operands are static (no dyn_n) and checked: the generic
        handler's numerics with the operand decoding done once, here. None: use the generic handler.
        tests/sim/test_functional.py runs both side by side."""
        if f["dyn_n"]:
            return None
        n, vb = f["n"], self.vbuf
        a, b, dst = self._at(f["a"], n), self._at(f["b"], n), self._at(f["dst"], n)
        u16 = vb.view(np.uint16)
        wid, daz, s = nx.F16_TO_F32, nx.DAZ16_TABLE, self.s

        def rnd(y32):                                            # numerics.to_fp16 on binary32
            return daz.take(y32.astype(_F16).view(np.uint16)).view(_F16)

        sa, sd, d = f["sa"], f["sd"], self.d
        if m in ("VADD", "VSUB", "VMUL"):
            op = {"VADD": np.add, "VSUB": np.subtract, "VMUL": np.multiply}[m]

            def run(f):
                vb[dst] = rnd(op(wid.take(u16[a]), wid.take(u16[b])))
        elif m in ("VADDS", "VSUBS", "VMULS"):
            op = {"VADDS": np.add, "VSUBS": np.subtract, "VMULS": np.multiply}[m]

            def run(f):
                vb[dst] = rnd(op(wid.take(u16[a]), nx._s32(s[sa])))
        elif m == "VMOV":
            def run(f):
                vb[dst] = vb[a]
        elif m == "VEXP":
            t = nx._table16("exp16")

            def run(f):
                vb[dst] = t.take(u16[a]).view(_F16)
        elif m == "VGELU":
            t = nx._table16("gelu16")

            def run(f):
                vb[dst] = t.take(u16[a]).view(_F16)
        elif m == "VSUM":
            def run(f):
                s[sd] = nx.reduce_sum(vb[a], d=d)
        elif m == "VDOT":
            def run(f):
                s[sd] = nx.reduce_dot(vb[a], vb[b], d=d)
        elif m == "VMAX":
            def run(f):
                s[sd] = nx.reduce_max(vb[a])
        else:
            return None
        return run

    def run(self, stream: str, token: int, pos: int, deadline: float | None = None) -> None:
        """Execute one run of `stream` for `token` at position `pos` (a single device: no ring), stopping with
        `DeadlineExceeded` once `time.monotonic()` passes `deadline`."""
        with fm.torch_single_thread():
            for pc, ins, f in self.steps(stream, token, pos, deadline):
                if ins.op.mnemonic == "ALLGATHER" and f["devices"] == 1:
                    continue
                raise SimError(f"device {self.device} {stream} pc {pc} `{isa.disassemble(ins)}`: needs a ring "
                               f"of devices; run multi-device programs with dfx.sim.ring.Ring")

    def steps(self, stream: str, token: int, pos: int, deadline: float | None = None):
        """Execute `stream`, yielding (pc, instr, fields) at every router instruction for the ring to resolve."""
        if stream not in self._streams:
            raise SimError(f"device {self.device}: no stream {stream!r}; the program has "
                           f"{', '.join(self._streams)}")
        self.regs.update(TOKEN=int(token), POS=int(pos), COUNT=0, POS0=0, TBASE=0)
        self._pending = None
        self._spent, self._deadline = 0, deadline
        self.pc = 0
        quiet = np.errstate(all="ignore")       # inf/NaN are data here (numerics policy), not warnings
        quiet.__enter__()
        try:
            yield from self._execute(stream)
        finally:
            quiet.__exit__(None, None, None)

    def run_budget(self, stream: str) -> int:
        """The watchdog's budget for a run of `stream`: the device's `budget`, else `isa_check.run_budget`."""
        if self.budget is not None:
            return self.budget
        code = self._streams[stream]
        known = self._budgets.get(stream)
        if known is None or known[0] is not code:
            known = self._budgets[stream] = (code, isa_check.run_budget([c[2] for c in code]))
        return known[1]

    def _tick(self, stream: str, pc: int, ins: isa.Instr) -> None:
        """The watchdog and the deadline, before an instruction (or a vector of a batched one) runs."""
        self.pc = pc
        if self._spent > self._budget:
            raise SimError(f"device {self.device} {stream} pc {pc} `{isa.disassemble(ins)}`: watchdog: the run "
                           f"has executed more than its budget of {self._budget} instructions")
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise DeadlineExceeded(f"device {self.device} {stream} pc {pc} `{isa.disassemble(ins)}`: the run did "
                                   "not finish by its deadline")

    def _execute(self, stream):
        """Handlers return None, True (HALT) or the number of instructions to skip (SLOT)."""
        counts = self.counts
        code = self._streams[stream]
        self._budget = budget = self.run_budget(stream)
        self._where, deadline, clock = stream, self._deadline, time.monotonic
        pc, end = 0, len(code)
        while pc < end:
            handler, f, ins, unit = code[pc]
            self._spent += 1
            if self._spent > budget or (deadline is not None and clock() > deadline):
                self._tick(stream, pc, ins)
            counts[unit] += 1
            if handler is None:                 # router: the ring resolves it
                self.pc = pc
                if self._pending is not None:   # a batched ALLGATHER
                    f, self._pending = dict(f, batch=self._pending), None
                yield pc, ins, f
                pc += 1
                continue
            try:
                self.pc = pc
                r = handler(f)
            except DeadlineExceeded:
                raise
            except (SimError, RuleError) as e:
                raise SimError(f"device {self.device} {stream} pc {pc} `{isa.disassemble(ins)}`: {e}") from None
            if r is not None:
                if r is True:
                    return
                pc += r
            pc += 1
        raise SimError(f"device {self.device} {stream}: ran off the end of the stream without HALT")

    def vector(self, entry: int, n: int) -> np.ndarray:
        """A view of VBUF[entry][0:n] (bounds-checked), for the ring and for tests."""
        return self.vbuf[self._vec(entry, n, "vaddr")]

    def _vec(self, entry: int, n: int, what: str) -> slice:
        """VBUF[entry][0:n], bounds-checked as the ISA checks an operand (a SimError naming `what`)."""
        try:
            isa.check_operands([isa.OperandRange(what, entry, n, -(-n // self.d), False, False)],
                               self.cfg.vbuf_entries)
        except RuleError as e:
            raise SimError(str(e)) from None
        return self._at(entry, n)

    def _at(self, entry: int, n: int) -> slice:
        """VBUF[entry][0:n] of an operand `_checked` has checked."""
        a = entry * self.d
        return slice(a, a + n)

    def _n(self, f) -> int:
        return self.regs["POS"] + 1 if f.get("dyn_n") else f["n"]

    def _mem(self, f) -> tuple[np.ndarray, int, str]:
        """(memory, byte address, name) of a DMA instruction's off-chip operand (its index register exists:
        `isa_check.check_instr`)."""
        idx = isa.INDEX_REGS[f["index"]]
        off = self.regs[idx] * f["stride"] if idx else 0
        if f["hbm"]:
            return self.hbm, f["addr"] * isa.HBM_UNIT + off, "HBM"
        return self.ddr, f["addr"] + off, "DDR"

    def _check_range(self, mem, a, nbytes, name):
        if a < 0 or a + nbytes > mem.size:
            raise SimError(f"{name} bytes {a}..{a + nbytes} are outside the {mem.size}-byte image")

    def _check_clean(self, start, end, name):
        if not self.check_fences:
            return
        for s, e, space in self._dirty[isa.Unit.DMA]:
            if space == name and s < end and start < e:
                raise SimError(f"reads {name} bytes {start}..{end} written by a DMA store that no FENCE has "
                               "ordered (ISA dependency rule 2)")

    def _wrote(self, start, end, name):
        self._dirty[isa.Unit.DMA].append((start, end, name))
        if name == "HBM" and self._wcache and start < self._wcache_end:
            self._wcache = {k: v for k, v in self._wcache.items() if not (k[0] < end and start < k[1])}

    # ---------------------------------------------------------------- control
    def _nop(self, f):
        pass

    def _halt(self, f):
        self._dirty[isa.Unit.DMA].clear()
        return True

    def _fence(self, f):
        if isa.fence_units(f["units"]) & isa.UNIT_BITS[isa.Unit.DMA]:
            self._dirty[isa.Unit.DMA].clear()

    def _batch(self, f):
        self._pending = isa.check_batch(f["_ins"], f["_next"], self.regs["COUNT"])
        self._spent += self._pending.m - 1                  # the watchdog counts the m vectors of the next one

    def _u32(self, a: int) -> int:
        self._check_range(self.ddr, a, 4, "DDR")
        self._check_clean(a, a + 4, "DDR")
        return int.from_bytes(self.ddr[a:a + 4].tobytes(), "little")

    def _chunk(self, f):
        c = isa.check_chunk(f["_ins"], self._u32(f["addr"]), self.regs["POS"])
        self._check_range(self.ddr, c.tbase, 4 * c.count, "DDR")
        self.regs.update(COUNT=c.count, TBASE=c.tbase, POS0=c.pos0)

    def _slot(self, f):
        if not isa.check_slot(f["_ins"], self.regs["COUNT"], f["_left"]):
            return f["skip"]
        i = f["i"]
        self.regs["TOKEN"] = self._u32(self.regs["TBASE"] + 4 * i)
        self.regs["POS"] = self.regs["POS0"] + i

    # ---------------------------------------------------------------- MPU
    def _weights(self, f, k, n) -> _Tiles:
        """The (kt*d, nt*l) weight matrix the MPU streams for this instruction: its tiles in HBM, read in place
        (binary16, the stored width) by `fastmpu.tiled_matvec`."""
        if f["wfmt"]:
            return self._qweights(f, k, n)
        d, l = self.d, self.l
        kt, nt = -(-k // d), -(-n // l)
        start = f["w"] * isa.HBM_UNIT
        end = start + kt * nt * self.tile_elems * 2
        self._check_range(self.hbm, start, end - start, "HBM")
        self._check_clean(start, end, "HBM")
        return _Tiles(self.hbm_u16, start // 2, kt, nt, bool(f["rowmajor"]))

    def _qweights(self, f, k, n) -> _Tiles:
        """A quantized matrix (wfmt != 0): the dequantiser reads the region's descriptor, codes and scale blocks
        from HBM and hands the MPU binary16 weights (`dfx.formats.dequant`; under `AccelConfig.tile_scale` the codes
        and per-tile scales, `dfx.tilescale.tile_scale_weights`, refusing what it cannot read); cached."""
        if f["wfmt"] not in _WFMTS:
            raise SimError(f"weight format code {f['wfmt']} is not defined (codes: "
                           + ", ".join(f"{c} {kind}{b}" for (kind, b), c in F.WFMT_CODES.items()) + ")")
        start = f["w"] * isa.HBM_UNIT
        if start % self.cfg.beat_bytes:
            raise SimError(f"a quantized weight region starts on an HBM beat (a multiple of {self.cfg.beat_bytes} "
                           f"bytes, every channel's beat: docs/isa.md), not at HBM byte {start}")
        self._check_range(self.hbm, start, F.DESC_BYTES, "HBM")
        try:
            end = start + F.read_descriptor(self.hbm[start:start + F.DESC_BYTES])["size"]
        except F.FormatError as e:
            raise SimError(f"weight region at HBM byte {start}: {e}") from None
        key = (start, end, "q", f["wfmt"], k, n)
        if key in self._wcache:
            return self._wcache[key]
        self._check_range(self.hbm, start, end - start, "HBM")
        self._check_clean(start, end, "HBM")
        d, l = self.d, self.l
        kt, nt = -(-k // d), -(-n // l)
        scale = None
        try:
            qw = F.unpack_region(self.hbm[start:end], f["wfmt"], k, n, d, l)
            if self.cfg.tile_scale:
                w16, ts = tile_scale_weights(qw, d)
                scale = np.zeros((kt, nt * l), np.float32)
                scale[:, :n] = nx.widen16(ts)
            else:
                w16 = qw.dequant()
        except F.FormatError as e:
            raise SimError(f"weight region at HBM byte {start}: {e}") from None
        tiles = tile_matrix(nx.daz16(w16), d, l).view(np.uint16)         # as the FP16 path finds it in HBM
        w = self._wcache[key] = _Tiles(tiles, 0, kt, nt, False, scale)
        self._wcache_end = max(self._wcache_end, end)
        return w

    def _matrix(self, f):
        k = self.regs["POS"] + 1 if f["dyn_k"] else f["k"]
        n = self.regs["POS"] + 1 if f["dyn_n"] else f["n"]
        w = self._weights(f, k, n)
        x = self.vbuf[self._at(f["src"], k)]                     # zero-padded to the tile rows by mpu_matvec1
        self.vbuf[self._at(f["dst"], n)] = self._mpu(f, w, x, n, self._bias(f, w, n))

    def _bias(self, f, w: _Tiles, n: int):
        return self.vbuf[self._at(f["bias"], n)].copy() if f["has_bias"] else None

    def _mpu(self, f, w: _Tiles, x: np.ndarray, n: int, bias) -> np.ndarray:
        """One output vector: the adder trees on x, then SFU_M (bias, scale, rounding, GELU, mask)."""
        acc = fm.tiled_matvec(x, w.h, w.e0, w.kt, w.nt, n, self.d, self.l, w.rowmajor, bias, self.threads, w.scale)
        y = nx.mpu_finish(acc, scale=self.s[f["s"]] if f["scale"] else None,
                          act="gelu" if f["gelu"] else None)
        if f["mask"]:
            y = y.copy()
            y[np.arange(n) > self.regs["POS"]] = -np.inf
        return y

    def _linear(self, f):
        """LINEAR, or under a BATCH prefix m of them on one weight stream: row i is exactly the unbatched LINEAR
        on input i (the same `_mpu`); all inputs are read before any output is written (ISA rule 5)."""
        if self._pending is None:
            return self._matrix(f)
        batch, self._pending = self._pending, None           # k and n are static (isa.check_batch)
        isa.check_operands(isa.operand_ranges(_LINEAR, f, self.d, batch=batch), self.cfg.vbuf_entries,
                           self.cfg.sregs)
        k, n = f["k"], f["n"]
        w = self._weights(f, k, n)
        xs = [self.vbuf[self._at(f["src"] + i * batch.src_stride, k)].copy() for i in range(batch.m)]
        bias = self._bias(f, w, n)
        ys = []
        for x in xs:
            if self._deadline is not None:
                self._tick(self._where, self.pc, self._streams[self._where][self.pc][2])
            ys.append(self._mpu(f, w, x, n, bias))
        for i, y in enumerate(ys):
            self.vbuf[self._at(f["dst"] + i * batch.dst_stride, n)] = y

    _qk = _sv = _lmhead = _matrix

    # ---------------------------------------------------------------- VPU
    def _ab(self, f, two=True):
        n = self._n(f)
        a = self.vbuf[self._at(f["a"], n)]
        b = self.vbuf[self._at(f["b"], n)] if two else None
        return n, a, b

    def _put(self, f, n, y):
        self.vbuf[self._at(f["dst"], n)] = y

    def _vadd(self, f):
        n, a, b = self._ab(f)
        self._put(f, n, nx.vadd(a, b))

    def _vsub(self, f):
        n, a, b = self._ab(f)
        self._put(f, n, nx.vsub(a, b))

    def _vmul(self, f):
        n, a, b = self._ab(f)
        self._put(f, n, nx.vmul(a, b))

    def _vmov(self, f):
        n, a, _ = self._ab(f, False)
        self._put(f, n, a.copy())

    def _vadds(self, f):
        n, a, _ = self._ab(f, False)
        self._put(f, n, nx.vadd_scalar(a, self.s[f["sa"]]))

    def _vsubs(self, f):
        n, a, _ = self._ab(f, False)
        self._put(f, n, nx.vsub_scalar(a, self.s[f["sa"]]))

    def _vmuls(self, f):
        n, a, _ = self._ab(f, False)
        self._put(f, n, nx.vmul_scalar(a, self.s[f["sa"]]))

    def _vexp(self, f):
        n, a, _ = self._ab(f, False)
        self._put(f, n, nx.exp16(a))

    def _vgelu(self, f):
        n, a, _ = self._ab(f, False)
        self._put(f, n, nx.gelu16(a))

    def _vsum(self, f):
        n, a, _ = self._ab(f, False)
        self.s[f["sd"]] = nx.reduce_sum(a, d=self.d)

    def _vmax(self, f):
        n, a, _ = self._ab(f, False)
        self.s[f["sd"]] = nx.reduce_max(a)

    def _vdot(self, f):
        n, a, b = self._ab(f)
        self.s[f["sd"]] = nx.reduce_dot(a, b, d=self.d)

    # ---------------------------------------------------------------- scalar
    def _smovi(self, f):
        self.s[f["sd"]] = f["imm"]

    def _saddi(self, f):
        self.s[f["sd"]] = nx.sadd(self.s[f["sa"]], f["imm"])

    def _smuli(self, f):
        self.s[f["sd"]] = nx.smul(self.s[f["sa"]], f["imm"])

    def _srecip(self, f):
        self.s[f["sd"]] = nx.recip(self.s[f["sa"]])

    def _srsqrt(self, f):
        self.s[f["sd"]] = nx.rsqrt(self.s[f["sa"]])

    # ---------------------------------------------------------------- DMA
    def _load(self, f):
        mem, a, name = self._mem(f)
        n = f["n"]
        self._check_range(mem, a, 2 * n, name)
        self._check_clean(a, a + 2 * n, name)
        self.vbuf[self._at(f["vaddr"], n)] = nx.daz16(mem[a:a + 2 * n].view(_F16))

    def _store(self, f):
        mem, a, name = self._mem(f)
        n = f["n"]
        self._check_range(mem, a, 2 * n, name)
        v = self.vbuf[self._at(f["vaddr"], n)]
        if name == "HBM" and a % 2:
            raise SimError(f"HBM store at odd byte address {a}")
        mem[a:a + 2 * n] = v.view(np.uint8)
        self._wrote(a, a + 2 * n, name)

    def _cache_store(self, f, rel: np.ndarray, off: int, span: tuple[int, int]):
        """Scatter VBUF[vaddr][0:n] to HBM element indices base + off + rel; span = (min, max) of rel."""
        n = f["n"]
        base = f["addr"] * isa.HBM_UNIT // 2 + off
        lo, hi = base + span[0], base + span[1] + 1
        self._check_range(self.hbm, 2 * lo, 2 * (hi - lo), "HBM")
        v = self.vbuf[self._at(f["vaddr"], n)]
        idx = base + rel
        self.hbm16[idx] = v
        self._wrote(2 * lo, 2 * hi, "HBM")

    def _rel(self, kind: str, n: int):
        """The POS-independent part of a cache store's element indices (and its min, max), cached per n."""
        key = (kind, n)
        hit = self._rel_cache.get(key)
        if hit is None:
            d, l, r = self.d, self.l, np.arange(n)
            rel = (r // d) * self.tile_elems + r % d if kind == "K" else (r // l) * self.tile_elems + (r % l) * d
            hit = self._rel_cache[key] = (rel, (int(rel.min()), int(rel.max())) if n else (0, -1))
        return hit

    def _store_k(self, f):
        """Column t = POS of a column-major tiled matrix with kt = ceil(n/d) row tiles: element r goes to tile
        (t // l) * kt + r // d, lane t % l, row r % d."""
        d, l, t = self.d, self.l, self.regs["POS"]
        kt = -(-f["n"] // d)
        rel, span = self._rel("K", f["n"])
        self._cache_store(f, rel, (t // l) * kt * self.tile_elems + (t % l) * d, span)

    def _store_vt(self, f):
        """Row t = POS of a row-major tiled matrix with nt = ceil(n/l) column tiles (the transpose unit): element
        c goes to tile (t // d) * nt + c // l, lane c % l, row t % d."""
        d, l, t = self.d, self.l, self.regs["POS"]
        nt = -(-f["n"] // l)
        rel, span = self._rel("V", f["n"])
        self._cache_store(f, rel, (t // d) * nt * self.tile_elems + t % d, span)

    # router instructions are resolved by the ring (dfx.sim.ring); see steps()
