"""Every weight format the compiler accepts, end to end on the RTL core: the embedded default model (256 wide, 4
layers, byte vocabulary) compiled at the `tiny` config with each format of `dfx.formats.all_formats()` (one device,
`--max-seq 16`), generated greedily on the sim backend (`Session(program, "sim")`: the text, and the logits of
every decode step) and run on ONE core built with every quantized family (`dfx.hw.qfetch.CORE_FAMILIES`) in the
fast RTL harness (`dfx.verify.fast_core`, Verilator by default): the same token steps, every decode step's logits
compared bit for bit, and the text the RTL's logits pick (greedy) compared byte for byte with the sim backend's.

The core is the rtl backend's build under `DFX_RTL_WFORMATS=all` (`dfx.verify.core_build.extra_families`), its
memories sized for the largest image of the formats run (`dfx.verify.fast_top.program_abits`: the FP16 image, 6.2
MiB at 16 KV positions, needs 2 MiB per HBM pseudo-channel), so `DFX_RTL_WFORMATS=all dfx run --backend rtl` runs
any of these programs on the same build. A program larger than the harness's maximum would be "not run" with that
line.

    .venv/bin/python benchmarks/rtl_formats.py [--formats all|NAME,...] [--prompt d] [--new 2] [--sim verilator]
        [--batch 4] [--reference-only] [--table-only] [--update-docs]

Prints a table (format, text equal, logits bit-exact, RTL cycles per decode step, weight-stream bytes per cycle
of a decode step: the HBM bytes of its weight matrices over its cycles; the ports' peak is `hbm_channels` x
`hbm_width` / 8) and with `--update-docs` writes it into docs/rtl_core.md, section "Quantized weights", between
its formats markers. A format the core cannot read is refused before the run (`quantized_refusal`, its line in
the table). Compiled programs, the sim backend's results and each format's RTL result are cached under
build/rtl_formats/ (a rerun does only what is missing; the RTL results are keyed by a hash of the core's generated
Verilog, the simulator, the prompt and --new, and each carries the hash of the compiled program it ran, so
results of other RTL or of another program never count). Progress
on stderr.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

from dfx.docblock import write_block

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "rtl_core.md"
CACHE = REPO / "build" / "rtl_formats"
BEGIN, END = "<!-- formats:begin -->", "<!-- formats:end -->"
MAX_SEQ = 16             # KV positions: a short cache keeps each image (and the harness's memories) small
GROUP_ORDER = {None: 0, 32: 1, 128: 2, 64: 3}      # whole-channel groups first: every family, axis, zero points


def formats_to_run(spec: str) -> list[str]:
    from dfx.formats import all_formats, parse
    if spec == "all":
        fmts = sorted(all_formats(), key=lambda f: (f.kind != "fp16", GROUP_ORDER[f.group]))
        return [f.name for f in fmts]
    return [parse(n).name for n in spec.split(",") if n.strip()]


def compile_key() -> str:
    """Hash of what a compiled program depends on (the compiler, the core package, the model and its weights)."""
    h = hashlib.sha256()
    files = [p for d in ("compiler", "dfx", "models") for p in (REPO / d).rglob("*.py")]
    files += list((REPO / "models" / "default").glob("*"))
    for p in sorted(files):
        h.update(str(p.relative_to(REPO)).encode() + p.read_bytes())
    return h.hexdigest()[:16]


def program_for(name: str, key: str):
    """The embedded model compiled at `tiny` with weights `name` (cached under build/rtl_formats/programs/)."""
    from dfx.compiler import compile_model
    from dfx.models.checkpoint import DEFAULT_MODEL_DIR
    from dfx.program import load_program, save_program
    path = CACHE / "programs" / f"{key}_s{MAX_SEQ}" / f"{name}.dfx"
    if path.exists():
        return load_program(path)
    prog = compile_model(DEFAULT_MODEL_DIR, "tiny", weights=name, max_seq=MAX_SEQ)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_program(prog, path)
    return prog


def sim_reference(prog, prompt: list[int], new: int) -> dict:
    """The sim backend's greedy generation: its token steps, tokens, text and each decode step's logits."""
    from dfx.host.session import Session
    from dfx.models.tokenizer import tokenizer_from_json
    logits = []
    with Session(prog, "sim") as s:
        read = s.backend.read_logits

        def keep():
            y = read()
            logits.append(np.asarray(y, np.float16).copy())
            return y

        s.backend.read_logits = keep
        tokens = [int(t) for t in s.generate(prompt, new)]
    seq = prompt + tokens[:-1]
    steps = [("prefill", t, i) for i, t in enumerate(prompt[:-1])]
    steps += [("decode", t, i) for i, t in enumerate(seq) if i >= len(prompt) - 1]
    tok = tokenizer_from_json(prog.tokenizer_json, prog.symbols.vocab_size)
    return {"steps": steps, "tokens": tokens, "text": tok.decode(prompt + tokens),
            "logits": [y.view(np.uint16).tolist() for y in logits]}


def weight_bytes(prog, stream: str = "decode") -> int:
    """HBM bytes of the weight matrices one run of `stream` streams (FP16 tiles or quantized regions)."""
    from dfx import isa
    from dfx.formats import DESC_BYTES, FP16, matrix_bytes, read_descriptor, region_format
    cfg, dev, total = prog.config, prog.devices[0], 0
    for i in dev.streams[stream]:
        f = i.fields()
        if i.op.mnemonic not in ("LINEAR", "LMHEAD") or "wfmt" not in f:
            continue
        if f["wfmt"]:
            at = f["w"] * isa.HBM_UNIT
            desc = read_descriptor(bytes(dev.hbm[at:at + DESC_BYTES]))
            total += matrix_bytes(region_format(desc), f["k"], f["n"], cfg.d, cfg.l, desc["phase"])
        else:
            total += matrix_bytes(FP16, f["k"], f["n"], cfg.d, cfg.l)
    return total


def prepare(names, prompt, new, ckey):
    """Compile every format and run the sim backend (cached); returns {name: reference, or {"refused": why} for
    a program the core cannot read, {"skipped": why} for one the harness's memories cannot hold}."""
    from tqdm import tqdm
    from dfx.verify.core_build import quantized_refusal
    from dfx.errors import DeviceError
    from dfx.verify.fast_top import program_abits
    refs = {}
    rdir = CACHE / "reference" / f"{ckey}_s{MAX_SEQ}_{bytes(prompt).hex()}_{new}"
    rdir.mkdir(parents=True, exist_ok=True)
    for name in tqdm(names, desc="compile + sim backend", file=sys.stderr, unit="format"):
        path = rdir / f"{name}.json"
        if path.exists():
            refs[name] = json.loads(path.read_text())
            continue
        prog = program_for(name, ckey)
        why = quantized_refusal(prog)
        try:
            abits = program_abits(prog)
        except DeviceError as e:
            abits, big = None, str(e)
        if why:
            ref = {"refused": why}
        elif abits is None:
            ref = {"skipped": big}
        else:
            ref = {**sim_reference(prog, prompt, new), "abits": list(abits)}
        ref["weight_bytes"] = weight_bytes(prog)
        path.write_text(json.dumps(ref))
        refs[name] = ref
    return refs


def program_hash(name: str, ckey: str) -> str:
    """Hash of the compiled program of format `name` (its file under build/rtl_formats/programs/): of the names
    and contents of its archive's members, not of their timestamps."""
    import zipfile
    h = hashlib.sha256()
    with zipfile.ZipFile(CACHE / "programs" / f"{ckey}_s{MAX_SEQ}" / f"{name}.dfx") as z:
        for member in sorted(z.namelist()):
            h.update(member.encode() + b"\0" + z.read(member))
    return h.hexdigest()[:16]


def rtl_results(names, refs, ckey, sim, batch, key, run: bool = True) -> dict:
    """Run every format that is not refused on one core with every family, its memories deep enough for every
    format of `names` (cached per format and program; `run` False: the cached results only)."""
    from tqdm import tqdm
    from dfx import regmap
    from dfx.hw.qfetch import CORE_FAMILIES
    from dfx.host.sampling import Sampler, Sampling
    from dfx.verify.fast_core import FastCore
    path = CACHE / "rtl_results.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    stored = cache.setdefault(key, {})
    phash = {n: program_hash(n, ckey) for n in names if "steps" in refs[n]}
    done = {n: r for n, r in stored.items() if n in phash and r.get("program") == phash[n]}
    todo = [n for n in names if "steps" in refs[n] and n not in done]
    if not todo or not run:
        return done
    t0 = time.time()
    print(f"building (or finding cached) the core with {', '.join(CORE_FAMILIES)} for {sim} ...", file=sys.stderr)
    from dfx.config import load_config
    sized = [refs[n]["abits"] for n in names if "steps" in refs[n]]
    abits = [max(a[i] for a in sized) for i in (0, 1)]
    core = FastCore(load_config("tiny"), sim, wformats=tuple(CORE_FAMILIES), ddr_abits=abits[0],
                    hbm_abits=abits[1], workdir=CACHE / "jobs")
    print(f"  ready in {time.time() - t0:.0f} s: {core.bdir}", file=sys.stderr)
    bar = tqdm(total=len(todo), desc=f"RTL ({sim})", file=sys.stderr, unit="format")
    halted = regmap.STATUS_BITS["halted"]
    for b in range(0, len(todo), batch):
        part = todo[b:b + batch]
        jobs = [FastCore.job_for(program_for(n, ckey), refs[n]["steps"], logits=True, timeout=5_000_000)
                for n in part]
        with _progress(core.workdir / "results.jsonl", bar, bar.n):
            results = core.run(jobs)
        for n, res in zip(part, results):
            ref = refs[n]
            bad = [r for r in res["runs"] if r["status"] != halted]
            got = [y.view(np.uint16) for y in res["logits"]]
            want = [np.asarray(y, np.uint16) for y in ref["logits"]]
            exact = not bad and len(got) == len(want) and all(np.array_equal(g, w) for g, w in zip(got, want))
            sample = Sampler(Sampling())
            tokens = [int(sample(y.view(np.float16))) for y in got]
            dec = [r["cycles"] for r in res["runs"] if r["stream"] == "decode"]
            done[n] = {"exact": exact, "tokens_equal": tokens == ref["tokens"],
                       "error": (f"{bad[0]['stream']} pos {bad[0]['pos']}: STATUS 0x{bad[0]['status']:x} at pc "
                                 f"{bad[0]['error_pc']}") if bad else "",
                       "decode_cycles": sum(dec) / len(dec) if dec else 0, "wall_s": res["wall_s"] / len(part),
                       "program": phash[n]}
            stored[n] = done[n]
        bar.n = b + len(part)
        bar.refresh()
        path.write_text(json.dumps(cache, indent=1))
    bar.close()
    return done


class _progress:
    """Advance `bar` while a simulation writes its results file, one line per finished job."""

    def __init__(self, path: Path, bar, base: int):
        self.path, self.bar, self.base = path, bar, base
        self.stop = threading.Event()

    def _poll(self):
        while not self.stop.wait(2.0):
            lines = self.path.read_text().count("\n") if self.path.exists() else 0
            if self.base + lines != self.bar.n:
                self.bar.n = self.base + lines
                self.bar.refresh()

    def __enter__(self):
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def table(names, refs, done, cfg, cmd: str) -> str:
    peak = cfg.hbm_channels * cfg.hbm_width // 8
    n_ok = sum(1 for n in names if n in done and done[n]["exact"] and done[n]["tokens_equal"])
    n_ref = sum(1 for n in names if "refused" in refs[n])
    n_skip = sum(1 for n in names if "skipped" in refs[n])
    n_miss = sum(1 for n in names if "steps" in refs[n] and n not in done)
    lines = [f"`{cmd}`: {len(names)} formats; {n_ok} with text byte-identical to the sim backend and every decode "
             f"step's logits bit-exact on one core built with every family; {n_ref} refused before the run"
             + (f"; {n_skip} not run (memory of the harness)" if n_skip else "")
             + (f"; {n_miss} not run yet" if n_miss else "") + f". Weight B/cycle: HBM bytes of a decode step's weight "
             f"matrices / its cycles (the ports' peak: {peak} B/cycle).", "",
             "| format | text equal | logits bit-exact | cycles per decode step | weight B/cycle | text (sim backend) |",
             "|---|---|---|---:|---:|---|"]
    for n in names:
        ref = refs[n]
        if "refused" in ref:
            lines.append(f"| {n} | refused: {ref['refused']} | | | | |")
            continue
        if "skipped" in ref:
            lines.append(f"| {n} | not run: {ref['skipped']} | | | | |")
            continue
        r = done.get(n)
        text = json.dumps(ref["text"])[1:-1].replace("|", "\\|").replace("`", "'")
        if r is None:
            lines.append(f"| {n} | not run | | | | `{text}` |")
            continue
        cyc = r["decode_cycles"]
        yes = {True: "yes", False: "**no**"}
        lines.append(f"| {n} | {yes[r['tokens_equal']]} | {yes[r['exact']]}{' ' + r['error'] if r['error'] else ''}"
                     f" | {cyc:,.0f} | {ref['weight_bytes'] / cyc if cyc else 0:.1f} | `{text}` |")
    return "\n".join(lines) + "\n"


def update_doc(body: str) -> None:
    write_block(DOC, BEGIN, END, body, missing="after", after="## Quantized weights")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--formats", default="all", help="all (default) or a comma list of format names")
    ap.add_argument("--prompt", default="d", help="prompt text (default 'd': every run is a decode step)")
    ap.add_argument("--new", type=int, default=2, help="greedy tokens after the prompt (default 2)")
    ap.add_argument("--sim", default="verilator")
    ap.add_argument("--batch", type=int, default=4, help="programs per simulator process (default 4)")
    ap.add_argument("--reference-only", action="store_true", help="compile and run the sim backend only")
    ap.add_argument("--table-only", action="store_true", help="no simulation: the table of the cached results")
    ap.add_argument("--update-docs", action="store_true", help="write the table into docs/rtl_core.md")
    a = ap.parse_args(argv)
    from dfx.config import load_config
    from dfx.hw.qfetch import CORE_FAMILIES
    from dfx.verify.fast_top import core_text
    names = formats_to_run(a.formats)
    prompt = list(a.prompt.encode())
    ckey = compile_key()
    refs = prepare(names, prompt, a.new, ckey)
    if a.reference_only:
        return
    print("generating (or finding cached) the core's Verilog ...", file=sys.stderr)
    rtl = hashlib.sha256(core_text(load_config("tiny"), 1, tuple(CORE_FAMILIES)).encode()).hexdigest()[:16]
    key = f"{a.sim} verilog={rtl} max_seq={MAX_SEQ} prompt={bytes(prompt).hex()} new={a.new}"
    done = rtl_results(names, refs, ckey, a.sim, a.batch, key, run=not a.table_only)
    cmd = "benchmarks/rtl_formats.py" + ("" if a.formats == "all" else f" --formats {a.formats}")
    cmd += "".join(f" --{k} {v}" for k, v in (("prompt", a.prompt), ("new", a.new), ("sim", a.sim))
                   if v != ap.get_default(k))
    body = table(names, refs, done, load_config("tiny"), f".venv/bin/python {cmd}")
    print(body)
    if a.update_docs:
        update_doc(body)
    bad = [n for n in names if n in done and not (done[n]["exact"] and done[n]["tokens_equal"])]
    if bad:
        raise SystemExit(f"not bit-exact on the RTL: {', '.join(bad)}")


if __name__ == "__main__":
    main()
