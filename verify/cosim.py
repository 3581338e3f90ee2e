"""RTL co-simulation of compiled programs: the matrix and vector instructions run on the Amaranth MPU and VPU
(`dfx.hw.mpu`, `dfx.hw.vpu`) in amaranth.sim; control, DMA and router instructions, the vector buffer, the
scalar registers and the HBM/DDR images are those of the functional simulator (`dfx.sim.functional.Device`).

This is the operand collector and write-back of the DFX core, written in Python: for a matrix instruction it
streams the d-element x groups from VBUF and the d x l weight tiles straight from the HBM image bytes (raw
binary16: the MPU applies DAZ itself), in the MPU's beat order (column-major tiles; the row-major V-cache
tiles are fetched in the same order, transposed), with the bias, the scale register, the GELU flag and the
causal mask derived from POS on the last group of each output block; for a vector instruction the
vpu_width-element chunks of a and b, S[sa], the immediate, the lane mask and `last`. The results are
written back bit for bit.

With `check=True` a second, purely functional `Device` runs in lock step and every instruction executed on
the RTL is compared with it: the whole VBUF and the scalar registers, bit for bit. The first difference stops
the run with a `SimError` naming the PC, the instruction, the first differing element and both values.

What is not RTL here (issue #8): instruction fetch and issue, the scoreboard, the DMA engines, the router,
the vector buffer and the register file (docs/rtl.md, "What is not RTL yet").

    cosim = RtlCosim(program, rtl=layer_pcs(program, 0), check=True)
    cosim.run("decode", token, pos)        # raises SimError at the first instruction that differs
    cosim.stats                            # instructions and cycles on each unit
"""
# (no `from __future__ import annotations`: this module defines an Amaranth component, ComputeUnits)

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from amaranth import Module
from amaranth.lib import data, wiring
from amaranth.sim import Simulator

from dfx import isa
from dfx.errors import SimError
from dfx.hw.decoder import Opcode
from dfx.hw.mpu import MPU, finish_layout, x_layout
from dfx.hw.vpu import VPU, in_layout, out_layout
from dfx.program import Program
from dfx.sim.functional import Device


# ============================================================================================ payloads
def _offsets(layout: data.StructLayout) -> dict[str, int]:
    return {name: f.offset for name, f in layout}


def pack16(values) -> int:
    """binary16 values (float16 or uint16 array) as one int, element 0 in the low bits (an ArrayLayout(16, n))."""
    a = np.ascontiguousarray(np.asarray(values).view(np.uint16), "<u2")
    return int.from_bytes(a.tobytes(), "little")


def unpack16(word: int, n: int) -> np.ndarray:
    """Inverse of `pack16`: n binary16 values (float16)."""
    return np.frombuffer(int(word).to_bytes(2 * n, "little"), "<u2").view(np.float16)


def _raw(v):
    return v.as_value() if isinstance(v, data.View) else v


def _f32_bits(v) -> int:
    return int(np.float32(v).view(np.uint32))


class Payloads:
    """Stream payloads (ints) for the MPU's `x` and the VPU's `i`, built from the layouts' field offsets
    (equal to `Layout.const(...).as_bits()`, which is two orders of magnitude slower per beat)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.x = _offsets(x_layout(cfg))
        self.fin = _offsets(finish_layout(cfg))
        self.vi = _offsets(in_layout(cfg))
        self.vo = _offsets(out_layout(cfg))

    def finish(self, bias16, has_bias, scale_bits, scale_en, gelu, mask) -> int:
        o = self.fin
        return (pack16(bias16) | int(has_bias) << o["has_bias"] | scale_bits << o["scale"]
                | int(scale_en) << o["scale_en"] | int(gelu) << o["gelu"] | mask << o["mask"])

    def x_beat(self, x16, last, fin) -> int:
        return pack16(x16) | int(last) << self.x["last"] | fin << self.x["fin"]

    def vpu_beat(self, mnemonic, a16, b16, s_bits, imm_bits, mask, last) -> int:
        o = self.vi
        return (Opcode[mnemonic].value << o["op"] | pack16(a16) << o["a"] | pack16(b16) << o["b"]
                | s_bits << o["s"] | imm_bits << o["imm"] | mask << o["mask"] | int(last) << o["last"])

    def vpu_result(self, word) -> tuple[np.ndarray, np.float32]:
        w = self.cfg.vpu_width
        v = unpack16(word & ((1 << 16 * w) - 1), w)
        s = np.uint32((word >> self.vo["s"]) & 0xFFFFFFFF).view(np.float32)
        return v, s


# ============================================================================================ selection
def layer_pcs(program: Program, layer: int, stream: str = "decode", device: int = 0) -> set[int]:
    """The PCs of transformer layer `layer` (nodes `h.<layer>.*`) in `stream`, from the manifest's node_pcs."""
    starts = program.manifest.node_pcs.get(stream)
    if not starts:
        raise SimError(f"the program's manifest has no node_pcs for stream {stream!r}")
    nodes = starts[device]
    n_instr = len(program.devices[device].streams[stream])
    out = set()
    for i, (pc, name) in enumerate(nodes):
        end = nodes[i + 1][0] if i + 1 < len(nodes) else n_instr
        if name.startswith(f"h.{layer}."):
            out.update(range(pc, end))
    if not out:
        layers = sorted({int(n.split(".")[1]) for _, n in nodes if n.startswith("h.")})
        raise SimError(f"layer must be one of {layers}, not {layer!r}")
    return out


@dataclass
class CosimStats:
    """What ran where: instructions per unit on the RTL and on the functional model, and the simulated
    clock cycles each RTL unit was busy (first input beat to last output beat, per instruction)."""
    rtl: Counter = field(default_factory=Counter)         # mnemonic -> instructions run on the RTL
    functional: Counter = field(default_factory=Counter)  # mnemonic -> instructions run functionally
    cycles: Counter = field(default_factory=Counter)      # "MPU"/"VPU" -> busy cycles
    beats: Counter = field(default_factory=Counter)       # "MPU"/"VPU" -> input beats
    checked: int = 0                                      # instructions compared with the reference

    @property
    def total_cycles(self) -> int:
        return sum(self.cycles.values())


# ============================================================================================ the co-simulator
class RtlCosim:
    """Runs a compiled program with its MPU/VPU instructions on the RTL (see the module docstring).

    program, device: what to run. rtl: which PCs run on the RTL, as a set of PCs (e.g. `layer_pcs`), a
    callable (stream, pc, instr) -> bool, or None for every MPU/VPU instruction. check: compare with a
    functional `Device` after every RTL instruction (a `SimError` at the first difference).
    mpu/vpu: keyword arguments for `MPU(cfg, ...)` / `VPU(cfg, ...)` (pipeline depths). vcd: write a VCD
    trace of the amaranth.sim runs there (complete after `close()`; usable as a context manager).

    State persists across runs (the KV cache in HBM), like a `Device`: run the prompt position by position.
    """

    def __init__(self, program: Program, device: int = 0, *, rtl=None, check: bool = False,
                 mpu: dict | None = None, vpu: dict | None = None, vcd: str | None = None):
        self.program, self.device, self.cfg = program, device, program.config
        self.state = Device(program, device)
        self.ref = Device(program, device) if check else None
        self._mpu_args, self._vpu_args, self._units = dict(mpu or {}), dict(vpu or {}), None
        self.rtl = rtl
        self._vcd, self._vcd_ctx, self._sim, self._job, self._result = vcd, None, None, None, None
        self.pay = Payloads(self.cfg)
        self.stats = CosimStats()

    # ------------------------------------------------------------------ selection
    def _on_rtl(self, stream: str, pc: int, ins: isa.Instr) -> bool:
        if ins.op.unit not in (isa.Unit.MPU, isa.Unit.VPU):
            return False
        if self.rtl is None:
            return True
        if callable(self.rtl):
            return bool(self.rtl(stream, pc, ins))
        return pc in self.rtl

    # ------------------------------------------------------------------ operand collection
    def _vbuf16(self, entry: int, n: int, pad: int) -> np.ndarray:
        out = np.zeros(pad, np.float16)
        out[:n] = self.state.vbuf[self.state._vec(entry, n, "operand")]
        return out

    def matrix_beats(self, f) -> tuple[list[int], list[int], int]:
        """(x payloads, w payloads, n) of one matrix instruction (its fields `f`, `Instr.fields()`) in the MPU's
        beat order, collected from the co-simulation's current state."""
        st, cfg, pay = self.state, self.cfg, self.pay
        d, l, pos = cfg.d, cfg.l, st.regs["POS"]
        if f["wfmt"] != 0:
            raise SimError(f"weight format {f['wfmt']} is not implemented (0 = FP16)")
        k = pos + 1 if f["dyn_k"] else f["k"]
        n = pos + 1 if f["dyn_n"] else f["n"]
        kt, nt = -(-k // d), -(-n // l)
        x = self._vbuf16(f["src"], k, kt * d)
        bias = self._vbuf16(f["bias"], n, nt * l) if f["has_bias"] else np.zeros(nt * l, np.float16)
        scale = _f32_bits(st.s[f["s"]]) if f["scale"] else 0
        base, tb = f["w"] * isa.HBM_UNIT, cfg.tile_bytes
        st._check_range(st.hbm, base, kt * nt * tb, "HBM")
        st._check_clean(base, base + kt * nt * tb, "HBM")
        tiles = st.hbm[base:base + kt * nt * tb]
        xgroups = [pack16(x[i * d:(i + 1) * d]) for i in range(kt)]
        xs, ws = [], []
        for j in range(nt):
            mask = sum(1 << c for c in range(l) if j * l + c > pos) if f["mask"] else 0
            fin = pay.finish(bias[j * l:(j + 1) * l], f["has_bias"], scale, f["scale"], f["gelu"], mask)
            for i in range(kt):
                t = i * nt + j if f["rowmajor"] else j * kt + i
                ws.append(int.from_bytes(tiles[t * tb:(t + 1) * tb].tobytes(), "little"))
                xs.append(xgroups[i] | (i == kt - 1) << pay.x["last"] | fin << pay.x["fin"])
        return xs, ws, n

    def _vector_beats(self, ins: isa.Instr, f) -> tuple[list[int], int]:
        """(i payloads, n) of one VPU instruction."""
        st, w, pay = self.state, self.cfg.vpu_width, self.pay
        op = ins.op.mnemonic
        zeros = np.zeros(w, np.uint16)
        s = _f32_bits(st.s[f["sa"]]) if ins.op.sreads else 0
        if ins.op.fmt is isa.SCALAR:
            return [pay.vpu_beat(op, zeros, zeros, s, _f32_bits(f["imm"]), 0, 1)], 0
        n = st.regs["POS"] + 1 if f["dyn_n"] else f["n"]
        beats = max(1, -(-n // w))
        a = self._vbuf16(f["a"], n, beats * w)
        b = self._vbuf16(f["b"], n, beats * w) if any(r[0] == "b" for r in ins.op.reads) else \
            np.zeros(beats * w, np.float16)
        out = []
        for k in range(beats):
            live = min(max(n - k * w, 0), w)
            out.append(pay.vpu_beat(op, a[k * w:(k + 1) * w], b[k * w:(k + 1) * w], s, 0, (1 << live) - 1,
                                    k == beats - 1))
        return out, n

    # ------------------------------------------------------------------ checking
    def _compare(self, stream: str, pc: int, ins: isa.Instr) -> None:
        got, ref = self.state, self.ref
        bad = np.flatnonzero(got.vbuf.view(np.uint16) != ref.vbuf.view(np.uint16))
        where = f"device {self.device} {stream} pc {pc} `{isa.disassemble(ins)}` (RTL vs functional)"
        if bad.size:
            e = int(bad[0])
            raise SimError(f"{where}: VBUF differs in {bad.size} element(s), first at entry {e // self.cfg.d} "
                           f"element {e % self.cfg.d}: RTL {got.vbuf.view(np.uint16)[e]:#06x}, "
                           f"functional {ref.vbuf.view(np.uint16)[e]:#06x}")
        bad = np.flatnonzero(got.s.view(np.uint32) != ref.s.view(np.uint32))
        if bad.size:
            r = int(bad[0])
            raise SimError(f"{where}: S{r} differs: RTL {got.s.view(np.uint32)[r]:#010x}, functional "
                           f"{ref.s.view(np.uint32)[r]:#010x}")
        self.stats.checked += 1

    # ------------------------------------------------------------------ execution
    async def execute(self, stream: str, token: int, pos: int, drive, *, stop: int | None = None,
                      on_step=None) -> int:
        """Execute `stream` for `token` at position `pos` up to HALT (or up to PC `stop`, exclusive), with
        the RTL behind `drive`: an async callable (unit, [(port, payloads), ...], n_out) -> output payloads,
        unit "MPU" (ports x, w -> o) or "VPU" (i -> o). `run` supplies one for amaranth.sim; the cocotb
        testbench (tests/verify/cocotb_cosim.py) one for Icarus/Verilator. on_step(pc, instr, on_rtl) is called
        after every instruction. Returns the number of instructions executed."""
        st, pay, stats = self.state, self.pay, self.stats
        if stream not in st._streams:
            raise SimError(f"device {self.device}: no stream {stream!r}; the program has {', '.join(st._streams)}")
        instrs = st._streams[stream]
        for dev in (st, self.ref):
            if dev is not None:
                dev.regs["TOKEN"], dev.regs["POS"] = int(token), int(pos)
        limit = len(instrs) if stop is None else min(int(stop), len(instrs))
        executed = 0
        with np.errstate(all="ignore"):
            for pc in range(limit):
                handler, f, ins, _ = instrs[pc]
                st.pc = pc
                rtl = self._on_rtl(stream, pc, ins)
                halt = False
                if rtl and ins.op.unit is isa.Unit.MPU:
                    xs, ws, n = self.matrix_beats(f)
                    outs = await drive("MPU", [("x", xs), ("w", ws)], -(-n // self.cfg.l))
                    stats.beats["MPU"] += len(xs)
                    y = np.concatenate([unpack16(v, self.cfg.l) for v in outs])[:n]
                    st.vbuf[st._vec(f["dst"], n, "dst")] = y
                elif rtl:
                    beats, n = self._vector_beats(ins, f)
                    vec = ins.op.fmt is isa.VECTOR and bool(ins.op.writes)
                    outs = await drive("VPU", [("i", beats)], len(beats) if vec else 1)
                    stats.beats["VPU"] += len(beats)
                    if vec:
                        y = np.concatenate([pay.vpu_result(v)[0] for v in outs])[:n]
                        st.vbuf[st._vec(f["dst"], n, "dst")] = y
                    else:
                        st.s[f["sd"]] = pay.vpu_result(outs[0])[1]
                elif handler is None:                  # router
                    if not (ins.op.mnemonic == "ALLGATHER" and f["devices"] == 1):
                        raise SimError(f"device {self.device} {stream} pc {pc} `{isa.disassemble(ins)}`: router "
                                       "instructions need a ring; co-simulate single-device programs")
                else:
                    try:
                        halt = bool(handler(f))
                    except SimError as e:
                        raise SimError(f"device {self.device} {stream} pc {pc} `{isa.disassemble(ins)}`: "
                                       f"{e}") from None
                (stats.rtl if rtl else stats.functional)[ins.op.mnemonic] += 1
                if self.ref is not None:
                    rh, rf = self.ref._streams[stream][pc][:2]
                    if rh is not None:
                        rh(rf)
                    if rtl:
                        self._compare(stream, pc, ins)
                executed = pc + 1
                if on_step is not None:
                    on_step(pc, ins, rtl)
                if halt:
                    break
        return executed

    def units(self) -> tuple[MPU, VPU]:
        """The Amaranth MPU and VPU this co-simulation runs (built on first use)."""
        if self._units is None:
            self._units = MPU(self.cfg, **self._mpu_args), VPU(self.cfg, **self._vpu_args)
        return self._units

    def run(self, stream: str, token: int, pos: int, *, stop: int | None = None, on_step=None) -> int:
        """`execute` on the Amaranth MPU and VPU in amaranth.sim. One simulator serves every run of this
        object (building it costs seconds): a background testbench executes the runs handed to it while
        this method advances the simulation. Returns the number of instructions executed."""
        sim = self._simulator()
        self._job, self._result = (stream, token, pos, stop, on_step), None
        while self._job is not None:
            sim.advance()
        return self._result

    def close(self) -> None:
        """Finish the VCD trace, if one is being written."""
        if self._vcd_ctx is not None:
            ctx, self._vcd_ctx = self._vcd_ctx, None
            ctx.__exit__(None, None, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _simulator(self) -> Simulator:
        if self._sim is not None:
            return self._sim
        mpu, vpu = self.units()
        ports = {"MPU": mpu, "VPU": vpu}
        stats = self.stats

        def driver(ctx):
            async def drive(unit: str, sources: list, n_out: int) -> list[int]:
                """One beat per cycle on the input streams (joined inputs move together); collect n_out."""
                u = ports[unit]
                sink = u.o
                ins = [(getattr(u, name), words) for name, words in sources]
                n_in = len(ins[0][1])
                idx, outs, cycles = 0, [], 0
                ctx.set(sink.ready, 1)
                for port, _ in ins:
                    ctx.set(port.valid, 1)
                readies = [port.ready for port, _ in ins]
                raws = [(_raw(port.payload), words) for port, words in ins]
                payload = _raw(sink.payload)
                while idx < n_in or len(outs) < n_out:
                    if idx < n_in:
                        for raw, words in raws:
                            ctx.set(raw, words[idx])
                    _, _, *rdy, o_valid, o_payload = await ctx.tick().sample(*readies, sink.valid, payload)
                    cycles += 1
                    if idx < n_in and all(rdy):
                        idx += 1
                        if idx == n_in:
                            for port, _ in ins:
                                ctx.set(port.valid, 0)
                    if o_valid:
                        outs.append(o_payload)
                ctx.set(sink.ready, 0)
                stats.cycles[unit] += cycles
                return outs
            return drive

        async def server(ctx):
            drive = driver(ctx)
            while True:
                if self._job is None:
                    await ctx.tick()
                    continue
                stream, token, pos, stop, on_step = self._job
                try:
                    self._result = await self.execute(stream, token, pos, drive, stop=stop, on_step=on_step)
                finally:
                    self._job = None

        top = Module()
        top.submodules.mpu, top.submodules.vpu = mpu, vpu
        sim = Simulator(top)
        sim.add_clock(1e-6 / self.cfg.clock_mhz)
        sim.add_testbench(server, background=True)
        if self._vcd:
            self._vcd_ctx = sim.write_vcd(self._vcd)
            self._vcd_ctx.__enter__()
        self._sim = sim
        return sim


class ComputeUnits(wiring.Component):
    """The MPU and the VPU side by side as one design for a Verilog simulator: their streams exposed as
    `mpu_x`, `mpu_w`, `mpu_o`, `vpu_i`, `vpu_o` (in Verilog `mpu_x__payload`, `mpu_x__valid`, ...)."""

    def __init__(self, mpu: MPU, vpu: VPU):
        self.mpu, self.vpu = mpu, vpu
        members = {}
        for prefix, unit in (("mpu", mpu), ("vpu", vpu)):
            for name, member in unit.signature.members.items():
                members[f"{prefix}_{name}"] = member
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mpu, m.submodules.vpu = self.mpu, self.vpu
        for prefix, unit in (("mpu", self.mpu), ("vpu", self.vpu)):
            for name, member in unit.signature.members.items():
                outer = getattr(self, f"{prefix}_{name}")
                if member.flow == wiring.In:
                    wiring.connect(m, wiring.flipped(outer), getattr(unit, name))
                else:
                    wiring.connect(m, getattr(unit, name), wiring.flipped(outer))
        return m


__all__ = ["ComputeUnits", "CosimStats", "Payloads", "RtlCosim", "layer_pcs", "pack16", "unpack16"]
