"""The random program generator of the differential test (`dfx.verify.difftest_gen`): valid, deterministic and
broad, checked against the ISA and the functional simulator (no RTL)."""
from collections import Counter

from dfx import isa_check
from dfx.config import load_config
from dfx.program import DeviceImage
from dfx.sim.functional import Device
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
