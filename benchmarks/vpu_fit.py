"""The VPU's logic depth and its fit at the dfx preset, with shared special-function units (docs/rtl.md, "VPU:
depth and sharing").

    python benchmarks/vpu_fit.py --leaves                 # Yosys on every leaf operator the VPU and MPU use
    python benchmarks/vpu_fit.py --depth                  # exp16, gelu16, recip, rsqrt at the 300 MHz depths
    python benchmarks/vpu_fit.py --fit --share 1,4,8      # the dfx VPU composed by instance, and the kernel's fit
    python benchmarks/vpu_fit.py --others                 # DMA, router, vector buffer at the dfx preset (flat)
    python benchmarks/vpu_fit.py --prefill                # the model's dfx prefill with the core's VPU at both depths

Each Yosys run (`synth_xilinx -family xcup -noiopad -flatten`, the native Yosys 0.70 of `pyosys`, as
`dfx.hw.depth` runs it) is one child process at a time, capped at --mem bytes of address space; it reads the
unit's RTLIL (`amaranth.back.rtlil`: no WebAssembly Yosys, which reserves 4 GB) and a netlist built from the
same RTLIL is reused.
--depth reports, per unit, the worst register-to-register path and the worst path into each register group
(`depth.register_group`: `cN` an operator's cut N, `glue` a register between operators, `dly` a delay line, a
ROM's output), so a path inside the binary32 operators (hw/fp.py) can be told from the glue around them.
--fit composes the VPU at the dfx preset from the leaf counts by instance (`vpu_instances`: per lane an adder,
a multiplier, a rounding and a binary16 multiplier; one exp and one GELU unit per `sfu_share` lanes; the
reduction tree, its accumulator and the scalar units) at the default and the 300 MHz depths, adds the MPU with
DSP adders as benchmarks/resource_tables.py composes it, and sets the sum against 75% of what the platform
leaves to the kernel (`hw.synth.slr_budget`). Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from resource_tables import DEEP, DEFAULT, instances  # noqa: E402

from dfx.config import load_config  # noqa: E402
from dfx.hw.buffers import VectorBuffer  # noqa: E402
from dfx.hw.core_vpu import VectorEngine  # noqa: E402
from dfx.hw.dma import DmaEngine  # noqa: E402
from dfx.hw.router import RouterEngine  # noqa: E402
from amaranth.back import rtlil  # noqa: E402

from dfx.hw.depth import (Delays, DepthError, depth_row, depth_table, longest_paths, module_name,  # noqa: E402
                          register_group, unit_factories)
from dfx.hw.synth import Resources, count_cells, resources_dict, slr_budget  # noqa: E402
from dfx.perf import PerfModel, tables, timing  # noqa: E402

VPU_LEAVES = ("add32", "mul32", "round16", "mul16", "exp16", "gelu16", "recip", "rsqrt")
MPU_LEAVES = ("mul16", "add32dsp", "add32", "mul32", "round16", "gelu16")
KEYS = ("lut", "lutram", "ff", "carry8", "dsp", "bram36", "bram18", "uram")


def leaf_spec(leaf: str, depth: str) -> str:
    return f"{leaf}:{(DEEP if depth == 'deep' else DEFAULT)[leaf]}"


CHILD = """
import sys
from pyosys import libyosys as ys
src, top, out = sys.argv[1:4]
d = ys.Design()
ys.run_pass(f"read_rtlil {src}", d)
ys.run_pass(f"synth_xilinx -family xcup -noiopad -flatten -top {top}", d)
ys.run_pass(f"write_json {out}", d)
ys.run_pass(f"tee -q -o {top}.stat.json stat -json", d)
"""


def synth_json(component, name: str, build: Path, mem: int) -> tuple[dict, float]:
    """`dfx.hw.depth.synth_json` from RTLIL: (the mapped netlist, Yosys seconds; 0 when reused)."""
    build.mkdir(parents=True, exist_ok=True)
    text = rtlil.convert(component, name=name, emit_src=False)
    src, out = build / f"{name}.il", build / f"{name}.json"
    if src.exists() and src.read_text() == text and out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return json.loads(out.read_text()), 0.0
    src.write_text(text)
    out.unlink(missing_ok=True)
    t0 = time.time()
    r = subprocess.run([sys.executable, "-c", CHILD, src.name, name, out.name], cwd=build, capture_output=True,
                       text=True, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (mem, mem)))
    if r.returncode or not out.exists():
        err = [ln for ln in (r.stdout + r.stderr).splitlines() if "ERROR" in ln or "Error" in ln]
        raise DepthError(f"Yosys failed on {name} (exit {r.returncode}): {(err or ['no output'])[-1][:200]}")
    return json.loads(out.read_text()), time.time() - t0


def synth(spec: str, build: Path, mem: int, cfg=None):
    """(netlist, stat Resources) of one unit spec; Yosys runs only when its Verilog changed."""
    cfg = cfg or load_config("tiny")
    (_, make), = unit_factories(cfg, [spec]).values()
    name = module_name(spec)
    print(f"vpu_fit: {spec} ...", file=sys.stderr, flush=True)
    net, secs = synth_json(make(), name, build, mem)
    stat = json.loads((build / f"{name}.stat.json").read_text())
    design = stat.get("design") or next(iter(stat["modules"].values()))
    res = count_cells(design.get("num_cells_by_type", {}))
    print(f"  {res.lut + res.lutram:,} LUT, {res.ff:,} FF ({secs:.0f} s)", file=sys.stderr, flush=True)
    return net, name, res


def vpu_instances(w: int, share: int) -> dict[str, int]:
    """Operator instances of a `w`-lane VPU with one exp and one GELU unit per `share` lanes (hw/vpu.py)."""
    return {"add32": w + (w - 1) + 1 + 1, "mul32": w + 1, "round16": w, "mul16": w,
            "exp16": w // share, "gelu16": w // share, "recip": 1, "rsqrt": 1}


def compose(inst: dict[str, int], build: Path, mem: int, depth: str) -> Resources:
    tot = Resources()
    for leaf, n in inst.items():
        _, _, r = synth(leaf_spec(leaf, depth), build, mem)
        for k in KEYS:
            setattr(tot, k, getattr(tot, k) + n * getattr(r, k))
    return tot


def run_depth(units: list[str], build: Path, mem: int, top: int) -> str:
    delays = Delays.from_board()
    rows, detail = [], []
    for u in units:
        spec = u if ":" in u else leaf_spec(u, "deep")
        net, name, _ = synth(spec, build, mem)
        groups = longest_paths(net, name, delays, register_group)
        worst = max(groups.values(), key=lambda p: p.delay_ns)
        rows.append(depth_row(u, spec.partition(":")[2].replace(",", ", ") or "-", worst, delays))
        for g, p in sorted(groups.items(), key=lambda kv: -kv[1].delay_ns)[:top]:
            detail.append(f"| {u} | {g} | {p.luts} | {p.carry} | {p.muxf} | {p.delay_ns:.2f} | "
                          f"{p.start[:40]} -> {p.end[:40]} |")
    head = "| unit | into register group | LUT levels | carry | MUXF | est. delay (ns) | path |\n|---|---|---|---|---|---|---|"
    return depth_table(rows) + "\n\n" + head + "\n" + "\n".join(detail)


def run_fit(shares: list[int], build: Path, mem: int) -> str:
    cfg = load_config("dfx")
    budget = slr_budget()
    dyn = budget.total
    mpu_inst = instances(cfg)["mpu"]                  # (its tree and accumulator adders on DSP48E2)
    lines = ["| VPU exp/GELU sharing | depths | VPU LUT | VPU FF | VPU DSP | VPU RAMB36 | MPU (DSP adders) LUT | "
             "MPU + VPU LUT | % of dyn. LUT | left under 75% |", "|" + "---|" * 10]
    for share in shares:
        for depth in ("default", "deep"):
            vpu = compose(vpu_instances(cfg.vpu_width, share), build, mem, depth)
            mpu = compose(mpu_inst, build, mem, depth)
            v, m = resources_dict(vpu), resources_dict(mpu)
            tot = v["LUT"] + m["LUT"]
            left = budget.limit * dyn["LUT"] - tot
            lines.append(f"| 1 per {share} lanes ({cfg.vpu_width // share} exp + {cfg.vpu_width // share} GELU) | "
                         f"{'300 MHz' if depth == 'deep' else 'default'} | {v['LUT']:,.0f} | {v['FF']:,.0f} | "
                         f"{v['DSP']:,.0f} | {v['BRAM36']:,.0f} | {m['LUT']:,.0f} | {tot:,.0f} | "
                         f"{100 * tot / dyn['LUT']:.1f} | {left:,.0f} |")
    return "\n".join(lines)


def run_others(build: Path, mem: int) -> str:
    """The DMA engine, the router engine and the vector buffer at the dfx preset, flat (what the composed
    MPU + VPU counts leave out besides control)."""
    cfg = load_config("dfx")
    lines = ["| unit (dfx preset) | LUT | FF | CARRY4 | DSP48E2 | RAMB36 | RAMB18 | URAM | Yosys s |", "|" + "---|" * 9]
    for name, make in (("DmaEngine", lambda: DmaEngine(cfg)), ("RouterEngine", lambda: RouterEngine(cfg)),
                       ("VectorBuffer", lambda: VectorBuffer(cfg))):
        print(f"vpu_fit: {name} (dfx) ...", file=sys.stderr, flush=True)
        mod = f"o_{name.lower()}_dfx"
        try:
            _, secs = synth_json(make(), mod, build, mem)
        except (MemoryError, DepthError) as e:                  # e.g. a net past Amaranth's limits
            lines.append(f"| {name} | not measured: {type(e).__name__} {str(e)[:80]} |" + " |" * 7)
            continue
        stat = json.loads((build / f"{mod}.stat.json").read_text())
        r = count_cells((stat.get("design") or next(iter(stat["modules"].values()))).get("num_cells_by_type", {}))
        lines.append(f"| {name} | {r.lut + r.lutram:,} | {r.ff:,} | {r.carry8:,} | {r.dsp} | {r.bram36} | "
                     f"{r.bram18} | {r.uram} | {secs:.0f} |")
        print("  " + lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--leaves", action="store_true", help="synthesise every leaf at both depths")
    ap.add_argument("--depth", action="store_true", help="depth of the special-function units (deep)")
    ap.add_argument("--units", default="exp16,gelu16,recip,rsqrt",
                    help="','-separated leaf names (deep depths) or full specs for --depth")
    ap.add_argument("--top", type=int, default=4, help="register groups listed per unit (--depth)")
    ap.add_argument("--fit", action="store_true", help="the VPU composed at the dfx preset, and the fit")
    ap.add_argument("--share", default="1,4,8", help="lanes per exp/GELU unit for --fit")
    ap.add_argument("--others", action="store_true", help="the DMA, router and vector buffer at the dfx preset")
    ap.add_argument("--prefill", action="store_true",
                    help="the performance model's dfx prefill (tests/perf/test_tables.py's) at both VPU depths")
    ap.add_argument("--build", default="build/vpu_fit")
    ap.add_argument("--mem", type=int, default=2_900_000_000, help="address-space cap of each Yosys child")
    a = ap.parse_args(argv)
    if not (a.leaves or a.depth or a.fit or a.others or a.prefill):
        ap.error("give --leaves, --depth, --fit, --others and/or --prefill")
    build = Path(a.build)
    if a.leaves:
        for leaf in dict.fromkeys(VPU_LEAVES + MPU_LEAVES):
            for depth in ("default", "deep"):
                synth(leaf_spec(leaf, depth), build, a.mem)
    if a.depth:
        print(run_depth(a.units.split(";") if ":" in a.units else a.units.split(","), build, a.mem, a.top))
    if a.others:
        print(run_others(build, a.mem))
    if a.fit:
        print(run_fit([int(s) for s in a.share.split(",")], build, a.mem))
    if a.prefill:
        print(run_prefill())
    return 0


def run_prefill() -> str:
    """The model's dfx prefill (8 prompt tokens, 4 generated, the SMALL GPT-2 of tests/perf at the dfx preset)
    in device cycles with the core's VPU at the default and the 300 MHz depths (each operation at its own
    latency), beside the DFX-style table model's (`perf.tables.dfx_model`), as tests/perf/test_tables.py."""
    sys.path.insert(0, str(ROOT / "tests" / "perf"))
    from perf_programs import SMALL, shapes  # lazy: a test helper, only for this option
    prog = shapes(SMALL, "dfx", devices=1, max_seq=32)
    rows = ["| VPU depths | VSUM / SRSQRT latency | prefill cycles (ours) | DFX-style table model |", "|---|---|---|---|"]
    dfx = tables.dfx_model(prog, 16).run(8, 4).phases["prefill"].device_cycles
    saved = VectorEngine.DEEP
    try:
        for deep in (False, True):
            VectorEngine.DEEP = deep
            timing.serial_costs.cache_clear()
            lat = timing.serial_costs(prog.config).vpu_op_latency
            own = PerfModel(prog).run(8, 4).phases["prefill"].device_cycles
            print(f"  deep={deep}: {own} cycles", file=sys.stderr)
            rows.append(f"| {'300 MHz' if deep else 'default'} | {lat('VSUM')} / {lat('SRSQRT')} | {own:,} | {dfx:,} |")
    finally:
        VectorEngine.DEEP = saved
        timing.serial_costs.cache_clear()
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
