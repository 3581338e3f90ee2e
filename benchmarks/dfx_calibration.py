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
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
T0 = time.time()


def note(msg: str) -> None:
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(f"[{time.time() - T0:7.0f} s, peak RSS {rss / 2**20:.2f} GiB] {msg}", file=sys.stderr, flush=True)


def linear_dst(cfg) -> int:
    """The LINEAR's output VBUF entry: the upper half of the VBUF (its input sits at entry 0)."""
    return cfg.vbuf_entries // 2


def linear_program(cfg, k: int, n: int, linear: bool = True):
    """LOAD x (k FP16 values at DDR 0) into VBUF 0, then (with `linear`) the LINEAR of FP16 weights at HBM 0."""
    from dfx import isa
    body = [isa.Instr("LINEAR", dst=linear_dst(cfg), src=0, w=0, k=k, n=n)] if linear else []
    return [isa.Instr("LOAD", vaddr=0, addr=0, n=k), *body, isa.Instr("HALT")]


def linear_data(k: int, n: int, seed: int = 15) -> tuple[bytes, bytes]:
    """Random finite FP16 input (k) and weights (k x n, any tiling: every 2 bytes a finite binary16)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(k).astype(np.float16)
    w = (rng.standard_normal(k * n) * (1 / k ** 0.5)).astype(np.float16)
    return x.tobytes(), w.tobytes()


def reference(cfg, prog, k: int, n: int, tok: int, pos: int) -> dict:
    """The functional simulator's results: the LINEAR's output entries and the decode step's logits and DDR."""
    import numpy as np

    from dfx.images import DeviceImage
    from dfx.sim.functional import Device
    x, w = linear_data(k, n)
    dev = Device.of_image(cfg, DeviceImage({"main": linear_program(cfg, k, n)}, bytearray(w), bytearray(x)))
    dev.run("main", 0, 0)
    dst = linear_dst(cfg)
    lin = dev.vbuf[dst * cfg.d:(dst + -(-n // cfg.d)) * cfg.d].copy()
    dev = Device(prog)
    dev.run("decode", tok, pos)
    sym = prog.symbols
    logits = np.frombuffer(bytes(dev.ddr[sym.logits:sym.logits + 2 * sym.vocab_size]), np.float16).copy()
    return {"linear": lin, "logits": logits, "ddr": bytes(dev.ddr)}


def model_side(cfg, prog, k: int, n: int, pos: int) -> dict:
    """The model's LINEAR alone and decode step (total, per class, per unit busy)."""
    from dfx.perf.calibrate import model_classes, rtl_board
    from dfx.perf.model import PerfModel
    from dfx.perf.timing import isolated_cycles
    board = rtl_board(cfg)
    lin = isolated_cycles(f"LINEAR dst={linear_dst(cfg)} src=0 w=0 k={k} n={n}", cfg, board, engines="rtl")
    pm = PerfModel(prog, board, engines="rtl")
    step = pm.step("decode", pos)[0]
    return {"linear": lin["total"], "linear_hbm_bytes": lin["hbm_bytes"], "decode": step.cycles,
            "classes": dict(model_classes(pm, "decode", pos)), "busy": dict(zip(("MPU", "VPU", "DMA", "ROUTER"),
                                                                                 step.busy))}


def rtl_side(cfg, prog, k: int, n: int, tok: int, pos: int, sim: str, verilog: str | None, profile: str,
             hbm_abits: int | None = None) -> dict:
    """The same on the RTL (see the module docstring); the LINEAR's output and the decode step's logits and DDR
    read back for the bit-exact check."""
    import os

    from dfx import isa, regmap
    from dfx.perf.calibrate import AXIRAM_READ_CYCLES
    from dfx.verify import fast_top
    from dfx.verify.core_tb import attribute
    from dfx.verify.fast_core import FastCore, FastJob
    from dfx.verify.fast_verilator import verilator_build_huge

    @dataclass
    class ClassJob(FastJob):
        classes: bool = profile == "huge"   # per-class attribution (the huge build makes the events readable)
    if verilog or cfg.name != "tiny":
        text = Path(verilog).read_text() if verilog else None
        if text is None:
            from dfx.host.build import core_verilog
            note("core Verilog: native Yosys (dfx.host.build.core_verilog)")
            text, _ = core_verilog(cfg)
        # the fast harness writes the core's Verilog with dfx.hw.top.verilog (WebAssembly Yosys); hand it this one
        fast_top.core_verilog = lambda c, devices, **kw: text
    if profile == "huge":                   # dfx.verify.fast_verilator's profile for very large designs (no PGO)
        os.environ["DFX_FAST_PGO"] = "0"
        fast_top.verilator_build = verilator_build_huge
    note(f"fast harness build ({sim}, {profile} profile)")
    x, w = linear_data(k, n)
    beat = cfg.hbm_channels * (cfg.hbm_width // 8)
    need = max(12, (len(prog.devices[0].hbm) // beat).bit_length() + 1, (len(w) // beat).bit_length() + 1)
    hbm_abits = max(need, hbm_abits or 0)
    fc = FastCore(cfg, sim=sim, hbm_abits=hbm_abits, workdir=REPO / "build" / "dfx_calibration" / sim)
    note(f"built {fc.bdir}")
    entry, lat = max(4096, -(-len(x) // 4096) * 4096), AXIRAM_READ_CYCLES
    dst, ent = linear_dst(cfg), -(-n // cfg.d)

    def raw(instrs, **kw):
        ddr = x + bytes(entry - len(x)) + isa.encode_stream(instrs)
        return ClassJob([{"ddr": ddr, "hbm": w}], [{"main": entry}], [["main", 0, 0]], latency=lat,
                       timeout=200_000, **kw)
    ddr_len = len(prog.devices[0].ddr)
    out = {}
    for name, job in (("load", raw(linear_program(cfg, k, n, linear=False))),
                      ("linear", raw(linear_program(cfg, k, n), vbuf=[(dst, dst + ent)])),
                      ("decode", ClassJob(**vars(FastCore.job_for(prog, [("decode", tok, pos)], logits=True,
                                                                    read_ddr=ddr_len, latency=lat,
                                                                    timeout=400_000))))):
        t0 = time.time()
        [res] = fc.run([job])
        run = res["runs"][0]
        assert run["status"] == regmap.STATUS_BITS["halted"], run
        out[name] = dict(run, vbuf=res["vbuf"], logits=res["logits"], ddr=res["ddr"], wall=time.time() - t0,
                         sim_cycles=res.get("sim_cycles"), sim_wall=res.get("wall_s"))
        if "events" in run:
            classes = attribute([tuple(e) for e in run["events"]], run["t0"])[0]
            out[name]["classes"] = {c: int(v) for c, v in classes.items()}
        note(f"{name}: {run['cycles']} cycles ({out[name]['wall']:.0f} s wall, simulator "
             f"{res.get('sim_cycles')} cycles)")
    return {"linear": out["linear"]["cycles"] - out["load"]["cycles"], "decode": out["decode"]["cycles"],
            "busy": out["decode"]["busy"], "classes": out["decode"].get("classes"), "runs": out}


def bit_exact(ref: dict, rtl: dict) -> list[str]:
    """What differs between the functional simulator (`reference`) and the RTL's read-backs; [] when all match."""
    import numpy as np
    runs, bad = rtl["runs"], []
    got = runs["linear"]["vbuf"][0]
    if not np.array_equal(got.view(np.uint16), ref["linear"].view(np.uint16)):
        bad.append(f"LINEAR output: {int(np.sum(got.view(np.uint16) != ref['linear'].view(np.uint16)))} of "
                   f"{got.size} values differ")
    lg = runs["decode"]["logits"][0]
    if not np.array_equal(lg.view(np.uint16), ref["logits"].view(np.uint16)):
        bad.append(f"decode logits: {int(np.sum(lg.view(np.uint16) != ref['logits'].view(np.uint16)))} of "
                   f"{lg.size} differ")
    ddr = runs["decode"]["ddr"][0]
    if ddr != ref["ddr"][:len(ddr)]:
        diff = sum(a != b for a, b in zip(ddr, ref["ddr"]))
        bad.append(f"decode DDR: {diff} of {len(ddr)} bytes differ")
    return bad


def table(model: dict, rtl: dict | None, a) -> str:
    r = rtl or {}
    rows = [(f"LINEAR {a.k} x {a.n} (FP16, {model['linear_hbm_bytes']:,} B of weights)", model["linear"],
             r.get("linear")),
            (f"decode step, 1 layer d={a.d_model} h={a.heads} ff={a.d_ff} vocab={a.vocab}: total", model["decode"],
             r.get("decode"))]
    classes = r.get("classes") or {}
    rows += [(f"  class {c} (exposed cycles)", model["classes"].get(c, 0), classes.get(c, 0) if classes else None)
             for c in sorted(set(model["classes"]) | set(classes), key=lambda c: -model["classes"].get(c, 0))]
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
    ap.add_argument("--profile", choices=("default", "huge"),
                    help="Verilator build profile (dfx.verify.fast_verilator; default: huge except at tiny)")
    ap.add_argument("--hbm-abits", type=int, help="HBM depth of the harness (default: what the images need; "
                    "16 reuses the default build of the fast harness)")
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
    if a.model_only:
        print(table(model, None, a))
        return 0
    ref = reference(cfg, prog, a.k, a.n, 1, a.pos)
    note("functional simulator: LINEAR and decode step")
    profile = a.profile or ("default" if cfg.name == "tiny" else "huge")
    rtl = rtl_side(cfg, prog, a.k, a.n, 1, a.pos, a.sim, a.verilog, profile, a.hbm_abits)
    print(table(model, rtl, a))
    for name, r in rtl["runs"].items():
        print(f"RTL run {name}: {r['cycles']:,} cycles; {r['wall']:.0f} s wall in all (simulator start included), "
              f"{r['sim_wall']:.1f} s in the simulator for {r['sim_cycles']:,.0f} simulated cycles (memory "
              f"loading included): {r['sim_cycles'] / r['sim_wall']:,.0f} cycles/s")
    bad = bit_exact(ref, rtl)
    print("bit-exact against the functional simulator (LINEAR output, decode logits and DDR): "
          + ("yes" if not bad else "NO: " + "; ".join(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
