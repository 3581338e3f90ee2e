"""The quantized tile fetcher (`hw/qfetch.py`) in amaranth.sim against the functional simulator's view of a
quantized region: a region packed by `dfx.formats.pack_region` sits in a modelled HBM, the fetcher's beat reads
are served in request order (with stalls), and every binary16 tile it hands the MPU equals the tile the
simulator multiplies with (`dfx.formats.dequant`, tiled as `dfx.program.tile_matrix`), bit for bit. Shapes cover
ragged k and n (padding rows and columns), groups of 32..128 rows and whole columns, asymmetric zero points, a
4 KiB page crossing and scale blocks that start mid-beat (a 256-byte beat; regions start on one), and d = 64 with two row groups per tile."""
import random

import numpy as np
import pytest
from amaranth import Value
from amaranth.sim import Simulator

from dfx import formats, numerics
from dfx.config import PRESETS, AccelConfig
from dfx.hw.qfetch import QuantTiles, core_cannot_read, core_family, family_formats, table_cannot_read
from dfx.tilescale import tile_scale_cannot_read
from dfx.program import tile_matrix

TINY = PRESETS["tiny"]
WIDE = AccelConfig(name="wide", d=8, l=4, vpu_width=8, hbm_channels=16, hbm_width=128)       # 256-byte beats
DEEP = AccelConfig(name="deep", d=64, l=1, vpu_width=64, hbm_channels=2, hbm_width=512)      # G = 32 < d


def quant_weight(fmt, k, n, seed, phase=0):
    """A random (k, n) QuantWeight of `fmt` with legal codes, scales (some negative) and zero points; `phase`: its
    group axis starts that far into its first group (a column piece cut mid-group)."""
    rng = np.random.default_rng(seed)
    ss = fmt.scale_shape(k, n, phase)
    scales = (rng.standard_normal(ss) * 0.02).astype(np.float16)
    zeros = None
    if fmt.kind == "int":
        lo, hi = (0, (1 << fmt.bits) - 1) if fmt.asym else (-(1 << (fmt.bits - 1)), (1 << (fmt.bits - 1)) - 1)
        codes = rng.integers(lo, hi + 1, (k, n)).astype(np.uint8 if fmt.asym else np.int8)
        if fmt.asym:
            zeros = rng.integers(0, hi + 1, ss).astype(np.uint8)
    elif fmt.kind == "bcq":
        codes = rng.integers(0, 2, (fmt.bits, k, n)).astype(np.uint8)
        scales = (rng.standard_normal((fmt.bits, *ss)) * 0.02).astype(np.float16)
    else:
        ok = np.flatnonzero(~np.isnan(formats.FP8_TABLES[fmt.kind]))
        codes = rng.choice(ok, (k, n)).astype(np.uint8)
    return formats.QuantWeight(fmt, codes, scales, zeros, phase=phase).check()


def run_fetch(cfg, name, k, n, base, seed=0, stall=0.3, times=None, phase=0, tables=False, codes=False,
              padding=None):
    """(tiles the fetcher produced, tiles expected, status) for one instruction on a region at HBM byte `base`
    (a matrix of phase `phase`); `times` (a list) gets the cycle of each tile; `tables`: the fetcher built with
    table dequantisers; `codes`: a code fetcher (the tile-scaled core's): the tiles are the codes' binary16
    values, each followed by its l lane scales (compared on the real columns: padding ones are never used);
    `padding`: the code every padding row and column of the region holds instead of 0 (a hostile region)."""
    fmt = formats.parse(name)
    qw = quant_weight(fmt, k, n, seed, phase)
    region = formats.pack_region(qw, cfg.d, cfg.l)
    d, l, B = cfg.d, cfg.l, cfg.beat_bytes
    if padding is not None:
        region = fill_padding(region, fmt, k, n, d, l, padding)
    kt, nt = -(-k // d), -(-n // l)
    want = tile_matrix(numerics.daz16(qw.dequant()), d, l).view(np.uint16).reshape(kt * nt, d * l)
    real = None
    if codes and tile_scale_cannot_read(fmt, d, phase) is None:  # the codes' values; row tile i's lane scales
        want = tile_matrix(qw.codes.astype(np.float16), d, l).view(np.uint16).reshape(kt * nt, d * l)
        rows = np.arange(kt) * d + phase
        sc = qw.scales[rows // fmt.group if fmt.group else np.zeros(kt, int)].view(np.uint16)     # (kt, n)
        ts = np.zeros((kt, nt * l), np.uint16)
        ts[:, :n] = sc
        lanes = np.array([ts[i, j * l:(j + 1) * l] for j in range(nt) for i in range(kt)])      # tile order
        real = np.array([[j * l + c < n for c in range(l)] for j in range(nt) for i in range(kt)])
        want = np.concatenate([want, np.where(real, lanes, 0)], axis=1)
    hbm = bytearray(base + len(region) + 2 * B)
    hbm[base:base + len(region)] = region
    dut = QuantTiles(cfg, core_family(fmt), tables=tables, codes=codes)
    rng = random.Random(seed)
    times = [] if times is None else times
    reqs, tiles, status = [], [], []

    async def driver(ctx):
        for sig, v in ((dut.base, base), (dut.wfmt, fmt.wfmt), (dut.k, k), (dut.n, n), (dut.kt, kt), (dut.nt, nt)):
            ctx.set(sig, v)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        while not status:
            await ctx.tick()

    async def requests(ctx):            # AR: ready withheld at random; the request must hold still meanwhile
        held = None
        while True:
            ctx.set(dut.req.ready, int(rng.random() >= stall))
            _, _, valid, ready, beat, length, st = await ctx.tick().sample(
                dut.req.valid, dut.req.ready, dut.req.payload.beat, dut.req.payload.len, dut.status.as_value())
            if valid and held is not None:
                assert held == (beat, length), (held, beat, length)
            held = (beat, length) if valid and not ready else None
            if valid and ready:
                reqs.extend(range(beat, beat + length))
            if st & 1:
                status.append(st)

    async def memory(ctx):
        while True:
            if not reqs or rng.random() < stall:
                await ctx.tick()
                continue
            b = reqs.pop(0)
            ctx.set(dut.beat.payload, int.from_bytes(hbm[b * B:(b + 1) * B], "little"))
            ctx.set(dut.beat.valid, 1)
            await ctx.tick().until(dut.beat.ready)
            ctx.set(dut.beat.valid, 0)

    async def sink(ctx):
        cycle = 0
        while len(tiles) < kt * nt:
            ctx.set(dut.tile.ready, int(rng.random() >= stall))
            _, _, v, r, p = await ctx.tick().sample(dut.tile.valid, dut.tile.ready, Value.cast(dut.tile.payload))
            cycle += 1
            if v and r:
                tiles.append(p)
                times.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(5e-9)
    sim.add_testbench(driver)
    sim.add_process(requests)
    sim.add_process(memory)
    sim.add_testbench(sink)
    sim.run_until(5e-9 * (400 + 40 * kt * nt + 4 * len(region) // B * 8))
    per = d * l + (l if codes else 0)
    got = np.array([[(t >> (16 * e)) & 0xFFFF for e in range(per)] for t in tiles], np.uint16).reshape(-1, per)
    if real is not None and len(got):
        got[:, d * l:] = np.where(real[:len(got)], got[:, d * l:], 0)
    return got, want, status


def fill_padding(region: bytes, fmt, k, n, d, l, code) -> bytes:
    """`region` with `code` in every padding element's code bits (rows >= k or columns >= n of the tile grid:
    tiles column-major, element e = lane * d + row at bits [b*e, b*e+b) of its tile's codes)."""
    kt, nt, b = -(-k // d), -(-n // l), fmt.bits
    bits = np.unpackbits(np.frombuffer(region, np.uint8), bitorder="little")
    tile_bits = d * l * b
    for j in range(nt):
        for i in range(kt):
            for c in range(l):
                for r in range(d):
                    if i * d + r >= k or j * l + c >= n:
                        at = 8 * formats.DESC_BYTES + (j * kt + i) * tile_bits + b * (c * d + r)
                        bits[at:at + b] = [(code >> q) & 1 for q in range(b)]
    return np.packbits(bits, bitorder="little").tobytes()


SLOW = pytest.mark.slow          # about 20 s each in amaranth.sim: four in the default run, the rest slow
CASES = [  # (config, format, k, n, base)
    (TINY, "int4-oc-g128", 32, 24, 128),
    pytest.param(TINY, "int4-oc-g32", 44, 10, 64, marks=SLOW),
    pytest.param(TINY, "int8-oc", 20, 9, 0, marks=SLOW),
    (TINY, "int4-oc-g64-asym", 72, 6, 192),
    pytest.param(TINY, "int8-oc-g32-asym", 36, 8, 64, marks=SLOW),
    pytest.param(TINY, "int3-oc-g32", 40, 11, 64, marks=SLOW),
    pytest.param(TINY, "int3-oc-asym", 16, 8, 0, marks=SLOW),
    (TINY, "fp8e4m3", 24, 12, 64),
    pytest.param(TINY, "fp8e5m2-oc-g32", 40, 8, 0, marks=SLOW),
    pytest.param(WIDE, "int4-oc-g32", 40, 14, 4096 - 256, marks=SLOW),
    (WIDE, "int3-oc-g64-asym", 70, 7, 256),
    (TINY, "bcq3-oc-g32", 40, 9, 64),
    pytest.param(TINY, "bcq1-oc", 16, 8, 0, marks=SLOW),
    pytest.param(WIDE, "bcq4-oc-g64", 72, 5, 512, marks=SLOW),
    (TINY, "int4-ic-g32", 16, 70, 64),
    pytest.param(TINY, "int8-ic-asym", 24, 9, 0, marks=SLOW),
    (WIDE, "int3-ic-g32-asym", 32, 70, 256),
    pytest.param(TINY, "fp8e4m3-ic-g64", 16, 140, 0, marks=SLOW),
    pytest.param(TINY, "bcq2-ic-g32", 8, 72, 64, marks=SLOW),
]


def _vals(c):
    return tuple(c.values) if hasattr(c, "values") else c


@pytest.mark.parametrize("cfg,name,k,n,base", CASES,
                         ids=[f"{_vals(c)[0].name}-{_vals(c)[1]}-{_vals(c)[2]}x{_vals(c)[3]}" for c in CASES])
def test_tiles_match_simulator(cfg, name, k, n, base):
    got, want, status = run_fetch(cfg, name, k, n, base, seed=k * 131 + n)
    assert status == [0b11], status                    # valid + ok
    assert got.shape == want.shape, (got.shape, want.shape)
    bad = np.argwhere(got != want)
    assert not bad.size, [(int(t), int(e), hex(got[t, e]), hex(want[t, e])) for t, e in bad[:5]]


PHASE_CASES = [  # (config, format, k, n, base, phase): a column piece cut mid-group (ic), or a row axis (oc)
    (TINY, "int4-ic-g32", 16, 40, 64, 8),
    (TINY, "int4-oc-g32", 44, 10, 64, 8),
    pytest.param(TINY, "int4-ic-g128-asym", 16, 70, 0, 100, marks=SLOW),
    pytest.param(TINY, "int8-ic-g64", 24, 60, 64, 4, marks=SLOW),
    pytest.param(WIDE, "int3-ic-g32-asym", 32, 70, 256, 12, marks=SLOW),
    pytest.param(TINY, "bcq2-ic-g32", 8, 72, 64, 16, marks=SLOW),
    pytest.param(TINY, "fp8e4m3-ic-g64", 16, 60, 0, 60, marks=SLOW),
    pytest.param(TINY, "int8-oc-g64-asym", 72, 6, 192, 24, marks=SLOW),
    pytest.param(TINY, "int3-oc-g128", 40, 11, 64, 120, marks=SLOW),
    pytest.param(TINY, "bcq3-oc-g32", 40, 9, 64, 16, marks=SLOW),
    pytest.param(WIDE, "fp8e5m2-oc-g32", 40, 8, 4096 - 256, 8, marks=SLOW),
]


@pytest.mark.parametrize("cfg,name,k,n,base,phase", PHASE_CASES,
                         ids=[f"{_vals(c)[0].name}-{_vals(c)[1]}-{_vals(c)[2]}x{_vals(c)[3]}-p{_vals(c)[5]}"
                              for c in PHASE_CASES])
def test_phase_tiles_match_simulator(cfg, name, k, n, base, phase):
    """Regions whose group axis starts mid-group (`dfx.formats.piece_phase`: scale_shape(k, n, phase) scales),
    under random back-pressure: every tile bit-exact to `dfx.formats.dequant`."""
    got, want, status = run_fetch(cfg, name, k, n, base, seed=k * 131 + n + phase, phase=phase)
    assert status == [0b11], status
    bad = np.argwhere(got != want)
    assert got.shape == want.shape and not bad.size, [(int(t), int(e), hex(got[t, e]), hex(want[t, e]))
                                                      for t, e in bad[:5]]


@pytest.mark.parametrize("name,cycles", [("int4-oc-g32", 64), ("int4-ic-g32", 67)])
def test_one_tile_per_cycle(name, cycles):
    """Without stalls (a beat a cycle from memory), the fetcher hands over one tile per cycle: 64 tiles of a
    128 x 16 matrix in 64 cycles from the first to the last, a group starting every 4 tiles (oc) included; per
    input channel, one cycle more per column block (the scale stream's segment switch: 3 of 4 blocks). The first
    tile leaves within 40 cycles of the start (the descriptor's read, the setup one step per state, the
    requests' registered stages; docs/rtl_core.md, "Rate"; a cycle or two either way with the order in which
    the simulator runs the testbench's request and memory processes)."""
    times = []
    got, want, status = run_fetch(TINY, name, 128, 16, 0, stall=0.0, times=times)
    assert np.array_equal(got, want)
    assert times[-1] - times[0] + 1 == cycles, times
    assert times[0] <= 40, times[0]


@pytest.mark.slow
def test_two_groups_per_tile():
    """d = 64 with 32-row groups: each tile takes two scale blocks (and zero blocks)."""
    got, want, status = run_fetch(DEEP, "int4-oc-g32-asym", 100, 3, 128, stall=0.1)
    assert status == [0b11] and np.array_equal(got, want)


@pytest.mark.parametrize("tables", [False, True])
def test_region_off_a_beat_is_bad_range(tables):
    """A region must start on a beat (the codes' gearbox cuts at the descriptor's 64 bytes past multiples of
    gcd(tile code bytes, beat) only): one 64 bytes into a 256-byte beat reports bad_range (STATUS.address_range),
    as the simulator refuses it; on the next beat it is read."""
    _, _, status = run_fetch(WIDE, "int4-oc-g128", 16, 4, 320, tables=tables)
    assert status == [0b1001], status                  # valid + bad_range
    got, want, status = run_fetch(WIDE, "int4-oc-g128", 16, 4, 512, tables=tables)
    assert status == [0b11] and np.array_equal(got, want)


def test_descriptor_mismatch_is_bad_format():
    """A region whose descriptor does not match the instruction (here its wfmt: an int8 region read as int4)
    reports bad_fmt (the engine's STATUS.illegal_opcode); per-input-channel groups on a k that is not a multiple
    of d too, and phases that are not whole column blocks (ic: a multiple of l) or row tiles (oc: of d)."""
    fmt = formats.parse("int8-oc")
    ic = formats.parse("int4-ic-g32")
    cases = [("int4-oc", formats.pack_region(quant_weight(fmt, 16, 8, 0), TINY.d, TINY.l), 16),
             ("int4-ic-g32", formats.pack_region(quant_weight(ic, 12, 8, 0), TINY.d, TINY.l), 12),
             ("int4-ic-g32", formats.pack_region(quant_weight(ic, 16, 8, 0, phase=2), TINY.d, TINY.l), 16),
             ("int4-oc-g32", formats.pack_region(quant_weight(formats.parse("int4-oc-g32"), 16, 8, 0, phase=4),
                                                 TINY.d, TINY.l), 16)]
    for name, reg, k in cases:
        f = formats.parse(name)
        dut = QuantTiles(TINY, core_family(f))
        st = []

        async def bench(ctx, dut=dut, reg=reg, f=f, st=st, k=k):
            for sig, v in ((dut.base, 0), (dut.wfmt, f.wfmt), (dut.k, k), (dut.n, 8), (dut.kt, 2), (dut.nt, 2)):
                ctx.set(sig, v)
            ctx.set(dut.req.ready, 1)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            await ctx.tick().until(dut.req.valid)
            ctx.set(dut.beat.payload, int.from_bytes(reg[:64], "little"))
            ctx.set(dut.beat.valid, 1)
            await ctx.tick().until(dut.beat.ready)
            ctx.set(dut.beat.valid, 0)
            for _ in range(8):
                await ctx.tick()
                if ctx.get(dut.status.valid):
                    st.append(ctx.get(dut.status.as_value()))

        sim = Simulator(dut)
        sim.add_clock(5e-9)
        sim.add_testbench(bench)
        sim.run()
        assert st == [0b101], (name, st)                   # valid + bad_fmt


def test_families_and_refusals():
    assert family_formats(("fp16", "int4", "int8")) == ("int4", "int8")
    with pytest.raises(ValueError, match="bcq.*no tile fetcher"):
        family_formats(("bcq",))
    assert core_cannot_read(formats.parse("int4-oc-g128")) is None
    assert core_cannot_read(formats.parse("bcq3-oc-g128")) is None and core_family(formats.parse("bcq3-oc")) == "bcq3"
    assert core_cannot_read(formats.parse("int4-ic-g128"), 0, 64, 8) is None
    assert "per-input-channel" in core_cannot_read(formats.parse("int4-ic-g128"), 0, 60, 8)
    assert "phase 3" in core_cannot_read(formats.parse("int4-oc-g128"), 3, 256, 8)
    assert core_cannot_read(formats.parse("int4-oc-g128"), 64, 256, 8) is None
    assert core_cannot_read(formats.parse("int4-ic-g128"), 4, 64, 8, 4) is None           # whole column blocks
    assert "multiple of l (4)" in core_cannot_read(formats.parse("int4-ic-g128"), 2, 64, 8, 4)
    assert "multiple of d (8)" in core_cannot_read(formats.parse("int4-ic-g128"), 4, 64, 8)  # l unknown: d
    assert "inside a group" in core_cannot_read(formats.parse("int4-ic-g32"), 40, 64, 8)


TABLE_CASES = [  # (config, format, k, n, base, phase): regions a fetcher with table dequantisers reads
    (TINY, "int4-oc-g128", 32, 24, 128, 0),
    (TINY, "int4-oc-g64-asym", 72, 6, 192, 0),
    (TINY, "int4-oc-g32", 44, 10, 64, 8),
    pytest.param(TINY, "int3-oc-asym", 16, 8, 0, 0, marks=SLOW),
    pytest.param(WIDE, "int3-oc-g64-asym", 70, 7, 256, 0, marks=SLOW),
    pytest.param(DEEP, "int4-oc-g128-asym", 130, 3, 128, 64, marks=SLOW),
]


def _phase_ids(cases):
    return [f"{_vals(c)[0].name}-{_vals(c)[1]}-{_vals(c)[2]}x{_vals(c)[3]}-p{_vals(c)[5]}" for c in cases]


@pytest.mark.parametrize("cfg,name,k,n,base,phase", TABLE_CASES, ids=_phase_ids(TABLE_CASES))
def test_table_dequantisers_match_simulator(cfg, name, k, n, base, phase):
    """The fetcher with one table dequantiser per lane (`QuantTiles(tables=True)`): every tile bit-exact to
    `dfx.formats.dequant`, padding rows and columns +0 (ragged k and n, asymmetric zero points, a phase),
    under random back-pressure."""
    assert table_cannot_read(formats.parse(name), cfg.d) is None
    got, want, status = run_fetch(cfg, name, k, n, base, seed=k * 71 + n + phase, phase=phase, tables=True)
    assert status == [0b11], status
    bad = np.argwhere(got != want)
    assert got.shape == want.shape and not bad.size, [(int(t), int(e), hex(got[t, e]), hex(want[t, e]))
                                                      for t, e in bad[:5]]


@pytest.mark.parametrize("cfg,name,k,n", [(TINY, "int4-ic-g32", 16, 40), (DEEP, "int4-oc-g32", 64, 2)])
def test_table_fetcher_refuses_what_tables_cannot_read(cfg, name, k, n):
    """Per-input-channel groups, and groups of fewer than d rows, are `bad_fmt` to a table fetcher (one scale per
    lane and tile cannot serve them), as `table_cannot_read` says; int8 is refused when it is built."""
    assert table_cannot_read(formats.parse(name), cfg.d)
    _, _, status = run_fetch(cfg, name, k, n, cfg.beat_bytes, tables=True)
    assert status == [0b101], status                   # valid + bad_fmt
    with pytest.raises(ValueError, match="int families"):
        QuantTiles(TINY, "int8", tables=True)


CODE_CASES = [  # (config, format, k, n, base, phase): regions a code fetcher (tile-scaled core) reads
    (TINY, "int4-oc-g128", 32, 24, 128, 0),
    (TINY, "int4-oc-g32", 44, 10, 64, 8),
    pytest.param(TINY, "int3-oc", 16, 8, 0, 0, marks=SLOW),
    pytest.param(WIDE, "int4-oc-g64", 70, 7, 256, 0, marks=SLOW),
    pytest.param(DEEP, "int4-oc-g128", 130, 3, 128, 64, marks=SLOW),
]


@pytest.mark.parametrize("cfg,name,k,n,base,phase", CODE_CASES, ids=_phase_ids(CODE_CASES))
def test_code_fetcher_hands_the_mpu_codes_and_scales(cfg, name, k, n, base, phase):
    """`QuantTiles(codes=True)`: every tile is the codes' binary16 values (padding rows and columns +0) and its
    lanes' group scales, under random back-pressure (ragged k and n, a phase, d = 64)."""
    assert tile_scale_cannot_read(formats.parse(name), cfg.d, phase) is None
    got, want, status = run_fetch(cfg, name, k, n, base, seed=k * 37 + n + phase, phase=phase, codes=True)
    assert status == [0b11], status
    bad = np.argwhere(got != want)
    assert got.shape == want.shape and not bad.size, [(int(t), int(e), hex(got[t, e]), hex(want[t, e]))
                                                      for t, e in bad[:5]]


@pytest.mark.parametrize("kind", ["codes", "tables", "elements"])
def test_padding_codes_come_out_zero(kind):
    """A hostile region whose padding rows and columns hold a nonzero code (7, the largest int4 value) still
    gives +0 there: the fetcher clears rows >= k and columns >= n (the last row tile's and column block's masks),
    whichever unit turns the codes into binary16."""
    got, want, status = run_fetch(TINY, "int4-oc-g32", 44, 10, 64, seed=5, codes=kind == "codes",
                                  tables=kind == "tables", padding=7)
    assert status == [0b11], status
    bad = np.argwhere(got != want)
    assert got.shape == want.shape and not bad.size, [(int(t), int(e), hex(got[t, e]), hex(want[t, e]))
                                                      for t, e in bad[:5]]


@pytest.mark.parametrize("cfg,name,k,n", [(TINY, "int4-ic-g32", 16, 40), (DEEP, "int4-oc-g32", 64, 2),
                                          (TINY, "int4-oc-g64-asym", 16, 8)])
def test_code_fetcher_refuses_what_it_cannot_read(cfg, name, k, n):
    """Per-input-channel groups, groups of fewer than d rows and zero points are `bad_fmt` to a code fetcher, as
    `dfx.tilescale.tile_scale_cannot_read` says; int8 is refused when it is built."""
    assert tile_scale_cannot_read(formats.parse(name), cfg.d)
    _, _, status = run_fetch(cfg, name, k, n, cfg.beat_bytes, codes=True)
    assert status == [0b101], status                   # valid + bad_fmt
    with pytest.raises(ValueError, match="int families"):
        QuantTiles(TINY, "int8", codes=True)
