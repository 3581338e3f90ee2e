"""Regenerate the logic-depth and resource tables of docs/rtl.md (hours at the dfx preset; not CI).

    python benchmarks/resource_tables.py --depth [--config tiny] [--update-docs]     # minutes
    python benchmarks/resource_tables.py --depth --config dfx --units mpu [--update-docs]   # the dfx MPU lane
    python benchmarks/resource_tables.py --fit [--update-docs]      # the whole core per SLR, both configurations
    python benchmarks/resource_tables.py --depth-core [--update-docs]     # the core's control, DMA, buffers: depth
    python benchmarks/resource_tables.py --resources [--update-docs]                 # hours: both presets

--depth runs `dfx.hw.depth` (Yosys synth_xilinx -family xcup + the register-to-register walk) on every
arithmetic unit twice: at the pipeline depths the units had before the depth analysis ("default") and at the
depths that close 300 MHz ("deep": `DEEP`), plus one MPU lane (l=1) at the config's d with the deep stages and the
pipelined accumulator, its GELU unit left out (measured as gelu16). The per-stage logic of the MPU does not depend on l, and d sets only
the number of tree levels, so the tiny config's depth is the dfx preset's; `--config dfx` measures the lane
at the preset's d = 64 to show it (the leaf units do not depend on the config). With every leaf's
counts in the build folder it also composes the MPU and VPU by instance at the tiny and dfx presets, the best
configuration that fits (`FIT_BEST`: INT4 table dequantisers) and the best modelled one (`BEST`).
--fit (after --depth) counts the whole core at both presets (tiny, dfx) and at `FIT_BEST`: the MPU (at the 300 MHz
depths its measured dfx lane times l, where --depth --config dfx ran), the VPU's operators and the table
dequantisers composed from the leaf counts, and everything else -- the core
(`hw.top.Top`) synthesised flat with the MPU, the VPU and the element dequantisers as black boxes
(`hw.blackbox`) -- then places it on the three SLRs (`floorplan`) against 75% of what the shell leaves, and
states the clock the depth table supports (`supported_clock`); the reorder buffer and the VBUF's read copies
are measured apart and placed beside their readers. --depth-core walks the same rest-of-core netlist for the
worst path into each of its modules (`core_depth`). --resources runs `dfx.hw.synth` at both presets with the lane splits the docs use. Each Yosys run
is one child process, one at a time, capped at 8 GB of address space. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

from dfx.config import PIPELINE_ENV, load_config
from dfx.docblock import read_block, write_block
from dfx.hw import core_mpu, core_vpu, qfetch
from dfx.hw.blackbox import synth_boxed
from dfx.hw.dequant import TableDequantizer
from dfx.hw.qfetch import QuantTiles
from dfx.hw.core_mpu import MatrixEngine
from dfx.hw.core_rob import Reorder, interleave
from dfx.hw.core_vpu import VectorEngine
from dfx.hw.buffers import VectorBuffer
from dfx.hw.core import ENGINES
from dfx.hw.dma import DmaEngine
from dfx.hw.router import RouterEngine
from dfx.hw.top import Top
from dfx.hw.depth import (Delays, analyse, depth_row, depth_table, longest_paths, module_name,
                          parse_depth_table, unit_factories)
from dfx.hw.fp import ADD_MAX_STAGES, MUL16_CUTS, MUL32_CUTS
from dfx.hw.mpu import MPU, STAGES_300MHZ, tile_layout
from dfx.hw.synth import RES_KEYS, Resources, count_cells, lane_count, resources_dict, slr_budget
from dfx.hw.synth import main as synth_main

DOC = Path(__file__).resolve().parents[1] / "docs" / "rtl.md"
A, M16, M32 = ADD_MAX_STAGES, len(MUL16_CUTS), len(MUL32_CUTS)
# Pipeline depths for 300 MHz: every operator with all its cuts (hw.mpu.STAGES_300MHZ for the MPU).
DEEP = {"add32": f"stages={A}", "add32dsp": f"stages={A}", "mul32": f"stages={M32}", "mul16": f"stages={M16}", "round16": "stages=2",
        "gelu16": f"add_stages={A},mul_stages={M32}", "exp16": f"add_stages={A},mul_stages={M32}",
        "recip": f"add_stages={A},mul_stages={M32}", "rsqrt": f"add_stages={A},mul_stages={M32}",
        "dq_int4": "mul_stages=5,round_stages=2,code_stages=1", "dq_table": "mul_stages=5,round_stages=2"}
DEFAULT = {"add32": "stages=2", "add32dsp": "stages=2", "mul32": "stages=2", "mul16": "stages=1", "round16": "stages=1",
           "gelu16": "", "exp16": "", "recip": "", "rsqrt": "", "dq_int4": "",
           "dq_table": "mul_stages=5,round_stages=2"}
# The performance model's best configuration (docs/perf.md, benchmarks/perf_dfx_table.py `BEST`): the dfx preset
# with l = 32, 1024-bit HBM ports, 300 MHz and INT4 weights (int4-oc-g128: d*l INT4 dequantisers before the MPU).
BEST = load_config("dfx").replace(name="dfx-l32-int4", l=32, hbm_width=1024, clock_mhz=300.0)
# The best configuration that fits (docs/perf.md "The goals", benchmarks/perf_dfx_table.py `BEST`): the dfx
# preset (l = 16) with INT4 weights as a tile-scaled core reads them (`AccelConfig.tile_scale`: the tile fetcher
# hands the MPU the codes, one `CodeTile` per lane, and each lane's tree sum is multiplied by its group scale,
# `MPU(tile_scale=True)`; int4-oc-g128 at d = 64) at the clock the depth table supports (`supported_clock`).
FIT_BEST = load_config("dfx").replace(name="dfx-int4", tile_scale=True)
MPU_DEEP = ",".join(f"{k}={v}" for k, v in STAGES_300MHZ.items())


TABLE_FMT, TABLE_N = "int4-oc-asym", 64      # the core's INT4 family (hw.qfetch.CORE_FAMILIES), n = d of the dfx preset


def factories(cfg, specs: list[str]) -> dict:
    """`hw.depth.unit_factories`, plus `dq_table`: one `TableDequantizer` for the core's INT4 format serving
    the d = 64 rows of one lane (oc groups of G >= d share a scale per lane and tile)."""
    out = unit_factories(cfg, [s for s in specs if not s.startswith("dq_table")])
    for spec in specs:
        if spec.startswith("dq_table"):
            kw = {k: int(v) for k, v in (kv.split("=") for kv in spec.partition(":")[2].split(",") if kv)}
            out[spec] = (f"{TABLE_FMT}, n={TABLE_N}, " + ", ".join(f"{k}={v}" for k, v in kw.items()),
                         lambda kw=kw: TableDequantizer(TABLE_FMT, TABLE_N, **kw))
    return out


def mpu_spec(cfg) -> str:
    """The MPU's depth-run spec at `cfg`: the deep stages, no GELU (measured as gelu16), its adders on the
    DSP48E2 primitives (what Vivado builds from the model's `use_dsp` add; Yosys would map that add to carry
    chains); beyond the tiny config one lane (l=1 at the config's d: every stage's logic is a lane's, d sets
    the number of tree levels; a config needs d * l >= 32); a tile-scaled config's lane has its scale multiplier."""
    return (f"mpu:gelu=0,{MPU_DEEP}" + ("" if cfg.d < 32 else ",l=1") + ",dsp_add=1"
            + (",tile_scale=1" if cfg.tile_scale else ""))


def mpu_runs(cfg, leaves: Path, measure: bool = False) -> list[Resources | str | None]:
    """The MPU measured flat at l = 1 and l = 2 lanes (`mpu_spec` at cfg's d; the depth run's): their counts, or
    None where a run has not been made (a config under d = 32 has none). `measure`: make the missing runs (Yosys
    and the depth walk, minutes each at d = 64) and return their depth rows instead."""
    spec = mpu_spec(cfg)
    out = []
    for n in (1, 2):
        s = spec.replace(",l=1", f",l={n}")
        have = ",l=1" in spec and (leaves / f"{module_name(s)}.stat.json").exists()
        if measure and ",l=1" in spec and not have:
            params, make = factories(cfg, [s])[s]
            path, _ = analyse(make(), module_name(s), leaves, Delays.from_board())
            out.append(depth_row(f"MPU, deep, l={n}", params, path, Delays.from_board()))
        elif not measure:
            out.append(leaf_resources(leaves, s) if have else None)
    return out


def mpu_split(cfg, leaves: Path) -> tuple[Resources, Resources] | None:
    """(shared, one lane) of the MPU at the 300 MHz depths from the flat runs at l = 1 and 2 (`mpu_runs`): lane =
    R(2) - R(1), shared = R(1) - lane (`hw.synth.lane_count`: the control every lane shares, counted once);
    (nothing, R(1)) where only the l = 1 run exists; None without it."""
    one, two = mpu_runs(cfg, leaves)
    if one is None or two is None:
        return None if one is None else (Resources(), one)
    return lane_count(one, 1, two, 2, 0), plus(two, one, -1)


def depth_specs(cfg, units: list[str]) -> list[tuple[str, str]]:
    """(label, unit spec) pairs for `unit_factories` (the MPU: `mpu_spec`)."""
    out = []
    for u in units:
        if u == "mpu":
            out.append(("MPU, deep", mpu_spec(cfg)))
        else:
            out.append((f"{u}, default", f"{u}:{DEFAULT[u]}"))
            out.append((f"{u}, deep", f"{u}:{DEEP[u]}"))
    return out


def leaf_resources(build: Path, spec: str) -> Resources:
    """The cell counts Yosys reported (`stat`) for one unit of the depth run."""
    stat = json.loads((build / f"{module_name(spec)}.stat.json").read_text())
    design = stat.get("design") or next(iter(stat["modules"].values()))
    return count_cells(design.get("num_cells_by_type", {}))


# Operator instances per unit (hw/mpu.py, hw/vpu.py): the MPU per lane d binary16 multipliers, d - 1 tree
# adders, the accumulator and bias adders, the scale multiplier, the rounding and the GELU; the VPU as the core
# builds it (`VectorEngine.vpu_params`: one exp and one GELU unit per k = SFU_SHARE lanes), per lane an adder,
# a multiplier, a rounding and a binary16 multiplier (VDOT), plus the reduction tree (vpu_width - 1 adders),
# its accumulator and the scalar adder, multiplier, reciprocal and rsqrt; at the 300 MHz depths (`deep`) the
# VPU's adders on DSP48E2 as the deep core builds them (`VectorEngine.vpu_params`' dsp_add).
def instances(cfg, deep: bool = False) -> dict[str, dict[str, int]]:
    d, l, w = cfg.d, cfg.l, cfg.vpu_width
    params = VectorEngine.vpu_params(cfg, deep)
    k, vadd = params["sfu_share"], ("add32dsp" if params.get("dsp_add") else "add32")
    out = {  # MPU(cfg), dsp_add on by default: the d - 1 tree adders and the accumulator on DSP48E2, bias in LUTs
           "mpu": {"mul16": l * d, "add32dsp": l * d, "add32": l, "mul32": l, "round16": l, "gelu16": l},
           "mpu, LUT adders": {"mul16": l * d, "add32": l * (d - 1 + 2), "mul32": l, "round16": l, "gelu16": l},
           f"vpu, k={k}": {vadd: w + (w - 1) + 1 + 1, "mul32": w + 1, "round16": w, "exp16": w // k,
                           "gelu16": w // k, "mul16": w, "recip": 1, "rsqrt": 1}}
    if cfg.name == BEST.name:
        out["int4 dequantisers"] = {"dq_int4": d * l}
    if cfg.tile_scale:                               # each lane's tile-scale multiplier
        out["mpu"]["mul32"] += l
        out["mpu, LUT adders"]["mul32"] += l
    return out


def plus(a: Resources, b: Resources, f: float = 1.0) -> Resources:
    """a + f * b, field by field (rounded to whole cells)."""
    out = Resources()
    for k in ("lut", "lutram", "ff", "carry8", "dsp", "bram36", "bram18", "uram"):
        setattr(out, k, round(getattr(a, k) + f * getattr(b, k)))
    return out


def composed(cfg, build: Path, units: list[str]) -> dict[tuple[str, str], Resources]:
    """(unit, depths) -> the unit's operators' resources, composed from the leaf counts by instance."""
    out = {}
    for unit in instances(cfg):
        for depth, table in (("default", DEFAULT), ("300 MHz", DEEP)):
            inst = instances(cfg, depth != "default")[unit]
            tot = Resources()
            for leaf, n in inst.items():
                if leaf in units:
                    tot = plus(tot, leaf_resources(build, f"{leaf}:{table[leaf]}"), n)
            out[unit, depth] = tot
    return out


def compose_table(cfgs, build: Path, units: list[str]) -> str:
    """Resources of the MPU and VPU composed from the leaf units' counts by instance, at the default and the
    300 MHz depths, against the U280's capacity and against what the platform leaves to the kernel (the
    dynamic region of all three SLRs, `hw.synth.slr_budget`)."""
    dyn = slr_budget().total
    head = ["config", "unit", "depths", "LUT", "FF", "CARRY4", "DSP48E2", "RAMB36", "RAMB18",
            "% U280 LUT", "% U280 FF", "% U280 DSP", "% dyn. LUT", "% dyn. FF", "% dyn. DSP", "% dyn. BRAM"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cfg in cfgs:
        for (unit, depth), tot in composed(cfg, build, units).items():
            sh, r = tot.share(), resources_dict(tot)
            lines.append("| " + " | ".join([
                f"{cfg.name} (d={cfg.d}, l={cfg.l})", unit, depth, f"{tot.lut + tot.lutram:,}", f"{tot.ff:,}",
                f"{tot.carry8:,}", f"{tot.dsp:,}", f"{tot.bram36:,}", f"{tot.bram18:,}", f"{sh['LUT']:.1f}",
                f"{sh['FF']:.1f}", f"{sh['DSP']:.1f}"] + [f"{100 * r[k] / dyn[k]:.1f}" for k in
                                                         ("LUT", "FF", "DSP", "BRAM36")]) + " |")
    return "\n".join(lines)


BOXED = {"MPU": core_mpu, "VPU": core_vpu, "Dequantizer": qfetch, "TableDequantizer": qfetch}


def rest_of_core(cfg, build: Path, mem: int, wformats: tuple[str, ...] = (), boxes=("MPU", "VPU"),
                 mfs: bool = True, netlist: bool = False) -> Resources:
    """The whole core (`hw.top.Top`, module dfx_core) with the units named in `boxes` as black boxes
    (`hw.blackbox`): the controller, register map, fetch, decoder, scoreboard and queues, batched prefill,
    scalar file, vector buffer, the engines around the MPU and VPU (their FIFOs, write-back), DMA, router,
    the quantized tile fetchers of `wformats` and the top's reset and ports, mapped flat by Yosys
    (`synth_xilinx`, one child process under `mem` bytes of address space). Reused when the RTLIL is the same."""
    name = f"rest_{cfg.name.replace('-', '_')}" + ("_ts" if cfg.tile_scale else "") + \
        "".join(f"_{f}" for f in wformats) + "".join(f"_no{b.lower()}" for b in boxes)
    boxed = {}
    for b in boxes:
        boxed[BOXED[b]] = boxed.get(BOXED[b], ()) + (b,)
    res = synth_boxed(lambda: Top(cfg, wformats=wformats) if wformats else Top(cfg), name, boxed, build, mem, mfs,
                      netlist)
    print(f"  {name}: {res.lut + res.lutram:,} LUT, {res.ff:,} FF, {res.dsp} DSP, {res.bram:g} RAMB36",
          file=sys.stderr, flush=True)
    return res


def rest_parts(cfg) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(wformats, boxed units) of the rest-of-core run for `cfg`: the INT4 tile fetcher in the best
    configuration (its code tiles, the tile-scaled core's, in it)."""
    if cfg.name == FIT_BEST.name:
        return ("int4",), ("MPU", "VPU")
    return (), ("MPU", "VPU")


def fetcher(cfg, build: Path, mem: int, family: str = "int4", mfs: bool = True, netlist: bool = False) -> Resources:
    """The quantized tile fetcher of `family` on its own (`hw.qfetch.QuantTiles(cfg, family)`; a tile-scaled
    config's, as its core builds it: the codes and one scale per lane, its `CodeTile`s counted in it; otherwise
    its dequantisers boxed) (`--fetcher-apart`)."""
    codes = cfg.tile_scale
    name = f"fetcher_{cfg.name.replace('-', '_')}_{family}" + ("_codes" if codes else "")
    res = synth_boxed(lambda: QuantTiles(cfg, family, codes=codes), name,
                      {} if codes else {qfetch: ("Dequantizer", "TableDequantizer")}, build, mem, mfs, netlist)
    print(f"  {name}: {res.lut + res.lutram:,} LUT, {res.ff:,} FF, {res.dsp} DSP, {res.bram:g} RAMB36",
          file=sys.stderr, flush=True)
    return res


def reorder(cfg, build: Path, mem: int, mfs: bool = True) -> Resources:
    """The matrix engine's reorder buffer (`hw.core_rob.Reorder`) as the deep core builds it, on its own: the
    part of the rest of the core that the floorplan places with the MPU lanes (each lane reads only its own
    d x 16 bits of a tile, so the memory's columns split by lane)."""
    mpu = MPU(cfg, **MatrixEngine.mpu_params(cfg))  # (as the engine builds it; only its parameters are read)
    mpu._MustUse__silence = True
    i = interleave(mpu.acc_stages, mpu.acc_fifo)
    if i == 1:
        return Resources()
    name = f"rob_{cfg.name.replace('-', '_')}"
    lag = MatrixEngine.default_slr_stages()          # (its SLR crossing's registers placed with it)
    res = synth_boxed(lambda: Reorder(tile_layout(cfg).size, i, lag=lag), name, {}, build, mem, mfs)
    print(f"  {name}: {res.lut + res.lutram:,} LUT, {res.ff:,} FF, {res.bram:g} RAMB36", file=sys.stderr, flush=True)
    return res




# The VBUF's read ports by engine (`Engine.VBUF_READS`): Yosys (and Vivado) build one copy of the memory per
# read port, every copy written by the one write port. The floorplan puts each engine's copies beside it.
VBUF_COPIES = {"vbuf copies read by the MPU": MatrixEngine, "vbuf copies read by the VPU": VectorEngine,
               "vbuf copies read by the DMA and router": (DmaEngine, RouterEngine)}


def vbuf_copies(cfg, build: Path, mem: int, mfs: bool = True) -> dict[str, Resources]:
    """The vector buffer (`hw.buffers.VectorBuffer` with the core's read ports) on its own, split into its read
    copies by engine (`VBUF_COPIES`; each copy an equal share of the measured buffer)."""
    n = sum(len(e.VBUF_READS) for e in ENGINES)
    name = f"vbuf_{cfg.name.replace('-', '_')}"
    res = synth_boxed(lambda: VectorBuffer(cfg, readers=n), name, {}, build, mem, mfs)
    print(f"  {name}: {res.lut + res.lutram:,} LUT, {res.ff:,} FF, {res.bram:g} RAMB36 ({n} read copies)",
          file=sys.stderr, flush=True)
    out = {}
    for part, engines in VBUF_COPIES.items():
        k = sum(len(e.VBUF_READS) for e in (engines if isinstance(engines, tuple) else (engines,)))
        out[part] = plus(Resources(), res, k / n)
    return out


def core_parts(cfg, build: Path, mem: int, fetcher_apart: bool = False,
               mfs: bool = True) -> dict[tuple[str, str], Resources]:
    """(part, depths) -> resources of the whole core at `cfg`: the MPU's and VPU's operators (and the table
    dequantisers) composed from the leaf counts of the depth run, the rest of the core measured with those units
    boxed (`rest_of_core`, the same at both depths). fetcher_apart: for a config with a tile fetcher
    (`rest_parts`), the rest of the core is measured without it (the same core as the dfx preset's) and the
    fetcher on its own (`fetcher`, part "int4 tile fetcher"): two shorter Yosys runs instead of one; what joins
    them (the MPU engine's 2:1 multiplexer of FP16 and dequantised tiles into the MPU's `w`, d*l*16 bits, and
    the fetcher's status and control wiring) is in neither."""
    leaves = build / "depth"
    wformats, boxes = rest_parts(cfg)
    out = {}
    if fetcher_apart and wformats:
        q = fetcher(cfg, build / "rest", mem, wformats[0], mfs=mfs)
        rest = rest_of_core(cfg.replace(name="dfx") if cfg.name == FIT_BEST.name else cfg, build / "rest", mem,
                            mfs=mfs)
        for depth in ("default", "300 MHz"):
            out[f"{wformats[0]} tile fetcher", depth] = q
    else:
        rest = rest_of_core(cfg, build / "rest", mem, wformats, boxes, mfs)
    base = cfg.replace(name="dfx") if cfg.name == FIT_BEST.name else cfg
    rob = reorder(base, build / "rest", mem, mfs)
    copies = vbuf_copies(base, build / "rest", mem, mfs)
    rest = plus(rest, rob, -1)                       # the reorder buffer and the VBUF are placed apart (`floorplan`)
    for c in copies.values():
        rest = plus(rest, c, -1)
    units = composed(cfg, leaves, list(DEFAULT))
    split = mpu_split(base, leaves)
    for depth in ("default", "300 MHz"):
        for (unit, dep), r in units.items():
            if dep == depth and (unit.startswith("vpu") or unit in ("mpu", "int4 table dequantisers")):
                out[unit, depth] = r
        if split is not None:                        # the measured lanes (flat: delay lines, FIFOs, muxes too)
            shared, lane = split
            out["mpu shared control", depth] = shared if depth != "default" else Resources()
            if depth != "default":
                gelu = leaf_resources(leaves, f"gelu16:{DEEP['gelu16']}")
                out["mpu", depth] = plus(plus(Resources(), lane, cfg.l), gelu, cfg.l)
        out["rest of the core", depth] = rest
        if rob.bram or rob.lut:
            out["reorder buffer", depth] = rob
        for part, c in copies.items():
            out[part, depth] = c
    return out


def floorplan(cfg, parts: dict[str, dict[str, float]], budget) -> dict[str, dict[str, float]]:
    """The stated floorplan: the rest of the core (DMA next to the HBM, controller, scoreboard) in the HBM's
    SLR, the VPU in SLR2, the VBUF's read copies beside their readers (the DMA's and the router's in the HBM's
    SLR, the VPU's in SLR2, the MPU's -- the operand broadcast's source -- in the middle SLR, one crossing
    from either end), then the MPU's lanes (each with its dequantisers and its columns of the reorder buffer)
    one at a time into the SLR with the most LUTs left under 75% (whole lanes). unit -> SLR -> share."""
    slrs = list(budget.available)
    left = {s: budget.limit * budget.available[s]["LUT"] for s in slrs}
    plan = {"rest of the core": {budget.hbm_slr: 1.0}}
    vpu = next(u for u in parts if u.startswith("vpu"))
    plan[vpu] = {slrs[-1]: 1.0}
    left[budget.hbm_slr] -= parts["rest of the core"]["LUT"]
    for u, s in (("vbuf copies read by the DMA and router", budget.hbm_slr), ("vbuf copies read by the VPU", slrs[-1]),
                 ("vbuf copies read by the MPU", slrs[len(slrs) // 2]), ("mpu shared control", slrs[len(slrs) // 2])):
        if u in parts:
            plan[u] = {s: 1.0}
            left[s] -= parts[u]["LUT"]
    for u in parts:                                  # a tile fetcher measured apart: beside the HBM, as the DMA
        if u.endswith("tile fetcher"):
            plan[u] = {budget.hbm_slr: 1.0}
            left[budget.hbm_slr] -= parts[u]["LUT"]
    left[slrs[-1]] -= parts[vpu]["LUT"]
    lane_units = [u for u in parts if u in ("mpu", "reorder buffer") or "dequantisers" in u]
    lane = sum(parts[u]["LUT"] for u in lane_units) / cfg.l
    lanes = dict.fromkeys(slrs, 0)
    for _ in range(cfg.l):
        s = max(slrs, key=lambda x: left[x])
        lanes[s] += 1
        left[s] -= lane
    for u in lane_units:
        plan[u] = {s: n / cfg.l for s, n in lanes.items() if n}
    return plan


def full_fit_table(cfgs, build: Path, mem: int, fetcher_apart: bool = False, mfs: bool = True) -> str:
    """Per configuration, depths and SLR: the whole core (`core_parts`) placed by `floorplan` (at the 300 MHz
    depths' counts, the larger in FFs), used / available to the kernel after the HBM subsystem, and the
    resources over 75%; then the parts themselves."""
    budget = slr_budget()
    head = ["config", "depths", "SLR", "placed", "LUT", "FF", "BRAM36", "URAM", "DSP48E2", "over 75%"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    parts_lines = ["| config | part | depths | LUT | FF | CARRY4 | DSP48E2 | RAMB36 | RAMB18 | % dyn. LUT |",
                   "|" + "---|" * 10]
    for cfg in cfgs:
        parts = core_parts(cfg, build, mem, fetcher_apart, mfs)
        plan = floorplan(cfg, {u: resources_dict(r) for (u, dep), r in parts.items() if dep == "300 MHz"}, budget)
        for depth in ("default", "300 MHz"):
            placed = {slr: dict.fromkeys(RES_KEYS, 0.0) for slr in budget.available}
            for unit, shares in plan.items():
                r = resources_dict(parts[unit, depth])
                for slr, f in shares.items():
                    for k in RES_KEYS:
                        placed[slr][k] += f * r[k]
            placed["all"] = {k: sum(placed[s][k] for s in budget.available) for k in RES_KEYS}
            avail = dict(budget.available, all=budget.total)
            for slr in placed:
                who = ", ".join(f"{u} {f:.0%}" for u, sh in plan.items() for s, f in sh.items() if s == slr) or \
                    ("the whole core" if slr == "all" else "-")
                cells = [f"{placed[slr][k]:,.0f} / {avail[slr][k]:,.0f} ({100 * placed[slr][k] / avail[slr][k]:.1f}%)"
                         for k in RES_KEYS]
                over = [k for k in RES_KEYS if placed[slr][k] > budget.limit * avail[slr][k]]
                lines.append("| " + " | ".join([f"{cfg.name} (d={cfg.d}, l={cfg.l})", depth, slr, who] + cells +
                                               [", ".join(over) or "none"]) + " |")
            for (unit, dep), r in parts.items():
                if dep == depth:
                    parts_lines.append(f"| {cfg.name} | {unit} | {depth} | {r.lut + r.lutram:,} | {r.ff:,} | "
                                       f"{r.carry8:,} | {r.dsp:,} | {r.bram36:,} | {r.bram18:,} | "
                                       f"{100 * (r.lut + r.lutram) / budget.total['LUT']:.1f} |")
    return "\n".join(lines) + "\n\n" + "\n".join(parts_lines)


def unit_path(end: str) -> str:
    """The module path of a register of the flattened core, its numbered copies as one (`core.mpu.rob.count[3]`
    -> `core.mpu.rob`; `m_axi_hbm07_w_slr_0.skid[1]` -> `m_axi_hbm*_w_slr_*`)."""
    parts = end.lstrip("\\").split(".")
    if parts[0].startswith("$"):
        return "(registers Yosys named)"
    return re.sub(r"\d+", "*", ".".join(parts[:-1])) or "dfx_core"


def core_depth(cfg, build: Path, mem: int, top: int = 40, fetcher_only: bool = False) -> str:
    """The worst register-to-register path into each module of the rest of the core (`rest_of_core`, the deep
    profile's `Top` with the MPU and VPU boxed, ABC9 without &mfs: the controller, scoreboard, fetch and
    decoder, DMA, router, vector buffer, the engines' control, the reorder buffer's chunk walk, the SLR slices
    and the reset pipeline), from the same Yosys run as the fit (its netlist written too). `fetcher_only`: the
    same of `cfg`'s INT4 tile fetcher on its own (`fetcher`, `--depth-fetcher`)."""
    if fetcher_only:                                 # FIT_BEST's INT4 tile fetcher on its own (`fetcher`)
        fetcher(cfg, build, mem, mfs=False, netlist=True)
        path = build / f"fetcher_{cfg.name.replace('-', '_')}_int4{'_codes' if cfg.tile_scale else ''}_nomfs.json"
    else:
        rest_of_core(cfg, build, mem, mfs=False, netlist=True)
        path = build / f"rest_{cfg.name.replace('-', '_')}_nompu_novpu_nomfs.json"
    print(f"core_depth: walking {path} ({path.stat().st_size / 1e6:.0f} MB) ...", file=sys.stderr, flush=True)
    net = json.loads(path.read_text())
    name = path.stem                                 # (the module synth_boxed named)
    delays = Delays.from_board()
    groups = longest_paths(net, name, delays, unit_path)
    del net
    rows = [depth_row(u, f"{cfg.name}: d={cfg.d}, l={cfg.l}, deep profile",
                      replace(p, start=p.start.replace(".", "/")[-40:], end=p.end.replace(".", "/")[-40:]), delays)
            for u, p in sorted(groups.items(), key=lambda kv: (-kv[1].delay_ns, kv[0]))[:top]]
    over = sum(1 for p in groups.values() if not (p.luts <= delays.max_levels and
                                                   p.delay_ns <= 1000 / delays.target_mhz))
    return depth_table(rows) + (f"\n\n{len(groups)} modules with registers; {over} of them have a path beyond the "
                                f"300 MHz depth ({delays.max_levels} LUT levels, {1000 / delays.target_mhz:.2f} ns).")


# The units of the core at the 300 MHz depths whose worst path sets its clock (the MPU's control: "MPU, deep").
CLOCK_UNITS = ("add32", "add32dsp", "mul16", "mul32", "round16", "gelu16", "exp16", "recip", "rsqrt", "dq_table",
               "MPU")


def supported_clock(depth_rows: str, units: tuple[str, ...]) -> float:
    """The clock (MHz, rounded down to 10) that the deep rows of the depth table support for `units`: the
    slowest one's estimated Fmax."""
    rows = {r["unit"]: r for r in parse_depth_table(depth_rows)}
    fmax = min(float(rows[f"{u}, deep"]["est. Fmax (MHz)"]) for u in units if f"{u}, deep" in rows)
    return float(int(fmax) // 10 * 10)


def core_clock(depth_core_rows: str) -> float:
    """The clock (MHz, rounded down to 10) that the core's own logic supports (`--depth-core`'s table: the
    slowest module's estimated Fmax); infinite where the table is empty."""
    rows = parse_depth_table(depth_core_rows) if depth_core_rows.strip() else []
    if not rows:
        return float("inf")
    return float(int(min(float(r["est. Fmax (MHz)"]) for r in rows)) // 10 * 10)


def run_depth(cfg, units: list[str], build: Path) -> str:
    delays = Delays.from_board()
    rows = []
    specs = depth_specs(cfg, units)
    facts = factories(cfg, [s for _, s in specs])
    for label, spec in specs:
        params, make = facts[spec]
        name = module_name(spec)
        print(f"depth: {label} ({spec}) ...", file=sys.stderr, flush=True)
        p, secs = analyse(make(), name, build, delays)
        print(f"  {p.luts} LUT levels, {p.carry} carry, {p.delay_ns:.2f} ns, {secs:.0f} s", file=sys.stderr,
              flush=True)
        rows.append(depth_row(label, params or "-", p, delays))
    return depth_table(rows)


def adder_table(build: Path, depth_rows: str) -> str:
    """The binary32 adder in LUTs and on DSP48E2 at the default and the 300 MHz depths: Yosys's counts (the
    depth run's `stat`) and the worst stage of the depth table `depth_rows`."""
    rows = {r["unit"]: r for r in parse_depth_table(depth_rows)}
    head = ["adder", "stages", "LUT", "FF", "CARRY4", "DSP48E2", "worst stage: LUT levels, carry",
            "est. delay, Fmax"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for unit, what in (("add32", "LUT (`add32`)"), ("add32dsp", "DSP (`add32dsp`)")):
        for depth, table in (("default", DEFAULT), ("deep", DEEP)):
            r, d = leaf_resources(build, f"{unit}:{table[unit]}"), rows.get(f"{unit}, {depth}")
            if d is None:
                continue
            lut = f"{r.lut:,}" + (f" + {r.lutram} SRL" if r.lutram else "")
            dsp = f" (+{d['DSP (comb)']} DSP)" if d["DSP (comb)"] != "0" else ""
            lines.append("| " + " | ".join([what, table[unit].split("=")[1], lut, f"{r.ff:,}", f"{r.carry8:,}",
                                            f"{r.dsp}", f"{d['LUT levels']}, {d['carry (CARRY4)']}{dsp}",
                                            f"{d['est. delay (ns)']} ns, {d['est. Fmax (MHz)']} MHz"]) + " |")
    return "\n".join(lines)


def merge_depth(old: str, new: str) -> str:
    """The depth table `new` with the rows of `old` whose unit label it does not have (a run of some units
    keeps the others' measured rows), in the units' order (`DEFAULT`, then the MPU; default before deep)."""
    if not old.strip():
        return new
    labels = {r["unit"] for r in parse_depth_table(new)}
    head, rows = new.strip().splitlines()[:2], new.strip().splitlines()[2:]
    rows += [ln.strip() for ln in old.strip().splitlines()[2:]
             if ln.startswith("|") and ln.strip("| ").split(" |")[0].strip() not in labels]
    order = [*DEFAULT, "MPU"]

    def rank(line: str) -> tuple[int, int]:
        unit, _, depth = line.strip("| ").split(" |")[0].partition(", ")
        return (order.index(unit) if unit in order else len(order), depth != "default")
    return "\n".join(head + sorted(rows, key=rank))


def block(doc: Path, tag: str) -> str:
    return read_block(doc, f"<!-- {tag} -->", f"<!-- /{tag} -->") or ""


def update_block(doc: Path, tag: str, text: str) -> None:
    try:
        write_block(doc, f"<!-- {tag} -->", f"<!-- /{tag} -->", text, missing="error")
    except ValueError as e:
        raise SystemExit(f"resource_tables: {e}") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depth", action="store_true", help="the logic-depth table")
    ap.add_argument("--resources", action="store_true", help="the resource tables at both presets (hours)")
    ap.add_argument("--fit", action="store_true", help="the whole core's fit per SLR at both presets and the best "
                                                        "configuration (needs the leaf counts of --depth)")
    ap.add_argument("--fetcher-apart", action="store_true",
                    help="--fit: the best configuration's rest of the core as the dfx preset's plus its INT4 tile "
                         "fetcher measured on its own (two shorter Yosys runs; see core_parts)")
    ap.add_argument("--no-mfs", action="store_true",
                    help="--fit: ABC9 without its &mfs pass and its &verify check (hw.blackbox.NOMFS): LUT counts "
                         "a little above the default's, in minutes instead of hours on the dfx preset's rest of the core")
    ap.add_argument("--depth-core", action="store_true",
                    help="the worst path into each module of the core around the MPU and VPU (the controller, "
                         "DMA, buffers, ...) at the dfx preset's deep profile, from the fit's Yosys run")
    ap.add_argument("--depth-fetcher", action="store_true",
                    help="the worst path into each module group of the INT4 tile fetcher of FIT_BEST (the "
                         "tile-scaled configuration's `QuantTiles`, deep profile), from its own Yosys run (~7 min)")
    ap.add_argument("--core-config", default="dfx",
                    help="--depth-core: the config (dfx, ~25 min; tiny, ~3 min: docs/rtl.md shows both)")
    ap.add_argument("--configs", default="tiny,dfx,best",
                    help="--fit: any of tiny, dfx (the two presets) and best (FIT_BEST), comma-separated")
    ap.add_argument("--mem", type=int, default=8_000_000_000, help="address-space cap of each Yosys child (--fit)")
    ap.add_argument("--config", default="tiny", help="config of the MPU lane in the depth table (default tiny)")
    ap.add_argument("--units", default="add32,add32dsp,mul16,mul32,round16,gelu16,exp16,recip,rsqrt,dq_int4,dq_table,"
                                       "mpu")
    ap.add_argument("--build", default="build/resource_tables")
    ap.add_argument("--update-docs", action="store_true")
    a = ap.parse_args(argv)
    if not (a.depth or a.resources or a.fit or a.depth_core or a.depth_fetcher):
        ap.error("give --depth, --fit, --depth-core, --depth-fetcher and/or --resources")
    if a.depth_fetcher:
        os.environ[PIPELINE_ENV] = "deep"
        table = core_depth(FIT_BEST, Path(a.build) / "rest", a.mem, fetcher_only=True)
        print(table)
        if a.update_docs:
            update_block(DOC, "depth:fetcher", table)
    if a.depth:
        cfg = load_config(a.config)
        units = a.units.split(",")
        table = run_depth(cfg, units, Path(a.build) / "depth")
        print(table)
        missing = [u for u in DEFAULT for t in (DEFAULT, DEEP) if not (Path(a.build) / "depth" / (
            module_name(f"{u}:{t[u]}") + ".stat.json")).exists()]
        if a.update_docs:
            update_block(DOC, f"depth:{cfg.name}", merge_depth(block(DOC, f"depth:{cfg.name}"), table))
        if {"add32", "add32dsp"} <= set(units):
            adders = adder_table(Path(a.build) / "depth", table)
            print(adders)
            if a.update_docs:
                update_block(DOC, "adders", adders)
        if missing:                                  # compose only from a complete set of leaf counts
            print(f"resource_tables: no leaf counts for {', '.join(sorted(set(missing)))} in {a.build}/depth: "
                  "the composed and fit tables are left as they are", file=sys.stderr)
        else:
            build, leaves = Path(a.build) / "depth", list(DEFAULT)
            comp = compose_table([load_config("tiny"), load_config("dfx"), FIT_BEST, BEST], build, leaves)
            print(comp)
            if a.update_docs:
                update_block(DOC, "compose", comp)
    if a.fit:
        os.environ[PIPELINE_ENV] = "deep"            # the core `dfx build` writes (its reorder buffer, SLR slices)
        cfgs = {"tiny": load_config("tiny"), "dfx": load_config("dfx"), "best": FIT_BEST}
        lanes = {c: mpu_runs(cfgs[c], Path(a.build) / "depth", measure=True) for c in a.configs.split(",")}
        fit = full_fit_table([cfgs[c] for c in a.configs.split(",")], Path(a.build), a.mem, a.fetcher_apart,
                             not a.no_mfs)
        fit += ("\n\nThe rest of the core is the deep pipeline profile's (`dfx build`'s core: the reorder buffer, the "
                "HBM ports' SLR slices, the reset pipeline), mapped " + ("with ABC9 without &mfs and &verify (`--no-mfs`)"
                                                                         if a.no_mfs else "with ABC9's default script")
                + "; the VPU and the dequantisers are the leaf counts composed; the MPU at the 300 MHz depths is "
                + ("l lanes plus the control they share, from the MPU measured flat at l = 1 and l = 2 (`mpu_split`: "
                   "its delay lines, partial-sum FIFO and multiplexers included; the shared part placed once, with "
                   "the operand broadcast's source), plus l GELU units"
                   if mpu_split(load_config("dfx"), Path(a.build) / "depth") else "the leaf counts composed")
                + ", at the default depths the leaf counts composed. The reorder buffer and the VBUF are measured "
                  "on their own and placed apart from the rest (`floorplan`).")
        clock = supported_clock(block(DOC, "depth:tiny"), CLOCK_UNITS)
        fit += f"\n\nClock the depth table supports for these units (deep rows): {clock:.0f} MHz"
        for c, rows in lanes.items():
            if rows:
                fit += f"\n\nThe MPU of {cfgs[c].name}, measured flat for this table:\n\n" + depth_table(rows)
        print(fit)
        if a.update_docs:
            update_block(DOC, "fit-core", fit)
    if a.depth_core:
        os.environ[PIPELINE_ENV] = "deep"
        table = core_depth(load_config(a.core_config), Path(a.build) / "rest", a.mem)
        print(table)
        if a.update_docs:                            # (the dfx preset's table; the tiny config's beside it)
            update_block(DOC, "depth:core" if a.core_config == "dfx" else f"depth:core-{a.core_config}", table)
    if a.resources:
        upd = ["--update-docs"] if a.update_docs else []
        synth_main(["--config", "tiny", "--build", f"{a.build}/synth"] + upd)
        synth_main(["--config", "dfx", "--split", "mpu=1,2", "--split", "vpu=4,8,16", "--build",
                    f"{a.build}/synth"] + upd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
