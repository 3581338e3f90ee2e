"""On-chip storage of the core: the vector buffer (VBUF) and the scalar register file (S0..S15).

VBUF: `cfg.vbuf_entries` entries of d binary16 elements, `readers` synchronous read ports (the data in the cycle
after `en`, transparent to the write port) and one write port with a per-element enable (granularity 16 bits), so
a DMA piece, an MPU output block (l of the d lanes) or the live lanes of a VPU chunk are written without
read-modify-write. The engines run concurrently (hw/core.py), so each has its own read ports (`r<i>`: on an FPGA,
one copy of the buffer per read port, each a simple dual-port BRAM sharing the write), and they share the write
port (`w`) through the core's fixed-priority arbiter: an engine's `vbuf_port_signature` port requests a write by
raising `w_req` (its lanes in `w_en`) and the write happens in a cycle where `w_rdy` is high (no engine of higher
priority requests one); the request must not depend on `w_rdy`. `w_req` is a single bit, apart from the lanes, so
that the arbiter's grant is one LUT deep (the 300 MHz depth).

The write reaches the copies through registers (`write_stages`, 2 by default): one beside the write arbiter and
one beside each copy, so the write port's wide data and lane enables cross the die boundaries between the engines'
super logic regions register to register (docs/rtl.md, "Fit"). The copies are then written two cycles late; each
read port makes up for it by merging, lane by lane, the writes not yet in its copy (the three latest: the
arbiter's register, the copy's, and the copy's one before; the newest write to a lane wins) into the copy's data
(one Amaranth `lib.memory.Memory` per read port), so a read sees exactly what it would see with the write in place
(transparent: a read in the cycle of a write returns the written lanes). A port's data are valid in the cycle
after its `en` (every engine takes them then), not held after it as a plain memory's are. The depth of the merge:
the lanes' choices are registers or comparisons of registers, each data bit one 4:1 multiplexer after the memory.

Scalar registers: `cfg.sregs` binary32 words (at most the 16 the ISA's 4-bit register fields name), a `Memory`
with asynchronous (comb) read ports: LUT RAM on an FPGA.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from dfx import isa
from dfx.config import AccelConfig


def vbuf_addr_bits(cfg: AccelConfig) -> int:
    return max(1, (cfg.vbuf_entries - 1).bit_length())


def vbuf_port_signature(cfg: AccelConfig) -> wiring.Signature:
    """A unit's view of VBUF: two read ports (data one cycle after `r*_en`) and one masked write port, which
    writes the lanes `w_en` in a cycle with `w_req` and `w_rdy` high (the request, `w_req`, not depending on
    `w_rdy`; `w_en` is zero without it)."""
    ab, w = vbuf_addr_bits(cfg), 16 * cfg.d
    return wiring.Signature({
        "ra_addr": Out(ab), "ra_en": Out(1), "ra_data": In(w),
        "rb_addr": Out(ab), "rb_en": Out(1), "rb_data": In(w),
        "w_addr": Out(ab), "w_en": Out(cfg.d), "w_data": Out(w), "w_req": Out(1), "w_rdy": In(1),
    })


def vbuf_read_signature(cfg: AccelConfig) -> wiring.Signature:
    """One read port of VBUF (the reader's view)."""
    return wiring.Signature({"addr": Out(vbuf_addr_bits(cfg)), "en": Out(1), "data": In(16 * cfg.d)})


def vbuf_write_signature(cfg: AccelConfig) -> wiring.Signature:
    """The write port of VBUF (the writer's view): per-element enables."""
    return wiring.Signature({"addr": Out(vbuf_addr_bits(cfg)), "en": Out(cfg.d), "data": Out(16 * cfg.d)})


class VectorBuffer(wiring.Component):
    """VBUF (see the module docstring): the write port `w` and read ports `r0` .. `r<readers-1>`."""

    WRITE_STAGES = 2

    def __init__(self, cfg: AccelConfig, readers: int = 2, write_stages: int = WRITE_STAGES):
        if not isinstance(cfg, AccelConfig):
            self._MustUse__silence = True
            raise TypeError(f"cfg must be an AccelConfig, not {cfg!r}")
        if write_stages not in (0, 2):
            self._MustUse__silence = True
            raise ValueError(f"write_stages must be 0 (the write port straight to one memory) or 2 (a register "
                             f"at the arbiter and one per copy), not {write_stages!r}")
        self.cfg = cfg
        self.readers = readers
        self.write_stages = write_stages
        super().__init__({"w": In(vbuf_write_signature(cfg)),
                          **{f"r{i}": In(vbuf_read_signature(cfg)) for i in range(readers)}})

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        if not self.write_stages:
            m.submodules.mem = mem = Memory(shape=16 * cfg.d, depth=cfg.vbuf_entries, init=[])
            wp = mem.write_port(granularity=16)
            m.d.comb += [wp.addr.eq(self.w.addr), wp.en.eq(self.w.en), wp.data.eq(self.w.data)]
            for i in range(self.readers):
                rp = mem.read_port(transparent_for=(wp,))
                p = getattr(self, f"r{i}")
                m.d.comb += [rp.addr.eq(p.addr), rp.en.eq(p.en), p.data.eq(rp.data)]
            return m

        def stage(name, src, keep=False):
            """A register stage of the write (addr, lane enables, data); `keep`: a copy's own, which synthesis
            must not merge with the other copies' (equal registers: Yosys and Vivado merge them by default)."""
            attrs = {"keep": "true"} if keep else {}
            st = (Signal.like(src[0], name=f"{name}_addr", attrs=attrs),
                  Signal.like(src[1], name=f"{name}_en", attrs=attrs),
                  Signal.like(src[2], name=f"{name}_data", attrs=attrs))
            m.d.sync += [st[0].eq(src[0]), st[1].eq(src[1]), st[2].eq(src[2])]
            return st

        w1 = stage("w1", (self.w.addr, self.w.en, self.w.data))          # beside the arbiter
        for i in range(self.readers):
            p = getattr(self, f"r{i}")
            w2 = stage(f"c{i}_w2", w1, keep=True)                         # beside copy i: it writes the memory
            w3 = stage(f"c{i}_w3", w2, keep=True)                         # the write the memory took last cycle
            mem = Memory(shape=16 * cfg.d, depth=cfg.vbuf_entries, init=[])
            m.submodules[f"copy{i}"] = mem
            wp = mem.write_port(granularity=16)
            m.d.comb += [wp.addr.eq(w2[0]), wp.en.eq(w2[1]), wp.data.eq(w2[2])]
            rp = mem.read_port()                        # not transparent: w3 holds what it would have added
            m.d.comb += [rp.addr.eq(p.addr), rp.en.eq(p.en)]
            ra = Signal.like(p.addr, name=f"c{i}_ra")
            m.d.sync += ra.eq(p.addr)
            # per lane, which write the data come from: w2's and w3's (the writes w1 and w2 hold as the read goes
            # in) registered with the read, as a transparent memory's bypass is; w1's (the write granted in the
            # read's cycle) from the registers after it
            s2, s3 = Signal(cfg.d, name=f"c{i}_s2"), Signal(cfg.d, name=f"c{i}_s3")
            m.d.sync += [s2.eq(Mux(p.addr == w1[0], w1[1], 0)), s3.eq(Mux(p.addr == w2[0], w2[1], 0))]
            s1 = Signal(cfg.d, name=f"c{i}_s1")
            m.d.comb += s1.eq(Mux(ra == w1[0], w1[1], 0))
            lanes = []
            for e in range(cfg.d):
                sl = slice(16 * e, 16 * e + 16)
                lanes.append(Mux(s1[e], w1[2][sl], Mux(s2[e], w2[2][sl], Mux(s3[e], w3[2][sl], rp.data[sl]))))
            m.d.comb += p.data.eq(Cat(*lanes))
        return m


class ScalarFile(wiring.Component):
    """S0..S(sregs-1), binary32. Read ports `r0`, `r1` (asynchronous), one write port."""

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        a = isa.SREG_BITS
        super().__init__({
            "r0_addr": In(a), "r0_data": Out(32),
            "r1_addr": In(a), "r1_data": Out(32),
            "w_addr": In(a), "w_en": In(1), "w_data": In(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=32, depth=self.cfg.sregs, init=[])
        wp = mem.write_port()
        r0 = mem.read_port(domain="comb")
        r1 = mem.read_port(domain="comb")
        m.d.comb += [
            wp.addr.eq(self.w_addr), wp.en.eq(self.w_en), wp.data.eq(self.w_data),
            r0.addr.eq(self.r0_addr), self.r0_data.eq(r0.data),
            r1.addr.eq(self.r1_addr), self.r1_data.eq(r1.data),
        ]
        return m
