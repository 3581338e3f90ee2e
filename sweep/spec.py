"""Sweep specs: what `dfx sweep SPEC` explores (docs/dse.md, "Spec").

A spec is a TOML file (or YAML, when PyYAML is installed), or `--grid key=v1,v2 ...` on the command line. Its
keys are settings and parameters (top level or in a [sweep] table); a parameter given a list is an axis, a
scalar is fixed. Each `[[group]]` table is a cartesian product of its own axes over the top-level ones; the
points are the union of the groups' products (one group when there are none). `search = "random"` with
`samples = N` draws N distinct points of that union (seeded); `search = "tpe"` with `samples = N` lets Optuna's
TPE choose N of them, minimising latency subject to fit (sweep/tpe.py); `grid` (the default) takes them all.

    [sweep]
    name = "u280"
    stages = ["perf", "resources", "accuracy"]
    output_tokens = 64

    config = "dfx"
    d = [32, 64, 128]

    [[group]]
    model = "1.5B"
    devices = 4
    overlap = [1, 2]

Every point is a flat dict of parameters (`PARAMS`, with `DEFAULTS` filled in); `point_hash` keys it.

`engines` chooses the performance model's timing (`dfx.perf.Timing`): sweeps explore target designs, so their
default is "pipelined" (engines pipelined across instructions, which the RTL does not have yet); "rtl" models the
engines of hw/ as built (the default of `dfx perf`, calibrated against the RTL).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import random
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from dfx.errors import UsageError

# Parameters of a point and their defaults: the DFX appliance (GPT-2 1.5B on 4 x U280, DFX config, FP16).
DEFAULTS = {
    "model": "1.5B", "devices": 4, "config": "dfx", "board": "u280", "weights": "fp16", "method": "",
    "overlap": 1, "prefill_batch": 0, "input_tokens": 128, "output_tokens": 256, "engines": "pipelined",
}
# Parameters added after sweeps had been run: a point keys on them only when it sets them away from their default,
# so the journals and results of earlier sweeps keep their keys.
LATE_PARAMS = ("engines",)
ENGINES = ("pipelined", "rtl")
# AccelConfig fields a point may set (None: the base config's value).
CONFIG_FIELDS = ("d", "l", "vpu_width", "vbuf_entries", "hbm_channels", "hbm_width", "clock_mhz")
PARAMS = tuple(DEFAULTS) + CONFIG_FIELDS
STAGES = ("perf", "resources", "accuracy", "rtl")
SEARCHES = ("grid", "random", "tpe")
# Settings of the sweep itself (not parameters of a point).
SETTINGS = {"name": "sweep", "stages": ["perf", "resources"], "search": "grid", "samples": 0, "seed": 0,
            "yosys": [], "accuracy_windows": 32, "doc": "", "publish": "", "title": "", "accuracy_budget": 0.01}


@dataclass
class Spec:
    name: str = "sweep"
    stages: tuple[str, ...] = ("perf", "resources")
    search: str = "grid"
    samples: int = 0
    seed: int = 0
    yosys: tuple[str, ...] = ()            # units to synthesise with Yosys in the resources stage (hw.synth)
    accuracy_windows: int = 32             # held-out windows the accuracy stage scores
    doc: str = ""                          # markdown report to write (docs/dse.md), relative to the repository
    publish: str = ""                      # folder for the committed results table and plots (docs/dse)
    title: str = ""
    accuracy_budget: float = 0.01          # bits/byte over FP16 the report's "fastest" table allows
    groups: list[dict] = field(default_factory=lambda: [{}])

    def points(self) -> list[dict]:
        """Every point of the sweep, in a fixed order, duplicates dropped (for `tpe`: the space it searches)."""
        seen, out = set(), []
        for g in self.groups:
            axes = {k: (v if isinstance(v, list) else [v]) for k, v in g.items()}
            keys = list(axes)
            for combo in itertools.product(*(axes[k] for k in keys)):
                p = {**DEFAULTS, **{f: None for f in CONFIG_FIELDS}, **dict(zip(keys, combo))}
                h = point_hash(p)
                if h not in seen:
                    seen.add(h)
                    out.append(p)
        if self.search == "random" and self.samples and self.samples < len(out):
            out = random.Random(self.seed).sample(out, self.samples)
        return out


def point_hash(point: dict) -> str:
    """A stable 16-hex-digit key of a point's parameters (the results' `config_hash`)."""
    canon = {k: point.get(k) for k in PARAMS if not (k in LATE_PARAMS and point.get(k, DEFAULTS[k]) == DEFAULTS[k])}
    return hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()[:16]


def _value(text: str):
    t = text.strip()
    for conv in (int, float):
        try:
            return conv(t)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(t.lower(), t)


def _check_params(d: dict, where: str):
    bad = [k for k in d if k not in PARAMS]
    if bad:
        raise UsageError(f"{where}: unknown parameter(s) {', '.join(map(repr, bad))}; accepted: {', '.join(PARAMS)}")
    for k, v in d.items():
        vals = v if isinstance(v, list) else [v]
        if not vals:
            raise UsageError(f"{where}: {k} is an empty list; give at least one value")
        for x in vals:
            if not isinstance(x, (int, float, str)) or isinstance(x, bool):
                raise UsageError(f"{where}: {k} = {x!r}: values are numbers or strings")
            if k == "engines" and x not in ENGINES:
                raise UsageError(f"{where}: engines = {x!r}: accepted {', '.join(ENGINES)}")


def from_dict(data: dict, where: str = "spec") -> Spec:
    """A Spec from a parsed TOML/YAML document (see the module docstring)."""
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a table of settings and parameters, not {type(data).__name__}")
    data = dict(data)
    settings = dict(data.pop("sweep", None) or {})
    groups = data.pop("group", None) or [{}]
    for k in list(data):
        if k in SETTINGS:
            settings[k] = data.pop(k)
    for k in list(settings):                # a TOML [sweep] table holds the keys written after it: parameters too
        if k in PARAMS:
            data[k] = settings.pop(k)
    bad = [k for k in settings if k not in SETTINGS]
    if bad:
        raise UsageError(f"{where}: unknown setting(s) {', '.join(map(repr, bad))}; accepted: {', '.join(SETTINGS)}")
    _check_params(data, where)
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise UsageError(f"{where}: [[group]] must be a list of tables of parameters")
    for i, g in enumerate(groups):
        _check_params(g, f"{where}, group {i + 1}")
    s = {**SETTINGS, **settings}
    stages = [s["stages"]] if isinstance(s["stages"], str) else list(s["stages"])
    bad = [x for x in stages if x not in STAGES]
    if bad or not stages:
        raise UsageError(f"{where}: stages {stages!r}: each is one of {', '.join(STAGES)}")
    for k in ("samples", "seed", "accuracy_windows"):
        if not isinstance(s[k], int) or isinstance(s[k], bool) or s[k] < 0:
            raise UsageError(f"{where}: {k} must be an integer >= 0, not {s[k]!r}")
    check_search(s["search"], s["samples"], stages, where)
    if isinstance(s["accuracy_budget"], bool) or not isinstance(s["accuracy_budget"], (int, float)):
        raise UsageError(f"{where}: accuracy_budget must be a number (bits/byte over FP16), "
                         f"not {s['accuracy_budget']!r}")
    yosys = [s["yosys"]] if isinstance(s["yosys"], str) else list(s["yosys"])
    return Spec(name=str(s["name"]), stages=tuple(dict.fromkeys(stages)), search=s["search"],
                samples=s["samples"], seed=s["seed"], yosys=tuple(yosys), accuracy_windows=s["accuracy_windows"],
                doc=str(s["doc"]), publish=str(s["publish"]), title=str(s["title"]),
                accuracy_budget=float(s["accuracy_budget"]), groups=[{**data, **g} for g in groups])


def check_search(search: str, samples: int, stages, where: str = "spec") -> None:
    """The search settings agree with each other and the stages (UsageError naming what is wrong)."""
    if search not in SEARCHES:
        raise UsageError(f"{where}: search {search!r}: accepted {', '.join(SEARCHES)}")
    if search in ("random", "tpe") and not samples:
        raise UsageError(f"{where}: search {search!r} needs samples = N (points to draw), N >= 1")
    if search == "tpe" and "perf" not in stages:
        raise UsageError(f"{where}: search 'tpe' minimises latency: its stages must include perf, "
                         f"not {list(stages)!r}")


def load_spec(path: str | Path) -> Spec:
    """A Spec from a .toml file, or a .yaml/.yml file (needs PyYAML)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"sweep spec {p} does not exist; give a .toml (or .yaml) file, or --grid key=v1,v2 ...")
    text = p.read_text()
    try:
        if p.suffix in (".yaml", ".yml"):
            try:
                import yaml  # lazy: optional (the `sweep` extra); TOML specs need nothing
            except ImportError:
                raise UsageError(f"{p}: YAML specs need PyYAML (pip install pyyaml); or write it as TOML") from None
            data = yaml.safe_load(text)
        elif p.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise UsageError(f"sweep spec {p}: unknown suffix {p.suffix!r}; accepted: .toml, .yaml, .yml")
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise UsageError(f"{p}: cannot parse ({' '.join(str(e).split())})") from None
    return from_dict(data, str(p))


def grid_spec(items: list[str], settings: dict | None = None) -> Spec:
    """A Spec from `--grid key=v1,v2 ...` items (one group) and optional settings."""
    group = {}
    for it in items:
        k, sep, vals = it.partition("=")
        if not sep or not k.strip() or not vals.strip():
            raise UsageError(f"--grid {it!r}: write KEY=V1,V2,... (keys: {', '.join(PARAMS)})")
        vs = [_value(v) for v in vals.split(",") if v.strip()]
        group[k.strip()] = vs if len(vs) > 1 else vs[0]
    return from_dict({**(settings or {}), "group": [group]}, "--grid")
