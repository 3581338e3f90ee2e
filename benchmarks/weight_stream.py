"""Weight-stream efficiency of the RTL core: long LINEARs on the integrated core (the fast harness,
`dfx.verify.fast_core`: the HBM pseudo-channels as behavioural AXI memories inside the design) with the U280 HBM's
read latency, and with a refresh-like stall on one pseudo-channel and on all of them, reporting the weight stream's
achieved bytes per cycle against the ports' peak (`hbm_channels` x `hbm_width` / 8 bytes per core cycle).

    .venv/bin/python benchmarks/weight_stream.py [--sizes 1024x1024,4096x512] [--sim icarus] [--no-doc]

Memory model settings, in cycles of the 200 MHz core clock (5 ns), from boards/u280/board.json:
- read latency 36 cycles: Shuhai's page-miss read latency on the U280, 137.8 ns (Wang et al., FCCM 2020, DOI
  10.1109/FCCM48280.2020.00024: 62 cycles of the 450 MHz AXI clock) = 27.6 cycles, + 8 cycles through the
  platform's clock and width converters (hbm.converter_cycles, an assumption); each burst's first beat comes no
  earlier than that after its AR;
- refresh: tRFC = 260 ns = 52 cycles without read data every tREFI = 3.9 us = 780 cycles (JEDEC JESD235, 4 Gb
  per channel); "one channel": pseudo-channel 0 only; "all channels": each at its own phase (staggered).

A program is LINEAR k x n (FP16 weights at HBM 0, no bias) then HALT; the LINEAR's cycles are the run's cycles
minus those of a HALT-only run on the same harness. Efficiency = tiles x tile bytes / (LINEAR cycles x peak).
Prints a Markdown table and writes it into docs/rtl_core.md between its weight-stream markers (unless --no-doc).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dfx.docblock import read_block, write_block

REPO = Path(__file__).resolve().parents[1]
LATENCY = 36                  # core cycles: 137.8 ns page miss (Shuhai) / 5 ns + 8 converter cycles
REFRESH = (780, 52)           # (tREFI, tRFC) in core cycles: 3.9 us and 260 ns at 5 ns (JESD235)
CASES = [("no latency", 0, None), ("U280 latency", LATENCY, None),
         ("U280 latency + refresh, channel 0", LATENCY, "one"),
         ("U280 latency + refresh, all channels", LATENCY, "all")]
BEGIN, END = "<!-- weight-stream:begin -->", "<!-- weight-stream:end -->"


def _program(k: int, n: int):
    from dfx import isa
    return [isa.Instr("LINEAR", dst=2048, src=0, w=0, k=k, n=n), isa.Instr("HALT")]


def _job(cfg, instrs, latency: int, refresh: str | None):
    from dfx import isa
    from dfx.verify.fast_core import FastJob
    entry = 4096
    ddr = bytes(entry) + isa.encode_stream(instrs)
    mask = {None: 0, "one": 1 << 1, "all": ((1 << cfg.hbm_channels) - 1) << 1}[refresh]   # memory 0 is DDR
    every, cycles = REFRESH if refresh else (0, 0)
    return FastJob([{"ddr": ddr, "hbm": b""}], [{"main": entry}], [["main", 0, 0]], latency=latency,
                   timeout=4_000_000, refresh=(every, cycles, mask))


def measure(sizes, sim: str | None) -> list[dict]:
    from tqdm import tqdm

    from dfx import regmap
    from dfx.config import load_config
    from dfx.verify.fast_core import FastCore
    cfg = load_config("tiny")
    fc = FastCore(cfg, sim=sim, workdir=REPO / "build" / "weight_stream")   # its own jobs folder
    peak = cfg.hbm_channels * cfg.hbm_width // 8
    jobs, keys = [], []
    for label, lat, ref in CASES:
        jobs.append(_job(cfg, _program(0, 0)[1:], lat, ref))
        keys.append((label, None))
        for k, n in sizes:
            jobs.append(_job(cfg, _program(k, n), lat, ref))
            keys.append((label, (k, n)))
    rows, base = [], {}
    bar = tqdm(total=len(jobs), desc="weight stream", file=sys.stderr)
    for key, jb in zip(keys, jobs):                     # one job per simulation: progress per job
        [res] = fc.run([jb])
        bar.update(1)
        run = res["runs"][0]
        assert run["status"] == regmap.STATUS_BITS["halted"], run
        assert not res["mem_error"], res["mem_error"]
        label, size = key
        if size is None:
            base[label] = run["cycles"]
            continue
        k, n = size
        tiles = -(-k // cfg.d) * -(-n // cfg.l)
        cyc = run["cycles"] - base[label]
        rows.append({"case": label, "k": k, "n": n, "tiles": tiles, "cycles": cyc,
                     "bpc": tiles * cfg.tile_bytes / cyc, "peak": peak, "eff": tiles * cfg.tile_bytes / cyc / peak})
    bar.close()
    return rows


def table(rows) -> str:
    lines = ["| memory model | k x n | weight bytes | LINEAR cycles | bytes/cycle | peak | efficiency |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['k']} x {r['n']} | {r['tiles'] * r['peak']:,} | {r['cycles']:,} | "
                     f"{r['bpc']:.2f} | {r['peak']} | {100 * r['eff']:.1f}% |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1024x1024,4096x512", help="k x n of each LINEAR, comma-separated")
    ap.add_argument("--sim", default=None, help="icarus or verilator (default: $SIM, else icarus)")
    ap.add_argument("--no-doc", action="store_true", help="do not write the table into docs/rtl_core.md")
    a = ap.parse_args(argv)
    try:
        sizes = [tuple(int(v) for v in s.lower().split("x")) for s in a.sizes.split(",")]
        assert all(len(s) == 2 and 1 <= min(s) and max(s) < 1 << 14 for s in sizes)
    except (ValueError, AssertionError):
        print(f"error: --sizes must be KxN pairs (1 .. 16383), comma-separated, not {a.sizes!r}", file=sys.stderr)
        return 2
    text = table(measure(sizes, a.sim))
    print(text)
    doc = REPO / "docs" / "rtl_core.md"
    if not a.no_doc and read_block(doc, BEGIN, END) is not None:
        write_block(doc, BEGIN, END, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
