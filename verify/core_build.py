"""The integrated core (`dfx.hw.top`) as Verilog for a simulator: generated for a config (and a ring of
`devices` cores), patched for Icarus, built with cocotb's runner, all cached under build/rtl_core/ and redone
only when a source of the RTL changes.

    runner, bdir = build(cfg, sim="icarus", devices=1)      # bdir: build/rtl_core/<config>_<hash>_<sim>[_ringN]
    build(cfg, in_order=True)       # the same core dispatching one instruction at a time (`Core(in_order=True)`)

The quantized weight families a core is built with are part of its build key (`weight_families(program)`: those
the program uses). `DFX_RTL_WFORMATS=all` (or a comma list of `dfx.hw.qfetch.CORE_FAMILIES`) builds every core
with those families as well, so programs of different formats share one build (benchmarks/rtl_formats.py).
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from dfx.config import AccelConfig, pipeline_profile
from dfx import isa
from dfx.formats import DESC_BYTES, WFMT_CODES, FormatError, WeightFormat, read_descriptor, region_format
from dfx.hw.core_mpu import MatrixEngine
from dfx.errors import UsageError
from dfx.hw.qfetch import CORE_FAMILIES, core_cannot_read, core_family, family_formats, table_family
from dfx.hw.top import ring_name, verilog

from .toolchain import runner_build, simulator

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build" / "rtl_core"
TOP = "dfx_core"
# the hw/ modules the core's Verilog is generated from (a change to any of them rebuilds it)
RTL_SOURCES = frozenset({"top", "core", "dma", "fetch", "regs", "router", "buffers", "decoder", "fp", "sfu", "mpu",
                         "vpu", "pipe", "scoreboard", "qfetch", "qstream", "dequant", "slr", "ring", "predecode"})
PATCH_VERSION = 1                 # bump when `kick_comb_processes` changes: cached Icarus builds are redone
WFORMATS_ENV = "DFX_RTL_WFORMATS"  # families every core is built with besides the program's: "all" or a comma list
_VERILOG_CACHE: dict = {}         # (config hash, devices, source hash) -> Verilog text, within one process


def top_name(devices: int) -> str:
    """The Verilog top of one core, or of `devices` cores in a ring."""
    return TOP if devices == 1 else ring_name(devices)


def source_hash() -> str:
    """Hash of everything the Verilog is generated from (the RTL modules of hw/ and the core package)."""
    h = hashlib.sha256()
    hw = [p for p in (REPO / "hw").glob("*.py") if p.stem.split("_")[0] in RTL_SOURCES]
    for p in sorted(hw + [REPO / "dfx" / f for f in ("isa.py", "regmap.py", "config.py", "numerics.py")]):
        h.update(p.name.encode() + p.read_bytes())
    h.update(MatrixEngine.profile().encode())     # the MPU profile ($DFX_RTL_MPU) the core is built with
    h.update(pipeline_profile().encode())         # the pipeline profile ($DFX_RTL_PIPELINE)
    h.update(b"qtables" if MatrixEngine.qtables() else b"")    # table dequantisers ($DFX_RTL_QTABLES)
    return h.hexdigest()[:16]


def core_choices() -> str:
    """The core choices the environment makes, checked ($DFX_RTL_PIPELINE, $DFX_RTL_MPU, $DFX_RTL_QTABLES: a
    `ConfigError`, one line, for a value out of range), in words for a progress line."""
    MatrixEngine.profile()
    return f"{pipeline_profile()} pipeline" + (", table dequantisers" if MatrixEngine.qtables() else "")


def build_suffix() -> str:
    """The build folder's suffix for the environment's core choices: the deep pipeline profile, table
    dequantisers."""
    return ("_deep" if pipeline_profile() == "deep" else "") + ("_qtables" if MatrixEngine.qtables() else "")


def kick_comb_processes(text: str) -> str:
    """(Icarus only.) Yosys' Verilog backend makes every `always @*` block read a dummy register initialised in
    its declaration (`reg \\$auto$verilog_backend...  = 0;`) so that simulators run the block once at time 0.
    Icarus applies declaration initialisers before the processes start waiting, so a block whose inputs never
    change afterwards (an FSM idling in its reset state) never runs and its outputs stay X. Toggle each dummy
    at 1 ns (during reset): every such block runs once. Synthesis never sees this text."""
    out = []
    for line in text.splitlines(keepends=True):
        out.append(line)
        mt = re.match(r"\s*reg (\\\$auto\$verilog_backend\S*)\s+= 0;", line)
        if mt:
            out.append(f"  initial #1 {mt.group(1)} = 1'h1;\n")
    return "".join(out)


def extra_families() -> tuple[str, ...]:
    """The families $DFX_RTL_WFORMATS adds to every core's build ("all": every one of `CORE_FAMILIES`; unset or
    empty: none), in `CORE_FAMILIES` order. A name that is not a family: a one-line FormatError."""
    text = os.environ.get(WFORMATS_ENV, "").strip().lower()
    if text == "all":
        return tuple(CORE_FAMILIES)
    names = {f.strip() for f in text.split(",") if f.strip()}
    bad = sorted(names - set(CORE_FAMILIES) - {"fp16"})
    if bad:
        raise FormatError(f"${WFORMATS_ENV}: not a weight family of the core: {', '.join(bad)}; accepted: all or "
                          f"a comma list of {', '.join(CORE_FAMILIES)}")
    return tuple(f for f in CORE_FAMILIES if f in names)


def weight_families(program) -> tuple[str, ...]:
    """The quantized weight format families (`dfx.hw.qfetch.CORE_FAMILIES`) a core built for `program` has
    (`MatrixEngine(wformats=...)`): those its matrix instructions use, plus $DFX_RTL_WFORMATS (`extra_families`)."""
    by_code = {code: core_family(WeightFormat(kind, bits, None if kind == "fp16" else "oc"))
               for (kind, bits), code in WFMT_CODES.items()}
    used = {i.fields().get("wfmt") for dev in program.devices for instrs in dev.streams.values() for i in instrs}
    want = {by_code[c] for c in used if c in by_code} | set(extra_families())
    return tuple(f for f in CORE_FAMILIES if f in want)


def quantized_refusal(program) -> str | None:
    """Why the RTL core cannot read a quantized matrix of `program` (None: it can): a family without a tile
    fetcher (`dfx.hw.qfetch.CORE_FAMILIES`), per-input-channel groups on a k that is not a multiple of d, or a
    piece that starts mid-group. Read
    from the regions' descriptors in the program's HBM images, naming the first such matrix."""
    for k, dev in enumerate(program.devices):
        for name, instrs in dev.streams.items():
            for pc, i in enumerate(instrs):
                f = i.fields()
                if not f.get("wfmt"):
                    continue
                at = f["w"] * isa.HBM_UNIT
                try:
                    desc = read_descriptor(bytes(dev.hbm[at:at + DESC_BYTES]))
                    fmt = region_format(desc)
                except FormatError as e:
                    return f"device {k} {name} pc {pc}: {e}"
                why = core_cannot_read(fmt, desc["phase"], desc["k"], program.config.d)
                if why:
                    return f"device {k} {name} pc {pc}: weight format {fmt.name}: {why}"
    return None


def build(cfg: AccelConfig, sim: str | None = None, waves: bool = False, devices: int = 1, in_order: bool = False,
          wformats: tuple[str, ...] = ()):
    """Verilog of the top for `cfg` (`devices` > 1: that many cores in a ring; `in_order`: the controller
    dispatching one instruction at a time; `wformats`: the quantized weight families the core reads), built for
    `sim` (cached: rebuilt only when a source changes). Returns (runner, build_dir)."""
    sim = simulator(sim)
    top = top_name(devices)
    bdir = BUILD / (f"{cfg.name}_{cfg.config_hash}_{sim}" + ("" if devices == 1 else f"_ring{devices}")
                    + ("_inorder" if in_order else "") + "".join(f"_{f}" for f in wformats)
                    + build_suffix())
    bdir.mkdir(parents=True, exist_ok=True)
    src = bdir / f"{top}.v"
    sources = source_hash()
    key = f"{sim} waves={waves} sources={sources} patch={PATCH_VERSION}"
    stamp = bdir / "stamp.txt"
    fresh = False
    if not stamp.exists() or stamp.read_text() != key or not src.exists():
        # generating the Verilog takes minutes: only when a source changed; recompile only if the text did
        ck = (cfg.config_hash, devices, sources, in_order, tuple(wformats))
        if ck not in _VERILOG_CACHE:
            _VERILOG_CACHE[ck] = verilog(cfg, devices, **({"in_order": True} if in_order else {}),
                                         **({"wformats": tuple(wformats)} if wformats else {}))
        text = _VERILOG_CACHE[ck]
        if sim == "icarus":
            text = kick_comb_processes(text)
        fresh = not src.exists() or src.read_text() != text or f"waves={waves}" not in (
            stamp.read_text() if stamp.exists() else "")
        if fresh:
            src.write_text(text)
        else:
            stamp.write_text(key)
    runner = runner_build(sim, src, top, bdir, fresh=fresh, waves=waves, verilator_args=("-O3",))
    if fresh:
        stamp.write_text(key)
    return runner, bdir


def build_families(cfg: AccelConfig, weights) -> tuple[str, ...]:
    """The quantized weight families `weights` (names, or one comma-separated string) a core is built to read,
    checked: each a family with a tile fetcher (`hw.qfetch.CORE_FAMILIES`), and for a tile-scaled config
    (`AccelConfig.tile_scale`) int3 or int4; a UsageError (one line) otherwise."""
    names = [w.strip() for w in (weights.split(",") if isinstance(weights, str) else weights) if w.strip()]
    if not names:
        return ()
    try:
        fams = family_formats(names)
    except ValueError:
        raise UsageError(f"--weights: {', '.join(n for n in names if n not in CORE_FAMILIES and n != 'fp16')} "
                         f"is not a weight family the core can read; accepted: a comma list of "
                         f"{', '.join(CORE_FAMILIES)}") from None
    if cfg.tile_scale and not all(table_family(f) for f in fams):
        raise UsageError(f"--weights: config {cfg.name} is tile-scaled (tile_scale): its core reads int3 "
                         f"and int4 codes only, not {', '.join(f for f in fams if not table_family(f))}")
    return fams
