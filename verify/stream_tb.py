"""The simulator side of `dfx.verify.units`: a cocotb testbench for any stream-in/stream-out unit (Amaranth
`i`/`o` streams, flattened by the Verilog backend to `i__payload`/`i__valid`/`i__ready` and `o__...`).

The vectors come from the pytest side (`units.run_vectors`) in a JSON file named by $DFX_VECTORS: payloads for
each input stream, the expected payloads of each output stream (computed by `dfx.numerics`), a seed and a stall
share. Sources drive their streams with random idle cycles, sinks withhold ready at random, and an in-order
scoreboard per output stream compares every payload bit for bit with the reference.
"""
from __future__ import annotations

import json
import os
import random
import sys

VECTORS_ENV = "DFX_VECTORS"        # the job file of `stream_vectors`


class StreamTB:
    """Clock, reset and the stream ends of one DUT."""

    def __init__(self, dut, seed: int, stall: float):
        # lazy: cocotb exists only inside the simulator process (the optional `sim` extra)
        import cocotb
        from cocotb.clock import Clock
        from cocotb.triggers import RisingEdge
        self.dut, self.clk = dut, dut.clk
        self.rng, self.stall = random.Random(seed), stall
        self.edge = lambda: RisingEdge(self.clk)
        cocotb.start_soon(Clock(self.clk, 5, unit="ns").start())

    def port(self, prefix: str) -> dict:
        return {k: getattr(self.dut, f"{prefix}__{k}") for k in ("payload", "valid", "ready")}

    async def reset(self, ports):
        for p, role in ports:
            (p["valid"] if role == "source" else p["ready"]).value = 0
        self.dut.rst.value = 1
        for _ in range(3):
            await self.edge()
        self.dut.rst.value = 0
        await self.edge()

    def idle(self) -> bool:
        """Whether this end idles for the coming cycle (the stall share, at random)."""
        return self.stall > 0 and self.rng.random() < self.stall

    async def source(self, port, words):
        for w in words:
            while self.idle():
                port["valid"].value = 0
                await self.edge()
            port["payload"].value = w
            port["valid"].value = 1
            await self.edge()
            while not port["ready"].value:            # values read at the edge are the sampled ones
                await self.edge()
        port["valid"].value = 0

    async def sink(self, port, n: int, timeout: int) -> list[int]:
        out, idle = [], 0
        while len(out) < n:
            ready = not self.idle()
            port["ready"].value = int(ready)
            await self.edge()
            if ready and port["valid"].value:
                out.append(int(port["payload"].value))
                idle = 0
            else:
                idle += 1
                assert idle < timeout, f"no output for {timeout} cycles after {len(out)} of {n} results"
        port["ready"].value = 0
        return out


def _test():
    import cocotb  # lazy: cocotb exists only inside the simulator process

    @cocotb.test()
    async def stream_vectors(dut):
        """Every source and sink of the spec runs concurrently; each sink is checked in order against its
        reference."""
        with open(os.environ[VECTORS_ENV]) as f:
            spec = json.load(f)
        tb = StreamTB(dut, spec.get("seed", 0), spec.get("stall", 0.0))
        sources = [(tb.port(name), words) for name, words in spec["sources"].items()]
        sinks = [(name, tb.port(name), exp) for name, exp in spec["sinks"].items()]
        await tb.reset([(p, "source") for p, _ in sources] + [(p, "sink") for _, p, _ in sinks])
        for port, words in sources:
            cocotb.start_soon(tb.source(port, [int(w, 16) for w in words]))
        tasks = [cocotb.start_soon(tb.sink(port, len(exp), spec.get("timeout", 10000))) for _, port, exp in sinks]
        results, errors = {}, []
        for task, (name, _, exp) in zip(tasks, sinks):
            got = await task
            results[name] = [hex(g) for g in got]
            expected = [int(w, 16) for w in exp]
            bad = [k for k, (g, e) in enumerate(zip(got, expected)) if g != e]
            if bad:
                shown = ", ".join(f"#{k}: got {got[k]:#x} want {expected[k]:#x}" for k in bad[:4])
                errors.append(f"{name}: {len(bad)} of {len(expected)} results differ from the reference: {shown}")
        with open(os.environ[VECTORS_ENV] + ".out", "w") as f:
            json.dump(results, f)
        assert not errors, "; ".join(errors)

    return stream_vectors


if "cocotb" in sys.modules and os.environ.get(VECTORS_ENV):   # loaded by cocotb as the test module of a job
    stream_vectors = _test()
