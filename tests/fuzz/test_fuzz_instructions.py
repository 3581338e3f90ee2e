"""Fuzzing instruction words on the functional simulator (issue 21): random 128-bit words and mutated valid
instructions, on one device and on a ring of two, never crash and never hang: every run ends, or is refused with
a one-line DfxError (the decoder's, the ISA's validation, the simulator's). A short budget here; the long run is
benchmarks/fuzz_programs.py."""
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from program_fuzz import case, pool, programs, run


@pytest.fixture(scope="module")
def target():
    progs = programs()
    return progs, {n: pool(p) for n, p in progs.items()}


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False))
def test_random_streams_never_crash_or_hang(target, rng):
    progs, pools = target
    prog, blobs, token, pos = case(rng, progs, pools)
    res = run(prog, blobs, token, pos)
    assert res.outcome in ("ok", "refused"), f"{res.outcome}: {res.detail}"


def test_the_fuzzer_reaches_the_simulator(target):
    """Not only decoder refusals: a fixed sample of cases runs some streams to HALT and refuses others in the
    ISA's validation and in the simulator's run-time checks."""
    progs, pools = target
    rng = random.Random(21)
    outcomes, messages = {}, []
    for _ in range(150):
        res = run(*case(rng, progs, pools))
        outcomes[res.outcome] = outcomes.get(res.outcome, 0) + 1
        messages.append(res.detail)
    assert set(outcomes) == {"ok", "refused"}, outcomes
    text = "\n".join(messages)
    for phrase in ("unknown opcode", "reserved bits", "a length must be >= 1", "exceed the", "outside the"):
        assert phrase in text, phrase
