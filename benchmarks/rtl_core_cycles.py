"""Measured gain of the scoreboard controller: cycles per token step of the embedded default model (4 layers, 256
wide, byte vocabulary) compiled at the `tiny` config, on the core built in order (`Core(in_order=True)`: an
instruction dispatched only when every unit is idle, the first controller's behaviour) and on the scoreboard core
(hw/core.py), both in the fast RTL harness (`dfx.verify.fast_core`: HBM and DDR as behavioural AXI memories
inside the design, read latency `--latency`) under Verilator, prompt `def ` + greedy tokens. Checks that both
produce the golden model's tokens and decode logits bit-exact to the functional simulator, writes the table into
docs/rtl_core.md between its cycles markers and prints it. A few minutes per core, most of it the build.

    .venv/bin/python benchmarks/rtl_core_cycles.py [--new 3] [--sim verilator] [--cores in-order,scoreboard]
        [--latency 0]

Each core's figures are also kept in build/rtl_core_cycles.json; `--cores scoreboard` measures only that core and
takes the other's from there (the in-order core does not change when only the scoreboard does).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "rtl_core.md"
CACHE = REPO / "build" / "rtl_core_cycles.json"
CORES = {"in-order": True, "scoreboard": False}
# The first controller (one instruction at a time, before the scoreboard), measured with this model, prompt and
# --new 3 on Verilator by tests/hw/test_core.py::test_embedded_model_on_verilator (docs/rtl_core.md, 2026-11-30):
# the reference when the in-order build is not measured in this run (--cores scoreboard).
BASELINE = {"prefill": 113_768, "decode": 116_049}
BEGIN, END = "<!-- cycles:begin -->", "<!-- cycles:end -->"


def measure(program, steps, tokens, want, sim, in_order, latency):
    """One core's cycles on the fast harness (`dfx.verify.fast_core`): the simulator's greedy steps, the RTL's
    decode logits compared bit for bit (equal logits: the RTL picks the same tokens)."""
    from dfx.verify.fast_core import FastCore
    from dfx.verify.fast_top import HBM_ABITS
    t0 = time.time()
    name = "in-order" if in_order else "scoreboard"
    cfg = program.config
    words = max(len(program.devices[0].hbm) // (cfg.hbm_width // 8 * cfg.hbm_channels), 1)
    core = FastCore(cfg, sim, in_order=in_order, hbm_abits=max(HBM_ABITS, (words - 1).bit_length()),
                    workdir=REPO / "build" / "rtl_core_cycles" / name)
    print(f"{name}: built in {time.time() - t0:.0f} s; running", file=sys.stderr)
    [res] = core.run([FastCore.job_for(program, steps, logits=True, latency=latency, timeout=5_000_000)])
    for r in res["runs"]:
        if r["status"] != 0x100:
            raise SystemExit(f"run {r['stream']} pos {r['pos']}: STATUS 0x{r['status']:x} at pc {r['error_pc']}")
    exact = len(res["logits"]) == len(want) and all(
        np.array_equal(g.view(np.uint16), w.view(np.uint16)) for g, w in zip(res["logits"], want))
    by = {"prefill": [], "decode": []}
    for r in res["runs"]:
        by[r["stream"]].append(r)
    print(f"  {time.time() - t0:.0f} s, {res['sim_cycles']} simulated cycles", file=sys.stderr)
    return {"tokens": tokens if exact else [], "exact": exact, "wall": res["wall_s"],
            **{k: (sum(r["cycles"] for r in v) / len(v) if v else 0) for k, v in by.items()},
            "busy": {u: sum(r["busy"][u] for r in by["decode"]) / max(1, len(by["decode"]))
                     for u in ("MPU", "VPU", "DMA", "ROUTER")}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sim", default="verilator")
    ap.add_argument("--new", type=int, default=3, help="greedy tokens after the prompt (default 3)")
    ap.add_argument("--latency", type=int, default=0, help="the memory model's read latency in cycles (default 0)")
    ap.add_argument("--cores", default="in-order,scoreboard",
                    help="cores to measure now (the others from build/rtl_core_cycles.json)")
    a = ap.parse_args(argv)
    now = [c.strip() for c in a.cores.split(",") if c.strip()]
    bad = [c for c in now if c not in CORES]
    if bad:
        raise SystemExit(f"error: --cores {','.join(bad)}: accepted {', '.join(CORES)}")
    from dfx.compiler import compile_model
    from dfx.models.checkpoint import DEFAULT_MODEL_DIR, load_default
    from dfx.verify.fast_core import greedy_steps
    prog = compile_model(DEFAULT_MODEL_DIR, "tiny")
    prompt = list(b"def ")
    golden = list(load_default().generate(prompt, a.new))
    steps, tokens, want = greedy_steps(prog, prompt, a.new)
    key = f"{a.sim} fast new={a.new} latency={a.latency}"
    cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    rows = cache.get(key, {})
    for name in now:
        rows[name] = r = measure(prog, steps, tokens, want, a.sim, CORES[name], a.latency)
        if r["tokens"] != golden or not r["exact"]:
            raise SystemExit(f"{name} core: tokens {r['tokens']} (golden {golden}), decode logits bit-exact: "
                             f"{r['exact']}")
        CACHE.parent.mkdir(exist_ok=True)
        CACHE.write_text(json.dumps({**cache, key: rows}, indent=1))
    if "scoreboard" not in rows:
        raise SystemExit(f"error: no figures for the scoreboard core in {CACHE}; measure it (--cores scoreboard)")
    sb = rows["scoreboard"]
    io = rows.get("in-order")
    ref = io or BASELINE
    lines = [f"`.venv/bin/python benchmarks/rtl_core_cycles.py --new {a.new} --latency {a.latency}` ({a.sim}, fast "
             f"harness, memory read latency {a.latency} cycles): the embedded default model at the `tiny` config, "
             f"prompt `def ` + {a.new} greedy tokens ({len(prompt) - 1} prefill + {a.new} decode runs per core); "
             "every core measured gives the golden tokens and decode logits bit-exact to the functional simulator.",
             "",
             "| core | cycles per prefill step | cycles per decode step | decode: BUSY MPU / VPU / DMA | "
             "decode speed-up |",
             "|---|---:|---:|---|---:|"]
    if io is None:
        lines.append(f"| first controller, one instruction at a time (cocotbext-axi harness, measured 2026-11-30, "
                     "--new 3; not re-run) | "
                     f"{BASELINE['prefill']:,} | {BASELINE['decode']:,} | | 1.00x |")
    for name, r in (("in order (`Core(in_order=True)`)", io), ("scoreboard (hw/core.py)", sb)):
        if r is None:
            continue
        b = r["busy"]
        lines.append(f"| {name} | {r['prefill']:,.0f} | {r['decode']:,.0f} | {b['MPU']:,.0f} / {b['VPU']:,.0f} / "
                     f"{b['DMA']:,.0f} | {ref['decode'] / r['decode']:.2f}x |")
    body = "\n".join(lines) + "\n"
    text = DOC.read_text()
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{body}{END}{tail}")
    print(body)


if __name__ == "__main__":
    main()
