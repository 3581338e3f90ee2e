"""Interleaved column blocks for the MPU's pipelined accumulator: the weight streamer's chunk walk and reorder
buffer (docs/rtl.md, "Design note: the core on the pipelined accumulator").

An MPU with `acc_stages` = A > 0 runs one tile per cycle only when I >= A + 2 output blocks are interleaved group
by group (`hw.mpu.beat_order(kt, nt, I)`). The weights stay where `dfx.program.tile_matrix` puts them; the
matrix engine reads them in **chunks**: chunk (j0, i0) is the tiles (j0 + u, i0 + b) for u < Ic = min(I, nt - j0)
and b < Bc = min(B, kt - i0), fetched block by block (u outer: block j0 + u's rows i0 .. i0 + Bc - 1 are
consecutive beats of a column-major matrix, one INCR burst, split only at 4 KiB) and handed to the MPU row by
row (b outer, u inner), which is `beat_order`. Chunks go row range by row range (i0 = 0, B, 2B, ...) through a
group of I blocks, then the next group (j0 += I).

`Reorder` holds three chunks (3 x I x B tiles, `BUFFERS`): a chunk is read once it is complete (its first tile
in MPU order, (i0, j0 + Ic - 1), is one of its last to arrive), and the fetch fills the next ones meanwhile. With
two buffers a small chunk (the last rows of a column, kt mod B) followed by a full one leaves the MPU idle for the
difference (28% more cycles for GPT-2 1.5B's 1600 x 6400 at the dfx preset); with three the fetch runs a chunk
further ahead and the MPU waits only where two consecutive chunks together are smaller than the first one.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .dma import log2

ROB_BURST = 16          # B: rows of a block per chunk (one INCR burst of B beats per channel and block)
BUFFERS = 3             # chunks the reorder buffer holds


def interleave(acc_stages: int, acc_fifo: int) -> int:
    """I: the column blocks the matrix engine interleaves for an MPU with these accumulator parameters (1: the
    single-cycle accumulator, column-major order)."""
    return 1 if acc_stages == 0 else min(acc_stages + 2, acc_fifo)


def chunks(kt: int, nt: int, i: int, b: int = ROB_BURST) -> list[tuple[int, int, int, int]]:
    """(j0, i0, Ic, Bc) of every chunk of a kt x nt matrix, in fetch order."""
    return [(j0, i0, min(i, nt - j0), min(b, kt - i0)) for j0 in range(0, nt, i) for i0 in range(0, kt, b)]


class ChunkWalk:
    """Registers walking the chunks of one instruction: `rows` = kt - i0, `blks` = nt - j0; `bc`, `ic` the current
    chunk's size; `last` (the final chunk). `start(m)` and `advance(m)` (sync statements) move it. The comparisons
    the walk decides on (rows > b, blks > i) are registers kept beside rows and blks, each with the next one's
    (rows > 2b, blks > 2i), and so are the next chunk's single-row / single-block tests (rows == b + 1, blks ==
    i + 1), so the decisions are one LUT deep (the 300 MHz depth). What the walk takes from `kt`
    and `nt` (the first chunk's size, the first comparisons) are registers made from them every cycle in `m`, so
    `kt` and `nt` must hold from a cycle before `start`."""

    def __init__(self, m: Module, name: str, kt, nt, i: int, b: int):
        self.kt, self.nt, self.i, self.b = kt, nt, i, b
        # from kt and nt, a cycle late: (rows > b, rows > 2b) and (bc, bc == 1) of a row walk's first chunk; the
        # same of the blocks
        self.kt_gt, self.kt_gt2, self.kt_one = (Signal(name=f"{name}_kt_{s}") for s in ("gt", "gt2", "one"))
        self.nt_gt, self.nt_gt2, self.nt_one = (Signal(name=f"{name}_nt_{s}") for s in ("gt", "gt2", "one"))
        # (kt == b + 1) and (nt == i + 1), a cycle late: whether the chunk after the first is a single row / block
        self.kt_b1, self.nt_i1 = Signal(name=f"{name}_kt_b1"), Signal(name=f"{name}_nt_i1")
        self.kt_bc, self.nt_ic = Signal(range(b + 1), name=f"{name}_kt_bc"), Signal(range(i + 1), name=f"{name}_nt_ic")
        m.d.sync += [self.kt_gt.eq(kt > b), self.kt_gt2.eq(kt > 2 * b), self.kt_one.eq(Mux(kt > b, b == 1, kt == 1)),
                     self.kt_bc.eq(Mux(kt > b, b, kt)),
                     self.nt_gt.eq(nt > i), self.nt_gt2.eq(nt > 2 * i), self.nt_one.eq(Mux(nt > i, i == 1, nt == 1)),
                     self.nt_ic.eq(Mux(nt > i, i, nt)), self.kt_b1.eq(kt == b + 1), self.nt_i1.eq(nt == i + 1)]
        self.rows = Signal(30, name=f"{name}_rows")
        self.blks = Signal(30, name=f"{name}_blks")
        self.more_rows, self.more_rows2 = Signal(name=f"{name}_more_rows"), Signal(name=f"{name}_more_rows2")
        self.more_blks, self.more_blks2 = Signal(name=f"{name}_more_blks"), Signal(name=f"{name}_more_blks2")
        # rows == b + 1 and blks == i + 1 as registers beside rows and blks (the next chunk is a single row / block)
        self.rows_b1, self.blks_i1 = Signal(name=f"{name}_rows_b1"), Signal(name=f"{name}_blks_i1")
        self.bc = Mux(self.more_rows, b, self.rows)
        self.ic = Mux(self.more_blks, i, self.blks)
        self.last = ~self.more_rows & ~self.more_blks

    def _rows_from_kt(self, m: Module):
        m.d.sync += [self.rows.eq(self.kt), self.more_rows.eq(self.kt_gt), self.more_rows2.eq(self.kt_gt2),
                     self.rows_b1.eq(self.kt_b1)]

    # (size, size == 1) of the current and the next chunk (valid until `advance`); the tests against 1 compare
    # registers with constants, so they are no deeper than a LUT or two (the 300 MHz depth)
    def bc_now(self):
        return self.bc, Mux(self.more_rows, self.b == 1, self.rows == 1)

    def ic_now(self):
        return self.ic, Mux(self.more_blks, self.i == 1, self.blks == 1)

    def bc_next(self):
        b = self.b
        return (Mux(self.more_rows, Mux(self.more_rows2, b, self.rows - b), self.kt_bc),
                Mux(self.more_rows, Mux(self.more_rows2, b == 1, self.rows_b1), self.kt_one))

    def ic_next(self):
        i = self.i
        return (Mux(self.more_rows, self.ic, Mux(self.more_blks2, i, self.blks - i)),
                Mux(self.more_rows, self.ic_now()[1], Mux(self.more_blks2, i == 1, self.blks_i1)))

    def first(self):
        """(bc, bc == 1), (ic, ic == 1) of the first chunk, from the instruction's kt and nt."""
        return (self.kt_bc, self.kt_one), (self.nt_ic, self.nt_one)

    def start(self, m: Module):
        self._rows_from_kt(m)
        m.d.sync += [self.blks.eq(self.nt), self.more_blks.eq(self.nt_gt), self.more_blks2.eq(self.nt_gt2),
                     self.blks_i1.eq(self.nt_i1)]

    def advance(self, m: Module):
        b, i = self.b, self.i
        with m.If(self.more_rows):
            m.d.sync += [self.rows.eq(self.rows - b), self.more_rows.eq(self.more_rows2),
                         self.more_rows2.eq(self.rows > 3 * b), self.rows_b1.eq(self.rows == 2 * b + 1)]
        with m.Else():
            self._rows_from_kt(m)
            m.d.sync += [self.blks.eq(Mux(self.more_blks, self.blks - i, 0)), self.more_blks.eq(self.more_blks2),
                         self.more_blks2.eq(self.blks > 3 * i), self.blks_i1.eq(self.more_blks & (self.blks == 2 * i + 1))]


class Reorder(wiring.Component):
    """Tiles in chunk fetch order on `i` (block by block) out on `o` in MPU order (row by row). `start` (one
    cycle, with `kt` and `nt` valid from the cycle before it until the instruction ends) empties it for a new
    instruction.

    `lag` = N > 0 puts N plain registers (no multiplexer, no `ready`: an SLR crossing) between the write walk,
    which takes `i` beside the channel FIFOs, and the memory, which lies with the MPU's lanes: each beat goes
    to memory with its address and its chunk's completion, N cycles on, and the read side's release of a
    chunk comes back through N registers. The write walk keeps its own copy of which chunks are full: set when
    it writes a chunk's last beat, cleared when the release arrives, so it never hands the memory a beat for a
    chunk still being read (credits, one per chunk buffer). A beat reaches `o` N cycles later than with N = 0,
    and a freed buffer takes N more cycles to reach the write walk (`stream_cycles`' `lag`)."""

    def __init__(self, width: int, i: int, b: int = ROB_BURST, lag: int = 0):
        assert b & (b - 1) == 0 and i >= 1, (i, b)
        assert isinstance(lag, int) and lag >= 0, lag
        self.width, self.I, self.B, self.lag = width, i, b, lag
        self.depth = BUFFERS * i * b
        super().__init__({
            "start": In(1), "kt": In(30), "nt": In(30),
            "i": In(stream.Signature(width)),
            "o": Out(stream.Signature(width)),
        })

    def elaborate(self, platform):
        m = Module()
        I, B = self.I, self.B
        m.submodules.mem = mem = Memory(shape=self.width, depth=self.depth, init=[])
        wr, rd = mem.write_port(), mem.read_port()
        half = I * B
        full = Signal(BUFFERS)                  # the read side's: chunks written and not yet read
        full_w = Signal(BUFFERS) if self.lag else full     # the write walk's copy (with lag: set sooner, freed later)

        def base(h):
            return Mux(h == 2, 2 * half, Mux(h == 1, half, 0))

        def nxt(h):
            return Mux(h == BUFFERS - 1, 0, h + 1)
        ww, rw = ChunkWalk(m, "robw", self.kt, self.nt, I, B), ChunkWalk(m, "robr", self.kt, self.nt, I, B)

        # The walks' "last row / last block" tests are registers (`*_z`) beside down-counters of what is left
        # (`*_n`), so a beat's move decides from one LUT (the 300 MHz depth); the counters reload from the
        # current or the next chunk's size.
        def counter(name, n):
            return Signal(range(max(n, 2)), name=f"{name}_n"), Signal(name=f"{name}_z")

        def load(cnt, size):
            (n, z), (v, one) = cnt, size
            return [n.eq(v - 1), z.eq(one)]

        def step(cnt):
            n, z = cnt
            return [n.eq(n - 1), z.eq(n == 1)]

        # ---- write side: block u of the chunk, row b
        wu, wb, wh = Signal(range(max(I, 2))), Signal(range(max(B, 2))), Signal(range(BUFFERS))
        wu_c, wb_c = counter("wu", I), counter("wb", B)
        set_h = Signal(BUFFERS)
        w_addr = Signal(range(self.depth))
        m.d.comb += [self.i.ready.eq(~full_w.bit_select(wh, 1)), w_addr.eq(base(wh) + (wu << log2(B)) + wb)]
        # to the memory: directly, or through `lag` registers (address, data, write enable, chunk completion)
        fwd = [(w_addr, self.i.payload, self.i.valid & self.i.ready, set_h)]
        for k in range(self.lag):
            fwd.append((Signal.like(w_addr, name=f"lag{k}_addr"), Signal(self.width, name=f"lag{k}_data"),
                        Signal(name=f"lag{k}_en"), Signal(BUFFERS, name=f"lag{k}_set")))
            m.d.sync += [dst.eq(src) for dst, src in zip(fwd[-1], fwd[-2])]
        mem_addr, mem_data, mem_en, mem_set = fwd[-1]
        m.d.comb += [wr.addr.eq(mem_addr), wr.data.eq(mem_data), wr.en.eq(mem_en)]
        with m.If(self.i.valid & self.i.ready):
            with m.If(wb_c[1]):
                m.d.sync += wb.eq(0)
                with m.If(wu_c[1]):
                    m.d.sync += [wu.eq(0), wh.eq(nxt(wh)), *load(wu_c, ww.ic_next()), *load(wb_c, ww.bc_next())]
                    m.d.comb += set_h.bit_select(wh, 1).eq(1)
                    ww.advance(m)
                with m.Else():
                    m.d.sync += [wu.eq(wu + 1), *step(wu_c), *load(wb_c, ww.bc_now())]
            with m.Else():
                m.d.sync += [wb.eq(wb + 1), *step(wb_c)]

        # ---- read side: row b of the chunk, block u; a registered read (the port holds its data while not read)
        ru, rb, rh = Signal(range(max(I, 2))), Signal(range(max(B, 2))), Signal(range(BUFFERS))
        ru_c, rb_c = counter("ru", I), counter("rb", B)
        clr_h = Signal(BUFFERS)
        ov = Signal()
        issue = Signal()
        m.d.comb += [issue.eq(full.bit_select(rh, 1) & (~ov | self.o.ready)),
                     rd.en.eq(issue), rd.addr.eq(base(rh) + (ru << log2(B)) + rb),
                     self.o.valid.eq(ov), self.o.payload.eq(rd.data)]
        with m.If(issue):
            m.d.sync += ov.eq(1)
            with m.If(ru_c[1]):
                m.d.sync += ru.eq(0)
                with m.If(rb_c[1]):
                    m.d.sync += [rb.eq(0), rh.eq(nxt(rh)), *load(rb_c, rw.bc_next()), *load(ru_c, rw.ic_next())]
                    m.d.comb += clr_h.bit_select(rh, 1).eq(1)
                    rw.advance(m)
                with m.Else():
                    m.d.sync += [rb.eq(rb + 1), *step(rb_c), *load(ru_c, rw.ic_now())]
            with m.Else():
                m.d.sync += [ru.eq(ru + 1), *step(ru_c)]
        with m.Elif(self.o.ready):
            m.d.sync += ov.eq(0)
        m.d.sync += full.eq((full | mem_set) & ~clr_h)
        if self.lag:                              # the release back to the write walk through `lag` registers
            back = [clr_h] + [Signal(BUFFERS, name=f"lag{k}_clr") for k in range(self.lag)]
            m.d.sync += [dst.eq(src) for dst, src in zip(back[1:], back[:-1])]
            m.d.sync += full_w.eq((full_w | set_h) & ~back[-1])

        with m.If(self.start):
            m.d.sync += [full.eq(0), wu.eq(0), wb.eq(0), wh.eq(0), ru.eq(0), rb.eq(0), rh.eq(0), ov.eq(0)]
            if self.lag:                          # (nothing in flight between instructions; cleared all the same)
                m.d.sync += [full_w.eq(0), *[f[2].eq(0) for f in fwd[1:]], *[f[3].eq(0) for f in fwd[1:]],
                             *[b.eq(0) for b in back[1:]]]
            ww.start(m)
            rw.start(m)
            bc0, ic0 = ww.first()
            m.d.sync += [*load(wb_c, bc0), *load(wu_c, ic0), *load(rb_c, bc0), *load(ru_c, ic0)]
        return m


def tile_cycles(kt: int, nt: int, acc_stages: int, acc_fifo: int, quantized: bool = False, lag: int = 0) -> int:
    """The matrix engine's cycles for a kt x nt instruction's tiles into an MPU with these accumulator parameters
    when the weights arrive a tile per cycle (read by the performance model): kt*nt at the single-cycle
    accumulator; on the pipelined one the reorder buffer's first chunk, then a tile per cycle while at least
    acc_stages + 2 blocks are interleaved (`stream_cycles`); quantized tiles come column-major, one block at a
    time. `lag`: the reorder buffer's (`Reorder`)."""
    if not acc_stages:
        return kt * nt
    return stream_cycles(kt, nt, interleave(acc_stages, acc_fifo), acc_stages + 2, rob=not quantized, lag=lag)


def stream_cycles(kt: int, nt: int, i: int, acc_latency: int, b: int = ROB_BURST, rob: bool = True,
                  lag: int = 0) -> int:
    """Cycles from the first weight beat at the reorder buffer to the last tile into the MPU, for tiles arriving
    one per cycle: the fetch fills up to `BUFFERS` chunks ahead of the MPU; a chunk is read from the cycle after
    its last beat is written, its first tile one cycle later; a block's next group enters the MPU `acc_latency`
    (acc_stages + 2) cycles after its previous one at the earliest. `rob` False: no buffer (column-major tiles
    straight to the MPU). `lag`: the reorder buffer's registers (`Reorder`): a beat reaches the memory `lag` cycles
    after the fetch hands it over, and a freed buffer reaches the fetch `lag` cycles after its last read."""
    if not rob:                                   # quantized tiles / the single-cycle accumulator: column-major
        per = max(1, acc_latency)
        return nt * ((kt - 1) * per + 1)
    r_end = [0] * BUFFERS                         # per buffer: the cycle its chunk's reads end
    w_t, r_t = 0, -1
    last_row: dict[int, int] = {}                 # block -> cycle of its latest group
    for c, (j0, i0, ic, bc) in enumerate(chunks(kt, nt, i, b)):
        h = c % BUFFERS
        w_t = max(w_t, r_end[h] + lag) + ic * bc     # the buffer is free once read; one beat per cycle
        t = max(w_t + lag, r_t)
        for row in range(i0, i0 + bc):
            for j in range(j0, j0 + ic):
                t = max(t + 1, last_row.get(j, -acc_latency) + acc_latency)
                last_row[j] = t
        r_t = r_end[h] = t
    return r_t
