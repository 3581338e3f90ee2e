"""Regenerate the logic-depth and resource tables of docs/rtl.md (hours at the dfx preset; not CI).

    python benchmarks/resource_tables.py --depth [--config tiny] [--update-docs]     # minutes
    python benchmarks/resource_tables.py --depth --config dfx --units mpu [--update-docs]   # the dfx MPU lane
    python benchmarks/resource_tables.py --resources [--update-docs]                 # hours: both presets

--depth runs `dfx.hw.depth` (Yosys synth_xilinx -family xcup + the register-to-register walk) on every
arithmetic unit twice: at the pipeline depths the units had before the depth analysis ("default") and at the
depths that close 300 MHz ("deep": `DEEP`), plus one MPU lane (l=1) at the config's d with the deep stages and the
pipelined accumulator, its GELU unit left out (measured as gelu16). The per-stage logic of the MPU does not depend on l, and d sets only
the number of tree levels, so the tiny config's depth is the dfx preset's; `--config dfx` measures the lane
at the preset's d = 64 to show it (the leaf units do not depend on the config). With every leaf's
counts in the build folder it also composes the MPU and VPU by instance at the tiny, dfx and best-modelled
(`BEST`) configurations and writes the fit table of the dfx preset and of `BEST`. --resources runs `dfx.hw.synth` at both presets with the lane splits the docs use. Each Yosys run
is one child process, one at a time, capped at 8 GB of address space. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dfx.config import load_config
from dfx.hw.depth import (Delays, analyse, depth_row, depth_table, module_name, parse_depth_table,
                          unit_factories)
from dfx.hw.fp import ADD_MAX_STAGES, MUL16_CUTS, MUL32_CUTS
from dfx.hw.mpu import STAGES_300MHZ
from dfx.hw.synth import RES_KEYS, Resources, count_cells, resources_dict, slr_budget
from dfx.hw.synth import main as synth_main

DOC = Path(__file__).resolve().parents[1] / "docs" / "rtl.md"
A, M16, M32 = ADD_MAX_STAGES, len(MUL16_CUTS), len(MUL32_CUTS)
# Pipeline depths for 300 MHz: every operator with all its cuts (hw.mpu.STAGES_300MHZ for the MPU).
DEEP = {"add32": f"stages={A}", "add32dsp": f"stages={A}", "mul32": f"stages={M32}", "mul16": f"stages={M16}", "round16": "stages=2",
        "gelu16": f"add_stages={A},mul_stages={M32}", "exp16": f"add_stages={A},mul_stages={M32}",
        "recip": f"add_stages={A},mul_stages={M32}", "rsqrt": f"add_stages={A},mul_stages={M32}",
        "dq_int4": "mul_stages=2"}
DEFAULT = {"add32": "stages=2", "add32dsp": "stages=2", "mul32": "stages=2", "mul16": "stages=1", "round16": "stages=1",
           "gelu16": "", "exp16": "", "recip": "", "rsqrt": "", "dq_int4": ""}
# The performance model's best configuration (docs/perf.md, benchmarks/perf_dfx_table.py `BEST`): the dfx preset
# with l = 32, 1024-bit HBM ports, 300 MHz and INT4 weights (int4-oc-g128: d*l INT4 dequantisers before the MPU).
BEST = load_config("dfx").replace(name="dfx-l32-int4", l=32, hbm_width=1024, clock_mhz=300.0)
MPU_DEEP = ",".join(f"{k}={v}" for k, v in STAGES_300MHZ.items())


def depth_specs(cfg, units: list[str]) -> list[tuple[str, str]]:
    """(label, unit spec) pairs for `unit_factories`. The MPU beyond the tiny config is measured as one lane
    (l=1 at the config's d: every stage's logic is a lane's, d sets the number of tree levels)."""
    out = []
    lane = "" if cfg.d < 32 else ",l=1"             # (a config needs d * l >= 32)
    for u in units:
        if u == "mpu":
            out.append(("MPU, deep", f"mpu:gelu=0,{MPU_DEEP}{lane}"))
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
# adders, the accumulator and bias adders, the scale multiplier, the rounding and the GELU; the VPU per lane an
# adder, a multiplier, a rounding, exp, GELU and a binary16 multiplier (VDOT), plus the reduction tree
# (vpu_width - 1 adders), its accumulator and the scalar adder, multiplier, reciprocal and rsqrt.
def instances(cfg) -> dict[str, dict[str, int]]:
    d, l, w = cfg.d, cfg.l, cfg.vpu_width
    out = {  # MPU(cfg), dsp_add on by default: the d - 1 tree adders and the accumulator on DSP48E2, bias in LUTs
           "mpu": {"mul16": l * d, "add32dsp": l * d, "add32": l, "mul32": l, "round16": l, "gelu16": l},
           "mpu, LUT adders": {"mul16": l * d, "add32": l * (d - 1 + 2), "mul32": l, "round16": l, "gelu16": l},
           "vpu": {"add32": w + (w - 1) + 1 + 1, "mul32": w + 1, "round16": w, "exp16": w, "gelu16": w,
                   "mul16": w, "recip": 1, "rsqrt": 1}}
    if cfg.name == BEST.name:
        out["int4 dequantisers"] = {"dq_int4": d * l}
    return out


def composed(cfg, build: Path, units: list[str]) -> dict[tuple[str, str], Resources]:
    """(unit, depths) -> the unit's operators' resources, composed from the leaf counts by instance."""
    out = {}
    for unit, inst in instances(cfg).items():
        for depth, table in (("default", DEFAULT), ("300 MHz", DEEP)):
            tot = Resources()
            for leaf, n in inst.items():
                if leaf not in units:
                    continue
                r = leaf_resources(build, f"{leaf}:{table[leaf]}")
                for k in ("lut", "lutram", "ff", "carry8", "dsp", "bram36", "bram18", "uram"):
                    setattr(tot, k, getattr(tot, k) + n * getattr(r, k))
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


# The stated floorplan of the dfx preset: the share of each unit (its lanes) in each SLR. The HBM (and the DMA
# that joins its 32 channels into a tile) sits in SLR0; the MPU's 16 lanes are split between SLR0 (9) and
# SLR1 (7), so the tile and the operand broadcast cross one boundary (hw.top's hbm_slr_stages); the VPU's 64
# lanes fill the rest of SLR1 (16) and SLR2 (48).
FLOORPLAN = {"mpu": {"SLR0": 9 / 16, "SLR1": 7 / 16},
             "vpu": {"SLR1": 16 / 64, "SLR2": 48 / 64}}
# The best configuration's 32 MPU lanes (each with its d dequantisers) 12 / 11 / 9 over the three SLRs, the VPU as
# above: its LUTs exceed 75% of the whole dynamic region, so no split can make it fit.
FLOORPLAN_BEST = {"mpu": {"SLR0": 12 / 32, "SLR1": 11 / 32, "SLR2": 9 / 32},
                  "int4 dequantisers": {"SLR0": 12 / 32, "SLR1": 11 / 32, "SLR2": 9 / 32},
                  "vpu": {"SLR1": 16 / 64, "SLR2": 48 / 64}}


def fit_table(cfg, build: Path, units: list[str], floorplan=None) -> str:
    """Per SLR and resource: what `floorplan` puts there (composed operators, both depths) against 75% of
    what the platform leaves in that SLR (less the HBM subsystem in SLR0), and the whole dynamic region."""
    budget, plan = slr_budget(), floorplan or FLOORPLAN
    comp = composed(cfg, build, units)
    plan = {u: sh for u, sh in plan.items() if (u, "default") in comp}
    head = ["config", "depths", "SLR", "units placed", "LUT", "FF", "BRAM36", "URAM", "DSP48E2",   # RES_KEYS
            "over 75%"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for depth in ("default", "300 MHz"):
        placed = {slr: {k: 0.0 for k in RES_KEYS} for slr in budget.available}
        for unit, shares in plan.items():
            r = resources_dict(comp[unit, depth])
            for slr, f in shares.items():
                for k in RES_KEYS:
                    placed[slr][k] += f * r[k]
        placed["all"] = {k: sum(placed[s][k] for s in budget.available) for k in RES_KEYS}
        avail = dict(budget.available, all=budget.total)
        for slr in placed:
            who = ", ".join(f"{u} {f:.0%}" for u, sh in plan.items() for s, f in sh.items() if s == slr) or \
                ("every unit" if slr == "all" else "-")
            cells = [f"{placed[slr][k]:,.0f} / {avail[slr][k]:,.0f} ({100 * placed[slr][k] / avail[slr][k]:.0f}%)"
                     for k in RES_KEYS]
            over = [k for k in RES_KEYS if placed[slr][k] > budget.limit * avail[slr][k]]
            lines.append("| " + " | ".join([f"{cfg.name} (d={cfg.d}, l={cfg.l})", depth, slr, who] + cells +
                                           [", ".join(over) or "none"]) + " |")
    return "\n".join(lines)


def run_depth(cfg, units: list[str], build: Path) -> str:
    delays = Delays.from_board()
    rows = []
    specs = depth_specs(cfg, units)
    facts = unit_factories(cfg, [s for _, s in specs])
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
    keeps the others' measured rows)."""
    if not old.strip():
        return new
    labels = {r["unit"] for r in parse_depth_table(new)}
    keep = [ln.strip() for ln in old.strip().splitlines()[2:]
            if ln.startswith("|") and ln.strip("| ").split(" |")[0].strip() not in labels]
    return "\n".join(new.strip().splitlines() + keep)


def block(doc: Path, tag: str) -> str:
    src = doc.read_text()
    begin, end = f"<!-- {tag} -->", f"<!-- /{tag} -->"
    return src.split(begin, 1)[1].split(end, 1)[0] if begin in src and end in src else ""


def update_block(doc: Path, tag: str, text: str) -> None:
    begin, end = f"<!-- {tag} -->", f"<!-- /{tag} -->"
    src = doc.read_text()
    if begin not in src or end not in src:
        raise SystemExit(f"resource_tables: {doc} has no {begin} ... {end} block")
    head, rest = src.split(begin, 1)
    doc.write_text(f"{head}{begin}\n{text}\n{end}{rest.split(end, 1)[1]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depth", action="store_true", help="the logic-depth table")
    ap.add_argument("--resources", action="store_true", help="the resource tables at both presets (hours)")
    ap.add_argument("--config", default="tiny", help="config of the MPU lane in the depth table (default tiny)")
    ap.add_argument("--units", default="add32,add32dsp,mul16,mul32,round16,gelu16,exp16,recip,rsqrt,dq_int4,mpu")
    ap.add_argument("--build", default="build/resource_tables")
    ap.add_argument("--update-docs", action="store_true")
    a = ap.parse_args(argv)
    if not (a.depth or a.resources):
        ap.error("give --depth and/or --resources")
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
            comp = compose_table([load_config("tiny"), load_config("dfx"), BEST], build, leaves)
            fit = fit_table(load_config("dfx"), build, leaves)
            fit = fit + "\n" + "\n".join(fit_table(BEST, build, leaves, FLOORPLAN_BEST).splitlines()[2:])
            print(comp)
            print(fit)
            if a.update_docs:
                update_block(DOC, "fit", fit)
                update_block(DOC, "compose", comp)
    if a.resources:
        upd = ["--update-docs"] if a.update_docs else []
        synth_main(["--config", "tiny", "--build", f"{a.build}/synth"] + upd)
        synth_main(["--config", "dfx", "--split", "mpu=1,2", "--split", "vpu=4,8,16", "--build",
                    f"{a.build}/synth"] + upd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
