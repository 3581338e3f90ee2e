# amaranth: UnusedElaboratable=no
"""The core on the default and the deep (300 MHz) MPU: cycles of single LINEARs and of the tiny random GPT-2's
token steps (tests/hw/test_core.py's model at the `tiny` config) on the integrated core under cocotb, beside the
performance model's serial-issue-free (`engines="rtl"`) figures, and the weight stream's bytes per cycle.

    .venv/bin/python benchmarks/rtl_mpu_deep.py --profile default [--sim icarus]
    .venv/bin/python benchmarks/rtl_mpu_deep.py --profile deep [--sim icarus]

`--profile` sets $DFX_RTL_MPU (`hw.core_mpu.MatrixEngine.PROFILE`: the core and the model are built with it;
the build key follows it). Each profile's figures go to build/rtl_mpu_deep.json; the table printed has every
profile measured so far. A LINEAR's cycles are its run's minus a HALT-only run's; bytes per cycle = tiles x
tile bytes / those cycles (peak: `hbm_channels` x `hbm_width` / 8). Decode-step cycles are checked against the
functional simulator's logits bit for bit.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "hw"))
OUT = REPO / "build" / "rtl_mpu_deep.json"
SHAPES = [(32, 128), (128, 32), (128, 96)]     # (k, n): the model's MLP-up and -down shapes, and a longer one
STEPS = [("prefill", 5, 0), ("prefill", 17, 1), ("decode", 42, 2), ("decode", 9, 7)]


def measure(sim: str | None) -> dict:
    import numpy as np
    from gpt2_fixtures import make_hf_gpt2
    from test_core import TINY_GPT2, functional_run

    from dfx import isa
    from dfx.compiler import compile_model
    from dfx.hw.core_mpu import MatrixEngine
    from dfx.perf.calibrate import compare
    from dfx.verify.rtl_core import RtlCore
    prog = compile_model(make_hf_gpt2(8, **TINY_GPT2), "tiny")
    cfg = prog.config
    eng = MatrixEngine(cfg)
    core = RtlCore(prog, sim=sim)
    halt = isa.Instr("HALT").encode()
    streams = {"halt": [halt]}
    for k, n in SHAPES:
        streams[f"{k}x{n}"] = [isa.Instr("LINEAR", dst=2048, src=0, w=0, k=k, n=n).encode(), halt]
    print(f"{MatrixEngine.profile()}: LINEARs", file=sys.stderr)
    runs = core.run_words(streams).runs
    base = runs[0]["cycles"]
    peak = cfg.hbm_channels * cfg.hbm_width // 8
    lin = []
    for (k, n), r in zip(SHAPES, runs[1:]):
        tiles = -(-k // cfg.d) * -(-n // cfg.l)
        cyc = r["cycles"] - base
        lin.append({"k": k, "n": n, "tiles": tiles, "cycles": cyc, "tile_cycles_model": eng.tile_cycles(
            -(-k // cfg.d), -(-n // cfg.l)), "bytes_per_cycle": tiles * cfg.tile_bytes / cyc, "peak": peak})
    print(f"{MatrixEngine.profile()}: token steps", file=sys.stderr)
    res = core.run_steps(STEPS)
    want = functional_run(prog, STEPS)
    got = [r["logits"] for r in res.runs if r["stream"] == "decode"]
    exact = all(np.array_equal(g.view(np.uint16), w.view(np.uint16)) for g, w in zip(got, want))
    rows = compare(prog, res.runs)
    return {"profile": MatrixEngine.profile(), "mpu_latency": eng.mpu.latency, "interleave": eng.interleave,
            "linear": lin, "steps": [{"stream": r["stream"], "pos": r["pos"], "cycles": r["cycles"],
                                      "mpu_busy": r["busy"]["MPU"]} for r in res.runs],
            "decode_bitexact": exact,
            "calibration": {r["class"]: round(r["scoreboard_ratio"], 3) for r in rows if "scoreboard_ratio" in r}}


def table(results: dict) -> str:
    profs = list(results)
    out = ["| | " + " | ".join(profs) + " |", "|---|" + "---|" * len(profs)]
    first = results[profs[0]]
    out.append("| MPU latency (cycles) / I | " + " | ".join(
        f"{results[p]['mpu_latency']} / {results[p]['interleave']}" for p in profs) + " |")
    for i, li in enumerate(first["linear"]):
        out.append(f"| LINEAR {li['k']}x{li['n']} ({li['tiles']} tiles): cycles (model's tile cycles), B/cycle | "
                   + " | ".join(f"{results[p]['linear'][i]['cycles']} ({results[p]['linear'][i]['tile_cycles_model']}"
                                f"), {results[p]['linear'][i]['bytes_per_cycle']:.1f} of {li['peak']}"
                                for p in profs) + " |")
    for i, s in enumerate(first["steps"]):
        out.append(f"| {s['stream']} POS {s['pos']}: cycles (MPU busy) | " + " | ".join(
            f"{results[p]['steps'][i]['cycles']} ({results[p]['steps'][i]['mpu_busy']})" for p in profs) + " |")
    out.append("| decode logits bit-exact to the simulator | " + " | ".join(
        str(results[p]["decode_bitexact"]) for p in profs) + " |")
    out.append("| model / RTL: total, matrix | " + " | ".join(
        f"{results[p]['calibration'].get('total')}, {results[p]['calibration'].get('matrix')}" for p in profs) + " |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="default", help="default or deep (hw.core_mpu.MatrixEngine.PROFILES)")
    ap.add_argument("--sim", default=None)
    a = ap.parse_args(argv)
    os.environ["DFX_RTL_MPU"] = a.profile
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    results[a.profile] = measure(a.sim)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
