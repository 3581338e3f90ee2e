"""`dfx perf`: the performance model from the command line (dfx.cli registers `perf`).

    dfx perf                                  GPT-2 1.5B on 4 x U280, DFX config, 128 in + 256 out
    dfx perf 355M --devices 1 --table         the 9 DFX workloads for another model / ring
    dfx perf gpt.dfx --json out.json          a compiled program
    dfx perf 1.5B --plots figs/               breakdown, per-layer, roofline, device scaling, model sizes
    dfx perf 1.5B --overlap auto              ring overlap per layer role, chosen by the model (never slower)
    dfx perf 1.5B --prefill-batch 10          matrix-matrix prefill: up to 10 prompt tokens per run
    dfx perf --constants                      every board constant with its source
    dfx perf 1.5B --set core.fp_add_cycles=2  what-if: replace a board constant
    dfx perf --rtl-cycles rtl.json --config tiny   calibration: RTL cycles per instruction vs the model
    dfx perf 1.5B --trace step.json           a Perfetto/Chrome timeline of the first decode step
    dfx perf 1.5B --engines pipelined         DFX-style units pipelined across instructions (not built)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from dfx.compiler import compile_model
from dfx.compiler.partition import parse_overlap
from dfx.config import load_config
from dfx.errors import CompileError, DfxError, UsageError
from dfx.program import load_program

from . import plots, tables
from .board import load_board, parse_override
from .calibrate import compare_rtl
from .chrome_trace import write_trace
from .model import PerfModel
from .timing import ENGINES
from .tune import compile_tuned


def _fail(msg: str):
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


def parse_prefill_batch(text) -> int | None:
    """--prefill-batch: None (token-serial) or the tokens per batched prefill run, an integer >= 1."""
    if text is None:
        return None
    try:
        v = int(str(text).strip())
    except ValueError:
        v = 0
    if v < 1:
        raise UsageError(f"--prefill-batch must be an integer >= 1 (tokens per matrix-matrix prefill run), "
                         f"not {text!r}")
    return v


def _program(source: str, config, devices, overlap, prefill_batch, board, engines="rtl"):
    """(program, compiled?) from a program file, a checkpoint directory or a named GPT-2 size. overlap "auto"
    is tuned on `board` (with its --set overrides), the board the report is for."""
    p = Path(source)
    if p.is_file():
        prog = load_program(p)
        if devices is not None and devices != prog.n_devices:
            raise UsageError(f"{source} was compiled for {prog.n_devices} device(s), not --devices {devices}; "
                             "recompile, or leave --devices out")
        if config is not None:
            want = load_config(config)
            if want.config_hash != prog.config.config_hash:
                raise UsageError(f"{source} was compiled for config {prog.config.name!r}, not {want.name!r}; "
                                 "recompile, or leave --config out")
        if overlap not in (None, prog.manifest.overlap):
            raise UsageError(f"{source} was compiled with overlap {prog.manifest.overlap}, not --overlap "
                             f"{overlap}; recompile, or leave --overlap out")
        have = prog.symbols.prefill_batch.max_tokens if prog.symbols.prefill_batch else None
        if prefill_batch not in (None, have):
            raise UsageError(f"{source} was compiled " + (f"with --prefill-batch {have}" if have else
                                                          "without --prefill-batch")
                             + f", not --prefill-batch {prefill_batch}; recompile, or leave --prefill-batch out")
        return prog, False
    return _compile(source, config, 4 if devices is None else devices, overlap, board, engines, prefill_batch), True


def _compile(source: str, config, devices: int, overlap, board, engines="rtl", prefill_batch=None):
    """The program for a model (the CLI layer may compile, as `dfx compile` does), overlap "auto" tuned on
    `board` with `engines` (`tune.compile_tuned`)."""
    return compile_tuned(source, config or "dfx", devices=devices, overlap=overlap or 1,
                         prefill_batch=prefill_batch, board=board, engines=engines)


@click.command("perf")
@click.argument("source", required=False, default="1.5B", metavar="[PROGRAM|MODEL]")
@click.option("--board", default="u280", show_default=True, help="board name (boards/NAME/board.json) or a board.json")
@click.option("--config", "config", default=None,
              help="accelerator config for MODEL: preset (tiny, dfx) or JSON file  [default: dfx]")
@click.option("--devices", type=int, default=None, help="FPGAs in the ring when compiling MODEL  [default: 4]")
@click.option("--overlap", default=None, metavar="auto|S",
              help="segments per gathered output when compiling MODEL (1: DFX's blocking sync; S > 1 overlaps the "
                   "ring; auto: the model picks S per layer role, never slower than blocking)  [default: 1]")
@click.option("--prefill-batch", "prefill_batch", default=None, metavar="M",
              help="compile MODEL with matrix-matrix prefill: up to M prompt tokens per run, the weights streamed "
                   "once per run (the compiler names the largest M that fits VBUF)  [default: token-serial]")
@click.option("--input-tokens", type=int, default=128, show_default=True)
@click.option("--output-tokens", type=int, default=256, show_default=True)
@click.option("--table", is_flag=True, help="also print the 9 DFX workloads (input:output) beside DFX's published ms")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="write the report as JSON")
@click.option("--plots", type=click.Path(file_okay=False), default=None, help="draw plots into this directory")
@click.option("--format", "fmt", type=click.Choice(["png", "svg"]), default="png", show_default=True)
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="replace a board constant (repeatable), e.g. hbm.efficiency=0.8")
@click.option("--constants", is_flag=True, help="print every board constant with its source and exit")
@click.option("--trace", "trace_out", type=click.Path(dir_okay=False), default=None,
              help="write a Chrome/Perfetto trace (JSON) of the first decode step (perf/chrome_trace.py)")
@click.option("--rtl-cycles", type=click.Path(dir_okay=False), default=None,
              help="calibration: JSON list of {asm, cycles, pos} measured on the RTL; prints model vs RTL and exits")
@click.option("--engines", type=click.Choice(ENGINES), default="rtl", show_default=True,
              help="rtl: the engines of hw/ as built, issued by the scoreboard core (calibrated against the RTL, "
                   "docs/rtl_core.md); pipelined: DFX-style units pipelined across instructions, which the RTL "
                   "does not have")
def perf(source, board, config, devices, overlap, prefill_batch, input_tokens, output_tokens, table, json_out, plots,
         fmt, overrides, constants, rtl_cycles, trace_out, engines):
    """Cycle-level performance model: latency, prefill/decode split, breakdowns, roofline, plots.

    PROGRAM is a compiled program file; MODEL a named GPT-2 size (124M, 355M, 774M, 1.5B) or a checkpoint
    directory, compiled here (shapes only for named sizes). Default: GPT-2 1.5B on 4 devices, DFX config.
    """
    try:
        _perf(source, board, config, devices, overlap, prefill_batch, input_tokens, output_tokens, table, json_out,
              plots, fmt, overrides, constants, rtl_cycles, trace_out, engines)
    except DfxError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail("interrupted")


def _perf(source, board, config, devices, overlap, prefill_batch, input_tokens, output_tokens, table, json_out, plots,
          fmt, overrides, constants, rtl_cycles, trace_out=None, engines="rtl"):
    b = load_board(board, dict(parse_override(o) for o in overrides))
    if constants:
        for name, value, unit, src in b.describe():
            click.echo(f"{name} = {value} {unit}".rstrip() + f"    # {src}")
        return
    if rtl_cycles:
        try:
            records = json.loads(Path(rtl_cycles).read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"--rtl-cycles {rtl_cycles}: cannot read JSON ({e})") from None
        cfg = load_config(config or "tiny")
        rows = compare_rtl(records, cfg, b, engines)
        click.echo(f"{'class':8} {'rtl':>8} {'model':>8} {'ratio':>6}  instruction")
        for r in rows:
            click.echo(f"{r['class']:8} {r['rtl']:8.0f} {r['model']:8d} {r['ratio']:6.2f}  {r['asm']}")
        return
    for name, v in (("--input-tokens", input_tokens), ("--output-tokens", output_tokens)):
        if v < 1:
            raise UsageError(f"{name} must be >= 1, not {v}")
    if devices is not None and devices < 1:
        raise UsageError(f"--devices must be >= 1, not {devices}")
    if overlap is not None:
        overlap = parse_overlap(overlap)
    prefill_batch = parse_prefill_batch(prefill_batch)
    prog, compiled = _program(source, config, devices, overlap, prefill_batch, b, engines)
    model = PerfModel(prog, b, engines=engines)
    report = model.run(input_tokens, output_tokens)
    click.echo(report.format())
    out = report.to_dict()
    is_dfx = (model.devices == 4 and model.model.n_embd == 1600 and model.model.n_layer == 48
              and model.cfg.d == 64 and model.cfg.l == 16 and prog.manifest.overlap == 1
              and model.batch_stream is None)
    if table:
        rows = tables.reproduction_rows(model)
        out["dfx_workloads"] = rows
        click.echo("")
        if is_dfx:
            click.echo(tables.reproduction_markdown(rows))
        else:
            click.echo("| input | output | model (ms) | decode ms/token |\n|---:|---:|---:|---:|")
            for r in rows:
                if r["model_ms"] is None:
                    click.echo(f"| {r['input']} | {r['output']} | - | {r['note']} |")
                else:
                    click.echo(f"| {r['input']} | {r['output']} | {r['model_ms']:.0f} | "
                               f"{r['decode_ms_per_token']:.3f} |")
    if plots:
        out["plots"] = [str(p) for p in _plots(Path(plots), fmt, source, compiled, model, report, b, config,
                                                 overlap or prog.manifest.overlap, input_tokens,
                                                 output_tokens)]
        click.echo(f"plots: {', '.join(out['plots'])}", err=True)
    if trace_out:
        t = write_trace(model, trace_out, "decode", input_tokens - 1)
        click.echo(f"wrote {trace_out} (decode step at position {input_tokens - 1}: {t['otherData']['cycles']} "
                   f"cycles, {len(t['traceEvents'])} events)", err=True)
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(out, indent=1, default=float))
        click.echo(f"wrote {json_out}", err=True)


def _plots(d: Path, fmt, source, compiled, model, report, board, config, overlap, T, M) -> list[Path]:
    steps = {ph: max(report.phases[ph].tokens, 1) for ph in ("prefill", "decode")}
    per_tok = [(f"{ph} ({T} in, {M} out)", {k: v / steps[ph] for k, v in report.by_class(ph).items()})
               for ph in ("prefill", "decode") if report.phases[ph].steps]
    made = [plots.breakdown(per_tok, d / f"breakdown.{fmt}", "Time per token by instruction class"),
            plots.layers(report.by_layer("decode"), d / f"layers.{fmt}", "Decode: exposed time per layer (all steps)")]
    points = [{"label": f"{model.devices} dev", "bytes_per_token": report.decode_bytes_per_token,
               "ms_per_token": report.decode_ms_per_token}]
    if compiled:        # sweeps need the compiler: device count and model size
        series = {}
        for ov in [1] + ([overlap] if overlap != 1 else []):
            pts = []
            for n in (1, 2, 4, 8):
                try:
                    m = PerfModel(_compile(source, config, n, ov, board, model.timing.engines), board,
                                  engines=model.timing.engines)
                except CompileError:
                    continue
                r = m.run(T, min(M, 16))
                pts.append((n, r.decode_ms_per_token))
                if ov == overlap and n != model.devices:
                    points.append({"label": f"{n} dev", "bytes_per_token": r.decode_bytes_per_token,
                                   "ms_per_token": r.decode_ms_per_token})
            series[f"overlap {ov}" + (" (blocking)" if ov == 1 else "")] = pts
        made.append(plots.scaling(series, d / f"scaling.{fmt}", f"{source}: decode ms/token vs devices"))
        sizes = {}
        for n in sorted({1, model.devices}):
            pts = []
            for size in ("124M", "355M", "774M", "1.5B"):
                try:
                    m = PerfModel(compile_model(size, config or "dfx", devices=n), board,
                                  engines=model.timing.engines)
                except CompileError:
                    continue
                pts.append((size, m.run(T, min(M, 16)).tokens_per_s))
            sizes[f"fp16, {n} device{'s' if n > 1 else ''}"] = pts
        made.append(plots.model_sizes(sizes, d / f"model_sizes.{fmt}",
                                      "Decode tokens/s vs model size (fp16)"))
    made.append(plots.roofline(points, d / f"roofline.{fmt}", report.board_peak / 1e9))
    return made
