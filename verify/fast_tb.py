"""The simulator side of the fast harness: the cocotb test `dfx_fast_jobs` runs a list of jobs (programs) on one
build of `dfx.verify.fast_top.FastTop`, one after the other in one simulator process.

Per job: the memory images are written as `$readmemh` files and loaded through the memories' backdoor (cleared
first), the memory model's latency and back-pressure are set, the core is reset and set up (HBM/DDR bases 0,
RING_POS/RING_SIZE, the done interrupt enabled), and every step (stream, token, pos) is a run: ENTRY, TOKEN,
POS, ap_start on each device, then a wait for each device's interrupt (a value-change callback, no Python per
cycle: the clock is cocotb's C++ clock), STATUS / ERROR_PC / CYCLES / BUSY_<unit> read and ISR cleared. The
control ports are driven by `dfx.verify.fast_axil.AxiLiteLean` (Python only while a register access lasts). After the last step
(and, with `logits`, after every decode step) the tb reads VBUF and the scalar registers through the
simulator's hierarchy and the memories through their `$writememh` backdoor. One JSON line per job goes to
results.jsonl in the job folder. The job file (`FAST_JOB_ENV`) is written by `dfx.verify.fast_core`.
"""
from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from dfx import regmap
from dfx.config import AccelConfig

from .core_tb import RESET_SETTLE
from .fast_axil import AxiLiteLean
from .fast_top import mem_names
from .retire_events import record_retires

CLOCK_NS = 5
FAST_JOB_ENV = "DFX_FAST_JOB"


def to_hex(image: bytes, word_bytes: int) -> str:
    """A memory image as `$readmemh` text: one little-endian word per line, most significant digit first."""
    buf = np.frombuffer(bytes(image), np.uint8)
    pad = -len(buf) % word_bytes
    if pad or not len(buf):
        buf = np.concatenate([buf, np.zeros(pad or word_bytes, np.uint8)])
    rows = buf.reshape(-1, word_bytes)[:, ::-1]
    text = rows.tobytes().hex()
    w = 2 * word_bytes
    return "\n".join(text[i:i + w] for i in range(0, len(text), w)) + "\n"


def from_hex(text: str, word_bytes: int) -> bytes:
    """Inverse of `to_hex` for a `$writememh` file (comments and address lines skipped; x/z read as 0)."""
    words = [t for line in text.splitlines() for t in line.split("//", 1)[0].split() if not t.startswith("@")]
    if not words:
        return b""
    hexed = "".join(w.rjust(2 * word_bytes, "0") for w in words).lower().translate(str.maketrans("xz", "00"))
    return np.frombuffer(bytes.fromhex(hexed), np.uint8).reshape(-1, word_bytes)[:, ::-1].tobytes()


class FastTB:
    """The fast design seen from cocotb: clock, reset, control ports, memory backdoor, core state."""

    def __init__(self, dut, cfg: AccelConfig, devices: int, word_bytes: dict[str, int]):
        self.dut, self.cfg, self.devices = dut, cfg, devices
        self.regs = regmap.by_name(cfg)
        self.names = mem_names(cfg, devices)
        self.word_bytes = word_bytes
        self.axil = []
        core = dut.dut
        self.cores = [core.core] if devices == 1 else [getattr(core, f"dev{k}").core for k in range(devices)]

    async def start(self):
        """Hold reset, start the clock (cocotb's C++ clock) and the control-port masters (`AxiLiteLean`)."""
        # lazy: cocotb exists only inside the simulator process (the optional `sim` extra)
        import cocotb
        from cocotb.clock import Clock
        from cocotb.triggers import Timer
        dut = self.dut
        for sig in (dut.mem_load, dut.mem_dump, dut.mem_clear, dut.mem_latency, dut.mem_stall, dut.mem_refresh_every,
                    dut.mem_refresh_cycles, dut.mem_refresh_mask):
            sig.value = 0
        for k in range(self.devices):
            m = AxiLiteLean(dut, f"dev{k}_s_axi_control", dut.ap_clk)
            m.idle()
            self.axil.append(m)
        dut.ap_rst_n.value = 0
        await Timer(1, unit="ns")
        gc.collect()
        gc.freeze()                         # the long-lived objects stay out of every later collection
        cocotb.start_soon(Clock(dut.ap_clk, CLOCK_NS, unit="ns", impl="gpi").start())
        await self.cycles(2)

    async def cycles(self, n: int):
        from cocotb.triggers import Timer  # lazy: cocotb exists only inside the simulator process
        await Timer(n * CLOCK_NS, unit="ns")

    async def settle(self):
        """Let the values just written reach the design before a backdoor strobe reads them."""
        from cocotb.triggers import Timer  # lazy: cocotb exists only inside the simulator process
        await Timer(1, unit="ps")

    async def write_reg(self, k: int, name: str, value: int):
        r = self.regs[name]
        for w in range(r.words):
            await self.axil[k].write_dword(r.offset + 4 * w, (value >> (32 * w)) & 0xFFFFFFFF)

    async def read_reg(self, k: int, name: str) -> int:
        r = self.regs[name]
        v = 0
        for w in range(r.words):
            v |= await self.axil[k].read_dword(r.offset + 4 * w) << (32 * w)
        return v

    def _kind(self, name: str) -> str:
        return "ddr" if name.endswith("_ddr") else "hbm"

    async def load(self, images: dict[str, bytes], clear: bool = True):
        """Write `images` ({memory name: bytes from address 0}) through the backdoor; with `clear` every memory
        is zeroed first (one without an image stays zero)."""
        mask = 0
        for i, name in enumerate(self.names):
            if name in images or clear:
                Path(f"{name}.hex").write_text(to_hex(images.get(name, b""), self.word_bytes[self._kind(name)]))
                mask |= 1 << i
        self.dut.mem_clear.value = int(clear)
        await self.settle()                 # the strobe's block must see `clear` already
        self.dut.mem_load.value = mask
        await self.cycles(1)
        self.dut.mem_load.value = 0
        self.dut.mem_clear.value = 0

    async def dump(self, name: str, nbytes: int, start: int = 0) -> bytes:
        """Bytes start .. start + nbytes of memory `name`, through its backdoor."""
        if nbytes <= 0:
            return b""
        wb = self.word_bytes[self._kind(name)]
        lo, hi = start // wb, (start + nbytes - 1) // wb
        self.dut.mem_dump_lo.value, self.dut.mem_dump_hi.value = lo, hi
        await self.settle()                 # the strobe's block must see the new range
        self.dut.mem_dump.value = 1 << self.names.index(name)
        await self.cycles(1)
        self.dut.mem_dump.value = 0
        raw = from_hex(Path(f"{name}.out").read_text(), wb)
        off = start - lo * wb
        return raw[off:off + nbytes]

    async def reset(self):
        self.dut.ap_rst_n.value = 0
        await self.cycles(4)
        self.dut.ap_rst_n.value = 1
        await self.cycles(RESET_SETTLE)

    async def setup(self, ring: tuple[int, int]):
        first, size = ring
        for k in range(self.devices):
            for c in range(self.cfg.hbm_channels):
                await self.write_reg(k, f"HBM{c:02d}", 0)
            await self.write_reg(k, "DDR", 0)
            await self.write_reg(k, "RING_POS", first + k if self.devices > 1 else 0)
            await self.write_reg(k, "RING_SIZE", size)
            await self.write_reg(k, "GIE", 1)
            await self.write_reg(k, "IER", 1)

    async def run(self, entries: list[int], token: int, pos: int, timeout: int) -> list[dict]:
        """One run on every device: start, wait for done (at most `timeout` cycles), counters."""
        # lazy: cocotb exists only inside the simulator process
        from cocotb.triggers import First, RisingEdge, Timer
        from cocotb.utils import get_sim_time
        for k, entry in enumerate(entries):
            await self.write_reg(k, "ENTRY", entry)
            await self.write_reg(k, "TOKEN", token)
            await self.write_reg(k, "POS", pos)
            await self.write_reg(k, "CTRL", regmap.AP_START)
        self.started = get_sim_time("ns") // CLOCK_NS              # the run's start (per-class attribution)
        out = []
        for k in range(self.devices):
            irq = getattr(self.dut, f"dev{k}_interrupt")
            if not int(irq.value):
                t = Timer(timeout * CLOCK_NS, unit="ns")
                if await First(RisingEdge(irq), t) is t:
                    out.append({"status": -1, "error_pc": -1, "cycles": timeout, "timeout": True})
                    continue
            out.append({"status": await self.read_reg(k, "STATUS"), "error_pc": await self.read_reg(k, "ERROR_PC"),
                        "cycles": await self.read_reg(k, "CYCLES"),
                        "busy": {u: await self.read_reg(k, f"BUSY_{u}") for u in regmap.COUNTER_UNITS}})
            await self.write_reg(k, "ISR", 1)
        return out

    def vbuf(self, k: int, ranges) -> str:
        """VBUF entries of device k in `ranges` [(lo, hi)), as the hex of their binary16 bytes."""
        mem = self.cores[k].vbuf.copy0          # (every read copy holds the buffer: hw/buffers.py)
        wb = 2 * self.cfg.d
        return b"".join(int(mem[e].value).to_bytes(wb, "little") for lo, hi in ranges for e in range(lo, hi)).hex()

    def sregs(self, k: int) -> list[int]:
        mem = self.cores[k].sregs.mem
        return [int(mem[r].value) for r in range(self.cfg.sregs)]


def _monitor_events(tb: FastTB, events: list):
    """With a job's `classes` flag: device 0's completion events (pc, opcode, cycle) from the core's debug event
    outputs, as `dfx.verify.core_tb` records them (`core_tb.attribute` turns them into cycles per class; a
    value-change callback per completion, no Python per cycle). Needs the outputs public (the huge Verilator
    profile, `dfx.verify.fast_verilator.HUGE_VLT`)."""
    import cocotb  # lazy: cocotb exists only inside the simulator process
    return cocotb.start_soon(record_retires(tb.cores[0], CLOCK_NS, events))


async def run_job(tb: FastTB, job: dict) -> dict:
    """One job of the job file (see `dfx.verify.fast_core.FastJob`)."""
    from cocotb.utils import get_sim_time  # lazy: cocotb exists only inside the simulator process
    d = Path(job["dir"])
    images = {name: (d / f"{job['id']}_{name}.bin").read_bytes() for name in tb.names
              if (d / f"{job['id']}_{name}.bin").exists()}
    await tb.load(images)
    tb.dut.mem_latency.value, tb.dut.mem_stall.value = job["latency"], job["stall"]
    every, cycles, mask = job.get("refresh", (0, 0, 0))
    tb.dut.mem_refresh_every.value, tb.dut.mem_refresh_cycles.value, tb.dut.mem_refresh_mask.value = every, cycles, mask
    await tb.reset()
    await tb.setup(tuple(job["ring"]))
    res = {"id": job["id"], "runs": [], "logits": []}
    t0 = get_sim_time("ns") // CLOCK_NS
    for stream, token, pos in job["steps"]:
        events: list = []
        task = _monitor_events(tb, events) if job.get("classes") else None
        devs = await tb.run([e[stream] for e in job["entries"]], token, pos, job["timeout"])
        run = {"stream": stream, "token": token, "pos": pos, "status": max(x["status"] for x in devs),
               "error_pc": devs[0]["error_pc"], "cycles": devs[0]["cycles"], "busy": devs[0].get("busy", {}),
               "devices": devs}
        if task is not None:
            task.cancel()
            run["events"], run["t0"] = events, tb.started
        res["runs"].append(run)
        if job.get("logits") and stream == "decode":
            addr, pieces = job["logits"]
            got = []
            for k, dev_pieces in enumerate(pieces):
                got.append([(a, b, (await tb.dump(f"d{k}_ddr", 2 * (b - a), addr + 2 * a)).hex())
                            for a, b in dev_pieces])
            res["logits"].append(got)
        if any(x.get("timeout") for x in devs):
            break
    res["sim_cycles"] = get_sim_time("ns") // CLOCK_NS - t0
    read = job.get("read", {})
    res["vbuf"] = [tb.vbuf(k, read["vbuf"]) for k in range(tb.devices)] if read.get("vbuf") else []
    res["sregs"] = [tb.sregs(k) for k in range(tb.devices)] if read.get("sregs") else []
    res["mem"] = {}
    for name, nbytes in read.get("mem", {}).items():
        res["mem"][name] = (await tb.dump(name, nbytes)).hex()
    res["mem_error"] = int(tb.dut.mem_error.value)
    return res


def _cocotb_test():
    import cocotb  # lazy: cocotb exists only inside the simulator process

    @cocotb.test()
    async def dfx_fast_jobs(dut):
        spec = json.loads(Path(os.environ[FAST_JOB_ENV]).read_text())
        cfg = AccelConfig.from_dict(spec["cfg"])
        tb = FastTB(dut, cfg, spec["devices"], spec["word_bytes"])
        await tb.start()
        out = Path(spec["dir"]) / "results.jsonl"
        with out.open("w") as f:
            for job in spec["jobs"]:
                t0, c0 = time.perf_counter(), time.process_time()
                res = await run_job(tb, {"dir": spec["dir"], **job})
                res["wall_s"], res["cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
                f.write(json.dumps(res) + "\n")
                f.flush()

    return dfx_fast_jobs


if "cocotb" in sys.modules and os.environ.get(FAST_JOB_ENV):      # loaded by cocotb as the test module of a job
    dfx_fast_jobs = _cocotb_test()
