"""The program manifest: the typed contract between the compiler and every reader of a program
(docs/design.md, contract 4).

`Manifest` is a frozen dataclass; the compiler builds it, `dfx.program` stores it as the container's
manifest.json (`Manifest.to_json`, canonical: sorted keys, so the same manifest is always the same bytes) and
reads it back with `Manifest.loads`, which bounds the text's size, turns any nesting too deep to parse into a
`ProgramError`, and checks every field's presence and type through `Manifest.from_json`. Each error is one line
naming the field and what it accepts, e.g. ``manifest field devices: got a list of 0; expected an integer >= 1``.
A manifest of another format version (older dfx) is refused: recompile with `dfx compile`.

JSON layout (every key is required; `null` where the type says `| None`):

    format, format_version       "dfx-program", MANIFEST_VERSION
    isa_version                  the ISA the streams are encoded in (must be this dfx's `isa.ISA_VERSION`)
    config, config_hash          the AccelConfig (`AccelConfig.to_dict`) and its hash
    model                        GPT-2 hyper-parameters (`ModelConfig`)
    devices, ring                device count and the ring order (a permutation of 0..devices-1)
    overlap                      all-gather segments: an integer >= 1 or {layer role: integer >= 1}
    weights                      false for a program compiled from shapes alone (no memory images)
    max_seq                      KV-cache positions
    streams                      stream names: prefill, decode (+ prefill_batch)
    symbols                      what the host reads (`HostSymbols`): logits buffer and slices, token table
    quantization                 weight formats and every quantized region per device (`Quantization`)
    memory                       per device: image sizes, VBUF entries used, DDR and HBM symbol tables
    tokenizer                    "bytes" (byte-level vocabulary) or "files" (the checkpoint's tokenizer: the
                                 container member tokenizer/tokenizer.json, when the checkpoint had one)
    node_pcs                     {stream: per device [[first pc, node name], ...]} for breakdowns
    checksums                    SHA-256 of every data member (streams, memory images, tokenizer); the
                                 container's digest.json holds the SHA-256 of this text (`dfx.program`)
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import NamedTuple, NoReturn

from . import isa
from .config import AccelConfig
from .errors import ProgramError
from .symbols import Space, Symbol, SymbolTable

FORMAT_NAME = "dfx-program"
MANIFEST_VERSION = 3                  # 1: the untyped manifest; 2: no digest.json, tokenizer as several files
                                      # (both refused: recompile)
STREAMS = ("prefill", "decode")       # every program has these
BATCH_STREAM = "prefill_batch"        # the optional matrix-matrix prefill stream (docs/isa.md, "Batched prefill")
MAX_MANIFEST_BYTES = 64 << 20         # GPT-2 1.5B on 4 devices writes about 2 MB
TOKENIZERS = ("bytes", "files")
# A config's name becomes part of file names (the RTL harness's build directory): a plain name, never a path.
CONFIG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


# ---------------------------------------------------------------------------------------------- field checks
def _show(v) -> str:
    if isinstance(v, dict):
        return f"an object of {len(v)} key(s)"
    if isinstance(v, list):
        return f"a list of {len(v)}"
    r = repr(v)
    return f"{type(v).__name__} {r[:40] + '...' if len(r) > 40 else r}"


def _fail(path: str, got, want: str) -> NoReturn:
    raise ProgramError(f"manifest field {path}: got {_show(got)}; expected {want}")


def _obj(v, path: str, keys: tuple[str, ...]) -> dict:
    """`v` as an object with exactly `keys`."""
    if not isinstance(v, dict):
        _fail(path or "(top level)", v, "an object")
    where = path or "the manifest"
    missing = [k for k in keys if k not in v]
    if missing:
        raise ProgramError(f"manifest field {_at(path, missing[0])} is missing; {where} holds "
                           f"{', '.join(sorted(keys))}")
    extra = sorted(str(k) for k in v if k not in keys)
    if extra:
        raise ProgramError(f"manifest field {where} has unknown key(s) {', '.join(extra)}; accepted: "
                           f"{', '.join(sorted(keys))}")
    return v


def _at(path: str, key) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)


MAX_VOCAB = 1 << 24            # a bound on vocab_size (GPT-2: 50,257): the host sizes its logits buffer from it


def _int(v, path: str, lo: int = 0, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        _fail(path, v, f"an integer in {lo}..{hi}" if hi is not None else f"an integer >= {lo}")
    return v


def _num(v, path: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        _fail(path, v, "a positive number")
    return float(v)


def _str(v, path: str, choices: tuple[str, ...] | None = None) -> str:
    if not isinstance(v, str) or not v or (choices is not None and v not in choices):
        _fail(path, v, f"one of {', '.join(choices)}" if choices else "a non-empty string")
    return v


def _bool(v, path: str) -> bool:
    if not isinstance(v, bool):
        _fail(path, v, "true or false")
    return v


def _list(v, path: str, n: int | None = None, what: str = "") -> list:
    if not isinstance(v, list) or (n is not None and len(v) != n):
        _fail(path, v, f"a list of {n}{what}" if n is not None else "a list")
    return v


def _map(v, path: str) -> dict:
    if not isinstance(v, dict):
        _fail(path, v, "an object")
    return v


def _strmap(v, path: str) -> dict[str, str]:
    return {k: _str(x, _at(path, k)) for k, x in _map(v, path).items()}


def _addr_key(k: str, path: str) -> int:
    if not (isinstance(k, str) and k.isdigit() and (k == "0" or k[0] != "0")):
        raise ProgramError(f"manifest field {path} has key {k!r}; expected decimal HBM addresses")
    return int(k)


def _to_obj(v):
    if hasattr(v, "to_obj"):
        return v.to_obj()
    if isinstance(v, tuple):
        return [_to_obj(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _to_obj(x) for k, x in v.items()}
    return v


def check_config_name(name) -> str:
    """`name` if it is a plain config name (CONFIG_NAME: no separator, no leading dot), else a ProgramError."""
    if not isinstance(name, str) or not CONFIG_NAME.fullmatch(name):
        _fail("config.name", name, "a plain name of at most 64 letters, digits and _ . + - (no path), starting "
                                   "with a letter or digit")
    return name


# ---------------------------------------------------------------------------------------------- parts
class _Part:
    """A part of the manifest: its JSON keys are its dataclass fields."""

    @classmethod
    def _keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_obj(self) -> dict:
        """The part as a JSON object (what its `from_json` reads)."""
        return {f.name: _to_obj(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class ModelConfig(_Part):
    """The GPT-2 hyper-parameters the program was compiled from."""
    vocab_size: int
    n_positions: int
    n_embd: int
    n_layer: int
    n_head: int
    layer_norm_epsilon: float

    @classmethod
    def from_json(cls, v, path: str = "model") -> ModelConfig:
        o = _obj(v, path, cls._keys())
        ints = {k: _int(o[k], _at(path, k), 1) for k in cls._keys() if k != "layer_norm_epsilon"}
        return cls(**ints, layer_norm_epsilon=_num(o["layer_norm_epsilon"], _at(path, "layer_norm_epsilon")))


@dataclass(frozen=True)
class Region(_Part):
    """A quantized weight region in HBM (`dfx.formats.RegionLayout`): node, format, k x n, group phase, bytes."""
    node: str
    format: str
    k: int
    n: int
    phase: int
    bytes: int

    @classmethod
    def from_json(cls, v, path: str) -> Region:
        o = _obj(v, path, cls._keys())
        return cls(_str(o["node"], _at(path, "node")), _str(o["format"], _at(path, "format")),
                   *(_int(o[k], _at(path, k), 0 if k == "phase" else 1) for k in ("k", "n", "phase", "bytes")))


@dataclass(frozen=True)
class Quantization(_Part):
    """The weight format (or "per-matrix"), the method, each linear's format and method, and per device every
    weight region by HBM address (64-byte units)."""
    format: str
    method: str
    matrices: dict[str, str]
    methods: dict[str, str]
    regions: tuple[dict[int, Region], ...]

    @classmethod
    def from_json(cls, v, path: str, devices: int) -> Quantization:
        o = _obj(v, path, cls._keys())
        rp = _at(path, "regions")
        regions = []
        for k, per in enumerate(_list(o["regions"], rp, devices, " (one per device)")):
            pk = _at(rp, k)
            regions.append({_addr_key(a, pk): Region.from_json(r, _at(pk, a)) for a, r in _map(per, pk).items()})
        return cls(_str(o["format"], _at(path, "format")), _str(o["method"], _at(path, "method")),
                   _strmap(o["matrices"], _at(path, "matrices")), _strmap(o["methods"], _at(path, "methods")),
                   tuple(regions))


@dataclass(frozen=True)
class PrefillBatch(_Part):
    """The batched prefill: its stream, the most tokens per run (M) and the token table's DDR byte address."""
    stream: str
    max_tokens: int
    tokens: int

    @classmethod
    def from_json(cls, v, path: str) -> PrefillBatch:
        o = _obj(v, path, cls._keys())
        return cls(_str(o["stream"], _at(path, "stream"), (BATCH_STREAM,)),
                   _int(o["max_tokens"], _at(path, "max_tokens"), 1), _int(o["tokens"], _at(path, "tokens")))


@dataclass(frozen=True)
class HostSymbols(_Part):
    """What the host reads and writes: the logits buffer (DDR byte address, the same on every device), the
    vocabulary slices [a, b) each device stores there, and the batched prefill's token table (None: no
    prefill_batch stream)."""
    logits: int
    vocab_size: int
    logits_pieces: tuple[tuple[tuple[int, int], ...], ...]
    prefill_batch: PrefillBatch | None

    @classmethod
    def from_json(cls, v, path: str, devices: int) -> HostSymbols:
        o = _obj(v, path, cls._keys())
        vocab = _int(o["vocab_size"], _at(path, "vocab_size"), 1, MAX_VOCAB)
        pp = _at(path, "logits_pieces")
        pieces = []
        for k, per in enumerate(_list(o["logits_pieces"], pp, devices, " (one per device)")):
            mine = []
            for i, ab in enumerate(_list(per, _at(pp, k))):
                at = _at(_at(pp, k), i)
                a, b = (_int(x, at, 0, vocab) for x in _list(ab, at, 2, " column bounds [a, b)"))
                if a >= b:
                    _fail(at, ab, f"column bounds [a, b) with a < b <= {vocab}")
                mine.append((a, b))
            pieces.append(tuple(mine))
        pb = o["prefill_batch"]
        return cls(_int(o["logits"], _at(path, "logits")), vocab, tuple(pieces),
                   None if pb is None else PrefillBatch.from_json(pb, _at(path, "prefill_batch")))


@dataclass(frozen=True)
class DeviceMemory(_Part):
    """One device's memory: image sizes in bytes, VBUF entries the token-serial streams use (and the batched
    prefill stream, None without one), and where every DDR and HBM symbol is (`dfx.symbols`)."""
    hbm_bytes: int
    ddr_bytes: int
    vbuf_entries: int
    vbuf_entries_batch: int | None
    hbm: SymbolTable
    ddr: SymbolTable

    @classmethod
    def from_json(cls, v, path: str) -> DeviceMemory:
        o = _obj(v, path, cls._keys())
        b = o["vbuf_entries_batch"]
        return cls(_int(o["hbm_bytes"], _at(path, "hbm_bytes")), _int(o["ddr_bytes"], _at(path, "ddr_bytes")),
                   _int(o["vbuf_entries"], _at(path, "vbuf_entries")),
                   None if b is None else _int(b, _at(path, "vbuf_entries_batch")),
                   _table(o["hbm"], _at(path, "hbm"), Space.HBM), _table(o["ddr"], _at(path, "ddr"), Space.DDR))


def _table(v, path: str, space: Space) -> SymbolTable:
    syms = []
    for name, al in _map(v, path).items():
        at = _at(path, name)
        a, n = (_int(x, at) for x in _list(al, at, 2, " [address, length]"))
        syms.append(Symbol(name, space, a, n))
    return SymbolTable(space, syms)


class NodePc(NamedTuple):
    """The first instruction of a graph node in a stream."""
    pc: int
    node: str


def _node_pcs(v, path: str) -> tuple[NodePc, ...]:
    out = []
    for i, e in enumerate(_list(v, path)):
        at = _at(path, i)
        pc, node = _list(e, at, 2, " [pc, node name]")
        out.append(NodePc(_int(pc, _at(at, 0)), _str(node, _at(at, 1))))
    return tuple(out)


# ---------------------------------------------------------------------------------------------- the manifest
@dataclass(frozen=True)
class Manifest(_Part):
    isa_version: int
    config: AccelConfig
    model: ModelConfig
    devices: int
    ring: tuple[int, ...]
    overlap: int | dict[str, int]
    weights: bool
    max_seq: int
    streams: tuple[str, ...]
    symbols: HostSymbols
    quantization: Quantization
    memory: tuple[DeviceMemory, ...]
    tokenizer: str
    node_pcs: dict[str, tuple[tuple[NodePc, ...], ...]]
    checksums: dict[str, str] = field(default_factory=dict)

    @property
    def config_hash(self) -> str:
        return self.config.config_hash

    # ---- JSON
    def to_obj(self) -> dict:
        """The manifest as a JSON object (what `from_json` reads)."""
        out = super().to_obj()
        out.update(format=FORMAT_NAME, format_version=MANIFEST_VERSION, config=self.config.to_dict(),
                   config_hash=self.config_hash)
        return out

    def to_json(self) -> str:
        """Canonical JSON text: sorted keys, ASCII, one indentation; equal manifests give equal text."""
        return json.dumps(self.to_obj(), sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False)

    @classmethod
    def loads(cls, data: bytes | str) -> Manifest:
        """Parse manifest.json text: at most MAX_MANIFEST_BYTES, any nesting depth, then `from_json`."""
        if len(data) > MAX_MANIFEST_BYTES:
            raise ProgramError(f"manifest.json is {len(data)} bytes; a dfx manifest is at most {MAX_MANIFEST_BYTES}")
        try:
            obj = json.loads(data)
        except RecursionError:
            raise ProgramError("manifest.json nests too deeply to parse; a dfx manifest nests 5 levels") from None
        except ValueError as e:
            raise ProgramError(f"manifest.json is not JSON ({e})") from None
        return cls.from_json(obj)

    @classmethod
    def from_json(cls, obj) -> Manifest:
        """Validate a parsed manifest.json; ProgramError naming the first field that is missing, unknown or of the
        wrong type, an older format version, another ISA version, or a config hash that does not match."""
        if not isinstance(obj, dict):
            _fail("(top level)", obj, "an object")
        if obj.get("format") != FORMAT_NAME:
            raise ProgramError(f"not a dfx program (manifest format {_show(obj.get('format'))}; expected "
                               f"{FORMAT_NAME!r})")
        ver = obj.get("format_version")
        if ver != MANIFEST_VERSION:
            older = isinstance(ver, int) and not isinstance(ver, bool) and ver < MANIFEST_VERSION
            whose = "from an older" if older else "not read by this"
            raise ProgramError(f"manifest format version {_show(ver)} is {whose} dfx (it reads version "
                               f"{MANIFEST_VERSION}); recompile with dfx compile")
        o = _obj(obj, "", ("format", "format_version", *cls._keys(), "config_hash"))
        iv = _int(o["isa_version"], "isa_version", 1)
        if iv != isa.ISA_VERSION:
            raise ProgramError(f"the program was built for ISA version {iv}, this dfx implements ISA version "
                               f"{isa.ISA_VERSION}; recompile with dfx compile")
        try:
            cfg = AccelConfig.from_dict(_map(o["config"], "config"))
        except ProgramError:
            raise
        except Exception as e:  # noqa: BLE001 - any malformed config (unknown field, bad value) is a program error
            raise ProgramError(f"manifest field config is invalid ({e})") from None
        check_config_name(cfg.name)
        h = _str(o["config_hash"], "config_hash")
        if h != cfg.config_hash:
            raise ProgramError(f"manifest config hash {h} does not match its config ({cfg.config_hash}); the "
                               "manifest was edited")
        model = ModelConfig.from_json(o["model"])
        n = _int(o["devices"], "devices", 1)
        ring = tuple(_int(x, _at("ring", i), 0, n - 1) for i, x in enumerate(_list(o["ring"], "ring", n,
                                                                                    " (one per device)")))
        if sorted(ring) != list(range(n)):
            _fail("ring", o["ring"], f"a permutation of the devices 0..{n - 1}")
        ov = o["overlap"]
        overlap = ({k: _int(s, _at("overlap", k), 1) for k, s in ov.items()} if isinstance(ov, dict)
                   else _int(ov, "overlap", 1))
        streams = tuple(_str(s, _at("streams", i), (*STREAMS, BATCH_STREAM))
                        for i, s in enumerate(_list(o["streams"], "streams")))
        if streams[:2] != STREAMS or len(set(streams)) != len(streams):
            _fail("streams", o["streams"], f"{', '.join(STREAMS)}, then optionally {BATCH_STREAM}")
        symbols = HostSymbols.from_json(o["symbols"], "symbols", n)
        if (symbols.prefill_batch is not None) != (BATCH_STREAM in streams):
            raise ProgramError(f"manifest field symbols.prefill_batch must be given exactly when streams holds "
                               f"{BATCH_STREAM}")
        memory = tuple(DeviceMemory.from_json(m, _at("memory", k))
                       for k, m in enumerate(_list(o["memory"], "memory", n, " (one per device)")))
        node_pcs = {}
        for s, per in _map(o["node_pcs"], "node_pcs").items():
            if s not in streams:
                raise ProgramError(f"manifest field node_pcs has stream {s!r}; expected one of {', '.join(streams)}")
            sp = _at("node_pcs", s)
            node_pcs[s] = tuple(_node_pcs(dev, _at(sp, k))
                                for k, dev in enumerate(_list(per, sp, n, " (one per device)")))
        checksums = _strmap(o["checksums"], "checksums")
        for name, digest in checksums.items():
            if len(digest) != 64 or digest.strip("0123456789abcdef"):
                _fail(_at("checksums", name), digest, "a SHA-256 digest (64 lowercase hex digits)")
        return cls(iv, cfg, model, n, ring, overlap, _bool(o["weights"], "weights"),
                   _int(o["max_seq"], "max_seq", 1, model.n_positions), streams, symbols,
                   Quantization.from_json(o["quantization"], "quantization", n), memory,
                   _str(o["tokenizer"], "tokenizer", TOKENIZERS), node_pcs, checksums)
