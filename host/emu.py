"""An emulated board: the functional simulator behind the core's register map (`dfx.regmap`) and a device
memory of HBM/DDR banks, so the host's register-level code path runs without RTL or a board.

`EmuBoard` is one card: banks (`HBM0`.., `DDR0`) with a bump allocator and device addresses (HBM bank c at
c * 256 MiB, DDR0 at 0x40_0000_0000, as Vitis lays out the U280's memory), and an `ap_ctrl_hs` register block
that behaves as the RTL's does: writing ap_start runs the stream at DDR + ENTRY with TOKEN/POS, ap_done rises
when it ends (cleared when CTRL is read), STATUS/ERROR_PC report an error, CYCLES/BUSY_* the last run. The
run itself is `dfx.sim.functional.Device` (one card) or `dfx.sim.ring.Ring` (an `EmuCluster` of cards in a
ring: the run starts once every card has been started, as the real ring blocks until its peers arrive).

Device memory is separate from host memory: the host copies buffers in and out (the transport's upload and
download are `sync_to_device`/`sync_from_device`), so a host that forgets a copy sees stale data here too.
The simulator's arrays are the memory of record once a run has happened; host writes after that rebuild it.
Cycle counters come from the performance model (`dfx.perf`) when the host named the program (`attach`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dfx import isa, regmap
from dfx.config import AccelConfig
from dfx.errors import DeviceError, EncodeError, SimError
from dfx.program import DeviceImage as ProgImage
from dfx.perf import PerfModel
from dfx.images import discard, zeros
from dfx.program import Program
from dfx.sim.functional import DeadlineExceeded, Device
from dfx.sim.ring import Ring

from .image import DDR_BANK, hbm_bank

MiB = 1 << 20
HBM_BANK_BYTES = 256 * MiB            # U280: 32 pseudo-channels x 256 MB (ANCHORS.md)
DDR_BANK_BYTES = 16384 * MiB          # U280: DDR4 bank 0
DDR_BASE = 0x40_0000_0000
ALLOC_ALIGN = 4096


@dataclass
class Alloc:
    bank: str
    address: int
    data: np.ndarray              # uint8, the device-side bytes


@dataclass
class Bank:
    name: str
    base: int
    size: int
    allocs: list[Alloc] = field(default_factory=list)
    top: int = 0


def classify(msg: str) -> str:
    """The STATUS bit the RTL raises for the simulator's error message."""
    m = msg.lower()
    if "deadlock" in m or "allgather" in m or "received" in m or "ring" in m:
        return "ring"
    if "fence" in m:
        return "fence"
    if "outside" in m or "exceed" in m or "odd byte" in m or "does not exist" in m:
        return "address_range"
    return "illegal_opcode"


class EmuBoard:
    """One emulated card. `hang=True` makes the kernel accept ap_start and never finish (a timeout fault). The
    simulator runs inside the host's ap_start write; it stops at the host's deadline (`deadline`, set through
    the transport before each start), and the kernel then stays busy as a board's would, so the host's wait
    reports its timeout."""

    def __init__(self, cfg: AccelConfig, index: int = 0, cluster: "EmuCluster | None" = None, *,
                 hbm_bank_bytes: int = HBM_BANK_BYTES, ddr_bank_bytes: int = DDR_BANK_BYTES,
                 magic: int = regmap.DFX_MAGIC, isa_version: int = isa.ISA_VERSION, hang: bool = False):
        self.cfg, self.index, self.cluster = cfg, index, cluster
        self.regs = regmap.by_name(cfg)
        self._by_off = {}
        for r in self.regs.values():
            for w in range(r.words):
                self._by_off[r.offset + 4 * w] = (r, w)
        self.banks = {hbm_bank(c): Bank(hbm_bank(c), c * HBM_BANK_BYTES, hbm_bank_bytes)
                      for c in range(cfg.hbm_channels)}
        self.banks[DDR_BANK] = Bank(DDR_BANK, DDR_BASE, ddr_bank_bytes)
        self.values = {r.name: 0 for r in self.regs.values()}
        self.values["ID"] = magic
        self.values["ISA_VERSION"] = isa_version
        self.values["CONFIG_HASH"] = regmap.config_hash_word(cfg)
        self.ctrl_done = False
        self.running = False
        self.hang = hang
        self.generation = 0           # bumped by every host write
        self.built = -1               # generation the simulator was built from
        self.sim = None               # dfx.sim.functional.Device once built
        self.detail: str | None = None
        self.program: Program | None = None
        self.stream_names: dict[int, str] = {}
        self.stream_end: dict[int, int] = {}            # ENTRY -> DDR offset where the next stream starts
        self.deadline: float | None = None              # the host's deadline for the next run (monotonic s)
        self.last_run: tuple[str, int] | None = None
        self._streams: dict[int, list] = {}
        self._perf = None

    # ---------------------------------------------------------------- host hints
    def attach(self, program: Program | None, entries: dict[str, int] | None):
        """Name the streams (for messages), bound each one's fetch by the next one's entry (a stream that has no
        HALT stops there instead of running into the next one) and name the program (for the performance
        model's cycle counters)."""
        self.program = program
        self.stream_names = {v: k for k, v in (entries or {}).items()}
        offsets = sorted(self.stream_names)
        self.stream_end = dict(zip(offsets, offsets[1:]))
        self._perf = None

    # ---------------------------------------------------------------- memory
    def alloc(self, bank: str, nbytes: int) -> Alloc:
        if bank not in self.banks:
            raise DeviceError(f"board {self.index} has no memory bank {bank!r}; it has {', '.join(self.banks)}")
        b = self.banks[bank]
        start = -(-b.top // ALLOC_ALIGN) * ALLOC_ALIGN
        if start + nbytes > b.size:
            raise DeviceError(f"board {self.index}: cannot allocate {nbytes} bytes in {bank}: "
                              f"{b.size - start} of {b.size} bytes free")
        a = Alloc(bank, b.base + start, zeros(nbytes))
        b.allocs.append(a)
        b.top = start + nbytes
        return a

    def free(self, a: Alloc):
        b = self.banks[a.bank]
        if a in b.allocs:
            b.allocs.remove(a)
            b.top = max((x.address - b.base + x.data.size for x in b.allocs), default=0)

    def _flush_sim(self):
        """Copy the simulator's memory back into the allocations (before the host reads or writes them)."""
        if self.sim is None or self.built != self.generation:
            return
        hbm, ddr = self._resolve()
        C, cbb = self.cfg.hbm_channels, self.cfg.channel_beat_bytes
        rows = self.sim.hbm.reshape(-1, C, cbb)
        for c, (a, off, n) in enumerate(hbm):
            a.data[off:off + n] = rows[:, c, :].reshape(-1)
        a, off, n = ddr
        a.data[off:off + n] = self.sim.ddr

    def write_mem(self, a: Alloc, offset: int, data: bytes):
        if offset < 0 or offset + len(data) > a.data.size:
            raise DeviceError(f"write of {len(data)} bytes at offset {offset} is outside the {a.data.size}-byte "
                              f"buffer in {a.bank}")
        if self.sim is not None and self.built == self.generation and a.bank == DDR_BANK:
            _, (da, doff, dn) = self._resolve()
            if da is a and doff <= offset and offset + len(data) <= doff + dn:     # fast path: a token table
                lo, hi = offset - doff, offset - doff + len(data)
                self.sim.ddr[lo:hi] = np.frombuffer(data, np.uint8)           # the simulator's memory is of record
                self._streams = {e: p for e, p in self._streams.items()
                                 if hi <= e or e + len(p) * isa.WORD_BYTES <= lo}
                return
        self._flush_sim()
        a.data[offset:offset + len(data)] = np.frombuffer(data, np.uint8)
        self.generation += 1

    def read_mem(self, a: Alloc, offset: int, n: int) -> bytes:
        if offset < 0 or offset + n > a.data.size:
            raise DeviceError(f"read of {n} bytes at offset {offset} is outside the {a.data.size}-byte buffer "
                              f"in {a.bank}")
        if self.sim is not None and self.built == self.generation and a.bank == DDR_BANK:
            _, (da, doff, dn) = self._resolve()
            if da is a and doff <= offset and offset + n <= doff + dn:     # fast path: logits reads
                return self.sim.ddr[offset - doff:offset - doff + n].tobytes()
        self._flush_sim()
        return a.data[offset:offset + n].tobytes()

    def _find(self, bank: str, address: int) -> tuple[Alloc, int]:
        for a in self.banks[bank].allocs:
            if a.address <= address < a.address + a.data.size:
                return a, address - a.address
        raise LookupError(f"0x{address:x} is not inside any buffer allocated in {bank}")

    def _resolve(self):
        """(HBM [(alloc, offset, bytes)] per channel, DDR (alloc, offset, bytes)) the pointer arguments name."""
        cbb = self.cfg.channel_beat_bytes
        hbm = []
        for c in range(self.cfg.hbm_channels):
            a, off = self._find(hbm_bank(c), self.values[f"HBM{c:02d}"])
            hbm.append((a, off, a.data.size - off))
        n = min(x[2] for x in hbm) // cbb * cbb
        hbm = [(a, off, n) for a, off, _ in hbm]
        a, off = self._find(DDR_BANK, self.values["DDR"])
        return hbm, (a, off, a.data.size - off)

    def build_image(self, release: bool = False) -> ProgImage:
        """The memory the pointer arguments name, as new unstriped images (the simulator's to own). `release`:
        each buffer the image covers whole gives its pages back once copied (`_release`), so the board never holds
        two copies; the caller makes the image the memory of record (`_adopt`)."""
        self._flush_sim()
        hbm, (a, off, n) = self._resolve()
        cbb = self.cfg.channel_beat_bytes
        out = zeros(hbm[0][2] * len(hbm))
        rows = out.reshape(-1, len(hbm), cbb)
        step = (4 << 20) // cbb                  # rows per block: a channel's 4 MiB, copied then given back
        for r0 in range(0, rows.shape[0], step):
            r1 = min(r0 + step, rows.shape[0])
            for c, (ac, o, m) in enumerate(hbm):
                rows[r0:r1, c, :] = ac.data[o + r0 * cbb:o + r1 * cbb].reshape(-1, cbb)
                if release and o == 0 and m == ac.data.size:
                    discard(ac.data, r0 * cbb, (r1 - r0) * cbb)
        for ac, o, m in hbm if release else ():
            self._release(ac, o, m)
        ddr = zeros(n)
        for b0 in range(0, n, 4 << 20):
            b1 = min(b0 + (4 << 20), n)
            ddr[b0:b1] = a.data[off + b0:off + b1]
            if release and off == 0 and n == a.data.size:
                discard(a.data, b0, b1 - b0)
        if release:
            self._release(a, off, n)
        return ProgImage({}, out, ddr)

    @staticmethod
    def _release(a: Alloc, off: int, n: int):
        """Once the simulator holds the memory of record, a buffer it covers whole is not read until `_flush_sim`
        writes it back: its pages go back to the system."""
        if off == 0 and n == a.data.size:
            a.data = zeros(n)

    def _adopt(self, k: int, ring: int) -> Device:
        """Build the simulator from this board's buffers and make it the memory of record."""
        img = self.build_image(release=True)
        try:
            dev = Device.of_image(self.cfg, img, k, ring=ring, adopt=True)
        except BaseException:                   # the buffers get their bytes back
            hbm, (a, off, n) = self._resolve()
            C, cbb = self.cfg.hbm_channels, self.cfg.channel_beat_bytes
            rows = np.frombuffer(img.hbm, np.uint8).reshape(-1, C, cbb)
            for c, (ac, o, m) in enumerate(hbm):
                ac.data[o:o + m] = rows[:, c, :].reshape(-1)
            a.data[off:off + n] = np.frombuffer(img.ddr, np.uint8)
            raise
        self.sim, self.built, self._streams = dev, self.generation, {}
        return dev

    # ---------------------------------------------------------------- registers
    def read32(self, off: int) -> int:
        if off not in self._by_off:
            return 0                                   # unmapped: reads 0, as the RTL's decoder answers
        r, w = self._by_off[off]
        if r.name == "CTRL":
            v = (regmap.AP_IDLE if not self.running else 0) | (regmap.AP_DONE if self.ctrl_done else 0)
            v |= self.values["CTRL"] & regmap.AUTO_RESTART
            v |= regmap.AP_START if self.running else 0
            self.ctrl_done = False                     # ap_done clears on read
            return v
        if r.name in ("CYCLES",) or r.name.startswith("BUSY_"):
            self._counters()
        return (self.values[r.name] >> (32 * w)) & 0xFFFFFFFF

    def write32(self, off: int, value: int):
        if off not in self._by_off:
            return
        r, w = self._by_off[off]
        value &= 0xFFFFFFFF
        if r.access == "ro":
            return
        if r.name == "CTRL":
            self.values["CTRL"] = value & regmap.AUTO_RESTART
            if value & regmap.AP_START and not self.running:
                self._start()
            return
        mask = 0xFFFFFFFF << (32 * w)
        self.values[r.name] = (self.values[r.name] & ~mask) | (value << (32 * w))

    # ---------------------------------------------------------------- runs
    def _start(self):
        self.running, self.ctrl_done = True, False
        self.values["STATUS"] = self.values["ERROR_PC"] = 0
        self.detail = None
        self.last_run = None
        if self.hang:
            return
        if self.cluster is not None and len(self.cluster.boards) > 1:
            self.cluster.started(self)
        else:
            EmuCluster.run_boards([self])

    def _finish(self, status: str | None = None, pc: int = 0, detail: str | None = None):
        bits = regmap.STATUS_BITS[status] if status else regmap.STATUS_BITS["halted"]
        self.values["STATUS"] = bits
        self.values["ERROR_PC"] = pc
        self.detail = detail
        self.running, self.ctrl_done = False, True

    def _fetch(self, entry: int) -> tuple[list | None, int, str | None]:
        """Decode the stream at DDR + ENTRY up to HALT, or up to the next stream's entry (the zero words of the
        alignment gap before it dropped): (predecoded stream, error pc, error message)."""
        if entry in self._streams:
            return self._streams[entry], 0, None
        ddr = self.sim.ddr
        instrs, pc = [], 0
        end = self.stream_end.get(entry, ddr.size)
        while True:
            a = entry + pc * isa.WORD_BYTES
            if a >= end > entry:                     # no HALT before the next stream: the gap is not code
                while instrs and instrs[-1].encode() == 0:
                    instrs.pop()
                break
            if a < 0 or a + isa.WORD_BYTES > ddr.size:
                return None, pc, f"instruction fetch at DDR byte {a} is outside the {ddr.size}-byte region"
            try:
                ins = isa.decode(int.from_bytes(ddr[a:a + isa.WORD_BYTES].tobytes(), "little"), pc)
            except EncodeError as e:
                return None, pc, f"pc {pc}: {e}"
            instrs.append(ins)
            if ins.op.mnemonic == "HALT":
                break
            pc += 1
        try:                                         # the simulator's own predecoder (one stream per ENTRY)
            pre = self.sim._predecode(instrs, self.stream_names.get(entry, f"stream@0x{entry:x}"))
        except SimError as e:
            return None, len(instrs), str(e).removeprefix(f"device {self.index} ")
        self._streams[entry] = pre
        return pre, 0, None

    def _counters(self):
        if self.last_run is None or self.program is None:
            return
        name, pos = self.last_run
        if self._perf is None:
            self._perf = PerfModel(self.program, "u280", check_fit=False)
        if name not in self._perf.streams and name not in self._perf.batched_streams:
            # a run at an ENTRY the program does not name (raw instruction words the host wrote): the model has
            # no stream to cost, so the counters read 0; any other failure of the model is an error
            self.last_run = None
            for r in ("CYCLES", *(f"BUSY_{u}" for u in regmap.COUNTER_UNITS)):
                self.values[r] = 0
            return
        count = self._batch_count() if name in self._perf.batched_streams else None
        step = self._perf.step(name, pos, count)[self.index]
        self.values["CYCLES"] = step.cycles
        for i, unit in enumerate(regmap.COUNTER_UNITS):
            self.values[f"BUSY_{unit}"] = step.busy[i]
        self.last_run = None


    def _batch_count(self) -> int:
        """The tokens of the last batched prefill run: COUNT, the u32 at the head of its token table
        (manifest symbols.prefill_batch.tokens) in the simulator's DDR."""
        a = self.program.symbols.prefill_batch.tokens
        return int.from_bytes(self.sim.ddr[a:a + 4].tobytes(), "little")


class EmuCluster:
    """N emulated cards joined in a ring (the QSFP links of the appliance)."""

    def __init__(self, cfg: AccelConfig, n: int, ring_order: list[int] | None = None, **board_kw):
        self.cfg = cfg
        self.boards = [EmuBoard(cfg, k, self, **board_kw) for k in range(n)]
        self.order = list(ring_order) if ring_order is not None else list(range(n))
        self._pending: list[EmuBoard] = []
        self._ring = None
        self._built: list[int] | None = None

    def started(self, board: EmuBoard):
        if board not in self._pending:
            self._pending.append(board)
        if len(self._pending) == len(self.boards):
            boards, self._pending = self.boards, []
            self.run_boards(boards, self)

    @staticmethod
    def run_boards(boards: list[EmuBoard], cluster: "EmuCluster | None" = None):
        cfg = boards[0].cfg
        gens = [b.generation for b in boards]
        owner = cluster if cluster is not None else boards[0]
        if getattr(owner, "_built_gens", None) != gens or getattr(owner, "_ring", None) is None:
            try:
                for b in boards:
                    b._resolve()
            except LookupError as e:
                for b in boards:
                    b._finish("address_range", 0, f"board {b.index}: a pointer argument is not a buffer: {e}")
                return
            ring = Ring.of_devices([b._adopt(k, len(boards)) for k, b in enumerate(boards)],
                                   cluster.order if cluster is not None else [0])
            owner._ring, owner._built_gens = ring, gens
        ring = owner._ring
        # fetch each board's stream at its ENTRY; all must run the same named stream with the same TOKEN/POS
        names = []
        for b in boards:
            entry = b.values["ENTRY"]
            pre, pc, err = b._fetch(entry)
            if err:
                for x in boards:
                    x._finish("illegal_opcode" if x is b else "ring", pc if x is b else 0,
                              f"device {b.index}: {err}")
                return
            name = b.stream_names.get(entry, f"stream@0x{entry:x}")
            b.sim._streams[name] = pre
            names.append(name)
        args = {(b.values["TOKEN"], b.values["POS"]) for b in boards}
        if len(set(names)) != 1 or len(args) != 1:
            for b in boards:
                b._finish("ring", 0, f"the devices were started on different streams or TOKEN/POS: "
                          f"{names}, {sorted(args)}")
            return
        token, pos = args.pop()
        deadlines = [b.deadline for b in boards if b.deadline is not None]
        deadline = min(deadlines) if deadlines else None
        try:
            if len(boards) == 1:
                boards[0].sim.run(names[0], token, pos, deadline)
            else:
                ring.run(names[0], token, pos, deadline)
        except DeadlineExceeded as e:           # a kernel still running when the host stops waiting: ap_done
            for b in boards:                     # never rises (the host reports its timeout)
                b.detail = str(e)
            return
        except SimError as e:
            for b in boards:
                b._finish(classify(str(e)), int(getattr(b.sim, "pc", 0)), str(e))
            return
        for b in boards:
            b.last_run = (names[0], pos)
            b._finish()
