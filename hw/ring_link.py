"""The ring kernel's link layer: reliable, flow-controlled frames over one Aurora 64B/66B streaming channel.

Aurora in streaming mode (PG074, User Interface Ports) moves 256-bit words (4 lanes x 64 bit) at user_clk with
`s_axi_tx_tready` on TX and no back-pressure on RX (`m_axi_rx_tvalid` only). This layer adds what streaming
mode lacks, in the user_clk domain of each cage:

- **Framing.** A DATA frame is one header word and 1..M payload words. The header holds a magic number, the
  frame's sequence number (8 bits), its length, the per-word metadata of the width converter (how many core
  beats a word carries, and `last`), the CRC-32 of the payload words and a CRC-32 of the header itself.
- **Integrity and replay (go-back-N).** The receiver commits a frame to its buffer only when the header and
  payload CRCs match and the sequence number is the one it expects; anything else is discarded (CRC error,
  duplicate or a desynchronised word, each counted). The sender keeps every frame in a replay buffer until it
  is acknowledged and goes back to the oldest unacknowledged frame when no acknowledgement has advanced for
  `timeout` cycles (a lost or corrupted frame, or a lost acknowledgement).
- **Credit-based flow control.** The receiver's commit buffer holds `window` frames of M words. It returns, in
  ACK words on the reverse direction of the same cable, `next` (the next sequence number it expects: a
  cumulative acknowledgement) and `freed` (how many frames the core side has drained from it, mod 256). The
  sender transmits frame s only while s - freed < window, so a committed frame always has room: a stalled
  core stops the sender, and nothing is dropped for lack of space (an overflow is counted as a protocol error).
  ACK words are sent when `next` or `freed` changes and every `keepalive` cycles, so a lost ACK only delays.

The sender's frame closes at a word with `last` (a router message's end) or after M words. ACK words and
headers carry CRC-32 (polynomial 0x04C11DB7, init 0xFFFFFFFF, MSB first over the 256-bit word; `crc_step` is
the bit-serial reference, `crc_next` its one-cycle parallel form). Both endpoints are written in the `sync`
domain; the kernel renames it to the cage's user_clk domain.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

import functools

from amaranth import Array, C, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

LINK_BITS = 256                 # Aurora 64B/66B user interface, 4 lanes
CRC_POLY, CRC_INIT = 0x04C11DB7, 0xFFFFFFFF
SEQ_BITS = 8
MAGIC_DATA, MAGIC_ACK = 0xD5A7, 0xAC4E
# header word fields (bit offsets): magic 0..15, seq 16..23, len 24..27 (DATA) / freed 24..31 (ACK),
# payload CRC 32..63, header CRC 64..95 (computed with this field zero), per-word metadata from 96
F_MAGIC, F_SEQ, F_LEN, F_FREED, F_PCRC, F_HCRC, F_META = 0, 16, 24, 24, 32, 64, 96


def crc_step(crc: int, word: int, bits: int = LINK_BITS) -> int:
    """Bit-serial CRC-32 of one `bits`-bit word, most significant bit first (the reference of `crc_next`)."""
    for i in reversed(range(bits)):
        fb = ((crc >> 31) ^ (word >> i)) & 1
        crc = (crc << 1) & 0xFFFFFFFF
        if fb:
            crc ^= CRC_POLY
    return crc


@functools.cache
def _crc_taps(bits: int) -> tuple:
    """For each CRC output bit, the indices into Cat(crc, word) whose XOR it is (the CRC is linear)."""
    taps = [[] for _ in range(32)]
    for i in range(32 + bits):
        out = crc_step(1 << i, 0, bits) if i < 32 else crc_step(0, 1 << (i - 32), bits)
        for o in range(32):
            if out >> o & 1:
                taps[o].append(i)
    return tuple(tuple(t) for t in taps)


def crc_next(crc, word):
    """The CRC after one word, in one cycle: a fixed XOR network (`crc_step` unrolled)."""
    vec = Cat(crc, word)
    return Cat(*[Cat(*[vec[t] for t in taps]).xor() for taps in _crc_taps(len(word))])


def header_crc(word):
    """CRC-32 of a header / ACK word with its header-CRC field taken as zero."""
    return crc_next(C(CRC_INIT, 32), Cat(word[:F_HCRC], C(0, 32), word[F_HCRC + 32:]))


def header_crc_int(word: int) -> int:
    return crc_step(CRC_INIT, word & ~(0xFFFFFFFF << F_HCRC))


def word_layout(slot_bits: int) -> data.StructLayout:
    """A link word as the width converters make it: 256 data bits, `n` = core beats in it minus 1, `last`."""
    return data.StructLayout({"data": LINK_BITS, "n": slot_bits, "last": 1})


def _dist(a, b):
    """(a - b) mod 2**SEQ_BITS."""
    return (a - b)[:SEQ_BITS]


def _log2(x: int) -> int:
    if x < 1 or x & (x - 1):
        raise ValueError(f"must be a power of two, not {x!r}")
    return x.bit_length() - 1


class _Endpoint(wiring.Component):
    def __init__(self, slot_bits: int, frame_words: int, window: int, members: dict):
        for name, v, hi in (("frame_words", frame_words, 8), ("window", window, 64)):
            if not isinstance(v, int) or v < 1 or v > hi or v & (v - 1):
                self._MustUse__silence = True
                raise ValueError(f"{name} must be a power of two 1..{hi}, not {v!r}")
        self.slot_bits, self.M, self.F = slot_bits, frame_words, window
        self.meta_bits = slot_bits + 1
        if F_META + frame_words * self.meta_bits > LINK_BITS:
            raise ValueError(f"{frame_words} words x {self.meta_bits} metadata bits do not fit a header word")
        super().__init__(members)


class TxEndpoint(_Endpoint):
    """The sending end (cage 0): frames `words`, keeps them for replay, sends on `tx` (Aurora s_axi_tx), takes
    ACK words from `ack_data`/`ack_valid` (Aurora m_axi_rx of the same cage)."""

    def __init__(self, slot_bits: int, frame_words: int = 8, window: int = 16, timeout: int = 512):
        self.timeout = timeout
        super().__init__(slot_bits, frame_words, window, {
            "words": In(stream.Signature(word_layout(slot_bits))), "tx": Out(stream.Signature(LINK_BITS)),
            "ack_data": In(LINK_BITS), "ack_valid": In(1), "up": In(1),
            "frames": Out(32), "replays": Out(32), "ack_errors": Out(32)})

    def elaborate(self, platform):
        m = Module()
        M, F, MB = self.M, self.F, self.meta_bits
        LM, LF = _log2(M), _log2(F)
        m.submodules.rb = rb = Memory(shape=LINK_BITS, depth=M * F, init=[])    # the replay buffer
        wp, rp = rb.write_port(), rb.read_port(domain="comb")
        head, ack, send, freed = (Signal(SEQ_BITS, name=n) for n in ("head", "ack", "send", "freed"))
        lens = Array(Signal(range(M + 1), name=f"len{i}") for i in range(F))
        crcs = Array(Signal(32, name=f"crc{i}") for i in range(F))
        metas = Array(Signal(M * MB, name=f"meta{i}") for i in range(F))

        # ---- build frames into the replay buffer (slot = seq mod window, M words each)
        widx = Signal(range(M))
        bcrc = Signal(32, init=CRC_INIT)
        bmeta = Signal(M * MB)
        slot_b = head[:LF]
        w = self.words.payload
        can_build = _dist(head, ack) < F
        m.d.comb += self.words.ready.eq(can_build)
        with m.If(self.words.valid & can_build):
            m.d.comb += [wp.en.eq(1), wp.addr.eq(Cat(widx[:LM], slot_b) if LM else slot_b), wp.data.eq(w.data)]
            meta = Signal(M * MB)
            m.d.comb += meta.eq(Cat(*[Mux(widx == j, Cat(w.n, w.last), bmeta[j * MB:(j + 1) * MB])
                                      for j in range(M)]))
            ncrc = crc_next(bcrc, w.data)
            with m.If(w.last | (widx == M - 1)):
                m.d.sync += [lens[slot_b].eq(widx + 1), crcs[slot_b].eq(ncrc), metas[slot_b].eq(meta),
                             head.eq(head + 1), widx.eq(0), bcrc.eq(CRC_INIT), bmeta.eq(0)]
            with m.Else():
                m.d.sync += [widx.eq(widx + 1), bcrc.eq(ncrc), bmeta.eq(meta)]

        # ---- acknowledgements and credits
        aw = self.ack_data
        a_ok = (aw[F_MAGIC:F_MAGIC + 16] == MAGIC_ACK) & (aw[F_HCRC:F_HCRC + 32] == header_crc(aw))
        a_next, a_freed = aw[F_SEQ:F_SEQ + SEQ_BITS], aw[F_FREED:F_FREED + SEQ_BITS]
        progress = Signal()
        with m.If(self.ack_valid & ~a_ok):
            m.d.sync += self.ack_errors.eq(self.ack_errors + 1)
        with m.If(self.ack_valid & a_ok):
            m.d.sync += freed.eq(a_freed)
            with m.If((a_next != ack) & (_dist(a_next, ack) <= _dist(head, ack))):
                m.d.sync += ack.eq(a_next)
                m.d.comb += progress.eq(1)

        # ---- go-back-N timer: no acknowledgement progress for `timeout` cycles with frames outstanding
        timer = Signal(range(self.timeout + 1))
        go_back = Signal()
        with m.If(progress | (send == ack)):
            m.d.sync += timer.eq(0)
        with m.Elif(timer == self.timeout):
            m.d.sync += [timer.eq(0), go_back.eq(1)]
        with m.Else():
            m.d.sync += timer.eq(timer + 1)

        # ---- transmit: header, then the frame's words from the replay buffer
        slot_t = Signal(LF)
        idx = Signal(range(M))
        tlen = Signal(range(M + 1))
        hword = Signal(LINK_BITS)
        s = send[:LF]
        hdr = Signal(LINK_BITS)
        m.d.comb += hdr.eq(Cat(C(MAGIC_DATA, 16), send, lens[s][:4], C(0, 4), crcs[s], C(0, 32), metas[s]))
        with m.FSM():
            with m.State("IDLE"):
                with m.If(go_back | _dist(send, ack)[-1]):            # a timeout, or `send` fell behind `ack`
                    m.d.sync += [send.eq(ack), go_back.eq(0)]
                    with m.If(go_back):
                        m.d.sync += self.replays.eq(self.replays + 1)
                with m.Elif((send != head) & (_dist(send, freed) < F) & self.up):
                    m.d.sync += [slot_t.eq(s), tlen.eq(lens[s]), idx.eq(0),
                                 hword.eq(Cat(hdr[:F_HCRC], header_crc(hdr), hdr[F_HCRC + 32:]))]
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(hword)]
                with m.If(self.tx.ready):
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += [rp.addr.eq(Cat(idx[:LM], slot_t) if LM else slot_t),
                             self.tx.valid.eq(1), self.tx.payload.eq(rp.data)]
                with m.If(self.tx.ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx + 1 == tlen):
                        m.d.sync += [send.eq(send + 1), self.frames.eq(self.frames + 1)]
                        m.next = "IDLE"
        return m


class RxEndpoint(_Endpoint):
    """The receiving end (cage 1): checks DATA frames from `rx_data`/`rx_valid` (Aurora m_axi_rx), commits good
    in-order frames to its buffer, emits their words on `words`, and sends ACK words on `tx` (Aurora s_axi_tx
    of the same cage)."""

    def __init__(self, slot_bits: int, frame_words: int = 8, window: int = 16, keepalive: int = 32):
        self.keepalive = keepalive
        super().__init__(slot_bits, frame_words, window, {
            "rx_data": In(LINK_BITS), "rx_valid": In(1), "words": Out(stream.Signature(word_layout(slot_bits))),
            "tx": Out(stream.Signature(LINK_BITS)), "up": In(1),
            "frames": Out(32), "crc_errors": Out(32), "overflows": Out(32), "desyncs": Out(32),
            "duplicates": Out(32)})

    def elaborate(self, platform):
        m = Module()
        M, F, MB, NB = self.M, self.F, self.meta_bits, self.slot_bits
        PB = _log2(M * F)
        m.submodules.cb = cb = Memory(shape=LINK_BITS + MB + 1, depth=M * F, init=[])   # the commit buffer
        wp, rp = cb.write_port(), cb.read_port(domain="comb")
        wr, wc, rd = (Signal(PB + 1, name=n) for n in ("wr", "wc", "rd"))   # speculative, committed, read
        nxt, freed = Signal(SEQ_BITS), Signal(SEQ_BITS)

        # ---- receive frames
        w = self.rx_data
        h_len = w[F_LEN:F_LEN + 4]
        h_ok = ((w[F_MAGIC:F_MAGIC + 16] == MAGIC_DATA) & (w[F_HCRC:F_HCRC + 32] == header_crc(w))
                & (h_len != 0) & (h_len <= M))
        seq, flen, pcrc = Signal(SEQ_BITS), Signal(range(M + 1)), Signal(32)
        meta = Signal(M * MB)
        acc = Signal()                  # this frame is the expected one and fits: its words are written
        i = Signal(range(M))
        crc = Signal(32)
        used = (wr - rd)[:PB + 1]
        with m.FSM():
            with m.State("HUNT"):
                with m.If(self.rx_valid):
                    with m.If(h_ok):
                        fits = M * F - used >= h_len
                        m.d.sync += [seq.eq(w[F_SEQ:F_SEQ + SEQ_BITS]), flen.eq(h_len), i.eq(0),
                                     pcrc.eq(w[F_PCRC:F_PCRC + 32]), meta.eq(w[F_META:F_META + M * MB]),
                                     crc.eq(CRC_INIT), acc.eq((w[F_SEQ:F_SEQ + SEQ_BITS] == nxt) & fits)]
                        with m.If((w[F_SEQ:F_SEQ + SEQ_BITS] == nxt) & ~fits):
                            m.d.sync += self.overflows.eq(self.overflows + 1)
                        m.next = "DATA"
                    with m.Else():
                        m.d.sync += self.desyncs.eq(self.desyncs + 1)
            with m.State("DATA"):
                with m.If(self.rx_valid):
                    ncrc = crc_next(crc, w)
                    end = i + 1 == flen
                    with m.If(acc):
                        m.d.comb += [wp.en.eq(1), wp.addr.eq(wr[:PB]),
                                     wp.data.eq(Cat(w, meta.word_select(i, MB), end))]
                        m.d.sync += wr.eq(wr + 1)
                    m.d.sync += [i.eq(i + 1), crc.eq(ncrc)]
                    with m.If(end):
                        m.next = "HUNT"
                        with m.If(acc & (ncrc == pcrc)):
                            m.d.sync += [wc.eq(wr + 1), nxt.eq(nxt + 1), self.frames.eq(self.frames + 1)]
                        with m.Elif(acc):
                            m.d.sync += [wr.eq(wc), self.crc_errors.eq(self.crc_errors + 1)]
                        with m.Else():
                            m.d.sync += self.duplicates.eq(self.duplicates + 1)

        # ---- committed words out; a frame's last word read frees one credit
        m.d.comb += [rp.addr.eq(rd[:PB]), self.words.valid.eq(rd != wc),
                     self.words.payload.data.eq(rp.data[:LINK_BITS]),
                     self.words.payload.n.eq(rp.data[LINK_BITS:LINK_BITS + NB]),
                     self.words.payload.last.eq(rp.data[LINK_BITS + NB])]
        with m.If(self.words.valid & self.words.ready):
            m.d.sync += rd.eq(rd + 1)
            with m.If(rp.data[-1]):
                m.d.sync += freed.eq(freed + 1)

        # ---- ACK words: on a change of (next, freed), and every `keepalive` cycles
        sent_next, sent_freed = Signal(SEQ_BITS), Signal(SEQ_BITS)
        keep = Signal(range(self.keepalive))
        busy = Signal()
        aword = Signal(LINK_BITS)
        body = Cat(C(MAGIC_ACK, 16), nxt, freed, C(0, 32))
        m.d.sync += keep.eq(keep + 1)
        with m.If(keep == self.keepalive - 1):
            m.d.sync += keep.eq(0)
        with m.If(~busy & self.up & ((nxt != sent_next) | (freed != sent_freed) | (keep == 0))):
            full = Cat(body, C(0, LINK_BITS - len(body)))
            m.d.sync += [busy.eq(1), aword.eq(Cat(full[:F_HCRC], header_crc(full), full[F_HCRC + 32:])),
                         sent_next.eq(nxt), sent_freed.eq(freed)]
        m.d.comb += [self.tx.valid.eq(busy), self.tx.payload.eq(aword)]
        with m.If(busy & self.tx.ready):
            m.d.sync += busy.eq(0)
        return m
