"""The typed program manifest (dfx.manifest): a compiled manifest survives its canonical JSON, and every kind of
bad field (missing, unknown, wrong type or value, another version, nesting too deep to parse) is one
`ProgramError` line naming the field and what it accepts."""
import copy
import json

import pytest

from dfx import isa
from dfx import manifest as M
from dfx.compiler import compile_model
from dfx.config import PRESETS
from dfx.errors import ProgramError
from dfx.manifest import MANIFEST_VERSION, Manifest

MODEL = {"n_layer": 2, "n_embd": 64, "n_head": 2, "vocab_size": 96, "n_positions": 32, "layer_norm_epsilon": 1e-5}


@pytest.fixture(scope="module")
def manifest():
    """Every part filled: two devices, quantized regions, a batched prefill stream."""
    return compile_model(MODEL, "tiny", devices=2, weights="int4-oc-g32", prefill_batch=3).manifest


def _bad(obj, path, value=..., delete=False):
    """A copy of `obj` with the field at `path` (keys and list indices) set to `value` or deleted."""
    obj = copy.deepcopy(obj)
    *parent, last = path
    at = obj
    for k in parent:
        at = at[k]
    if delete:
        del at[last]
    else:
        at[last] = value
    return obj


def _error(obj) -> str:
    with pytest.raises(ProgramError) as e:
        Manifest.from_json(obj)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_canonical_json_roundtrip(manifest):
    text = manifest.to_json()
    back = Manifest.loads(text)
    assert back == manifest and back.to_json() == text
    obj = json.loads(text)
    assert obj["format_version"] == MANIFEST_VERSION and obj["config_hash"] == PRESETS["tiny"].config_hash
    assert back.symbols.prefill_batch.max_tokens == 3 and back.streams[-1] == M.BATCH_STREAM
    assert all(isinstance(a, int) for a in back.quantization.regions[1])          # addresses, not strings


@pytest.mark.parametrize("path,field", [
    (("max_seq",), "max_seq"),
    (("symbols", "logits"), "symbols.logits"),
    (("symbols", "prefill_batch", "tokens"), "symbols.prefill_batch.tokens"),
    (("memory", 1, "hbm"), "memory[1].hbm"),
    (("model", "n_head"), "model.n_head"),
])
def test_missing_field(manifest, path, field):
    obj = json.loads(manifest.to_json())
    assert _error(_bad(obj, path, delete=True)).startswith(f"manifest field {field} is missing; ")


def test_missing_region_field(manifest):
    obj = json.loads(manifest.to_json())
    addr = next(iter(obj["quantization"]["regions"][0]))
    msg = _error(_bad(obj, ("quantization", "regions", 0, addr, "bytes"), delete=True))
    assert msg.startswith(f"manifest field quantization.regions[0].{addr}.bytes is missing; ")
    assert msg.endswith("holds bytes, format, k, n, node, phase")


def test_unknown_field(manifest):
    obj = json.loads(manifest.to_json())
    assert _error(_bad(obj, ("symbols", "logit"), 0)) == (
        "manifest field symbols has unknown key(s) logit; accepted: logits, logits_pieces, prefill_batch, vocab_size")


@pytest.mark.parametrize("path,value,want", [
    (("max_seq",), "256", "max_seq: got str '256'; expected an integer in 1..32"),
    (("max_seq",), 33, "max_seq: got int 33; expected an integer in 1..32"),
    (("devices",), [], "devices: got a list of 0; expected an integer >= 1"),
    (("devices",), True, "devices: got bool True; expected an integer >= 1"),
    (("symbols", "logits"), "0", "symbols.logits: got str '0'; expected an integer >= 0"),
    (("symbols", "logits_pieces", 0, 0), [5, 2], "symbols.logits_pieces[0][0]: got a list of 2; expected column "
                                                 "bounds [a, b) with a < b <= 96"),
    (("symbols", "prefill_batch"), None, "symbols.prefill_batch must be given exactly when streams holds "
                                         "prefill_batch"),
    (("ring",), [0, 0], "ring: got a list of 2; expected a permutation of the devices 0..1"),
    (("ring",), [0], "ring: got a list of 1; expected a list of 2 (one per device)"),
    (("weights",), 1, "weights: got int 1; expected true or false"),
    (("streams",), ["decode", "prefill"], "streams: got a list of 2; expected prefill, decode, then optionally "
                                          "prefill_batch"),
    (("streams", 2), "prefil", "streams[2]: got str 'prefil'; expected one of prefill, decode, prefill_batch"),
    (("model", "n_layer"), 1.5, "model.n_layer: got float 1.5; expected an integer >= 1"),
    (("model", "layer_norm_epsilon"), "1e-5", "model.layer_norm_epsilon: got str '1e-5'; expected a positive number"),
    (("overlap",), "auto", "overlap: got str 'auto'; expected an integer >= 1"),
    (("overlap",), {"mlp.c_fc": 0}, "overlap.mlp.c_fc: got int 0; expected an integer >= 1"),
    (("tokenizer",), "gpt2", "tokenizer: got str 'gpt2'; expected one of bytes, files"),
    (("memory", 0, "ddr", "logits"), 0, "memory[0].ddr.logits: got int 0; expected a list of 2 [address, length]"),
    (("memory", 0, "vbuf_entries_batch"), -1, "memory[0].vbuf_entries_batch: got int -1; expected an integer >= 0"),
    (("quantization", "regions"), {}, "quantization.regions: got an object of 0 key(s); expected a list of 2 (one "
                                      "per device)"),
    (("node_pcs", "decode", 0, 0), [0], "node_pcs.decode[0][0]: got a list of 1; expected a list of 2 [pc, node "
                                        "name]"),
    (("checksums",), {"dev0/decode.bin": "00"}, "checksums.dev0/decode.bin: got str '00'; expected a SHA-256 "
                                                "digest (64 lowercase hex digits)"),
    (("config",), [], "config: got a list of 0; expected an object"),
])
def test_wrong_type_or_value(manifest, path, value, want):
    obj = json.loads(manifest.to_json())
    assert _error(_bad(obj, path, value)) == f"manifest field {want}"


def test_bad_config_and_edited_hash(manifest):
    obj = json.loads(manifest.to_json())
    assert _error(_bad(obj, ("config", "d"), "8")).startswith("manifest field config is invalid (")
    assert "unknown AccelConfig field(s) dd" in _error(_bad(obj, ("config", "dd"), 8))
    assert _error(_bad(obj, ("config", "d"), 16)).startswith("manifest config hash ")


def test_region_addresses_are_decimal(manifest):
    obj = json.loads(manifest.to_json())
    assert _error(_bad(obj, ("quantization", "regions", 0, "0x10"), {})) == (
        "manifest field quantization.regions[0] has key '0x10'; expected decimal HBM addresses")


@pytest.mark.parametrize("version,want", [
    (1, "manifest format version int 1 is from an older dfx (it reads version {v}); recompile with dfx compile"),
    (99, "manifest format version int 99 is not read by this dfx (it reads version {v}); recompile with dfx compile"),
    ("2", "manifest format version str '2' is not read by this dfx (it reads version {v}); recompile with dfx "
          "compile"),
])
def test_unknown_version(manifest, version, want):
    obj = json.loads(manifest.to_json())
    assert _error(_bad(obj, ("format_version",), version)) == want.format(v=MANIFEST_VERSION)


def test_not_a_manifest_and_other_isa(manifest):
    obj = json.loads(manifest.to_json())
    assert _error([]) == "manifest field (top level): got a list of 0; expected an object"
    assert _error(_bad(obj, ("format",), "zip")) == "not a dfx program (manifest format str 'zip'; expected " \
                                                    "'dfx-program')"
    assert _error(_bad(obj, ("isa_version",), isa.ISA_VERSION + 1)) == (
        f"the program was built for ISA version {isa.ISA_VERSION + 1}, this dfx implements ISA version "
        f"{isa.ISA_VERSION}; recompile with dfx compile")


def test_deep_nesting(manifest, monkeypatch):
    """Nesting too deep for the parser is a ProgramError, not a RecursionError; nesting the parser takes is a
    wrong type at the field it sits in; a text above the size bound is refused before parsing."""
    with pytest.raises(ProgramError, match="manifest.json nests too deeply to parse"):
        Manifest.loads("[" * 100_000 + "]" * 100_000)
    obj = json.loads(manifest.to_json())
    deep = []
    for _ in range(500):
        deep = [deep]
    assert _error(_bad(obj, ("symbols", "logits_pieces"), deep)) == (
        "manifest field symbols.logits_pieces: got a list of 1; expected a list of 2 (one per device)")
    monkeypatch.setattr(M, "MAX_MANIFEST_BYTES", 100)
    with pytest.raises(ProgramError, match="manifest.json is 101 bytes; a dfx manifest is at most 100"):
        Manifest.loads(" " * 101)
    with pytest.raises(ProgramError, match="manifest.json is not JSON"):
        Manifest.loads("{")
