"""`dfx sweep`: design-space exploration from the command line (dfx.cli registers `sweep`).

    dfx sweep sweeps/u280.toml                      the example: 648 points, Ray with 2 local workers
    dfx sweep --grid model=124M devices=1 d=32,64   a grid on the command line (stages perf, resources)
    dfx sweep SPEC --address ray://head:10001       on a Ray cluster
    dfx sweep SPEC --engine loop                    no Ray: one point after another in this process
    dfx sweep SPEC --search tpe --samples 40        40 points chosen by Optuna's TPE (through Ray Tune)
"""
from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path

import click

from dfx.config import load_config
from dfx.errors import DfxError, UsageError

from . import pareto, report
from .engine import ENGINES
from .runner import REPO, run_sweep
from .spec import SEARCHES, STAGES, check_search, grid_spec, load_spec


def _fail(msg: str):
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


def _board_budget(name: str) -> tuple[float, float]:
    from dfx.perf import load_board  # lazy: only for the plots' budget lines
    b = load_board(name)
    u = b.value("resources", "usable_fraction")
    return u * b.value("resources", "LUT"), u * b.value("resources", "DSP")


def publish(spec, res, out: Path, doc: str | None, publish_dir: str | None, fmt: str, command: str) -> list[Path]:
    """Plots, the results table (copied to `publish_dir`) and the markdown report (`doc`)."""
    pub = Path(publish_dir) if publish_dir else out
    rows = res.rows
    board = next((r["board"] for r in rows), "u280")
    lut, dsp = _board_budget(board)
    made = pareto.plots(rows, pub, fmt, lut, dsp)
    table = res.table
    if pub != out:
        pub.mkdir(parents=True, exist_ok=True)
        table = pub / res.table.name
        table.write_bytes(res.table.read_bytes())
        made.append(table)
    if doc:
        d = Path(doc)
        base_cfg = load_config(next((r["config"] for r in rows), "dfx"))
        base = {"d": base_cfg.d, "l": base_cfg.l, "vpu_width": base_cfg.vpu_width, "clock_mhz": base_cfg.clock_mhz,
                "vbuf_entries": base_cfg.vbuf_entries, "hbm_channels": base_cfg.hbm_channels,
                "hbm_width": base_cfg.hbm_width}
        speed = report.load_speed(pub / "sweep_speed.json")
        d.parent.mkdir(parents=True, exist_ok=True)
        plots = [p for p in made if p.suffix in (".png", ".svg")]
        tl = pub / "timeline.png"
        wf = REPO / "docs" / "img" / "waves_vs_model.png"
        d.write_text(report.markdown(spec, rows, plots, d, base, table, speed, command,
                                     tl if tl.exists() else None, wf if wf.exists() else None) + "\n")
        made.append(d)
    return made


@click.command("sweep")
@click.argument("spec_file", required=False, metavar="[SPEC]")
@click.option("--grid", "grid", multiple=True, metavar="KEY=V1,V2",
              help="a grid instead of SPEC (repeatable; also as trailing KEY=V1,V2 arguments)")
@click.option("--stages", default=None, help=f"comma-separated, overriding the spec's: {', '.join(STAGES)}")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="folder for the journal and results table  [default: build/sweep/NAME]")
@click.option("--search", type=click.Choice(SEARCHES), default=None,
              help="grid: every point; random: --samples N of them; tpe: N chosen by Optuna's TPE (minimum "
                   "latency among the points that fit)  [default: the spec's, else grid]")
@click.option("--samples", type=click.IntRange(min=1), default=None, help="points for --search random or tpe")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="seed of the random and tpe searches")
@click.option("--engine", type=click.Choice(ENGINES), default="ray", show_default=True)
@click.option("--workers", type=int, default=2, show_default=True, help="local Ray workers (CPUs)")
@click.option("--address", default=None, help="join this Ray cluster instead of starting a local one")
@click.option("--doc", default=None, help="write the markdown report here  [default: the spec's `doc`]")
@click.option("--publish", "publish_dir", default=None,
              help="folder for the table copy and the plots  [default: the spec's `publish`, else --out]")
@click.option("--format", "fmt", type=click.Choice(["png", "svg"]), default="png", show_default=True)
@click.option("--no-plots", is_flag=True, help="write the table only")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.argument("extra", nargs=-1)
def sweep(spec_file, grid, stages, search, samples, seed, out, engine, workers, address, doc, publish_dir, fmt,
          no_plots, quiet, extra):
    """Design-space exploration: run the performance model, resource estimates, accuracy and RTL checks over
    every point of SPEC (a .toml or .yaml file) or of --grid KEY=V1,V2 ..., on Ray (local by default), with a
    progress bar; resumable (completed points are not recomputed). Writes the results (Parquet or CSV), the
    Pareto plots and the markdown report (docs/dse.md)."""
    try:
        _sweep(spec_file, grid, stages, {"search": search, "samples": samples, "seed": seed}, out, engine, workers,
               address, doc, publish_dir, fmt, no_plots, quiet, extra)
    except DfxError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail("interrupted; what finished is in the journal: run the same command again to resume")


def _sweep(spec_file, grid, stages, search, out, engine, workers, address, doc, publish_dir, fmt, no_plots, quiet,
           extra):
    if workers < 1:
        raise UsageError(f"--workers must be an integer >= 1, not {workers}")
    items = list(grid)
    if spec_file and "=" in spec_file and not Path(spec_file).exists():
        items.insert(0, spec_file)
        spec_file = None
    items += list(extra)
    settings = {"stages": stages.split(",")} if stages else {}
    if spec_file and items:
        raise UsageError("give a SPEC file or --grid KEY=V1,V2 ..., not both")
    if spec_file:
        spec = load_spec(spec_file)
        if stages:
            spec.stages = tuple(dict.fromkeys(s.strip() for s in stages.split(",")))
            if not spec.stages or any(s not in STAGES for s in spec.stages):
                raise UsageError(f"--stages {stages!r}: each is one of {', '.join(STAGES)}")
    elif items:
        spec = grid_spec(items, settings)
    else:
        raise UsageError("give a SPEC file (.toml or .yaml) or --grid KEY=V1,V2 ... (see dfx sweep --help)")
    spec = dataclasses.replace(spec, **{k: v for k, v in search.items() if v is not None})
    check_search(spec.search, spec.samples, spec.stages, "--search")
    out = Path(out) if out else REPO / "build" / "sweep" / spec.name
    n = len(spec.points())
    what = f"{min(spec.samples, n)} of {n} points by TPE" if spec.search == "tpe" else f"{n} points"
    click.echo(f"sweep {spec.name}: {what}, stages {', '.join(spec.stages)}, engine {engine}"
               + (f" at {address}" if address else f" ({workers} local workers)" if engine == "ray" else ""),
               err=True)
    res = run_sweep(spec, out, engine, workers, address, progress=not quiet)
    ok = sum(r["status"] == "ok" for r in res.rows)
    click.echo(f"{ok} of {len(res.rows)} points complete; {res.computed} tasks computed, {res.reused} from the "
               f"journal; results: {res.table}", err=True)
    if no_plots:
        return
    command = "dfx sweep " + (spec_file if spec_file else " ".join(shlex.quote(i) for i in items))
    # the spec's doc and publish folders are relative to the repository, --doc and --publish to the shell's folder
    doc = doc if doc is not None else (str(REPO / spec.doc) if spec.doc else None)
    publish_dir = publish_dir or (str(REPO / spec.publish) if spec.publish else None)
    made = publish(spec, res, out, doc, publish_dir, fmt, command)
    for p in made:
        click.echo(f"wrote {p}", err=True)
