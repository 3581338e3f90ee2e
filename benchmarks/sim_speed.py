"""Functional simulator decode speed beside the PyTorch golden model, on the same model, in the same run.

    python benchmarks/sim_speed.py [--model DIR] [--tokens 32] [--repeats 3] [--config tiny]

PyTorch runs with one intra-op thread by default (`--threads`), as the simulator is single-threaded numpy.
Wall and CPU (process) time are both reported; on a busy machine the CPU-time ratio is the steadier one.
Both generate the same greedy tokens from the same prompt with a KV cache; the figure is decode tokens/s
(prompt processing excluded), the median over repeats, and the ratio golden/simulator.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint directory (default: the embedded model)")
    ap.add_argument("--prompt", default="def main(")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--threads", type=int, default=1,
                    help="PyTorch intra-op threads for the golden model (default 1, like the simulator: on a shared "
                         "2-core machine more threads oversubscribe the cores and make the golden erratic)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from dfx.compiler import compile_model
    from dfx.host.session import Session
    from dfx.models.checkpoint import DEFAULT_MODEL_DIR, load_checkpoint
    from dfx.models.tokenizer import load_tokenizer

    model = load_checkpoint(args.model or DEFAULT_MODEL_DIR)
    ids = load_tokenizer(args.model or DEFAULT_MODEL_DIR, model.config.vocab_size).encode(args.prompt)
    prog = compile_model(model, args.config)

    def golden():
        with torch.no_grad():
            logits, past = model(torch.tensor([ids]))
            tok = int(logits[0, -1].argmax())
            t0, c0 = time.perf_counter(), time.process_time()
            out = [tok]
            for _ in range(args.tokens - 1):
                logits, past = model(torch.tensor([[tok]]), past)
                tok = int(logits[0, -1].argmax())
                out.append(tok)
            return time.perf_counter() - t0, time.process_time() - c0, out

    def sim():
        s = Session(prog, "sim", counters=False)      # the functional simulator alone (no perf-model counters)
        logits = s.feed(ids)
        tok = int(logits.argmax())
        t0, c0 = time.perf_counter(), time.process_time()
        out = [tok]
        for _ in range(args.tokens - 1):
            tok = int(s.feed([tok]).argmax())
            out.append(tok)
        return time.perf_counter() - t0, time.process_time() - c0, out

    g_times, s_times, g_cpu, s_cpu = [], [], [], []
    for _ in range(args.repeats):          # interleaved, so machine noise hits both alike
        tg, cg, g_out = golden()
        ts, cs, s_out = sim()
        g_times.append(tg)
        s_times.append(ts)
        g_cpu.append(cg)
        s_cpu.append(cs)
    n = args.tokens - 1
    g, s = statistics.median(g_times), statistics.median(s_times)
    gc, sc = statistics.median(g_cpu), statistics.median(s_cpu)
    c = model.config
    print(f"model: {c.n_layer} layers, n_embd {c.n_embd}, {c.n_head} heads, vocab {c.vocab_size}; "
          f"config {args.config}; {n} decode steps x {args.repeats} repeats (median)")
    print(f"golden (PyTorch, KV cache): {n / g:8.1f} tok/s  {1000 * g / n:7.2f} ms/token  "
          f"(CPU {1000 * gc / n:.2f} ms/token)")
    print(f"simulator (bit-exact):      {n / s:8.1f} tok/s  {1000 * s / n:7.2f} ms/token  "
          f"(CPU {1000 * sc / n:.2f} ms/token)")
    print(f"ratio of CPU time: {sc / gc:.2f}x (on a shared machine the CPU-time ratio is the steadier figure)")
    print(f"ratio simulator/golden time: {s / g:.2f}x   (greedy tokens equal: {s_out == g_out})")


if __name__ == "__main__":
    main()
