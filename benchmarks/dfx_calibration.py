"""Calibration at the dfx preset: the performance model (dfx.perf, `engines="rtl"` on `perf.calibrate.rtl_board`,
as the tiny config's calibration test uses it) beside the RTL core run under Verilator on the fast harness
(`dfx.verify.fast_core`: its HBM pseudo-channels and DDR as AXI memories inside the design), for
  - one LINEAR of GPT-2 1.5B's shape: k = 1600, n = 6400, FP16 weights at HBM 0 (the run's cycles minus those of
    a HALT-only run, as benchmarks/weight_stream.py counts them), model: `timing.isolated_cycles`;
  - the decode step of a one-layer GPT-2 1.5B-shaped model (d_model 1600, 25 heads, d_ff 6400; vocabulary
    --vocab, 512 by default, so the LM head stays a slice; random weights, tests/gpt2_fixtures.py), compiled
    at the preset: total cycles, and each unit's busy counter (BUSY_MPU/VPU/DMA/ROUTER) beside the model's
    occupancy of that unit (occupancy only: the RTL's counter also runs through the unit's pipeline latency, so
    the rows compare like with like only where that latency is small); the model's cycles per instruction class
    are printed as well.

    .venv/bin/python benchmarks/dfx_calibration.py --model-only            # the model's side (minutes)
    .venv/bin/python benchmarks/dfx_calibration.py --verilog TREE/src/dfx_core.v [--config dfx]
    .venv/bin/python benchmarks/dfx_calibration.py --config tiny --k 256 --n 512 --d-model 64 --heads 4 --d-ff 256

The core's Verilog: at the dfx preset Amaranth's WebAssembly Yosys cannot write it (4 GB; docs/rtl.md, Verilog of
the integrated core), so the harness is given the native-Yosys Verilog of `dfx build` (--verilog, or generated
here with `dfx.host.build.core_verilog` when pyosys is installed). Memory model: the AxiRam-like latency the
calibrated board assumes (`perf.calibrate.AXIRAM_READ_CYCLES`), no back-pressure, no refresh.
Each step prints its wall time and this process's peak RSS on stderr; the table goes to stdout.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
T0 = time.time()


def note(msg: str) -> None:
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(f"[{time.time() - T0:7.0f} s, peak RSS {rss / 2**20:.2f} GiB] {msg}", file=sys.stderr, flush=True)


def linear_program(k: int, n: int):
    from dfx import isa
    return [isa.Instr("LINEAR", dst=2048, src=0, w=0, k=k, n=n), isa.Instr("HALT")]


def model_side(cfg, prog, k: int, n: int, pos: int) -> dict:
    """The model's LINEAR alone and decode step (total, per class, per unit busy)."""
    from dfx.perf.calibrate import model_classes, rtl_board
    from dfx.perf.model import PerfModel
    from dfx.perf.timing import isolated_cycles
    board = rtl_board(cfg)
    lin = isolated_cycles(f"LINEAR dst=2048 src=0 w=0 k={k} n={n}", cfg, board, engines="rtl")
    pm = PerfModel(prog, board, engines="rtl")
    step = pm.step("decode", pos)[0]
    return {"linear": lin["total"], "linear_hbm_bytes": lin["hbm_bytes"], "decode": step.cycles,
            "classes": dict(model_classes(pm, "decode", pos)), "busy": dict(zip(("MPU", "VPU", "DMA", "ROUTER"),
                                                                                 step.busy))}


def rtl_side(cfg, prog, k: int, n: int, tok: int, pos: int, sim: str, verilog: str | None) -> dict:
    """The same on the RTL (see the module docstring)."""
    from dfx import isa, regmap
    from dfx.perf.calibrate import AXIRAM_READ_CYCLES
    from dfx.verify import fast_top
    from dfx.verify.fast_core import FastCore, FastJob
    if verilog or cfg.name != "tiny":
        text = Path(verilog).read_text() if verilog else None
        if text is None:
            from dfx.host.build import core_verilog
            note("core Verilog: native Yosys (dfx.host.build.core_verilog)")
            text, _ = core_verilog(cfg)
        # the fast harness writes the core's Verilog with dfx.hw.top.verilog (WebAssembly Yosys); hand it this one
        fast_top.core_verilog = lambda c, devices, **kw: text
    note(f"fast harness build ({sim})")
    hbm_abits = max(12, (len(prog.devices[0].hbm) // cfg.hbm_channels // (cfg.hbm_width // 8)).bit_length() + 1,
                    (k * n * 2 // cfg.hbm_channels // (cfg.hbm_width // 8)).bit_length() + 1)
    fc = FastCore(cfg, sim=sim, hbm_abits=hbm_abits, workdir=REPO / "build" / "dfx_calibration")
    note(f"built {fc.bdir}")
    entry, lat = 4096, AXIRAM_READ_CYCLES

    def raw(instrs):
        return FastJob([{"ddr": bytes(entry) + isa.encode_stream(instrs), "hbm": b""}], [{"main": entry}],
                       [["main", 0, 0]], latency=lat, timeout=20_000_000)
    out = {}
    for name, job in (("halt", raw(linear_program(0, 0)[1:])), ("linear", raw(linear_program(k, n))),
                      ("decode", FastCore.job_for(prog, [("decode", tok, pos)], latency=lat,
                                                  timeout=50_000_000))):
        [res] = fc.run([job])
        run = res["runs"][0]
        assert run["status"] == regmap.STATUS_BITS["halted"], run
        out[name] = run
        note(f"{name}: {run['cycles']} cycles ({res.get('wall_s', fc.last_wall_s):.0f} s)")
    return {"linear": out["linear"]["cycles"] - out["halt"]["cycles"], "decode": out["decode"]["cycles"],
            "busy": out["decode"]["busy"]}


def table(model: dict, rtl: dict | None, a) -> str:
    r = rtl or {}
    rows = [(f"LINEAR {a.k} x {a.n} (FP16, {model['linear_hbm_bytes']:,} B of weights)", model["linear"],
             r.get("linear")),
            (f"decode step, 1 layer d={a.d_model} h={a.heads} ff={a.d_ff} vocab={a.vocab}: total", model["decode"],
             r.get("decode"))]
    rows += [(f"  busy {u}", model["busy"][u], (r.get("busy") or {}).get(u)) for u in model["busy"]]
    lines = [f"| {a.config} preset | model (engines=rtl) | RTL ({a.sim}) | model / RTL |", "|---|---:|---:|---:|"]
    for label, m, x in rows:
        lines.append(f"| {label} | {m:,} | {'' if x is None else f'{x:,}'} | "
                     f"{'' if not x else f'{m / x:.3f}'} |")
    lines.append("")
    lines.append("Model, decode step, exposed cycles per class: " +
                 ", ".join(f"{c} {v:,}" for c, v in sorted(model["classes"].items(), key=lambda kv: -kv[1])))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="dfx")
    ap.add_argument("--k", type=int, default=1600)
    ap.add_argument("--n", type=int, default=6400)
    ap.add_argument("--d-model", type=int, default=1600)
    ap.add_argument("--heads", type=int, default=25)
    ap.add_argument("--d-ff", type=int, default=6400)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--pos", type=int, default=3, help="decode position (the KV cache holds pos tokens)")
    ap.add_argument("--sim", default="verilator")
    ap.add_argument("--verilog", help="the core's Verilog (native Yosys, e.g. `dfx build` TREE/src/dfx_core.v)")
    ap.add_argument("--model-only", action="store_true", help="the model's side only")
    a = ap.parse_args(argv)
    from gpt2_fixtures import make_hf_gpt2

    from dfx.compiler import compile_model
    from dfx.config import load_config
    cfg = load_config(a.config)
    note(f"config {cfg.name}: d={cfg.d} l={cfg.l} {cfg.hbm_channels} HBM ports")
    hf = make_hf_gpt2(3, n_embd=a.d_model, n_head=a.heads, n_inner=a.d_ff, n_layer=1, n_positions=64,
                      vocab_size=a.vocab, bos_token_id=0, eos_token_id=0)
    prog = compile_model(hf, a.config)
    note(f"compiled: {len(prog.devices[0].hbm):,} B of HBM")
    model = model_side(cfg, prog, a.k, a.n, a.pos)
    note(f"model: LINEAR {model['linear']} cycles, decode {model['decode']} cycles")
    rtl = None if a.model_only else rtl_side(cfg, prog, a.k, a.n, 1, a.pos, a.sim, a.verilog)
    print(table(model, rtl, a))
    return 0


if __name__ == "__main__":
    sys.exit(main())
