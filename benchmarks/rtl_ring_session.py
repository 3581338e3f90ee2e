"""The multi-device `rtl` backend: the embedded default model compiled for n devices (`dfx compile --devices n
[--weights W]`) runs `Session.generate` on a plain ring of n simulated cores (`dfx.host.rtl_session.run_session`,
`dfx.hw.ring_top.PlainRing` in the fast harness) and on the `sim` backend; the tokens must be equal and the
logits each token was sampled from bit-exact. Prints the build and simulation wall time, the kernel cycles
(prefill, decode) and the verdict: the figures of docs/rtl_core.md, "Several devices".

    .venv/bin/python benchmarks/rtl_ring_session.py [--devices 2] [--weights fp16] [--prefill-batch B]
        [--max-seq S] [--prompt "def "] [--new 2] [--sim verilator|icarus]
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run(devices: int, weights: str, prompt: str, new: int, sim: str | None, prefill_batch: int | None = None,
        max_seq: int | None = None) -> dict:
    from dfx.compiler import compile_model
    from dfx.host.rtl_session import run_session
    from dfx.host.session import Session
    from dfx.models.checkpoint import load_default
    from dfx.models.tokenizer import load_tokenizer
    from dfx.program import save_program

    model = load_default()
    prog = compile_model(model, "tiny", devices=devices, weights=weights, prefill_batch=prefill_batch,
                         max_seq=max_seq)
    ids = load_tokenizer(None, prog.symbols.vocab_size).encode(prompt)
    with Session(prog, "sim") as s:
        want, want_logits = [], []
        for tok in s.generate(ids, new):
            want.append(tok)
            want_logits.append(s.backend.read_logits())
    with tempfile.TemporaryDirectory(prefix="dfx-ring-") as d:
        path = save_program(prog, Path(d) / "program.dfx")
        t0, c0 = time.time(), _cpu()
        res = run_session(path, ids, new, sim=sim, timeout=3600.0, logits=True, on_progress=_progress(t0))
        wall, cpu = time.time() - t0, _cpu() - c0
    same = [np.array_equal(a.view(np.uint16), b.view(np.uint16)) for a, b in zip(res["logits"], want_logits)]
    return {"devices": devices, "weights": weights, "prompt_tokens": len(ids), "new": new, "tokens": res["tokens"],
            "want": want, "logits_bit_exact": all(same) and len(same) == len(want), "wall_s": wall, "cpu_s": cpu,
            "summary": res["summary"]}


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the simulator, the builds)."""
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))


def _progress(t0: float):
    def show(count, cycles):
        if count:
            print(f"  step {count}: {cycles:,} cycles ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    return show


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--weights", default="fp16")
    ap.add_argument("--prompt", default="def ")
    ap.add_argument("--new", type=int, default=2)
    ap.add_argument("--prefill-batch", type=int, default=None)
    ap.add_argument("--max-seq", type=int, default=None)
    ap.add_argument("--sim", default="verilator", help="verilator (default) or icarus (hours per decode step)")
    a = ap.parse_args(argv)
    r = run(a.devices, a.weights, a.prompt, a.new, a.sim, a.prefill_batch, a.max_seq)
    s = r["summary"]
    ok = r["tokens"] == r["want"] and r["logits_bit_exact"]
    cycles = s["prefill_cycles"] + s["decode_cycles"]
    print(f"{r['devices']} devices, {r['weights']}"
          + (f", prefill batch {a.prefill_batch}" if a.prefill_batch else "")
          + (f", max seq {a.max_seq}" if a.max_seq else "")
          + f", {r['prompt_tokens']} prompt tokens + {r['new']} new: tokens {r['tokens']} (sim {r['want']}), logits "
          f"bit-exact: {r['logits_bit_exact']}; kernel cycles prefill {s['prefill_cycles']:,}, decode "
          f"{s['decode_cycles']:,}; wall {r['wall_s']:.0f} s, CPU {r['cpu_s']:.0f} s (build, if not cached, + "
          f"simulation; {cycles / max(r['cpu_s'], 1e-9):,.0f} kernel cycles per CPU s): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
