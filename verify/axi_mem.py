"""A behavioural AXI4 slave memory for the fast RTL harness (`dfx.verify.fast_core`): the HBM pseudo-channels and
the DDR of the core live inside the simulated design, so no Python runs per bus beat.

`AxiMem(data_bits, abits, file=...)` serves one AXI4 port (`dfx.hw.dma.axi4_signature`, the core's master view
flipped) from 2**abits words of data_bits bits:

- reads: up to `OUTSTANDING` AR requests queue in order (INCR bursts of arlen + 1 beats, full-width arsize); the
  first beat of a burst leaves no earlier than `latency` cycles after its AR was accepted, the beats follow in
  order, rlast on the last. Writes: up to `OUTSTANDING` AW requests queue; W beats are accepted for the oldest
  (a W before its AW waits, as AXI lets a slave), written with their byte strobes, and one B answers each burst.
- back-pressure: with `stall` = s (0..15) each of arready, awready, wready, rvalid and bvalid is withheld in a
  cycle with probability s/16, from a free-running 16-bit LFSR seeded per instance (`seed`), so bursts are cut
  by gaps the core must tolerate. `latency` and `stall` are inputs: one build serves every setting.
- refresh (the HBM's, for the weight-stream benchmark): with `refresh_every` = T > 0, the memory returns no read
  data for `refresh_cycles` cycles in every T cycles since reset, offset by `refresh_phase` cycles (channels
  refreshing at staggered moments); an R beat already offered stays, as AXI wants, and AR requests still queue.
  T = 0: no refresh.
- IDs: every request is taken as ID 0 (rid and bid are 0), as the core issues them.
- `error` (sticky until reset): bit 0 an access outside the 2**abits words (read data 0, write dropped), bit 1
  a protocol fault (a burst type other than INCR, a narrow arsize/awsize, wlast not on the burst's last beat).

Storage. With `file` (a name), the words live in a small Verilog module (`RAM_VERILOG`) with a backdoor: a rising
edge on `load` reads `<file>.hex` ($readmemh; `clear` high: the memory is zeroed first), one on `dump` writes
words `dump_lo`..`dump_hi` to `<file>.out` ($writememh), both in the simulator's working directory. Without
`file` an Amaranth `Memory` holds them (amaranth.sim unit tests; no backdoor).
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

from amaranth import Cat, ClockSignal, Instance, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from dfx.hw.dma import BURST_INCR, axi4_signature, log2

OUTSTANDING = 8              # AR (and AW) requests a memory queues
RAM_MODULE = "dfx_tb_ram"
ERR_RANGE, ERR_PROTOCOL = 1, 2

RAM_VERILOG = r"""
// dfx fast RTL harness: storage of one AXI memory model, with a file backdoor (dfx.verify.axi_mem)
module dfx_tb_ram #(parameter WIDTH = 128, parameter ABITS = 10,
                    parameter LOAD_FILE = "mem.hex", parameter DUMP_FILE = "mem.out") (
    input clk,
    input [ABITS-1:0] raddr, output [WIDTH-1:0] rdata,
    input [WIDTH/8-1:0] wbe, input [ABITS-1:0] waddr, input [WIDTH-1:0] wdata,
    input load, input clear, input dump, input [31:0] dump_lo, input [31:0] dump_hi);
  reg [WIDTH-1:0] mem [0:(1 << ABITS) - 1];
  integer wi, ci;
  assign rdata = mem[raddr];
  always @(posedge clk)
    for (wi = 0; wi < WIDTH / 8; wi = wi + 1)
      if (wbe[wi]) mem[waddr][wi * 8 +: 8] <= wdata[wi * 8 +: 8];
  always @(posedge load) begin
    if (clear)
      for (ci = 0; ci < (1 << ABITS); ci = ci + 1) mem[ci] = {WIDTH{1'b0}};
    $readmemh(LOAD_FILE, mem);
  end
  always @(posedge dump) $writememh(DUMP_FILE, mem, dump_lo, dump_hi);
endmodule
"""


def backdoor_signature() -> wiring.Signature:
    """The backdoor and model controls of an `AxiMem`, as the harness (their driver) sees them."""
    return wiring.Signature({"latency": Out(8), "stall": Out(4), "refresh_every": Out(16), "refresh_cycles": Out(8),
                             "refresh_phase": Out(16),
                             "load": Out(1), "clear": Out(1), "dump": Out(1),
                             "dump_lo": Out(32), "dump_hi": Out(32)})


class AxiMem(wiring.Component):
    """One AXI4 slave memory (see the module docstring): ports `axi` (slave), `ctl` (`backdoor_signature`),
    `error` (2 sticky bits)."""

    def __init__(self, data_bits: int, abits: int, file: str | None = None, seed: int = 1):
        self.data_bits, self.abits, self.file = data_bits, abits, file
        self.seed = (seed * 0x9E37 + 0x1234) & 0xFFFF or 1
        super().__init__({"axi": In(axi4_signature(data_bits)), "ctl": In(backdoor_signature()),
                          "error": Out(2)})

    def _storage(self, m, raddr, rdata, wbe, waddr, wdata):
        if self.file is None:
            m.submodules.mem = mem = Memory(shape=unsigned(self.data_bits), depth=1 << self.abits, init=[])
            rp = mem.read_port(domain="comb")
            wp = mem.write_port(granularity=8)
            m.d.comb += [rp.addr.eq(raddr), rdata.eq(rp.data), wp.addr.eq(waddr), wp.data.eq(wdata), wp.en.eq(wbe)]
            return
        ctl = self.ctl
        m.submodules.ram = Instance(
            RAM_MODULE, p_WIDTH=self.data_bits, p_ABITS=self.abits, p_LOAD_FILE=f"{self.file}.hex",
            p_DUMP_FILE=f"{self.file}.out", i_clk=ClockSignal(), i_raddr=raddr, o_rdata=rdata, i_wbe=wbe,
            i_waddr=waddr, i_wdata=wdata, i_load=ctl.load, i_clear=ctl.clear, i_dump=ctl.dump,
            i_dump_lo=ctl.dump_lo, i_dump_hi=ctl.dump_hi)

    def elaborate(self, platform):
        m = Module()
        a, ctl = self.axi, self.ctl
        nbytes = self.data_bits // 8
        shift = log2(nbytes)
        abits = self.abits
        word_bits = 64 - shift

        # ---- back-pressure: a 16-bit Fibonacci LFSR (taps 16, 14, 13, 11), one 4-bit slice per channel
        lfsr = Signal(16, init=self.seed)
        m.d.sync += lfsr.eq(Cat(lfsr[15] ^ lfsr[13] ^ lfsr[12] ^ lfsr[10], lfsr[:15]))
        rot = Cat(lfsr[7:], lfsr[:7])

        def stall(k):
            bits = Cat(lfsr, rot)[4 * k:4 * k + 4] if k < 8 else lfsr[:4]
            return bits < ctl.stall

        now = Signal(32)
        m.d.sync += now.eq(now + 1)
        # ---- refresh: no R data in the first refresh_cycles of every refresh_every cycles (offset by the phase)
        refreshing = Signal()
        m.d.comb += refreshing.eq((ctl.refresh_every != 0)
                                  & (((now + ctl.refresh_phase) % ctl.refresh_every) < ctl.refresh_cycles))
        err = Signal(2)
        m.d.comb += self.error.eq(err)

        # ---- read path: AR queue (word address, len, accept time), beats in order
        m.submodules.arq = arq = SyncFIFO(width=word_bits + 8 + 32, depth=OUTSTANDING)
        m.d.comb += [a.arready.eq(arq.w_rdy & ~stall(0)), arq.w_en.eq(a.arvalid & a.arready),
                     arq.w_data.eq(Cat(a.araddr[shift:], a.arlen, now))]
        with m.If(a.arvalid & a.arready & ((a.arburst != BURST_INCR) | (a.arsize != shift))):
            m.d.sync += err.eq(err | ERR_PROTOCOL)
        r_addr, r_len, r_t = arq.r_data[:word_bits], arq.r_data[word_bits:word_bits + 8], arq.r_data[word_bits + 8:]
        beat = Signal(8)
        raddr_full = Signal(word_bits)
        m.d.comb += raddr_full.eq(r_addr + beat)
        r_oob = raddr_full[abits:] != 0
        rdata = Signal(self.data_bits)
        r_hold, b_hold = Signal(), Signal()      # a VALID once raised stays up until its handshake (AXI rule)
        m.d.sync += [r_hold.eq(a.rvalid & ~a.rready), b_hold.eq(a.bvalid & ~a.bready)]
        m.d.comb += [a.rvalid.eq(arq.r_rdy & (now - r_t >= ctl.latency)
                                       & (r_hold | (~stall(1) & ~refreshing))),
                     a.rdata.eq(Mux(r_oob, 0, rdata)), a.rresp.eq(0), a.rlast.eq(beat == r_len), a.rid.eq(0)]
        with m.If(a.rvalid & a.rready):
            with m.If(r_oob):
                m.d.sync += err.eq(err | ERR_RANGE)
            with m.If(beat == r_len):
                m.d.comb += arq.r_en.eq(1)
                m.d.sync += beat.eq(0)
            with m.Else():
                m.d.sync += beat.eq(beat + 1)

        # ---- write path: AW queue, W beats for the oldest AW, one B per burst
        m.submodules.awq = awq = SyncFIFO(width=word_bits + 8, depth=OUTSTANDING)
        m.d.comb += [a.awready.eq(awq.w_rdy & ~stall(2)), awq.w_en.eq(a.awvalid & a.awready),
                     awq.w_data.eq(Cat(a.awaddr[shift:], a.awlen))]
        with m.If(a.awvalid & a.awready & ((a.awburst != BURST_INCR) | (a.awsize != shift))):
            m.d.sync += err.eq(err | ERR_PROTOCOL)
        w_addr, w_len = awq.r_data[:word_bits], awq.r_data[word_bits:]
        wbeat = Signal(8)
        waddr_full = Signal(word_bits)
        m.d.comb += waddr_full.eq(w_addr + wbeat)
        w_oob = waddr_full[abits:] != 0
        b_pending = Signal(range(2 * OUTSTANDING + 1))
        m.d.comb += a.wready.eq(awq.r_rdy & (b_pending < 2 * OUTSTANDING) & ~stall(3))
        w_hs = a.wvalid & a.wready
        wbe = Signal(nbytes)
        m.d.comb += wbe.eq(Mux(w_hs & ~w_oob, a.wstrb, 0))
        b_issue = Signal()
        b_take = Signal()
        with m.If(w_hs):
            with m.If(w_oob):
                m.d.sync += err.eq(err | ERR_RANGE)
            with m.If(a.wlast != (wbeat == w_len)):
                m.d.sync += err.eq(err | ERR_PROTOCOL)
            with m.If(wbeat == w_len):
                m.d.comb += [awq.r_en.eq(1), b_issue.eq(1)]
                m.d.sync += wbeat.eq(0)
            with m.Else():
                m.d.sync += wbeat.eq(wbeat + 1)
        m.d.comb += [a.bvalid.eq((b_pending != 0) & (b_hold | ~stall(4))), a.bresp.eq(0), a.bid.eq(0),
                     b_take.eq(a.bvalid & a.bready)]
        m.d.sync += b_pending.eq(b_pending + b_issue - b_take)

        self._storage(m, raddr_full[:abits], rdata, wbe, waddr_full[:abits], a.wdata)
        return m


__all__ = ["AxiMem", "ERR_PROTOCOL", "ERR_RANGE", "OUTSTANDING", "RAM_MODULE", "RAM_VERILOG", "backdoor_signature"]
