"""The Perfetto/Chrome timeline of one token step (`dfx perf --trace`): valid trace-event JSON (checked
against perf/chrome_trace.py's schema of the format), one track per unit per device, slices that never
overlap on a track, every ring sync a matched flow, and the step's cycles equal to the model's."""
import json
from collections import defaultdict

import pytest
from click.testing import CliRunner
from perf_programs import SMALL, shapes

from dfx.errors import PerfError
from dfx.perf import PerfModel
from dfx.perf.chrome_trace import SCHEMA, TRACKS, chrome_trace
from dfx.perf.cli import perf

jsonschema = pytest.importorskip("jsonschema")


@pytest.fixture(scope="module")
def model(small4):
    return PerfModel(small4, "u280")


@pytest.mark.parametrize("stream, pos", [("decode", 5), ("prefill", 0)])
def test_trace_is_valid_and_matches_the_model(model, stream, pos):
    t = json.loads(json.dumps(chrome_trace(model, stream, pos)))        # as written: plain JSON
    jsonschema.validate(t, SCHEMA)
    ev = t["traceEvents"]
    names = {(e["pid"], e["args"]["name"]) for e in ev if e["name"] == "thread_name"}
    assert names == {(k, u) for k in range(4) for u in TRACKS}
    slices = [e for e in ev if e["ph"] == "X"]
    assert {e["pid"] for e in slices} == {0, 1, 2, 3}
    for e in slices:
        assert isinstance(e["args"]["pc"], int) and e["args"]["asm"].split()[0] == e["name"]
    tracks = defaultdict(list)
    for e in slices:
        tracks[e["pid"], e["tid"]].append((e["ts"], e["ts"] + e["dur"]))
    for spans in tracks.values():                    # a unit runs one instruction at a time (occupancy)
        spans.sort()
        assert all(a[1] <= b[0] + 1e-9 for a, b in zip(spans, spans[1:]))
    mhz = model.cfg.clock_mhz
    assert t["otherData"]["cycles"] == model.step_cycles(stream, pos)
    assert max(e["args"]["done_us"] for e in slices) == pytest.approx(model.step_cycles(stream, pos) / mhz)
    gathers = [e for e in slices if e["name"] == "ALLGATHER"]
    flows = [e for e in ev if e["ph"] in "sf"]
    assert t["otherData"]["ring_syncs"] == len(gathers) // 4 > 0
    starts = {e["id"] for e in flows if e["ph"] == "s"}
    assert starts == {e["id"] for e in flows if e["ph"] == "f"} and len(starts) == len(gathers)
    at = {(e["pid"], e["ts"]) for e in gathers}
    assert all((e["pid"], e["ts"]) in at for e in flows)                 # each flow end sits on a gather


def test_bad_position_is_refused(model):
    with pytest.raises(PerfError, match="outside the program's context"):
        chrome_trace(model, "decode", 10**6)


def test_cli_writes_the_trace(tmp_path):
    out = tmp_path / "step.json"
    r = CliRunner().invoke(perf, ["124M", "--devices", "2", "--input-tokens", "4", "--output-tokens", "2",
                                  "--trace", str(out)])
    assert r.exit_code == 0, r.output
    t = json.loads(out.read_text())
    jsonschema.validate(t, SCHEMA)
    assert t["otherData"]["pos"] == 3 and t["otherData"]["devices"] == 2
