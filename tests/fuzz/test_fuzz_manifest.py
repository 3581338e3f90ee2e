"""Fuzzing the manifest (issue 21): mutations of a compiled program's manifest.json (a field deleted, replaced by
any JSON value, retyped, nested, its config hash recomputed or not) are accepted or refused with one
ProgramError line by `Manifest.from_json` / `Manifest.loads`; a program file resealed around an accepted
mutation loads and runs on the sim backend, or is refused with one DfxError line."""
import json
import math

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dfx.config import AccelConfig
from dfx.errors import DfxError, ProgramError
from dfx.host.session import Session
from dfx.manifest import Manifest
from dfx.program import load_program, save_program
from program_forgery import read_members, reseal
from program_fuzz import programs

JSON = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                max_size=3), max_leaves=6)
SEMANTIC = ("symbols", "max_seq", "memory", "ring", "overlap", "node_pcs", "quantization", "model", "config",
            "devices", "streams", "tokenizer")          # what a forger edits to make a program misbehave
EDGES = (None, True, 0, -1, 1, 2 ** 31, 2 ** 64, 1.5, math.nan, math.inf, "", "0", "tiny", [], {}, [0], {"a": 1})


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    d = tmp_path_factory.mktemp("manifest_fuzz")
    out = {}
    for n, prog in programs().items():
        path = save_program(prog, d / f"p{n}.dfx")
        out[n] = (path, json.loads(read_members(path)["manifest.json"]))
    return d, out


def _paths(obj, at=()):
    yield at
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, at + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, at + (i,))


def _retyped(draw, old):
    """A value of the same JSON type as `old`, near it or at an edge (what gets past the type checks)."""
    if old is None:
        return draw(JSON)
    if isinstance(old, bool):
        return not old
    if isinstance(old, int):
        return draw(st.sampled_from((0, 1, -1, old - 1, old + 1, old * 2, 2 ** 32, 2 ** 63)))
    if isinstance(old, float):
        return draw(st.sampled_from((0.0, -old, old * 2, math.nan, math.inf)))
    if isinstance(old, str):
        return draw(st.sampled_from(("", old + "x", old[:-1], "prefill", "decode", "prefill_batch", "tiny", "bytes",
                                     "files", "fp16", "int4")))
    if isinstance(old, list):
        return draw(st.sampled_from((old[:-1], old + old[-1:], old[::-1], [old])))
    return {k: v for k, v in old.items() if draw(st.booleans())}


@st.composite
def mutations(draw, base, roots=None):
    """1-3 mutations of `base`; with `roots`, one mutation of a field under one of these keys."""
    obj = json.loads(json.dumps(base))
    for _ in range(draw(st.sampled_from((1, 1, 1, 2, 3))) if roots is None else 1):
        paths = [p for p in _paths(obj) if p and (roots is None or p[0] in roots)]
        path = draw(st.sampled_from(paths))
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        key, old = path[-1], parent[path[-1]]
        how = draw(st.sampled_from(("retype", "retype", "retype", "delete", "value", "edge", "wrap", "nest")
                                   if roots is None else ("retype",)))
        if how == "delete" and isinstance(parent, dict):
            del parent[key]
        elif how == "retype":
            parent[key] = _retyped(draw, old)
        elif how == "nest":
            parent[key] = json.loads("[" * 200 + "0" + "]" * 200)
        else:
            parent[key] = {"value": draw(JSON), "edge": draw(st.sampled_from(EDGES)), "wrap": [old],
                           "delete": None}[how]
    if draw(st.booleans()) and isinstance(obj.get("config"), dict):     # as a forger would: hash recomputed
        try:
            obj["config_hash"] = AccelConfig.from_dict(obj["config"]).config_hash
        except Exception:  # noqa: BLE001 - a config the mutation broke: keep the old hash
            pass
    return obj


def _from_json(obj):
    try:
        return Manifest.from_json(obj)
    except ProgramError as e:
        assert "\n" not in str(e) and str(e)
        return None


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_manifest_is_accepted_or_refused_in_one_line(compiled, data):
    _, progs = compiled
    base = progs[data.draw(st.sampled_from(sorted(progs)))][1]
    obj = data.draw(mutations(base))
    event("accepted" if _from_json(obj) is not None else "refused")
    text = json.dumps(obj)                      # allow_nan: the text json.loads reads back
    cut = data.draw(st.integers(0, len(text)))
    for t in (text, text[:cut], text[:cut] + data.draw(st.text(max_size=4)) + text[cut:]):
        try:
            Manifest.loads(t)
        except ProgramError as e:
            assert "\n" not in str(e) and str(e)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_program_around_a_mutated_manifest_runs_or_is_refused(compiled, tmp_path, data):
    d, progs = compiled
    path, base = progs[data.draw(st.sampled_from(sorted(progs)))]
    obj = data.draw(mutations(base, SEMANTIC))
    members = read_members(path)
    reseal(tmp_path / "m.dfx", members, edit=lambda m: (m.clear(), m.update(obj)))
    try:
        prog = load_program(tmp_path / "m.dfx")
        event("loaded")
        with Session(prog, "sim", timeout=20.0) as s:
            s.feed([1, 2])
        event("ran")
    except DfxError as e:
        assert "\n" not in str(e) and str(e)
