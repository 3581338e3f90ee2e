"""GPU peer row for docs/perf.md: GPT-2 345M and 1.5B decode latency at batch 1 on one GPU.

Random weights at GPT-2's real shapes (transformers' GPT2LMHeadModel, FP16), a 128-token prompt, greedy
decode with the KV cache. Decode time per token is measured as the difference between a run that generates
1 + N tokens and one that generates 1 token, divided by N, so prompt processing cancels out. Median of
--repeats runs. Two modes:

- eager: a plain Python loop over model(...) with transformers' dynamic KV cache;
- compile: transformers' generate() with a static KV cache, whose forward transformers compiles with
  torch.compile (mode "reduce-overhead", CUDA graphs); warmed up before timing.

    python benchmarks/gpu_peer.py --json out.json          # needs a CUDA GPU; prints a Markdown table

The project's own machines have no GPU; this is run on a lent one and its output quoted in docs/perf.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

SHAPES = {"345M": dict(n_embd=1024, n_layer=24, n_head=16), "1.5B": dict(n_embd=1600, n_layer=48, n_head=25)}


def _model(torch, transformers, name: str):
    cfg = transformers.GPT2Config(vocab_size=50257, n_positions=1024, **SHAPES[name])
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = transformers.GPT2LMHeadModel(cfg)
    return model.half().eval()


def _eager(torch, model, prompt, new_tokens: int) -> float:
    """Seconds for prompt + `new_tokens` greedy steps with a plain loop (dynamic KV cache)."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model(input_ids=prompt, use_cache=True)
        past = out.past_key_values
        tok = out.logits[:, -1:].argmax(-1)
        for _ in range(new_tokens - 1):
            out = model(input_ids=tok, past_key_values=past, use_cache=True)
            past = out.past_key_values
            tok = out.logits[:, -1:].argmax(-1)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def _generate(torch, transformers, model, prompt, new_tokens: int, compiled: bool) -> float:
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
              cache_implementation="static", pad_token_id=0)
    if compiled:
        kw["compile_config"] = transformers.CompileConfig(fullgraph=True, mode="reduce-overhead")
    else:
        kw["disable_compile"] = True
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.inference_mode():
        model.generate(prompt, **kw)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def measure(fn, n: int, repeats: int) -> float:
    """Median ms per decoded token: (t(1 + n) - t(1)) / n over `repeats` pairs."""
    fn(1), fn(1 + n)                                    # warm-up (and compilation)
    per = []
    for _ in range(repeats):
        per.append((fn(1 + n) - fn(1)) / n * 1e3)
    return statistics.median(per)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="345M,1.5B")
    ap.add_argument("--prompt", type=int, default=128, help="prompt tokens (default 128)")
    ap.add_argument("--tokens", type=int, default=128, help="decoded tokens timed per run (default 128)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    import torch
    import transformers
    if not torch.cuda.is_available():
        print("error: no CUDA GPU here; this benchmark measures the GPU peer row", file=sys.stderr)
        return 2
    gpu = torch.cuda.get_device_name(0)
    rows = []
    for name in a.models.split(","):
        model = _model(torch, transformers, name)
        prompt = torch.randint(0, 50257, (1, a.prompt), device="cuda")
        modes = {
            "eager": lambda n: _eager(torch, model, prompt, n),
            "static cache, eager": lambda n: _generate(torch, transformers, model, prompt, n, False),
            "torch.compile": lambda n: _generate(torch, transformers, model, prompt, n, True),
        }
        for mode, fn in modes.items():
            try:
                ms = measure(fn, a.tokens, a.repeats)
                rows.append(dict(model=name, mode=mode, ms_per_token=round(ms, 3),
                                 tokens_per_s=round(1e3 / ms, 1)))
            except Exception as e:                      # one failing mode must not lose the others
                rows.append(dict(model=name, mode=mode, error=f"{type(e).__name__}: {e}"[:300]))
            print(json.dumps(rows[-1]), flush=True)
        del model
        torch.cuda.empty_cache()
    info = dict(gpu=gpu, torch=torch.__version__, transformers=transformers.__version__, dtype="float16",
                batch=1, prompt_tokens=a.prompt, decoded_tokens=a.tokens, repeats=a.repeats, rows=rows)
    print(f"\n{gpu}, torch {torch.__version__}, transformers {transformers.__version__}, FP16, batch 1, "
          f"{a.prompt}-token prompt, median of {a.repeats}\n")
    print("| model | mode | ms/token | tokens/s |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['mode']} | {r.get('ms_per_token', r.get('error'))} | "
              f"{r.get('tokens_per_s', '')} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(info, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
