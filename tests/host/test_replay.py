"""Recorded pynq-backend sessions (tests/host/fixtures, made by make_fixtures.py on the simulator-backed fake
pynq) replayed strictly: the board path's host logic, call by call, without a board."""
import json
from pathlib import Path

import pytest

from dfx.host.fakepynq import FakePynq, write_fake_xclbin
from dfx.host.recording import Recorder, ReplayMismatch, ReplayPynq
from dfx.host.replay import replay_session
from dfx.host.sampling import Sampling
from dfx.host.session import Session
from dfx.program import load_program

FIX = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("n", [1, 2])
def test_recorded_board_session_replays(n, tmp_path):
    doc = json.loads((FIX / f"pynq_session_{n}dev.json").read_text())
    tokens = replay_session(FIX / f"tiny_{n}dev.dfx", FIX / f"pynq_session_{n}dev.json", tmp_path)
    assert tokens == doc["tokens"] and len(tokens) == doc["max_new_tokens"]
    ops = [c["op"] for c in doc["calls"]]
    assert ops[:2] == ["devices", "Overlay"] and ops.count("free") == n
    assert ops.count("allocate") == ops.count("freebuffer") == n * (load_program(FIX / f"tiny_{n}dev.dfx")
                                                                     .config.hbm_channels + 1)


def test_replay_fails_at_the_first_different_call(tmp_path):
    doc = json.loads((FIX / "pynq_session_1dev.json").read_text())
    doc["prompt"] = [1, 2, 9, 4]                         # the host now writes TOKEN=9 where 3 was recorded
    fake = ReplayPynq(doc)
    x = tmp_path / doc["xclbin"]
    x.write_bytes(b"")
    s = Session(load_program(FIX / "tiny_1dev.dfx"), "pynq", xclbin=x, pynq=fake)
    with pytest.raises(ReplayMismatch, match=r"call \d+: recorded write\(dev=0, off=\d+, value=3\), the host called "
                                             r"write\(dev=0, off=\d+, value=9\)"):
        list(s.generate(doc["prompt"], 2))


def test_replay_notices_unmade_calls(tmp_path):
    fake = ReplayPynq(FIX / "pynq_session_1dev.json")
    x = tmp_path / fake.doc["xclbin"]
    x.write_bytes(b"")
    s = Session(load_program(FIX / "tiny_1dev.dfx"), "pynq", xclbin=x, pynq=fake)
    list(s.generate(fake.doc["prompt"], fake.doc["max_new_tokens"], Sampling(**fake.doc["sampling"])))
    # ... but never closes the session
    with pytest.raises(ReplayMismatch, match=r"the host stopped after \d+ of \d+ recorded calls; next was "
                                             r"freebuffer\(dev=0, buf=0\)"):
        fake.done()


def test_recording_is_what_the_fake_saw(tmp_path):
    prog = load_program(FIX / "tiny_1dev.dfx")
    rec = Recorder(FakePynq(1, program=prog), tmp_path / "s.json", prompt=[5], max_new_tokens=1)
    x = write_fake_xclbin(tmp_path / "dfx.xclbin", prog.config)
    with Session(prog, "pynq", xclbin=x, pynq=rec) as s:
        s.feed([5])
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["calls"] == rec.calls and saved["calls"][-1]["op"] == "free"
    reads = [c for c in rec.calls if c["op"] == "sync_from_device"]
    assert len(reads) == 1 and reads[0]["stop"] - reads[0]["start"] == 2 * prog.symbols.vocab_size
