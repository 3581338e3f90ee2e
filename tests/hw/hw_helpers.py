"""Shared amaranth.sim helpers for the hw tests: stream drivers with backpressure, and a runner that feeds a
stream-in/stream-out unit and collects its results in order."""
import random

from amaranth.lib import data
from amaranth.sim import Simulator


def built_only(unit):
    """A unit built only to read its attributes (latency): not an unused elaboratable worth a warning."""
    unit._MustUse__silence = True
    return unit


def raw(v):
    """The plain Value behind a layout view (so testbenches can read and write whole payloads as ints)."""
    return v.as_value() if isinstance(v, data.View) else v


async def stream_put(ctx, stream, payload: int):
    ctx.set(raw(stream.payload), payload)
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream) -> int:
    ctx.set(stream.ready, 1)
    (payload,) = await ctx.tick().sample(raw(stream.payload)).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


def run_streams(dut, sources: dict, sinks: dict, *, seed=0, stall=0.2, vcd=None, max_cycles=None) -> dict:
    """Feed each `sources[name]` (ints) into stream `dut.<name>` and collect `sinks[name]` payloads from
    stream `dut.<name>`, all concurrently. With `stall` > 0 producers idle and consumers withhold ready at
    random (that share of cycles), so units are also checked under backpressure. Returns {sink: [ints]}."""
    rng = random.Random(seed)
    out = {name: [] for name in sinks}

    def producer(name, words):
        async def run(ctx):
            s = getattr(dut, name)
            for w in words:
                while stall and rng.random() < stall:
                    await ctx.tick()
                await stream_put(ctx, s, int(w))
        return run

    def consumer(name, n):
        async def run(ctx):
            s = getattr(dut, name)
            while len(out[name]) < n:
                while stall and rng.random() < stall:
                    await ctx.tick()
                out[name].append(await stream_get(ctx, s))
        return run

    sim = Simulator(dut)
    sim.add_clock(5e-9)
    for name, words in sources.items():
        sim.add_testbench(producer(name, words))
    for name, n in sinks.items():
        sim.add_testbench(consumer(name, n))
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return out


def run_stream(dut, words, *, n_out=None, seed=0, stall=0.2, vcd=None) -> list[int]:
    """`run_streams` for a unit with one input stream `i` and one output stream `o`."""
    n_out = len(words) if n_out is None else n_out
    return run_streams(dut, {"i": words}, {"o": n_out}, seed=seed, stall=stall, vcd=vcd)["o"]


# ============================================================================================ cocotb
import json  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

from dfx.sim import rtl_core  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BUILD = REPO / "build" / "rtl_sim"


def simulator() -> str:
    """The cocotb simulator: $SIM (icarus or verilator), default icarus."""
    return rtl_core.simulator()


def waves() -> bool:
    return os.environ.get("WAVES", "0") not in ("", "0")


def sim_env() -> dict:
    """The environment additions for a cocotb run: PATH with the venv's bin first (Verilator lives there)."""
    return {"PATH": rtl_core.venv_path()}


def missing_simulator(sim: str | None = None) -> str | None:
    """Why the cocotb unit tests cannot run here (None when they can)."""
    return rtl_core.missing_simulator(sim, axi=False)


def build_rtl(component, name: str, sim: str | None = None):
    """Write the component's Verilog and build it for `sim` (cached in build/rtl_sim/<name>_<sim>: rebuilt
    only when the Verilog changes). Returns (runner, build_dir)."""
    from amaranth.back import verilog

    sim = sim or simulator()
    bdir = BUILD / f"{name}_{sim}"
    bdir.mkdir(parents=True, exist_ok=True)
    src = bdir / f"{name}.v"
    text = verilog.convert(component, name=name, emit_src=False)
    stamp = bdir / "stamp.txt"
    key = f"{sim} waves={waves()}\n" + text
    fresh = not stamp.exists() or stamp.read_text() != key
    if fresh:
        src.write_text(text)
    runner = rtl_core.runner_build(sim, src, name, bdir, fresh=fresh, waves=waves())
    if fresh:
        stamp.write_text(key)
    return runner, bdir


def run_cocotb(component, name: str, sources: dict, sinks: dict, *, seed: int = 0, stall: float = 0.2,
               sim: str | None = None, timeout: int = 10000) -> dict[str, list[int]]:
    """Run `cocotb_stream.stream_vectors` on the component: drive `sources` ({stream port prefix: payload
    ints}) and check `sinks` ({port prefix: expected payload ints}) bit for bit, in order, all streams
    concurrently. Raises AssertionError naming the first mismatches; returns {sink: outputs}. WAVES=1
    writes an FST trace into the build folder (build/rtl_sim/<name>_<sim>/), and cocotb's results.xml
    (simulated and wall time) lands there too."""
    sim = sim or simulator()
    runner, bdir = build_rtl(component, name, sim)
    vec = bdir / "vectors.json"
    vec.write_text(json.dumps({
        "sources": {k: [hex(int(w)) for w in v] for k, v in sources.items()},
        "sinks": {k: [hex(int(w)) for w in v] for k, v in sinks.items()},
        "seed": seed, "stall": stall, "timeout": timeout}))
    out = Path(str(vec) + ".out")
    if out.exists():
        out.unlink()
    env = {**sim_env(), "DFX_VECTORS": str(vec), "PYTHONWARNINGS": "ignore::DeprecationWarning",
           "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "WARNING")}
    old_path = os.environ["PATH"]
    os.environ["PATH"] = env["PATH"]
    try:
        xml = runner.test(test_module="cocotb_stream", hdl_toplevel=name, test_dir=HERE, build_dir=bdir,
                          extra_env=env, waves=waves(), timescale=("1ns", "1ps"), log_file=bdir / "test.log",
                          results_xml=str(bdir / "results.xml"))
    finally:
        os.environ["PATH"] = old_path
    from cocotb_tools.runner import get_results
    tests, fails = get_results(xml)
    log = (bdir / "test.log").read_text(errors="replace") if (bdir / "test.log").exists() else ""
    msg = [ln.strip() for ln in log.splitlines() if "differ from the reference" in ln or "Error" in ln]
    assert tests == 1 and fails == 0, f"cocotb ({sim}) {name}: " + ("\n".join(msg[-4:]) or log[-2000:])
    return {k: [int(w, 16) for w in v] for k, v in json.loads(out.read_text()).items()}


def unit_bank(units: dict):
    """One component holding several stream units side by side (ports `<name>_i`, `<name>_o`), so a single
    cocotb build and run checks them all concurrently."""
    from amaranth import Module
    from amaranth.lib import stream, wiring
    from amaranth.lib.wiring import In, Out

    class UnitBank(wiring.Component):
        def __init__(self):
            self.units = units
            members = {}
            for name, u in units.items():
                members[f"{name}_i"] = In(stream.Signature(u._in_shape))
                members[f"{name}_o"] = Out(stream.Signature(u._out_shape))
            super().__init__(members)

        def elaborate(self, platform):
            m = Module()
            for name, u in self.units.items():
                m.submodules[name] = u
                wiring.connect(m, wiring.flipped(getattr(self, f"{name}_i")), u.i)
                wiring.connect(m, u.o, wiring.flipped(getattr(self, f"{name}_o")))
            return m

    return UnitBank()
