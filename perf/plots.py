"""Plots of the performance model (matplotlib, Agg backend; PNG or SVG by the file suffix).

Each function takes plain data (reports or row dicts) and a path, and returns the path it wrote.
"""
from __future__ import annotations

from pathlib import Path

from dfx.errors import UsageError

CLASS_ORDER = ("matrix", "vector", "scalar", "dma", "ring", "control", "host")
COLOURS = {"matrix": "#4c72b0", "vector": "#dd8452", "scalar": "#c44e52", "dma": "#8172b3", "ring": "#55a868",
           "control": "#937860", "host": "#8c8c8c"}


def _plt():
    try:
        import matplotlib  # lazy: matplotlib is the optional [plots] extra
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # lazy: as above
    except ImportError:
        raise UsageError("plots need matplotlib: pip install 'dfx[plots]'") from None
    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Date": None} if path.suffix == ".svg" else None)
    _plt().close(fig)
    return path


def breakdown(items: list[tuple[str, dict]], path, title: str = "Decode time per token by instruction class") -> Path:
    """Stacked bars: items = [(label, {class: ms per token})] (exposed time on the critical device)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(items) + 3), 4.2))
    bottoms = [0.0] * len(items)
    for c in CLASS_ORDER:
        vals = [d.get(c, 0.0) for _, d in items]
        if not any(vals):
            continue
        ax.bar(range(len(items)), vals, bottom=bottoms, color=COLOURS[c], label=c)
        bottoms = [b + v for b, v in zip(bottoms, vals)]
    ax.set_xticks(range(len(items)))
    ax.set_xticklabels([lab for lab, _ in items], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("ms per token")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, path)


def layers(by_layer: dict[str, float], path, title: str = "Exposed time per layer") -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    names = list(by_layer)
    ax.bar(range(len(names)), [by_layer[n] for n in names], color="#4c72b0")
    step = max(1, len(names) // 12)
    ax.set_xticks(range(0, len(names), step))
    ax.set_xticklabels([names[i] for i in range(0, len(names), step)], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("ms")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def roofline(points: list[dict], path, peak_gbps: float, title: str = "Decode against the HBM roofline") -> Path:
    """points: [{label, bytes_per_token, ms_per_token}] per device; the line is bytes / peak."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    xs = [p["bytes_per_token"] / 1e6 for p in points]
    hi = max(xs) * 1.15 if xs else 1.0
    ax.plot([0, hi], [0, hi * 1e6 / (peak_gbps * 1e9) * 1e3], "k--", lw=1,
            label=f"HBM roofline ({peak_gbps:.0f} GB/s)")
    for p, x in zip(points, xs):
        ax.scatter([x], [p["ms_per_token"]], s=28)
        ax.annotate(p["label"], (x, p["ms_per_token"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
    ax.set_xlabel("HBM bytes per token on the busiest device (MB)")
    ax.set_ylabel("decode ms per token")
    ax.set_xlim(0, hi)
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def scaling(series: dict[str, list[tuple[int, float]]], path, title: str = "Decode ms/token vs device count",
            ylabel: str = "decode ms per token") -> Path:
    """series: {label: [(devices, value)]}."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, pts in series.items():
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("devices")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def model_sizes(series: dict[str, list[tuple[str, float]]], path,
                title: str = "Decode tokens/s vs model size and weight format") -> Path:
    """series: {label (e.g. 'fp16, 4 devices'): [(size name, tokens/s)]}."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sizes = []
    for pts in series.values():
        for s, _ in pts:
            if s not in sizes:
                sizes.append(s)
    width = 0.8 / max(len(series), 1)
    for i, (label, pts) in enumerate(series.items()):
        d = dict(pts)
        ax.bar([j + i * width for j in range(len(sizes))], [d.get(s, 0.0) for s in sizes], width, label=label)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(sizes))])
    ax.set_xticklabels(sizes)
    ax.set_ylabel("tokens/s (decode)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)
