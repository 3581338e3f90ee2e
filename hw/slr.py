"""Register stages for the paths that cross super logic regions (SLRs) of the U280, and a pipelined reset.

The xcu280 is three dies (SLR0..SLR2); the HBM attaches at the bottom of SLR0, so the 32 HBM channels whose
beats the core joins into one weight tile, and the operands broadcast from there to MPU lanes placed in other
SLRs, cross one or two die boundaries (boards/u280/board.json, "dynamic_region"; docs/rtl.md, "Fit").
A crossing wants a flip-flop on each side of it (AMD's SLR-crossing guidance: registers on both sides of a
super long line). These blocks are those registers: the matrix engine puts them on the operand broadcast
(`hw.core_mpu.MatrixEngine`'s slr_stages), and `hw.top.Top` puts a chain on every channel of every HBM port,
the path from the HBM subsystem at SLR0's edge to the DMA (a full slice at the port, forward stages inward).

- `RegSlice`: one full-throughput register stage of a valid/ready channel (the AXI register slice's
  "fully registered" mode: payload, valid *and* ready registered, a two-entry skid buffer), so a stage
  cuts the backward `ready` path too. `slice_chain` puts n of them in a row: n cycles more latency, the same
  beats in the same order, one beat per cycle.
- `ForwardSlice`: the AXI register slice's "forward registered" mode: payload and valid registered, `ready`
  passed back through one gate. Its payload flip-flops only load (a clock enable), so it costs no multiplexer
  per bit, where `RegSlice` costs one (its skid choice). `slice_chain(..., forward=...)` mixes the two: a
  chain whose stage at a boundary is a `RegSlice` registers `ready` there, and its other stages are free of
  logic per bit.
- `ResetPipe`: the reset through n registers, each marked for replication (`max_fanout`): Vivado builds the
  fan-out tree from them, and no reset net spans the device in one cycle. The reset is held for n more cycles
  after ap_rst_n rises.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

RESET_FANOUT = 64             # the max_fanout attribute on each reset register (Vivado replicates past it)


class _Stage(wiring.Component):
    """A register stage of a valid/ready channel with a `width`-bit payload: `i_*` in, `o_*` out."""

    def __init__(self, width: int):
        if not isinstance(width, int) or width < 1:
            self._MustUse__silence = True
            raise ValueError(f"width must be a positive integer, not {width!r}")
        self.width = width
        super().__init__({"i_valid": In(1), "i_ready": Out(1), "i_data": In(width),
                          "o_valid": Out(1), "o_ready": In(1), "o_data": Out(width)})


class RegSlice(_Stage):
    """`i` (valid/ready + `width`-bit payload) -> `o`, one cycle later; every output registered, `i.ready`
    included; a beat per cycle under no backpressure, none lost or repeated under any."""

    def elaborate(self, platform):
        m = Module()
        skid = Signal(self.width, reset_less=True)
        skid_full = Signal()
        m.d.comb += self.i_ready.eq(~skid_full)                 # a register: skid_full
        take = self.i_valid & ~skid_full
        with m.If(~self.o_valid | self.o_ready):                # the output register is free this cycle
            m.d.sync += [self.o_valid.eq(skid_full | self.i_valid),
                         self.o_data.eq(Mux(skid_full, skid, self.i_data)), skid_full.eq(0)]
        with m.Elif(take):                                      # output stalled: park the beat
            m.d.sync += [skid.eq(self.i_data), skid_full.eq(1)]
        return m


class ForwardSlice(_Stage):
    """`i` -> `o` one cycle later, payload and valid registered; `i.ready` = `o.ready` or the output empty (one
    gate, not a register). A beat per cycle under no backpressure, none lost or repeated under any."""

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i_ready.eq(~self.o_valid | self.o_ready)
        with m.If(self.i_ready):
            m.d.sync += self.o_valid.eq(self.i_valid)
            with m.If(self.i_valid):                            # a clock enable on the payload: no multiplexer
                m.d.sync += self.o_data.eq(self.i_data)
        return m


def slice_chain(m: Module, name: str, stages: int, valid, ready, data, width: int, forward=()):
    """`stages` register stages from (valid, data) with `ready` back; returns (valid, ready, data) of the far end
    (the inputs themselves when stages == 0). `ready` is the signal to drive with the far end's ready. Stage k
    (0 at the source) is a `ForwardSlice` when k is in `forward`, a `RegSlice` otherwise."""
    for k in range(stages):
        s = (ForwardSlice if k in forward else RegSlice)(width)
        m.submodules[f"{name}_{k}"] = s
        m.d.comb += [s.i_valid.eq(valid), s.i_data.eq(data), ready.eq(s.i_ready)]
        valid, data = s.o_valid, s.o_data
        ready = s.o_ready
    return valid, ready, data


MAX_RESET_STAGES = 16          # the longest reset pipeline `ResetPipe` builds
# Register slices under the deep pipeline profile on the matrix engine's operand broadcast from the HBM's SLR to
# the MPU lanes in the other SLRs (`hw.core_mpu.MatrixEngine`'s slr_stages): one each side of a crossing.
BROADCAST_SLR_STAGES = 2


class ResetPipe(wiring.Component):
    """`rst_in` (active high, from the platform) -> `rst_out` through `stages` registers that power up
    asserted; each carries max_fanout = RESET_FANOUT."""

    def __init__(self, stages: int):
        if not isinstance(stages, int) or isinstance(stages, bool) or not 0 <= stages <= MAX_RESET_STAGES:
            self._MustUse__silence = True
            raise ValueError(f"reset_stages must be an integer 0..{MAX_RESET_STAGES}, not {stages!r}")
        self.stages = stages
        super().__init__({"rst_in": In(1), "rst_out": Out(1)})

    def elaborate(self, platform):
        m = Module()
        v = self.rst_in
        for k in range(self.stages):
            r = Signal(init=1, reset_less=True, name=f"rst_pipe{k}", attrs={"max_fanout": RESET_FANOUT})
            m.d.rst_src += r.eq(v)
            v = r
        m.d.comb += self.rst_out.eq(v)
        return m
