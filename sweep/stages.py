"""The stages a sweep point goes through (docs/dse.md, "Stages"). Each returns a flat dict of columns; a point
that does not fit or does not compile raises a DfxError (or another exception), which `guard` turns into a
one-line reason in the results instead of stopping the sweep.

- perf: the performance model (`dfx.perf`) on the program compiled for the point: latency, tokens/s, % of
  roofline, the decode breakdown by instruction class and the unit utilisation;
- resources: the first-order estimate (`estimate_resources`: DSPs with DFX's floating-point adders on DSPs)
  and a lane count from the Yosys rows of docs/rtl.md (`lane_resources`: MPU + VPU, LUT/FF/DSP as Yosys maps
  them); `yosys_units` synthesises units at the point's config (hw/synth.py), slow, cached by config hash;
- accuracy: bits/byte of the embedded byte-level model from the quantization report (`dfx quant-report`),
  per weight format and method, cached;
- rtl: a bit-exact check of a small GPT-2 at the point's config: one prefill and one decode step on the
  integrated core's RTL (Icarus or Verilator), the logits compared bit for bit with the functional simulator.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
import traceback
from functools import lru_cache
from pathlib import Path

from dfx.config import AccelConfig, load_config
from dfx.errors import DfxError, UsageError
from dfx.formats import parse as parse_format

ACCURACY_VERSION = 1          # bump when the accuracy stage's meaning changes (it is part of the cache key)


def guard(fn, *args, **kw) -> dict:
    """`fn(*args, **kw)` with status "ok", or status "error" and a one-line reason (never raises, but for
    KeyboardInterrupt)."""
    t0 = time.perf_counter()
    try:
        out = {"status": "ok", "reason": "", **fn(*args, **kw)}
    except (DfxError, ValueError, RuntimeError, OSError, KeyError, TypeError, ZeroDivisionError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        if not isinstance(e, DfxError):
            msg = f"{type(e).__name__}: {msg} (at {traceback.extract_tb(e.__traceback__)[-1].name})"
        out = {"status": "error", "reason": msg[:300]}
    out["seconds"] = time.perf_counter() - t0
    return out


def accel_config(point: dict) -> AccelConfig:
    """The point's AccelConfig: its base config with the point's field overrides (named after them)."""
    base = load_config(point.get("config") or "dfx")
    changes = {f: point[f] for f in ("d", "l", "vpu_width", "vbuf_entries", "hbm_channels", "hbm_width",
                                     "clock_mhz") if point.get(f) is not None and point[f] != getattr(base, f)}
    if point.get("clock_mhz") is not None:
        changes["clock_mhz"] = float(point["clock_mhz"])
    if not changes:
        return base
    tag = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(changes.items()))
    return dataclasses.replace(base, name=f"{base.name}[{tag}]", **changes)


def config_key(cfg: AccelConfig, *extra) -> str:
    """A cache key for results that depend only on the hardware config (and `extra`)."""
    return hashlib.sha256(repr((cfg.config_hash, cfg.clock_mhz) + extra).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- perf
def perf(point: dict) -> dict:
    """Compile the point's program (shapes only for named GPT-2 sizes) and run the performance model."""
    from dfx.perf import PerfModel, compile_tuned  # lazy: heavy (compiler + model), only in the worker
    cfg = accel_config(point)
    overlap = point["overlap"]
    engines = point.get("engines", "pipelined")
    if isinstance(overlap, str) and overlap != "auto":
        overlap = int(overlap)
    prog = compile_tuned(point["model"], cfg, devices=int(point["devices"]), weights=point["weights"],
                         overlap=overlap, prefill_batch=int(point["prefill_batch"]) or None, board=point["board"],
                         engines=engines)
    m = PerfModel(prog, point["board"], engines=engines)
    r = m.run(int(point["input_tokens"]), int(point["output_tokens"]))
    steps = max(r.phases["decode"].steps, 1)
    out = {"latency_ms": r.total_ms, "decode_ms_per_token": r.decode_ms_per_token,
           "prefill_ms_per_token": r.prefill_ms_per_token, "tokens_per_s": r.tokens_per_s,
           "roofline_pct": r.roofline_pct("port"), "roofline_pct_board": r.roofline_pct("board"),
           "hbm_gbps_per_device": r.hbm_gbps(), "prefill_chunk": r.prefill_batch or 0}
    out.update({f"decode_{k}_ms": v / steps for k, v in r.by_class("decode").items()})
    out.update({f"util_{k}": v for k, v in r.utilisation().items()})
    return out


# ---------------------------------------------------------------------------------------------- resources
@lru_cache(maxsize=1)
def _lanes() -> dict:
    """Per-lane and shared resources of the MPU and VPU from the measured parts in docs/rtl.md (the dfx
    block: the MPU at l=1, 2 with d=64; the VPU at vpu_width=8, 16)."""
    from dfx.hw.synth import DOC, doc_block, parse_table, resources_from_row  # lazy: amaranth, only here
    try:
        rows = parse_table(doc_block(DOC, "dfx"))
    except (OSError, ValueError) as e:
        raise UsageError(f"resources: cannot read the Yosys rows of docs/rtl.md ({e})") from None

    def get(unit):
        for (cfg, u, kind), row in rows.items():
            if cfg == "dfx" and u == unit and kind == "native":
                r = resources_from_row(row)
                return {"lut": r.lut + r.lutram, "ff": r.ff, "dsp": r.dsp}
        raise UsageError(f"resources: docs/rtl.md has no dfx row for {unit!r} (python -m dfx.hw.synth --split)")
    m1, m2, v8, v16 = get("mpu, l=1"), get("mpu, l=2"), get("vpu, vpu_width=8"), get("vpu, vpu_width=16")
    mpu_lane = {k: m2[k] - m1[k] for k in m1}                  # one lane of d=64 multipliers and its tree
    vpu_lane = {k: (v16[k] - v8[k]) / 8 for k in v8}
    return {"mpu_lane": mpu_lane, "mpu_shared": {k: m1[k] - mpu_lane[k] for k in m1}, "mpu_d": 64,
            "vpu_lane": vpu_lane, "vpu_shared": {k: v8[k] - 8 * vpu_lane[k] for k in v8}}


def lane_resources(cfg: AccelConfig) -> dict:
    """MPU + VPU LUT/FF/DSP counted from docs/rtl.md's measured lanes: the MPU lane's LUTs and FFs scale with
    d (its multipliers and adder tree), one DSP per FP16 multiplier plus the lane's other DSPs; the VPU is
    shared + vpu_width x lane. A first-order count: Yosys's mapping, no DMA, router, buffers or decoder."""
    t = _lanes()
    ml, ms, vl, vs = t["mpu_lane"], t["mpu_shared"], t["vpu_lane"], t["vpu_shared"]
    f = cfg.d / t["mpu_d"]
    mpu = {k: ms[k] + cfg.l * ml[k] * f for k in ("lut", "ff")}
    mpu["dsp"] = ms["dsp"] + cfg.l * (cfg.d + ml["dsp"] - t["mpu_d"])
    vpu = {k: vs[k] + cfg.vpu_width * vl[k] for k in vl}
    return {k: round(mpu[k] + vpu[k]) for k in ("lut", "ff", "dsp")} | {"lut_mpu": round(mpu["lut"])}


def resources(point: dict) -> dict:
    """The first-order DSP estimate (`dfx.perf.estimate_resources`) and the Yosys lane count, with the share
    of the board's usable resources each needs."""
    from dfx.perf import estimate_resources, load_board  # lazy: only in the worker
    cfg = accel_config(point)
    b = load_board(point["board"])
    usable = b.value("resources", "usable_fraction")
    est = estimate_resources(cfg, b)
    lanes = lane_resources(cfg)
    lut_cap, dsp_cap = b.value("resources", "LUT"), b.value("resources", "DSP")
    return {"dsp_est": est["dsp"], "dsp_est_pct": 100 * est["dsp"] / dsp_cap,
            "lut": lanes["lut"], "ff": lanes["ff"], "dsp": lanes["dsp"],
            "lut_pct": 100 * lanes["lut"] / lut_cap, "dsp_pct": 100 * lanes["dsp"] / dsp_cap,
            "fits_dsp_est": bool(est["fits"]),
            "fits_lut": bool(lanes["lut"] <= usable * lut_cap), "fits_dsp": bool(lanes["dsp"] <= usable * dsp_cap)}


def yosys_units(cfg_fields: dict, units: tuple[str, ...], build_dir: str) -> dict:
    """Synthesise `units` flat at the config with Yosys (hw/synth.py); LUT/FF/DSP per unit and in total."""
    from dfx.hw.synth import find_yosys, measure  # lazy: Yosys runs only where a spec asks
    cfg = accel_config(cfg_fields)
    rows = measure(cfg, list(units), {}, Path(build_dir), find_yosys())
    out = {}
    for row in rows:
        out[f"yosys_{row.unit}_lut"] = row.r.lut + row.r.lutram
        out[f"yosys_{row.unit}_dsp"] = row.r.dsp
        out[f"yosys_{row.unit}_ff"] = row.r.ff
    out["yosys_lut"] = sum(v for k, v in out.items() if k.endswith("_lut"))
    out["yosys_dsp"] = sum(v for k, v in out.items() if k.endswith("_dsp") and k != "yosys_lut")
    return out


# ---------------------------------------------------------------------------------------------- accuracy
def default_method(fmt: str, method: str | None) -> str:
    if method:
        return method
    return "bcq" if parse_format(fmt).kind == "bcq" else "rtn"


def accuracy(fmt: str, method: str, windows: int) -> dict:
    """Bits/byte (held-out) of the embedded byte-level model with every Conv1D weight in `fmt` by `method`
    (one row of `dfx quant-report`)."""
    import torch  # lazy: only in the worker
    from dfx.compiler.quant.report_cli import RowSpec, report
    torch.set_num_threads(1)
    rows, meta = report(None, [RowSpec(f"{method} {fmt}", fmt, method)], n_windows=windows or None)
    r = rows[0]
    return {"bits_per_byte": r["bits_per_byte"], "ppl": r["ppl"], "bits_per_weight": r["bits_per_weight"],
            "eval_bytes": meta["eval_bytes"]}


# ---------------------------------------------------------------------------------------------- rtl
RTL_GPT2 = dict(n_head=2, n_layer=1, n_positions=16, vocab_size=64)


def rtl_check(cfg_fields: dict, weights: str, sim: str | None = None) -> dict:
    """A small GPT-2 (1 layer, 2 heads, n_embd = 4 d, random weights) compiled at the point's config, one
    prefill and one decode step on the integrated core's RTL; the decode logits must equal the functional
    simulator's bit for bit."""
    import numpy as np  # lazy: the RTL stage's imports are heavy (transformers, cocotb)
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    from dfx.compiler import compile_model
    from dfx.sim.functional import Device
    from dfx.verify.rtl_core import RtlCore
    from dfx.verify.toolchain import missing_simulator
    why = missing_simulator(sim)
    if why:
        raise UsageError(f"rtl: {why}")
    cfg = accel_config(cfg_fields)
    torch.manual_seed(0)
    net = GPT2LMHeadModel(GPT2Config(n_embd=4 * cfg.d, **RTL_GPT2)).eval()
    prog = compile_model(net, cfg, devices=1, weights=weights)
    steps = [("prefill", 5, 0), ("decode", 17, 1)]
    res = RtlCore(prog, sim=sim).run_steps(steps)
    dev = Device(prog, 0)
    for stream, tok, pos in steps:
        dev.run(stream, tok, pos)
    sym = prog.symbols
    want = dev.ddr[sym.logits:sym.logits + 2 * sym.vocab_size].view(np.float16)
    got = [r["logits"] for r in res.runs if r["stream"] == "decode"][0]
    diff = int(np.count_nonzero(got.view(np.uint16) != want.view(np.uint16)))
    if diff:
        raise UsageError(f"rtl: {diff} of {sym.vocab_size} decode logits differ from the functional simulator")
    return {"rtl_cycles": int(sum(r["cycles"] for r in res.runs)), "rtl_wall_s": res.wall_s}
