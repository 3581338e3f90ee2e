"""The device API (docs/design.md, contract 7): open, load program, write/read memory, start, wait(timeout), read
counters and STATUS, close. One code path over every backend; the backends differ only in their `Transport`
(`host/sim_backend.py`: sim, `host/pynq_backend.py`: pynq, `host/rtl_backend.py`: rtl), opened by
`dfx.host.backends.open_devices`.

    devs = open_devices(program, "sim")          # or "pynq" / "rtl"; None: $DFX_BACKEND, else sim
    group = DeviceGroup(devs); group.load(program)
    rec = group.run("decode", token=17, pos=3, timeout=5.0)
    group.counters(rec)                          # CYCLES and BUSY_* of every device into the RunRecord
    logits = group.read_logits()
    group.close()

Every register access goes through `dfx.regmap` by name; nobody here writes an offset.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from dfx import isa, isa_check, regmap
from dfx.config import AccelConfig
from dfx.errors import DeviceError, ProgramError, RuleError, SimError
from dfx.program import Program

from .image import DDR_BANK, DeviceImage, check_fits, device_image
from .transport import Buffer, Transport

DEFAULT_TIMEOUT_S = 30.0


class KernelError(DeviceError):
    """The kernel ended a run with an error bit in STATUS."""

    def __init__(self, msg: str, status: str, pc: int):
        super().__init__(msg)
        self.status, self.pc = status, pc


class SimKernelError(KernelError, SimError):
    """A kernel error on the simulator backend: also a SimError carrying the simulator's own message."""


def batched_streams(program: Program) -> list[str]:
    """The streams of `program` that use the batched-prefill instructions (BATCH, CHUNK, SLOT: ISA version 2)."""
    ops = set(isa.BATCHED_OPS)
    return [name for name, instrs in program.devices[0].streams.items()
            if any(i.op.mnemonic in ops for i in instrs)] if program.devices else []


def refuse_batched(program: Program, where: str) -> None:
    """DeviceError (one line) when `program` needs the batched-prefill instructions and the transport `where`
    says its kernel lacks them (`Transport.batched_prefill` False)."""
    used = batched_streams(program)
    if used:
        raise DeviceError(f"{where}: stream {used[0]} uses {'/'.join(isa.BATCHED_OPS)} (matrix-matrix prefill, "
                          "ISA version 2), which this kernel does not run; recompile without "
                          "--prefill-batch for this backend")


def check_streams(program: Program, k: int, where: str) -> None:
    """ProgramError (one line) naming the first instruction of device `k`'s streams that breaks a rule of the ISA
    (`dfx.isa_check.check_stream`: zero lengths and granules, device counts, ranges, a stream without HALT), a
    stream that uses COUNT but is not the batched prefill stream (`symbols.prefill_batch`; the host writes the token
    table for that one only) or the reverse, or a decode stream that stores none of the logits the host reads from
    this device (`symbols.logits_pieces`): the host refuses such a program before it loads it, on every backend."""
    streams = program.devices[k].streams
    sym = program.symbols
    batched = sym.prefill_batch.stream if sym.prefill_batch is not None else None
    for name, instrs in streams.items():
        try:
            isa_check.check_stream(instrs, program.config, program.n_devices)
        except RuleError as e:
            raise ProgramError(f"{where}: {name} stream of device {k}: {e}") from None
        if name == batched:
            if not any(i.op.mnemonic == "CHUNK" for i in instrs):
                raise ProgramError(f"{where}: {name} stream of device {k}: the batched prefill stream has no CHUNK "
                                   "(a run takes its token count from one)")
        elif any(i.op.mnemonic in ("CHUNK", "SLOT") or (i.op.mnemonic == "BATCH" and i.dyn_m) for i in instrs):
            raise ProgramError(f"{where}: {name} stream of device {k} uses COUNT (CHUNK, SLOT, BATCH +dyn_m), which "
                               f"only the batched prefill stream ({batched or 'none in this program'}) may")
    pieces = sym.logits_pieces[k] if k < len(sym.logits_pieces) else []
    if pieces and "decode" in streams:
        lo, hi = sym.logits + 2 * min(a for a, _ in pieces), sym.logits + 2 * max(b for _, b in pieces)
        if not any(i.op.mnemonic == "STORE" and not i.hbm and (i.index or (i.addr < hi and lo < i.addr + 2 * i.n))
                   for i in streams["decode"]):
            raise ProgramError(f"{where}: decode stream of device {k}: no STORE writes its logits (DDR bytes "
                               f"{lo}..{hi}, symbols.logits_pieces); the host would read stale logits")


def decode_status(word: int) -> list[str]:
    return [name for name, bit in regmap.STATUS_BITS.items() if word & bit]


@dataclass
class RunRecord:
    """One run (one token step) on every device of a group."""
    stream: str
    token: int
    pos: int
    wall_s: float
    cycles: list[int] = field(default_factory=list)               # per device
    busy: list[dict[str, int]] = field(default_factory=list)      # per device, per unit
    count: int = 1                                                 # tokens the run processed (batched prefill)

    @property
    def max_cycles(self) -> int:
        return max(self.cycles, default=0)


class Device:
    """One core on one card (or in one simulation), driven through its register map."""

    def __init__(self, transport: Transport, cfg: AccelConfig, index: int = 0):
        self.t = transport
        self.cfg = cfg
        self.index = index
        self.regs = regmap.by_name(cfg)
        self.buffers: dict[str, Buffer] = {}
        self.image: DeviceImage | None = None
        self.closed = False
        self.stream: str | None = None

    @property
    def label(self) -> str:
        return self.t.label

    # ---------------------------------------------------------------- registers
    def read(self, name: str) -> int:
        r = self.regs[name]
        v = 0
        for w in range(r.words):
            v |= self.t.read32(r.offset + 4 * w) << (32 * w)
        return v

    def write(self, name: str, value: int) -> None:
        r = self.regs[name]
        if r.access == "ro":
            raise DeviceError(f"register {name} is read-only")
        if not 0 <= value < 1 << r.width:
            raise DeviceError(f"register {name} holds {r.width} bits; {value} does not fit")
        for w in range(r.words):
            self.t.write32(r.offset + 4 * w, (value >> (32 * w)) & 0xFFFFFFFF)

    # ---------------------------------------------------------------- handshake
    def identify(self) -> dict:
        return {"id": self.read("ID"), "isa_version": self.read("ISA_VERSION"), "config_hash": self.read("CONFIG_HASH")}

    def handshake(self, program: Program) -> None:
        """Refuse a device whose core is not a DFX core for this program's ISA version and config."""
        ident = self.identify()
        off = self.regs["ID"].offset
        if ident["id"] != regmap.DFX_MAGIC:
            raise DeviceError(f"{self.label}: the ID register (0x{off:03x}) reads 0x{ident['id']:08x}, not "
                              f"0x{regmap.DFX_MAGIC:08x} ('DFX1'): the loaded xclbin is not a dfx core, or its "
                              f"core has another HBM port count than the program's config "
                              f"({self.cfg.hbm_channels} ports); load the xclbin built for this program")
        want_isa = program.manifest.isa_version
        if ident["isa_version"] != want_isa:
            raise DeviceError(f"{self.label}: the core decodes ISA version {ident['isa_version']}, the program was "
                              f"built for ISA version {want_isa}; recompile the program or load a matching xclbin")
        want = regmap.config_hash_word(program.config)
        if ident["config_hash"] != want:
            raise DeviceError(f"{self.label}: the core was built for config hash 0x{ident['config_hash']:x}, the "
                              f"program for config {program.config.name!r} (hash 0x{want:x}); recompile with "
                              f"that core's config or build the core for this one (dfx build --config)")

    # ---------------------------------------------------------------- load / memory
    def load(self, program: Program, k: int | None = None) -> DeviceImage:
        """Handshake, validate the streams (`check_streams`), allocate one buffer per HBM bank and the DDR buffer,
        copy the images in, write the pointer arguments. On any failure every buffer allocated so far is freed."""
        k = self.index if k is None else k
        self.handshake(program)
        check_streams(program, k, self.label)
        if not self.t.batched_prefill:
            refuse_batched(program, self.label)
        img = device_image(program, k)
        hbm_cap = min(self.t.bank_bytes(b) for b in img.banks() if b != DDR_BANK)
        check_fits(img, hbm_cap, self.t.bank_bytes(DDR_BANK), self.label)
        self.free_buffers()
        try:
            for bank, blob in img.banks().items():
                buf = self.t.alloc(bank, max(len(blob), 64))
                self.buffers[bank] = buf
                self.t.upload(buf, 0, blob)
            for c in range(self.cfg.hbm_channels):
                self.write(f"HBM{c:02d}", self.buffers[f"HBM{c}"].address)
            self.write("DDR", self.buffers[DDR_BANK].address)
            if "RING_POS" in self.regs:             # the core's place in the ring (multi-device programs)
                order = list(program.manifest.ring)
                self.write("RING_POS", order.index(k))
                self.write("RING_SIZE", program.n_devices)
        except BaseException:
            self.free_buffers()
            raise
        self.image = replace(img, hbm=(), ddr=b"")     # the bytes are in the device's buffers now
        self.t.attach(program, img.entries)
        return img

    def _buffer(self, bank: str) -> Buffer:
        if bank not in self.buffers:
            raise DeviceError(f"{self.label}: no buffer in bank {bank!r}; load a program first "
                              f"(banks: {', '.join(self.buffers) or 'none'})")
        return self.buffers[bank]

    def write_memory(self, bank: str, offset: int, data: bytes) -> None:
        self.t.upload(self._buffer(bank), offset, bytes(data))

    def read_memory(self, bank: str, offset: int, nbytes: int) -> bytes:
        return self.t.download(self._buffer(bank), offset, nbytes)

    # ---------------------------------------------------------------- runs
    def idle(self) -> bool:
        return bool(self.read("CTRL") & regmap.AP_IDLE)

    def start(self, stream: str, token: int, pos: int, deadline: float | None = None) -> None:
        """Set ENTRY/TOKEN/POS and ap_start; `deadline` (`time.monotonic()` s) tells a transport that runs the
        kernel inside the start (sim) when the host stops waiting."""
        if self.image is None:
            raise DeviceError(f"{self.label}: no program loaded")
        if stream not in self.image.entries:
            raise DeviceError(f"{self.label}: no stream {stream!r}; the program has {', '.join(self.image.entries)}")
        if not self.idle():
            raise DeviceError(f"{self.label}: the kernel is still running (ap_idle is 0); wait for it first")
        self.write("ENTRY", self.image.entries[stream])
        self.write("TOKEN", token)
        self.write("POS", pos)
        self.stream = stream
        self.t.set_deadline(deadline)
        self.write("CTRL", regmap.AP_START)

    def done(self) -> bool:
        """Poll once: True when ap_done was seen (reading CTRL clears it)."""
        return bool(self.read("CTRL") & regmap.AP_DONE)

    def check_status(self) -> None:
        st = self.read("STATUS")
        errors = [n for n in decode_status(st) if n != "halted"]
        if not errors:
            return
        pc = self.read("ERROR_PC")
        detail = self.t.error_detail()
        msg = (f"{self.label}: the kernel stopped with error {'+'.join(errors)} (STATUS 0x{st:x}) at pc {pc} of "
               f"the {self.stream or '?'} stream" + (f": {detail}" if detail else ""))
        cls = SimKernelError if self.t.backend == "sim" and detail else KernelError
        raise cls(msg, errors[0], pc)

    def wait(self, timeout: float = DEFAULT_TIMEOUT_S) -> float:
        """Poll CTRL until ap_done; raise KernelError on an error status, DeviceError after `timeout` s."""
        return wait_all([self], timeout)

    def status(self) -> dict:
        st = self.read("STATUS")
        return {"status": st, "flags": decode_status(st), "error_pc": self.read("ERROR_PC"),
                "idle": self.idle()}

    def counters(self) -> dict[str, int]:
        out = {"cycles": self.read("CYCLES")}
        for u in regmap.COUNTER_UNITS:
            out[u.lower()] = self.read(f"BUSY_{u}")
        return out

    # ---------------------------------------------------------------- close
    def free_buffers(self) -> None:
        for bank, buf in list(self.buffers.items()):
            try:
                self.t.free(buf)
            except DeviceError:
                pass                    # a board that is gone cannot free; the handle is dropped either way
            buf.freed = True
            del self.buffers[bank]
        self.image = None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.free_buffers()
        finally:
            try:
                self.t.close()
            except DeviceError:
                pass


def wait_all(devs: list[Device], timeout: float, t0: float | None = None) -> float:
    """Poll until every device raised ap_done (KernelError on an error status); DeviceError once `timeout` s
    have passed since `t0` (`time.perf_counter()`; default: now). Returns the seconds since `t0`."""
    t0 = time.perf_counter() if t0 is None else t0
    pending = list(devs)
    while pending:
        for d in list(pending):
            if d.done():
                pending.remove(d)
                d.check_status()
        if not pending:
            break
        waited = time.perf_counter() - t0
        if waited > timeout:
            names = ", ".join(d.label for d in pending)
            raise DeviceError(f"{names}: the kernel did not finish the {pending[0].stream} stream within "
                              f"{timeout:g} s (ap_done never rose): the run timed out; raise the limit with "
                              "--timeout SECONDS; the device was released")
        pending[0].t.pause(waited)
    return time.perf_counter() - t0


class DeviceGroup:
    """The devices of one multi-FPGA program (one per ring position), driven together."""

    def __init__(self, devices: list[Device], timeout: float = DEFAULT_TIMEOUT_S):
        self.devices = devices
        self.timeout = timeout
        self.program: Program | None = None

    def load(self, program: Program) -> None:
        if len(self.devices) != program.n_devices:
            raise DeviceError(f"the program was compiled for {program.n_devices} device(s) but "
                              f"{len(self.devices)} were opened; recompile with --devices {len(self.devices)} or "
                              f"open {program.n_devices}")
        try:
            for k, d in enumerate(self.devices):
                d.load(program, k)
        except BaseException:
            self.close()
            raise
        self.program = program

    def run(self, stream: str, token: int, pos: int, timeout: float | None = None) -> RunRecord:
        """Start `stream` on every device with TOKEN/POS, wait for all; on any failure release the devices."""
        timeout = self.timeout if timeout is None else timeout
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        try:
            for d in self.devices:
                d.start(stream, token, pos, deadline)
            wall = wait_all(self.devices, timeout, t0)
        except BaseException:
            self.close()
            raise
        return RunRecord(stream, token, pos, wall)

    def counters(self, rec: RunRecord | None = None) -> RunRecord | list[dict]:
        c = [d.counters() for d in self.devices]
        if rec is not None:
            rec.cycles = [x["cycles"] for x in c]
            rec.busy = [{k: v for k, v in x.items() if k != "cycles"} for x in c]
            return rec
        return c

    def write_all(self, bank: str, offset: int, data: bytes) -> None:
        """Write the same bytes into every device's buffer (the batched prefill's token table); on any failure
        release the devices."""
        try:
            for d in self.devices:
                d.write_memory(bank, offset, data)
        except BaseException:
            self.close()
            raise

    def read_logits(self) -> np.ndarray:
        """Join the logits slices the devices stored in their DDR (symbols `logits`, `logits_pieces`)."""
        prog = self.program
        if prog is None:
            raise DeviceError("no program loaded")
        sym = prog.symbols
        base, out = sym.logits, np.empty(sym.vocab_size, np.float16)
        try:
            for d, pieces in zip(self.devices, sym.logits_pieces):
                if not pieces:
                    continue
                lo, hi = min(a for a, _ in pieces), max(b for _, b in pieces)
                raw = np.frombuffer(d.read_memory(DDR_BANK, base + 2 * lo, 2 * (hi - lo)), np.float16)
                for a, b in pieces:
                    out[a:b] = raw[a - lo:b - lo]
        except BaseException:
            self.close()
            raise
        return out

    def close(self) -> None:
        for d in self.devices:
            d.close()
