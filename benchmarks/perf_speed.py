"""How long the performance model itself takes: GPT-2 1.5B, 128 in + 256 out, 4 devices, DFX config.

    .venv/bin/python benchmarks/perf_speed.py           # print
    .venv/bin/python benchmarks/perf_speed.py --write   # also into docs/perf.md (block 'speed')

The issue's target is at most 30 s on these 2-core machines for the model (compiling is the compiler's).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dfx.compiler import compile_model  # noqa: E402
from dfx.perf import PerfModel  # noqa: E402

CHUNK = 10          # matrix-matrix prefill chunk for the batched timing (the most the dfx config's VBUF holds)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    t = time.perf_counter()
    prog = compile_model("1.5B", "dfx", devices=4)
    t_compile = time.perf_counter() - t
    t = time.perf_counter()
    model = PerfModel(prog, "u280")
    t_init = time.perf_counter() - t
    t = time.perf_counter()
    report = model.run(128, 256)
    t_run = time.perf_counter() - t
    t = time.perf_counter()
    model.run(128, 256)
    t_again = time.perf_counter() - t
    t = time.perf_counter()
    slow = PerfModel(prog, "u280", fast=False)
    slow.step("decode", 200, memo=False)
    t_step_plain = time.perf_counter() - t
    batched = compile_model("1.5B", "dfx", devices=4, prefill_batch=CHUNK)
    t = time.perf_counter()
    rb = PerfModel(batched, "u280").run(128, 256)
    t_batched = time.perf_counter() - t
    n = sum(len(d.streams["decode"]) for d in prog.devices)
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    lines = [
        f"| what | seconds |", "|---|---:|",
        f"| compile GPT-2 1.5B for 4 devices (shapes only; the compiler) | {t_compile:.1f} |",
        f"| predecode the 8 streams ({n} decode instructions on 4 devices) | {t_init:.1f} |",
        f"| **model 127 prefill + 256 decode steps** | **{t_run:.1f}** |",
        f"| the same again (memoised steps) | {t_again:.2f} |",
        f"| one decode step without the exact shortcuts (for scale) | {t_step_plain:.1f} |",
        f"| matrix-matrix prefill (chunks of {CHUNK}): predecode + {rb.phases['prefill'].steps} batched prefill + "
        f"256 decode steps | {t_batched:.1f} |",
        "",
        f"Measured on {cpu} (shared; load average {os.getloadavg()[0]:.1f}), Python {platform.python_version()}. "
        f"Result: {report.total_ms:.0f} ms modelled, {report.decode_ms_per_token:.3f} ms/token decode.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from perf_dfx_table import replace_block
        doc = ROOT / "docs" / "perf.md"
        doc.write_text(replace_block(doc.read_text(), "speed", text))
        print(f"wrote {doc.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
