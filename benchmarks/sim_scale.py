"""The simulator at GPT-2 scale: compile and run random-weight GPT-2 124M, 355M and 1.5B (the real shapes) with
the `dfx` preset, beside the PyTorch golden model.

    python benchmarks/sim_scale.py [--sizes 124M,355M,1.5B] [--tokens 8] [--work DIR] [--readme]

For each size it builds a random checkpoint locally with `transformers` (GPT2LMHeadModel, FP16 safetensors via
save_pretrained; no hub), then measures, each in its own child process so that peak memory is that step's
alone (the larger of the child's ru_maxrss, from wait4, and its process tree's resident total sampled every
0.1 s, so any process it starts counts too):

- compile: `dfx compile CKPT --config dfx --devices N -o PROGRAM`, wall time and peak memory;
- run: the host's `Session` on the sim backend (the code `dfx run` runs) loads the program and generates
  `--tokens` greedy tokens from a fixed prompt: peak memory, ms per decode token (median); in the same child,
  after the simulator is closed, the golden model (`dfx.models.gpt2.GPT2` from the checkpoint, float32, KV
  cache) does the same with one PyTorch thread and with PyTorch's default, and the faster median counts (on a
  loaded 2-core machine PyTorch's thread pool can be the slower); the tokens must be equal to the golden's.
  The simulator uses every core it may (one matrix split over them; a ring's devices on threads of their own).

Peak memory is set beside the program's memory images (HBM + DDR of every device: weights, tables, KV cache),
the figure the issue's goal is stated against (1.5x). The table it prints is the README's; `--readme` writes it
between the README's <!-- sim-scale --> markers. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"124M": (12, 768, 12, 1), "355M": (24, 1024, 16, 1), "1.5B": (48, 1600, 25, 4)}   # layers, embd, heads, devices
PROMPT = [464, 2068, 7586, 21831, 18045, 625]
GB = 1e9
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(msg: str) -> None:
    print(f"[sim_scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def tree_rss(pid: int) -> int:
    """Resident bytes (anonymous, file-backed and shared: /proc's statm) of process `pid` and all its descendants."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    st = f.read()
                kids.setdefault(int(st[st.rindex(")") + 2:].split()[1]), []).append(int(d))
            except (OSError, ValueError):
                pass
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            pass
        todo += kids.get(p, [])
    return total


def child(args: list[str], limit: int | None = None) -> tuple[float, int, str]:
    """Run a child process: (wall s, peak RSS bytes, stdout). Its stderr passes through (progress). The peak is
    the larger of the child's ru_maxrss (wait4: the peak of its largest process) and the largest resident total of
    its whole process tree, sampled every 0.1 s, so processes it starts count together."""
    cmd = ([("prlimit"), f"--as={limit}", "--"] if limit else []) + args
    t0 = time.perf_counter()
    env = {**os.environ, "DFX_PROGRESS": os.environ.get("DFX_PROGRESS", "1")}      # bars in a log too
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    done, tree = threading.Event(), [0]

    def sample():
        while not done.wait(0.1):
            tree[0] = max(tree[0], tree_rss(p.pid))
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    done.set()
    sampler.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise SystemExit(f"child failed ({p.returncode}): {' '.join(args)}")
    log(f"  peak RSS: ru_maxrss {ru.ru_maxrss * 1024 / GB:.2f} GB, process tree (sampled) {tree[0] / GB:.2f} GB")
    return time.perf_counter() - t0, max(ru.ru_maxrss * 1024, tree[0]), out


# ------------------------------------------------------------------------------------------- in the children
def build_checkpoint(path: str, layers: int, embd: int, heads: int) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float16)             # initialise in FP16: no FP32 copy of a 1.5B model
    cfg = GPT2Config(n_layer=layers, n_embd=embd, n_head=heads, n_positions=1024, vocab_size=50257)
    GPT2LMHeadModel(cfg).save_pretrained(path, safe_serialization=True)


def measure_run(ckpt: str, program: str, tokens: int) -> None:
    """Sim then golden, greedy, in this process: JSON on stdout."""
    import gc
    import resource

    import numpy as np
    import torch

    from dfx.host.session import Session
    from dfx.models.checkpoint import load_checkpoint
    from dfx.program import load_program

    def greedy(step):
        """step(ids, first) -> logits; the prompt, then `tokens` greedy tokens; (tokens, decode step seconds)."""
        logits = step(PROMPT, True)
        out, times = [int(np.argmax(logits))], []
        while len(out) < tokens:
            t0 = time.perf_counter()
            logits = step([out[-1]], False)
            times.append(time.perf_counter() - t0)
            out.append(int(np.argmax(logits)))
            log(f"  {len(out)}/{tokens} tokens, {1e3 * times[-1]:.0f} ms")
        return out, times

    t0 = time.perf_counter()
    prog = load_program(program)
    images = sum(mem.hbm_bytes + mem.ddr_bytes for mem in prog.manifest.memory)
    with Session(prog, "sim", counters=False, timeout=24 * 3600.0) as sess:     # a step may take minutes
        log(f"  sim: program loaded in {time.perf_counter() - t0:.1f} s")
        sim_out, sim_t = greedy(lambda ids, first: sess.feed(ids))
    del prog, sess
    gc.collect()
    run_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model = load_checkpoint(ckpt)
    past = [None]

    def golden(ids, first):
        with torch.no_grad():
            logits, past[0] = model(torch.tensor([ids]), None if first else past[0])
        return logits[0, -1].numpy()
    golds = {}
    for threads in sorted({1, torch.get_num_threads()}):    # the faster of one thread and PyTorch's default
        torch.set_num_threads(threads)
        log(f"  golden, {threads} PyTorch thread(s)")
        golds[threads] = greedy(golden)
    best = min(golds, key=lambda t: statistics.median(golds[t][1]))
    print(json.dumps({"run_peak": run_peak, "images": images, "sim_ms": 1e3 * statistics.median(sim_t),
                      "golden_ms": 1e3 * statistics.median(golds[best][1]), "golden_threads": best,
                      "golden_ms_by_threads": {t: 1e3 * statistics.median(v[1]) for t, v in golds.items()},
                      "sim_tokens": sim_out, "golden_tokens": [v[0] for v in golds.values()]}))


# ------------------------------------------------------------------------------------------- driver
def bench(size: str, work: Path, tokens: int, limit: int | None) -> dict:
    layers, embd, heads, devices = SIZES[size]
    ckpt, prog = work / f"gpt2-{size}", work / f"gpt2-{size}-dfx{devices}.dfx"
    py = sys.executable
    if not (ckpt / "config.json").is_file():
        log(f"{size}: building the random checkpoint")
        child([py, __file__, "--child", "checkpoint", str(ckpt), str(layers), str(embd), str(heads)])
    ckpt_bytes = sum(f.stat().st_size for f in ckpt.glob("*.safetensors"))
    log(f"{size}: compiling for {devices} device(s)")
    c_s, c_peak, _ = child([str(Path(py).parent / "dfx"), "compile", str(ckpt), "--config", "dfx", "--devices", str(devices),
                            "-o", str(prog)], limit)
    log(f"{size}: compiled in {c_s:.0f} s, peak {c_peak / GB:.2f} GB; running sim and golden")
    _, r_peak, out = child([py, __file__, "--child", "run", str(ckpt), str(prog), str(tokens)], limit)
    r = json.loads(out.strip().splitlines()[-1])
    images = r["images"]
    row = {"size": size, "devices": devices, "checkpoint_gb": ckpt_bytes / GB,
           "program_gb": prog.stat().st_size / GB, "images_gb": images / GB, "compile_s": c_s,
           "compile_peak_gb": c_peak / GB, "run_peak_gb": r["run_peak"] / GB, "sim_ms": r["sim_ms"],
           "golden_ms": r["golden_ms"], "golden_threads": r["golden_threads"], "tokens": tokens,
           "equal": all(r["sim_tokens"] == g for g in r["golden_tokens"])}
    log(f"{size}: {json.dumps(row)}")
    return row


def table(rows: list[dict]) -> str:
    lines = ["| model | program | compile: time, peak (x checkpoint) | `dfx run` peak (x images) | "
             "ms/token sim vs golden (ratio) | greedy tokens equal |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['size']}, {r['devices']} device{'s' if r['devices'] > 1 else ''} | {r['program_gb']:.2f} GB | "
            f"{r['compile_s']:.0f} s, {r['compile_peak_gb']:.1f} GB ({r['compile_peak_gb'] / r['checkpoint_gb']:.1f}x) | "
            f"{r['run_peak_gb']:.1f} GB ({r['run_peak_gb'] / r['images_gb']:.2f}x) | "
            f"{r['sim_ms']:.0f} vs {r['golden_ms']:.0f} ({r['sim_ms'] / r['golden_ms']:.1f}x) | "
            f"{'yes' if r['equal'] else 'NO'} ({r['tokens']}) |")
    return "\n".join(lines)


def write_readme(text: str) -> None:
    readme = ROOT / "README.md"
    s = readme.read_text()
    a, b = "<!-- sim-scale -->", "<!-- /sim-scale -->"
    if a not in s:
        raise SystemExit("README.md has no <!-- sim-scale --> markers")
    readme.write_text(s[:s.index(a) + len(a)] + "\n" + text + "\n" + s[s.index(b):])


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        if kind == "checkpoint":
            return build_checkpoint(rest[0], *map(int, rest[1:]))
        return measure_run(rest[0], rest[1], int(rest[2]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="124M,355M,1.5B")
    ap.add_argument("--tokens", type=int, default=8, help="greedy tokens per run (the prompt is 6 tokens)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/dfx-sim-scale"), help="checkpoints and programs")
    ap.add_argument("--limit", type=int, default=None, help="address-space limit of each child (prlimit --as)")
    ap.add_argument("--readme", action="store_true", help="write the table into README.md")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [bench(s, args.work, args.tokens, args.limit) for s in args.sizes.split(",")]
    text = table(rows)
    print(text)
    print(json.dumps(rows))
    if args.readme:
        write_readme(text)


if __name__ == "__main__":
    main()
