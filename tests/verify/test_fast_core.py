"""The fast RTL harness (`dfx.verify.fast_core`): the core with its memories inside the design runs compiled
programs to the functional simulator's logits, reads its memories back through the backdoor, and reports a
run that does not finish."""
import numpy as np
import pytest
from verify_helpers import FIX, need_fast_rtl

from dfx import regmap
from dfx.config import load_config
from dfx.program import load_program
from dfx.sim.functional import Device
from dfx.verify.fast_core import FastCore, FastJob, greedy_steps
from dfx.verify.fast_tb import from_hex, to_hex

HALTED = regmap.STATUS_BITS["halted"]


def test_hex_round_trip():
    blob = bytes(range(37))
    assert from_hex(to_hex(blob, 16), 16)[:37] == blob
    assert from_hex("// 0x00000000\n@0\nxx01 // c\n", 2) == b"\x01\x00"


def test_greedy_steps_follow_the_simulators_argmax():
    """The steps a speed or cycle benchmark replays: the prompt's prefill steps, then decode steps each fed the
    argmax of the previous decode's logits."""
    prog = load_program(FIX / "tiny_1dev.dfx")
    steps, tokens, logits = greedy_steps(prog, [3, 7, 11], 3)
    assert steps[:3] == [("prefill", 3, 0), ("prefill", 7, 1), ("decode", 11, 2)]
    assert [s[1] for s in steps[3:]] == tokens[:2] and [s[2] for s in steps] == [0, 1, 2, 3, 4]
    assert tokens == [int(np.argmax(x)) for x in logits] and len(logits) == 3


@pytest.fixture(scope="module")
def fast():
    need_fast_rtl()
    return FastCore(load_config("tiny"))


@pytest.mark.cocotb
def test_program_logits_and_memories_match_the_simulator(fast):
    """Prefill + two decode steps of the tiny fixture, twice in one simulation (the second with read latency
    and back-pressure): the decode logits and the whole DDR and HBM images equal the simulator's."""
    prog = load_program(FIX / "tiny_1dev.dfx")
    steps = [("prefill", 3, 0), ("decode", 7, 1), ("decode", 11, 2)]
    dev, sym = Device(prog), prog.symbols
    want = []
    for stream, tok, pos in steps:
        dev.run(stream, tok, pos)
        if stream == "decode":
            want.append(np.frombuffer(bytes(dev.ddr[sym.logits:sym.logits + 2 * sym.vocab_size]), np.float16))
    jobs = [FastCore.job_for(prog, steps, logits=True, read_ddr=len(dev.ddr), read_hbm=len(dev.hbm), **kw)
            for kw in ({}, {"latency": 30, "stall": 9})]
    for res in fast.run(jobs):
        assert [r["status"] for r in res["runs"]] == [HALTED] * 3
        assert res["mem_error"] == 0
        for got, w in zip(res["logits"], want):
            assert np.array_equal(got.view(np.uint16), w.view(np.uint16))
        assert res["ddr"][0] == bytes(dev.ddr)
        assert res["hbm"][0] == bytes(dev.hbm)


@pytest.mark.cocotb
def test_a_run_that_never_ends_is_reported(fast):
    """A stream of NOPs longer than the cycle limit: the harness gives up on it and says so."""
    from dfx import isa
    nops = isa.encode_stream([isa.Instr("NOP")] * 200 + [isa.Instr("HALT")])
    job = FastJob([{"ddr": b"\0" * 4096 + nops, "hbm": b""}], [{"s": 4096}], [["s", 0, 0]], timeout=50)
    [res] = fast.run([job])
    assert res["runs"][0]["devices"][0].get("timeout")
