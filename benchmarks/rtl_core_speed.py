"""RTL simulation speed of the integrated core, two harnesses side by side: the cocotbext-axi one (HBM/DDR as
Python bus models, `dfx.verify.rtl_core`) and the fast one (behavioural AXI memories inside the design,
`dfx.verify.fast_core`), on Icarus and Verilator (whichever are installed), for the tiny random GPT-2 of
tests/hw/test_core.py compiled at the `tiny` config.

    .venv/bin/python benchmarks/rtl_core_speed.py [--sims icarus,verilator] [--tokens 3] [--repeat 20]
        [--harnesses axi,fast]

Both run the same token steps (a 3-token prompt, then greedy decode; the tokens come from the functional
simulator, and every harness's logits must equal its logits bit for bit). The cocotbext-axi harness runs them
once; the fast one `--repeat` times in one simulation. cycles/s is simulated cycles per second of wall time
inside the simulation (`in-sim`) and including the simulator's start-up (`total`); the ratio is the fast
harness's in-sim rate over the cocotbext-axi harness's total rate on the same simulator (that harness has no
separate in-sim time). `cycles/s CPU` divides by the simulator process's CPU time instead of wall time: on a
shared machine the wall-time rates fall with the load, the CPU rate does not. Prints a Markdown table and writes
it into docs/rtl_core.md between its speed markers. The first run of a simulator includes its build; the table
is measured on the built one.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

from dfx.docblock import read_block, write_block

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "hw"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sims", default="icarus,verilator")
    ap.add_argument("--harnesses", default="axi,fast")
    ap.add_argument("--tokens", type=int, default=3, help="new tokens to generate (after a 3-token prompt)")
    ap.add_argument("--repeat", type=int, default=20, help="runs of the steps in one fast-harness simulation")
    ap.add_argument("--levers", default="", help="compare these build variants of the fast harness on Verilator "
                    "side by side instead (names from dfx.verify.fast_verilator.LEVERS, or `default`: the build "
                    "FastCore uses; comma separated)")
    ap.add_argument("--rounds", type=int, default=5, help="--levers: interleaved rounds (the median is reported)")
    a = ap.parse_args(argv)
    if a.levers:
        return levers(a)
    from gpt2_fixtures import make_hf_gpt2
    from test_core import PROMPT, TINY_GPT2

    from dfx.compiler import compile_model
    from dfx.verify.fast_core import FastCore, greedy_steps
    from dfx.verify.rtl_core import RtlCore
    from dfx.verify.toolchain import log_text, missing_simulator
    prog = compile_model(make_hf_gpt2(8, **TINY_GPT2), "tiny")
    steps, _, want = greedy_steps(prog, PROMPT, a.tokens)
    harnesses = a.harnesses.split(",")
    rows = []
    for sim in a.sims.split(","):
        why = missing_simulator(sim)
        if why:
            rows.append(f"| {sim} | - | - | - | - | - | - | - | not run: {why} |")
            continue
        axi_rate = None
        if "axi" in harnesses:
            t0 = time.time()
            core = RtlCore(prog, sim=sim)
            build_s = time.time() - t0
            res = core.run_steps(steps, logits=True)
            got = [r["logits"] for r in res.runs if r["stream"] == "decode"]
            same = all(np.array_equal(g.view(np.uint16), w.view(np.uint16)) for g, w in zip(got, want))
            cyc = res.sim_cycles
            axi_rate = cyc / res.wall_s
            rows.append(f"| {sim} | cocotbext-axi | {cyc} | {res.wall_s:.1f} | - | - | {axi_rate:.0f} | 1 | "
                        f"{len(steps)} token steps once; logits {'=' if same else '!='} simulator; "
                        f"build {build_s:.0f} s |")
        if "fast" in harnesses:
            t0 = time.time()
            fc = FastCore(prog.config, sim)
            build_s = time.time() - t0
            logged = [float(m) for m in re.findall(r"^# (\d+) s, exit 0$", log_text(fc.bdir / "build.log"), re.M)]
            build = (f"build {build_s:.0f} s" if build_s > 60 or not logged else
                     f"built before: verilate + C++ {' + '.join(f'{x:.0f}' for x in logged)} s (build.log)")
            job = FastCore.job_for(prog, steps, logits=True)
            results = fc.run([job] * a.repeat)
            same = all(np.array_equal(g.view(np.uint16), w.view(np.uint16))
                       for r in results for g, w in zip(r["logits"], want))
            cyc = sum(r["sim_cycles"] for r in results)
            insim = sum(r["wall_s"] for r in results)
            cpu = sum(r["cpu_s"] for r in results)
            ratio = f"{cyc / insim / axi_rate:.0f}" if axi_rate else "-"
            rows.append(f"| {sim} | fast | {cyc} | {fc.last_wall_s:.1f} | {cyc / insim:.0f} | {cyc / cpu:.0f} | "
                        f"{cyc / fc.last_wall_s:.0f} | {ratio} | {len(steps)} token steps x {a.repeat}; logits "
                        f"{'=' if same else '!='} simulator; {build} |")
    doc = REPO / "docs" / "rtl_core.md"
    begin, end = "<!-- speed:begin -->", "<!-- speed:end -->"
    old = {}
    for line in (read_block(doc, begin, end) or "").splitlines():
        cells = line.split("|")
        if line.startswith("| ") and not line.startswith("| simulator") and len(cells) == 11:
            old[(cells[1].strip(), cells[2].strip())] = line
    for r in rows:                                      # rows of simulators / harnesses not run this time are kept
        cells = r.split("|")
        old[(cells[1].strip(), cells[2].strip())] = r
    text = ("`.venv/bin/python benchmarks/rtl_core_speed.py` (tiny random GPT-2, `tiny` config, one core; "
            "shared 2-core machine, so wall times are upper bounds)\n\n"
            "| simulator | harness | simulated cycles | wall s | cycles/s in-sim | cycles/s CPU | cycles/s total | "
            "ratio | notes |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---|\n" + "\n".join(old.values()) + "\n")
    if read_block(doc, begin, end) is not None:
        write_block(doc, begin, end, text)
    print(text)


def levers(a) -> None:
    """Build variants of the fast harness's Verilator build (`LEVERS`) measured side by side: the same GPT-2
    token steps `--repeat` times per simulation, `--rounds` rounds with the variants interleaved (so a change of
    the machine's load hits them alike); the median over rounds of simulated cycles per CPU second of the
    simulator process, and its ratio to the first variant. PGO variants are trained on 20 random programs of
    the differential test (`dfx.verify.difftest`), not on the measured workload."""
    import copy

    from gpt2_fixtures import make_hf_gpt2
    from test_core import PROMPT, TINY_GPT2
    from tqdm import tqdm

    from dfx.compiler import compile_model
    from dfx.verify import difftest
    from dfx.verify.difftest_gen import generate
    from dfx.verify.fast_core import FastCore, greedy_steps
    from dfx.verify.fast_verilator import LEVERS, build_lever

    prog = compile_model(make_hf_gpt2(8, **TINY_GPT2), "tiny")
    steps, _, want = greedy_steps(prog, PROMPT, a.tokens)
    base = FastCore(prog.config, "verilator")
    src = base.bdir / f"{base.top}.v"
    job = FastCore.job_for(prog, steps, logits=True)
    train_jobs = [difftest.job(prog.config, generate(prog.config, 1_000_000 + s)) for s in range(20)]
    names = a.levers.split(",")
    cores, build_s = {}, {}
    for name in tqdm(names, desc="builds", file=sys.stderr):
        vdir = base.bdir.parent / f"lever_{name}"

        def variant(runner, vdir=vdir):
            c = copy.copy(base)
            c.runner, c.bdir, c.workdir = runner, vdir, vdir / "jobs"
            return c

        t0 = time.time()
        if name == "default":                       # the default build itself (FastCore's)
            cores[name], build_s[name] = base, 0.0
            continue
        cores[name] = variant(build_lever(src, base.top, base.bdir, vdir, name,
                                          train=lambda r, v=variant: v(r).run(train_jobs)))
        build_s[name] = time.time() - t0
    rates = {n: [] for n in names}
    for _ in tqdm(range(a.rounds), desc="rounds", file=sys.stderr):
        for n in names:
            results = cores[n].run([job] * a.repeat)
            if not all(np.array_equal(g.view(np.uint16), w.view(np.uint16))
                       for r in results for g, w in zip(r["logits"], want)):
                raise SystemExit(f"variant {n}: logits differ from the simulator's")
            rates[n].append(sum(r["sim_cycles"] for r in results) / sum(r["cpu_s"] for r in results))
    ref = float(np.median(rates[names[0]]))
    lines = [f"`.venv/bin/python benchmarks/rtl_core_speed.py --levers {a.levers} --rounds {a.rounds} --repeat "
             f"{a.repeat}` (tiny random GPT-2, {len(steps)} token steps x {a.repeat} per simulation; simulated "
             "cycles per CPU second of the simulator process, median of the rounds; logits = simulator in every "
             "run)", "", "| variant | Verilator flags changed | make variables | build s | cycles/s CPU (median) | "
             "min .. max | ratio |", "|---|---|---|---:|---:|---:|---:|"]
    for n in names:
        replace, make_opt = LEVERS["O3-native-pgo" if n == "default" else n]
        med = float(np.median(rates[n]))
        lines.append(f"| {n} | {' '.join(' '.join(r) for r in replace) or '-'} | "
                     f"{' '.join(m for m in make_opt if not m.startswith('OPT_SLOW'))}"
                     f"{' + GCC PGO' if 'pgo' in n or n == 'default' else ''} | {build_s[n]:.0f} | {med:.0f} | "
                     f"{min(rates[n]):.0f} .. {max(rates[n]):.0f} | {med / ref:.2f} |")
    text = "\n".join(lines) + "\n"
    doc = REPO / "docs" / "rtl_core.md"
    begin, end = f"<!-- levers {a.levers}:begin -->", f"<!-- levers {a.levers}:end -->"   # one table per set
    t = doc.read_text()
    if "<!-- levers" in t:                             # a new set goes after the last table
        last = t[t.rindex("<!-- levers"):].split("-->", 1)[0] + "-->"
        write_block(doc, begin, end, text, missing="after", after=last)
    print(text)


if __name__ == "__main__":
    main()
