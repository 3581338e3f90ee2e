"""The random program generator of the differential test (`dfx.verify.difftest_gen`): valid, deterministic and
broad, checked against the ISA and the functional simulator (no RTL)."""
from collections import Counter

from dfx import formats, isa, isa_check
from dfx.config import load_config
from dfx.hw.qfetch import CORE_FAMILIES, core_cannot_read
from dfx.program import DeviceImage
from dfx.sim.functional import Device
from dfx.sim.ring import Ring
from dfx.verify.difftest_gen import SUPPORTED, UNSUPPORTED, generate

CFG = load_config("tiny")


def test_programs_are_valid_and_run_on_the_simulator():
    """Every program passes `isa_check.check_stream` and runs to HALT on the simulator (which checks every
    run-time rule, FENCE ordering included); together they use every opcode the RTL implements."""
    ops = Counter()
    for seed in range(80):
        p = generate(CFG, seed)
        isa_check.check_stream(p.instrs, CFG, 1)
        dev = Device.of_image(CFG, DeviceImage(p.streams, bytearray(p.hbm), bytearray(p.ddr)))
        for stream, token, pos in p.steps:
            dev.run(stream, token, pos)
        ops.update(i.op.mnemonic for i in p.instrs)
    assert set(ops) == set(SUPPORTED)
    assert not set(ops) & set(UNSUPPORTED)


def test_same_seed_same_program():
    a, b = generate(CFG, 1234), generate(CFG, 1234)
    assert a.instrs == b.instrs and a.ddr == b.ddr and a.hbm == b.hbm and a.steps == b.steps
    assert generate(CFG, 1235).instrs != a.instrs


def test_edges_are_drawn():
    """Lengths, operand places and immediates reach their edge bins over a few hundred programs."""
    bins = Counter()
    for seed in range(200):
        bins.update(generate(CFG, seed).bins)
    for key in [("VADD", "n", "1"), ("VADD", "n", "max"), ("LINEAR", "k", "d"), ("LINEAR", "dyn_k", "set"),
                ("QK", "mask", "set"), ("LOAD", "index", "TOKEN"), ("STORE", "index", "POS"),
                ("SMOVI", "imm", "nan"), ("SRECIP", "imm", "subnormal"), ("dep", "reads-recent-output"),
                ("FENCE", "units", "ordering-a-store"), ("STORE_K", "hbm", "HBM"), ("VMOV", "a", "top")]:
        assert bins[key], key


def _run_on_simulator(p):
    """Run `p` on the functional simulator (a `Ring` for several devices) as the differential test does."""
    devs = [Device.of_image(CFG, DeviceImage(p.streams, bytearray(hbm), bytearray(ddr)), device=k, ring=p.devices)
            for k, (ddr, hbm) in enumerate(p.images)]
    runner = devs[0] if len(devs) == 1 else Ring.of_devices(devs, range(len(devs)))
    for stream, token, pos in p.steps:
        runner.run(stream, token, pos)
    return devs


def test_options_leave_the_default_programs_alone():
    """The options draw nothing when off: a seed's default program is the same with them at their defaults."""
    a, b = generate(CFG, 77), generate(CFG, 77, devices=1, wformats=(), batched=False)
    assert a.instrs == b.instrs and a.ddr == b.ddr and a.hbm == b.hbm and not a.peers


def test_two_device_programs_gather_over_the_ring():
    """--devices 2: every ALLGATHER names both devices; the programs run on a simulated ring, and a gathered
    vector holds each device's chunk (the devices' data differ, so the chunks do)."""
    bins = Counter()
    for seed in range(40):
        p = generate(CFG, seed, devices=2)
        assert p.devices == 2 and p.peers[0][0] != p.ddr
        isa_check.check_stream(p.instrs, CFG, 2)
        assert all(i.devices == 2 for i in p.instrs if i.op.mnemonic == "ALLGATHER")
        _run_on_simulator(p)
        bins.update(p.bins)
    assert bins[("ALLGATHER", "devices", "2")] and bins[("ALLGATHER", "gran", "split")]


def test_quantized_linears_use_formats_the_fetcher_reads():
    """--wformats: LINEARs on quantized regions of the given families, in every axis / group / zero-point
    variant over a few hundred programs, each region one the RTL fetcher accepts (`core_cannot_read` None)."""
    bins, fams = Counter(), tuple(CORE_FAMILIES)
    for seed in range(120):
        p = generate(CFG, seed, wformats=fams)
        _run_on_simulator(p)
        bins.update(p.bins)
        for ins in p.instrs:
            if ins.op.mnemonic == "LINEAR" and ins.wfmt:
                desc = formats.read_descriptor(bytes(p.hbm[ins.w * isa.HBM_UNIT:][:formats.DESC_BYTES]))
                assert core_cannot_read(formats.region_format(desc), desc["phase"], desc["k"], CFG.d) is None
    assert {b[2] for b in bins if b[:2] == ("LINEAR", "wfmt")} >= {"int8", "int4", "int3", "fp8e4m3", "bcq2"}
    assert bins[("LINEAR", "wfmt.axis", "ic")] and bins[("LINEAR", "wfmt.asym", "set")]


def test_batched_programs_reach_their_edges():
    """--batched: BATCH (m 1 / 2 / +dyn_m, strides 0 / exact / gap), CHUNK (COUNT 1 and cap) and SLOT (taken,
    last, empty; skips) are drawn, and the programs run on the simulator (which checks every batched rule)."""
    bins = Counter()
    for seed in range(150):
        p = generate(CFG, seed, batched=True)
        _run_on_simulator(p)
        bins.update(p.bins)
    for key in [("BATCH", "m", "1"), ("BATCH", "m", "dyn_m"), ("BATCH", "src_stride", "0"),
                ("BATCH", "dst_stride", "exact"), ("BATCH", "next", "ALLGATHER"), ("CHUNK", "count", "cap"),
                ("CHUNK", "count", "1"), ("SLOT", "i", "empty"), ("SLOT", "i", "taken"), ("SLOT", "skip", "few")]:
        assert bins[key], key


def test_vector_outputs_never_partly_overlap_an_input():
    """ISA rule 7: a vector instruction's output is disjoint from each input or exactly it (in place). An in-place
    output once took a `b` that partly overlapped `a`, whose result depends on the VPU's latency (seeds 144, 340,
    631, 682 and 697 of `--wformats all --batched` after the VPU took each operation at its own latency)."""
    seen = Counter()
    for seed in list(range(300)) + [144, 340, 631, 682, 697]:
        for ins in generate(CFG, seed).instrs:
            if ins.op.unit is not isa.Unit.VPU or ins.fields().get("dyn_n"):
                continue
            rng = isa.operand_ranges(ins.op, ins.fields(), CFG.d)
            outs = [r for r in rng if r.write and not r.scalar]
            for o in outs:
                for i in (r for r in rng if not r.write and not r.scalar):
                    same = (i.start, i.entries) == (o.start, o.entries)
                    apart = i.start + i.entries <= o.start or o.start + o.entries <= i.start
                    assert same or apart, (seed, isa.disassemble(ins))
                    seen["in place" if same else "apart"] += 1
    assert seen["in place"] and seen["apart"]
