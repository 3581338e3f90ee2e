"""The HBM access model (dfx.perf.hbm): hand-computed channel rates from the board's constants (single beat,
long bursts, strided, refresh), monotonicity (more reads in flight or longer bursts are never slower), and the
access patterns read from hw/."""
from pathlib import Path

import pytest
from perf_programs import SMALL, shapes

from dfx.config import load_config
from dfx.errors import PerfError
from dfx.hw import dma as hw_dma
from dfx.perf import PerfModel, load_board
from dfx.perf import hbm
from dfx.perf.hbm import Access, HbmSpec, channel_rate

PORT, MHZ = 64, 200.0          # DFX's core port: 512 bit at 200 MHz = 12.8 GB/s per channel


@pytest.fixture
def spec(board):
    return HbmSpec.from_board(board)


def test_constants_are_the_published_ones(spec):
    assert (spec.hit_ns, spec.miss_ns) == (106.7, 137.8)                  # Shuhai, 48 / 62 cycles at 450 MHz
    assert (spec.refresh_ns, spec.refresh_cycle_ns, spec.row_cycle_ns) == (3900, 260, 48)     # JESD235
    assert (spec.page_bytes, spec.banks) == (1024, 16)                    # PG276, 4H stack
    assert spec.refresh_bound == pytest.approx(1 - 260 / 3900)
    # Shuhai's measured 425 / 460.8 is below refresh's bound, by 1.2 points: the sequential figure is the measured one
    assert spec.sequential_efficiency == 0.922 and spec.refresh_bound - 0.922 < 0.012


def test_single_beat_one_outstanding(spec):
    """One 64-byte read at a time: Little's law, latency = page hit (+ a row change every 16 beats) + the
    converters (8 cycles at 200 MHz) + the beat."""
    r = channel_rate(spec, Access(64, 1), PORT, MHZ)
    first = 106.7 + (137.8 - 106.7) * 64 / 1024 + 8 * 5.0
    assert r.first_ns == pytest.approx(first) and r.latency_ns == pytest.approx(first + 5.0)
    assert r.limit == "outstanding" and r.gbps == pytest.approx(64 / (first + 5.0))
    r16 = channel_rate(spec, Access(64, 16), PORT, MHZ)
    assert r16.gbps == pytest.approx(16 * 64 / (first + 5.0)) and r16.efficiency == pytest.approx(r16.gbps / 12.8)


def test_long_bursts(spec):
    """4 KiB bursts, reads not limited: DFX's 512-bit port at 200 MHz is the limit (12.8 GB/s, below the HBM's
    14.375 x 0.922); a 1024-bit port is limited by the HBM."""
    r = channel_rate(spec, Access(4096), PORT, MHZ)
    assert (r.gbps, r.limit, r.efficiency) == (pytest.approx(12.8), "port", pytest.approx(1.0))
    wide = channel_rate(spec, Access(4096), 128, MHZ)
    assert wide.limit == "hbm" and wide.gbps == pytest.approx(14.375 * 0.922)
    one = channel_rate(spec, Access(4096, 1), PORT, MHZ)                  # one burst at a time: latency shows
    assert one.gbps == pytest.approx(4096 / (137.8 + 40 + 320)) and one.limit == "outstanding"


def test_strided(spec):
    """64-byte reads 4 KiB apart: every read opens a row (4 pages apart); rows open in parallel over the banks
    in flight, tRC = 48 ns each."""
    r = channel_rate(spec, Access(64, None, 4096), PORT, MHZ)
    assert r.limit == "rows" and r.gbps == pytest.approx(64 / (4 * 48 / 16))
    assert r.first_ns == pytest.approx(137.8 + 40)                        # every read a page miss
    r4 = channel_rate(spec, Access(64, 4, 4096), PORT, MHZ)
    assert r4.limit == "rows" and r4.gbps == pytest.approx(64 / (4 * 48 / 4))
    near = channel_rate(spec, Access(64, None, 256), PORT, MHZ)           # within a page: sequential-like
    assert near.limit == "port"


def test_refresh(board):
    """With the measured efficiency lifted to 1, refresh's bound 1 - tRFC/tREFI is what the HBM side gives."""
    s = HbmSpec.from_board(load_board(board, {"hbm.efficiency": 1.0}))
    r = channel_rate(s, Access(4096), 128, MHZ)
    assert r.limit == "hbm" and r.gbps == pytest.approx(14.375 * (1 - 260 / 3900))
    slow = HbmSpec.from_board(load_board(board, {"hbm.efficiency": 1.0, "hbm.refresh_interval_ns": 1950}))
    assert channel_rate(slow, Access(4096), 128, MHZ).gbps == pytest.approx(14.375 * (1 - 260 / 1950))


@pytest.mark.parametrize("port", [16, 64, 128])
def test_monotone(spec, port):
    """More reads in flight, or longer bursts, are never slower; a longer stride never faster."""
    for burst in (32, 64, 256, 1024, 4096):
        rates = [channel_rate(spec, Access(burst, o), port, MHZ).gbps for o in (1, 2, 3, 4, 8, 16, 64, None)]
        assert rates == sorted(rates), (burst, rates)
    for o in (1, 2, 8, 32, None):
        rates = [channel_rate(spec, Access(b, o), port, MHZ).gbps for b in (32, 64, 128, 512, 2048, 4096)]
        assert rates == sorted(rates), (o, rates)
        strided = [channel_rate(spec, Access(64, o, s), port, MHZ).gbps for s in (64, 128, 512, 1024, 2048, 8192)]
        assert strided == sorted(strided, reverse=True), (o, strided)


def test_lockstep_refresh(spec):
    """A tile takes one beat from all 32 channels. With aligned refresh phases refresh costs only its own share
    (inside the measured efficiency); with staggered phases a channel's refresh stalls the whole stream unless
    the channels can run ahead by more than tRFC's worth of beats (260 ns / 5 ns = 52 beats)."""
    free = Access(4096, None, None, "", "staggered", None)
    assert channel_rate(spec, free, PORT, MHZ).gbps == pytest.approx(12.8)          # unlimited buffers absorb it
    rates = [channel_rate(spec, Access(4096, None, None, "", "staggered", f), PORT, MHZ) for f in (8, 16, 32, 64, 128)]
    assert [r.gbps for r in rates] == sorted(r.gbps for r in rates)
    assert rates[1].limit == "refresh (lockstep)" and rates[1].gbps < 0.5 * 12.8 < rates[3].gbps
    aligned = channel_rate(spec, Access(4096, None, None, "", "aligned", 16), PORT, MHZ)
    assert aligned.gbps == pytest.approx(12.8) and aligned.limit == "port"
    for o in (4, 16):                                                # never faster than the aligned case
        st = channel_rate(spec, Access(64, o, None, "", "staggered", o), PORT, MHZ).gbps
        assert st <= channel_rate(spec, Access(64, o), PORT, MHZ).gbps


def test_access_checks():
    for kw, msg in ((dict(burst_bytes=0), "burst_bytes"), (dict(burst_bytes=64, outstanding=0), "outstanding"),
                    (dict(burst_bytes=64, stride_bytes=-1), "stride_bytes"),
                    (dict(burst_bytes=64, refresh="late"), "refresh must be one of aligned, staggered"),
                    (dict(burst_bytes=64, buffer_beats=0), "buffer_beats")):
        with pytest.raises(PerfError, match=msg):
            Access(**kw)


def test_access_patterns_from_hw():
    """The RTL's patterns come from hw/: the weight streamer's 4 KiB bursts, and the DMA's bursts of hw/dma.py's
    AXI_BURST_BEATS with AXI_MAX_OUTSTANDING_READS in flight, which Little's law sizes for the U280 HBM's latency
    at 200 MHz (the DMA then runs at its port's rate: one beat per cycle)."""
    cfg = load_config("dfx")
    w, d = hbm.rtl_weight_access(cfg), hbm.rtl_dma_access(cfg)
    assert w.burst_bytes == 4096 and w.outstanding is None
    assert d.burst_bytes == hw_dma.AXI_BURST_BEATS * cfg.channel_beat_bytes > cfg.channel_beat_bytes
    assert d.outstanding == hw_dma.AXI_MAX_OUTSTANDING_READS
    assert hw_dma.DMA_PIECES_IN_FLIGHT >= hw_dma.AXI_BURST_BEATS * hw_dma.AXI_MAX_OUTSTANDING_READS
    assert 4096 % (hw_dma.AXI_BURST_BEATS * cfg.channel_beat_bytes) == 0      # bursts tile a 4 KiB page
    spec = HbmSpec.from_board(load_board())
    r = channel_rate(spec, d, cfg.channel_beat_bytes, cfg.clock_mhz)
    cycles = r.latency_ns * cfg.clock_mhz / 1e3                               # Little's law, in beats
    assert hw_dma.AXI_BURST_BEATS * hw_dma.AXI_MAX_OUTSTANDING_READS >= cycles and r.limit == "port", r
    assert w.buffer_beats == hbm.WEIGHT_FIFO_BEATS and w.refresh == "aligned"
    mpu_src = (Path(hw_dma.__file__).parent / "core_mpu.py").read_text()    # the weight streamer's R FIFOs
    assert "fifo = SyncFIFOBuffered(width=8 * cb, depth=WEIGHT_FIFO_BEATS)" in mpu_src
    assert hbm.WEIGHT_FIFO_BEATS >= 260 / 5                                # a refresh (tRFC) at 200 MHz, in beats
    a = hbm.dfx_access(cfg, 16)
    assert (a.burst_bytes, a.outstanding, a.stride, a.buffer_beats, a.refresh) == (64, 16, 64, 16, "aligned")
    with pytest.raises(PerfError, match="one beat per channel per tile"):
        hbm.dfx_access(cfg.replace(name="x", l=32), 4)


def test_model_uses_the_access_pattern():
    """A whole step: DFX's one-beat reads with few in flight are slower than the RTL's bursts, more reads in
    flight are never slower, and with enough of them both run at the port's rate (pipelined engines, which hide
    the read latency, so that only the stream's rate differs)."""
    prog = shapes(SMALL, "dfx", devices=1, max_seq=32)
    steps = [PerfModel(prog, hbm_access=hbm.dfx_access(prog.config, o), engines="pipelined").step_cycles("decode", 5)
             for o in (1, 4, 16, 64)]
    assert steps == sorted(steps, reverse=True) and steps[0] > 2 * steps[-1]
    rtl = PerfModel(prog, engines="pipelined").step_cycles("decode", 5)   # 4 KiB bursts: the port's rate
    assert abs(rtl - steps[-1]) < 0.01 * rtl


def test_row_major_matrices_read_one_beat_per_tile(board):
    """The V cache (row-major): each tile its own one-beat read, nt beats after the last (hw/core_mpu.py). With
    reads in flight limited (DFX's pattern) that is slower than the weights' sequential beats once the stride
    reaches into new rows; with the RTL's unlimited reads it still meets the port."""
    from dfx.perf import Timing
    cfg = load_config("dfx")
    t = Timing(cfg, board, hbm_access=hbm.dfx_access(cfg, 16))
    assert t.rowmajor_bpc(4) < t.hbm_bpc and t.rowmajor_bpc(64) < t.rowmajor_bpc(4)
    rtl = Timing(cfg, board)
    assert rtl.rowmajor_bpc(4) == pytest.approx(rtl.hbm_bpc) == pytest.approx(cfg.beat_bytes)
