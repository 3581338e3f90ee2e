"""Pareto fronts of a sweep and their plots (matplotlib, Agg): latency against LUTs, DSPs and accuracy, each
workload (model on N devices) in its own colour, its front drawn as a line over highlighted points, DFX's own
design point starred.

A point is on the front of (x, y), both minimised, when no other point of its workload is at least as good in
both and better in one. Only points whose stages all succeeded take part.
"""
from __future__ import annotations

from pathlib import Path

from dfx.errors import UsageError

# DFX (MICRO'22): GPT-2 1.5B on 4 x U280, d=64, l=16, 64-wide VPU, 200 MHz, FP16, blocking ring sync.
DFX_POINT = {"model": "1.5B", "devices": 4, "d": 64, "l": 16, "vpu_width": 64, "clock_mhz": 200.0,
             "weights": "fp16", "overlap": 1, "prefill_batch": 0}
AXES = {"lut": "LUTs (MPU + VPU, Yosys lane count)", "dsp": "DSP48E2 (MPU + VPU, Yosys lane count)",
        "dsp_est": "DSP48E2 (first-order, DFX-style FP adders on DSPs)", "bits_per_byte": "held-out bits/byte",
        "latency_ms": "latency (ms, 128 in + 256 out)"}
COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


def workload(row: dict) -> str:
    n = int(row["devices"])
    return f"{row['model']} on {n} card{'s' if n > 1 else ''}"


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f else None


def is_dfx(row: dict, base: dict | None = None) -> bool:
    """Whether the row is DFX's design point (config fields left at the base preset count as its values)."""
    base = base or {"d": 64, "l": 16, "vpu_width": 64, "clock_mhz": 200.0}
    for k, want in DFX_POINT.items():
        v = row.get(k)
        if v is None and k in base:
            v = base[k]
        if k in ("model", "weights"):
            if str(v) != want:
                return False
        elif _num(v) != float(want):
            return False
    return str(row.get("config", "dfx")) == "dfx"


def usable(rows: list[dict], x: str, y: str = "latency_ms") -> list[dict]:
    return [r for r in rows if r.get("status") == "ok" and _num(r.get(x)) is not None
            and _num(r.get(y)) is not None]


def front(rows: list[dict], x: str, y: str = "latency_ms") -> list[dict]:
    """The Pareto front of `rows` (x and y both minimised), ordered by x; ties keep the first row."""
    pts = sorted(usable(rows, x, y), key=lambda r: (_num(r[x]), _num(r[y])))
    out, best = [], float("inf")
    for r in pts:
        if _num(r[y]) < best:
            out.append(r)
            best = _num(r[y])
    return out


def by_workload(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(workload(r), []).append(r)
    return groups


def _plt():
    try:
        import matplotlib  # lazy: matplotlib is the optional [plots] extra
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # lazy: as above
    except ImportError:
        raise UsageError("Pareto plots need matplotlib: pip install 'dfx[plots]'") from None
    return plt


def plot(rows: list[dict], x: str, path: Path, title: str, y: str = "latency_ms", budget: float | None = None,
         logx: bool = False) -> Path:
    """Every usable point (small, faint), each workload's front (line, large) and DFX's point (a star)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, (name, rs) in enumerate(sorted(by_workload(rows).items())):
        c = COLOURS[i % len(COLOURS)]
        pts = usable(rs, x, y)
        if not pts:
            continue
        ax.scatter([_num(r[x]) for r in pts], [_num(r[y]) for r in pts], s=10, color=c, alpha=0.25,
                   label=f"{name} ({len(pts)} points)")
        f = front(rs, x, y)
        ax.plot([_num(r[x]) for r in f], [_num(r[y]) for r in f], "-o", color=c, ms=5, lw=1.4,
                label=f"{name}: front ({len(f)})")
        for r in pts:
            if is_dfx(r):
                ax.scatter([_num(r[x])], [_num(r[y])], marker="*", s=260, color="gold", edgecolor="black",
                           zorder=5, label="DFX (d=64, l=16, 200 MHz, FP16)")
    if budget:
        ax.axvline(budget, color="grey", ls="--", lw=1)
        ax.text(budget, ax.get_ylim()[1], " usable (80%)", va="top", ha="left", fontsize=8, color="grey")
    if logx:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(AXES.get(x, x))
    ax.set_ylabel(AXES.get(y, y))
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Date": None} if path.suffix == ".svg" else None)
    plt.close(fig)
    return path


def plots(rows: list[dict], folder: Path, fmt: str = "png", board_lut: float | None = None,
          board_dsp: float | None = None) -> list[Path]:
    """The three views the report shows (those whose columns the sweep has)."""
    made = []
    if usable(rows, "lut"):
        made.append(plot(rows, "lut", folder / f"pareto_lut.{fmt}", "Latency vs LUTs", budget=board_lut))
    if usable(rows, "dsp"):
        made.append(plot(rows, "dsp", folder / f"pareto_dsp.{fmt}", "Latency vs DSPs", budget=board_dsp))
    if usable(rows, "bits_per_byte"):
        made.append(plot(rows, "bits_per_byte", folder / f"pareto_accuracy.{fmt}", "Latency vs accuracy"))
    return made
