"""Stream-in/stream-out RTL units (Amaranth components with `i`/`o`-style streams) in a Verilog simulator under
cocotb, checked bit for bit against reference payloads by `dfx.verify.stream_tb`.

    runner, bdir = build_unit(MPU(cfg), "mpu_tiny")          # cached in build/rtl_sim/mpu_tiny_<sim>/
    outs = run_vectors(MPU(cfg), "mpu_tiny", {"x": xs, "w": ws}, {"o": want}, seed=2, stall=0.2)

WAVES=1 writes an FST trace into the build folder; cocotb's results.xml (simulated and wall time) lands there
too.
"""
from __future__ import annotations

import json
from pathlib import Path

from amaranth.back import verilog

from .stream_tb import VECTORS_ENV
from .toolchain import log_text, run_module, runner_build, sim_env, simulator, waves

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build" / "rtl_sim"


def build_unit(component, name: str, sim: str | None = None):
    """Write the component's Verilog and build it for `sim` (cached in build/rtl_sim/<name>_<sim>: rebuilt
    only when the Verilog changes). Returns (runner, build_dir)."""
    sim = simulator(sim)
    bdir = BUILD / f"{name}_{sim}"
    bdir.mkdir(parents=True, exist_ok=True)
    src = bdir / f"{name}.v"
    text = verilog.convert(component, name=name, emit_src=False)
    stamp = bdir / "stamp.txt"
    key = f"{sim} waves={waves()}\n" + text
    fresh = not stamp.exists() or stamp.read_text() != key
    if fresh:
        src.write_text(text)
    runner = runner_build(sim, src, name, bdir, fresh=fresh, waves=waves())
    if fresh:
        stamp.write_text(key)
    return runner, bdir


def write_vectors(path: Path, sources: dict, sinks: dict, *, seed: int = 0, stall: float = 0.2,
                  timeout: int = 10000) -> Path:
    """The job file of `stream_tb.stream_vectors`: payload ints per source port, expected ints per sink port."""
    path.write_text(json.dumps({
        "sources": {k: [hex(int(w)) for w in v] for k, v in sources.items()},
        "sinks": {k: [hex(int(w)) for w in v] for k, v in sinks.items()},
        "seed": seed, "stall": stall, "timeout": timeout}))
    return path


def run_vectors(component, name: str, sources: dict, sinks: dict, *, seed: int = 0, stall: float = 0.2,
                sim: str | None = None, timeout: int = 10000) -> dict[str, list[int]]:
    """Run `stream_tb.stream_vectors` on the component: drive `sources` ({stream port prefix: payload ints})
    and check `sinks` ({port prefix: expected payload ints}) bit for bit, in order, all streams concurrently.
    Raises AssertionError naming the first mismatches; returns {sink: outputs}."""
    sim = simulator(sim)
    runner, bdir = build_unit(component, name, sim)
    vec = write_vectors(bdir / "vectors.json", sources, sinks, seed=seed, stall=stall, timeout=timeout)
    out = Path(str(vec) + ".out")
    out.unlink(missing_ok=True)
    log = bdir / "test.log"
    tests, fails = run_module(runner, "dfx.verify.stream_tb", name, bdir, bdir, sim_env(**{VECTORS_ENV: str(vec)}),
                              log, waves=waves(), results_xml=str(bdir / "results.xml"))
    text = log_text(log)
    msg = [ln.strip() for ln in text.splitlines() if "differ from the reference" in ln or "Error" in ln]
    assert tests == 1 and fails == 0, f"cocotb ({sim}) {name}: " + ("\n".join(msg[-4:]) or text[-2000:])
    return {k: [int(w, 16) for w in v] for k, v in json.loads(out.read_text()).items()}
