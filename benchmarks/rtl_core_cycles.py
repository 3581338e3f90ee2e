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

    .venv/bin/python benchmarks/rtl_core_cycles.py --prefill-batch 4 [--prompt "def f"] [--new 2] [--sim verilator]

measures batched prefill instead (docs/rtl_core.md, "Batched prefill"): the model compiled with `--prefill-batch
M`, the prompt but its last token through the `prefill_batch` stream in one run (the host's token table written
into the DDR image; the prompt gives at most M + 1 tokens), against the same tokens through the token-serial
`prefill` stream, each followed by the same greedy decode steps, on the scoreboard core in one simulation; both
checked bit-exact to the functional simulator (decode logits) and to the golden model's tokens. Beside the RTL's
cycles, the performance model's on the RTL-fixed board (`dfx.perf.calibrate.rtl_board`): `engines="rtl"` (what
this core does) and `engines="pipelined"` (the weight-stationary target). Writes the table between the
batch-cycles markers.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from dfx.docblock import write_block

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "rtl_core.md"
CACHE = REPO / "build" / "rtl_core_cycles.json"
CORES = {"in-order": True, "scoreboard": False}
# The first controller (one instruction at a time, before the scoreboard), measured with this model, prompt and
# --new 3 on Verilator by tests/hw/test_core.py::test_embedded_model_on_verilator (docs/rtl_core.md, 2026-11-30):
# the reference when the in-order build is not measured in this run (--cores scoreboard).
BASELINE = {"prefill": 113_768, "decode": 116_049}
BEGIN, END = "<!-- cycles:begin -->", "<!-- cycles:end -->"
BATCH_BEGIN, BATCH_END = "<!-- batch-cycles:begin -->", "<!-- batch-cycles:end -->"


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


def write_doc(begin, end, body):
    write_block(DOC, begin, end, body)
    print(body)


def sim_greedy(program, pre, table: bytes, tok: int, pos: int, new: int):
    """`pre` then `new` greedy decode steps from (tok, pos) on the functional simulator, the token table written
    first: (steps, decode logits)."""
    from dfx.sim.functional import Device
    dev, sym = Device(program), program.symbols
    a = sym.prefill_batch.tokens
    dev.ddr[a:a + len(table)] = np.frombuffer(table, np.uint8)
    steps, out = list(pre), []
    for s in pre:
        dev.run(*s)
    for _ in range(new):
        steps.append(("decode", tok, pos))
        dev.run("decode", tok, pos)
        out.append(np.frombuffer(bytes(dev.ddr[sym.logits:sym.logits + 2 * sym.vocab_size]), np.float16).copy())
        tok, pos = int(np.argmax(out[-1])), pos + 1
    return steps, out


def batched(a):
    """The --prefill-batch measurement (module docstring)."""
    from dfx.compiler import compile_model
    from dfx.models.checkpoint import DEFAULT_MODEL_DIR, load_default
    from dfx.perf.calibrate import rtl_board
    from dfx.perf.model import PerfModel
    from dfx.verify.fast_core import FastCore
    from dfx.verify.fast_top import HBM_ABITS
    t0 = time.time()
    prog = compile_model(DEFAULT_MODEL_DIR, "tiny", prefill_batch=a.prefill_batch)
    pb = prog.symbols.prefill_batch
    prompt = list(a.prompt.encode())
    head = prompt[:-1]
    if not 1 <= len(head) <= pb.max_tokens:
        raise SystemExit(f"error: --prompt gives {len(head)} prefill tokens; accepted 1..{pb.max_tokens}")
    golden = list(load_default().generate(prompt, a.new))
    table = np.array([len(head), *head], "<u4").tobytes()
    ref = {name: sim_greedy(prog, pre, table, prompt[-1], len(head), a.new)
           for name, pre in (("batched", [(pb.stream, head[0], 0)]),
                             ("serial", [("prefill", t, i) for i, t in enumerate(head)]))}
    cfg = prog.config
    words = max(len(prog.devices[0].hbm) // (cfg.hbm_width // 8 * cfg.hbm_channels), 1)
    core = FastCore(cfg, a.sim, hbm_abits=max(HBM_ABITS, (words - 1).bit_length()),
                    workdir=REPO / "build" / "rtl_core_cycles" / "batched")
    print(f"built in {time.time() - t0:.0f} s; running", file=sys.stderr)
    jobs = []
    for name, (steps, _) in ref.items():
        job = FastCore.job_for(prog, steps, logits=True, latency=a.latency, timeout=20_000_000)
        ddr = bytearray(job.images[0]["ddr"])
        ddr[pb.tokens:pb.tokens + len(table)] = table
        job.images[0]["ddr"] = bytes(ddr)
        jobs.append(job)
    results = dict(zip(ref, core.run(jobs)))
    print(f"  {time.time() - t0:.0f} s, {sum(r['sim_cycles'] for r in results.values())} simulated cycles",
          file=sys.stderr)
    board = rtl_board(cfg)
    models = {e: PerfModel(prog, board, engines=e) for e in ("rtl", "pipelined")}
    rows = []
    for name, res in results.items():
        steps, want = ref[name]
        for r in res["runs"]:
            if r["status"] != 0x100:
                raise SystemExit(f"{name}: run {r['stream']} pos {r['pos']}: STATUS 0x{r['status']:x} at pc "
                                 f"{r['error_pc']}")
        exact = len(res["logits"]) == len(want) and all(
            np.array_equal(g.view(np.uint16), w.view(np.uint16)) for g, w in zip(res["logits"], want))
        toks = [int(np.argmax(g)) for g in res["logits"]]
        if not exact or toks != golden:
            raise SystemExit(f"{name}: tokens {toks} (golden {golden}), decode logits bit-exact: {exact}")
        pre = [r for r in res["runs"] if r["stream"] != "decode"]
        count = {pb.stream: len(head)}
        est = {e: sum(m.step_cycles(r["stream"], r["pos"], count.get(r["stream"])) for r in pre)
               for e, m in models.items()}
        rtl = sum(r["cycles"] for r in pre)
        rows.append((name, len(pre), rtl, sum(r["busy"]["MPU"] for r in pre), est))
    lines = [f"`.venv/bin/python benchmarks/rtl_core_cycles.py --prefill-batch {a.prefill_batch} --prompt "
             f"{a.prompt!r} --new {a.new} --latency {a.latency}` ({a.sim}, fast harness): the embedded default model "
             f"at the `tiny` config compiled with `--prefill-batch {a.prefill_batch}`, the {len(head)} prompt tokens "
             f"before the last one through one `prefill_batch` run or {len(head)} `prefill` runs, then {a.new} "
             "decode steps; both give the golden tokens and decode logits bit-exact to the functional simulator.",
             "",
             "| prefill of the prompt | runs | RTL cycles | per token | BUSY MPU | model, RTL engines | / RTL | "
             "model, pipelined weight-stationary units (not built) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, n, rtl, mpu, est in rows:
        label = "batched (`prefill_batch`, BATCH +dyn_m)" if name == "batched" else "token-serial (`prefill`)"
        lines.append(f"| {label} | {n} | {rtl:,} | {rtl / len(head):,.0f} | {mpu:,} | {est['rtl']:,} | "
                     f"{est['rtl'] / rtl:.3f} | {est['pipelined']:,} |")
    write_doc(BATCH_BEGIN, BATCH_END, "\n".join(lines) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sim", default="verilator")
    ap.add_argument("--new", type=int, default=3, help="greedy tokens after the prompt (default 3)")
    ap.add_argument("--latency", type=int, default=0, help="the memory model's read latency in cycles (default 0)")
    ap.add_argument("--cores", default="in-order,scoreboard",
                    help="cores to measure now (the others from build/rtl_core_cycles.json)")
    ap.add_argument("--prefill-batch", type=int, default=0, help="measure batched prefill with chunks of M tokens")
    ap.add_argument("--prompt", default="def f", help="the prompt (--prefill-batch; at most M + 1 bytes)")
    a = ap.parse_args(argv)
    if a.prefill_batch:
        return batched(a)
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
    write_doc(BEGIN, END, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
