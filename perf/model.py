"""The cycle-level performance model: executes DFX programs instruction by instruction, charging each one from
the micro-architecture (docs/design.md, Performance modelling; docs/perf.md has the full text and every
constant's source).

`PerfModel(program, board)` pre-decodes every stream (`trace.Trace`), runs token steps through the scheduler
(`schedule.simulate_step`) and adds them up into a `report.PerfReport` (`run`). Costs come from `timing.Timing`:
the board's constants and, in serial-issue mode, the RTL core's own cycle counts read from hw/.

Speed, exactly: the stream cost of a step depends on the position POS only through ceil((POS+1)/g) for the
granules g of the dynamic operands (d, l and vpu_width: tiles, VBUF entries, VPU chunks), all multiples of
g0 = gcd(d, l, vpu_width). Every cost is a function of q = ceil((POS+1)/g0), so steps with the same (stream, q)
take exactly the same cycles and are simulated once (`step`, the memo). tests/perf/test_model.py checks it.
"""
from __future__ import annotations

from typing import NamedTuple

from dfx import isa
from dfx.errors import PerfError
from dfx.program import Program

from .board import Board, load_board
from .hbm import Access
from .report import Phase, PerfReport
from .schedule import DeviceStep, simulate_step
from .timing import Timing, cdiv
from .trace import MNEMONICS, Records, Trace, layer_bins, needs_count


TOKEN_SERIAL = ("prefill", "decode")   # the streams the host runs one token per run


class Run(NamedTuple):
    """One run of a stream in a generation (`PerfModel.schedule`)."""
    phase: str                  # "prefill" or "decode"
    stream: str
    pos: int
    count: int | None           # tokens of a batched prefill run; None: one token


class BatchedStream(NamedTuple):
    """One device's batched prefill stream, traced per token count when it runs (`PerfModel.trace`)."""
    instrs: list
    bins: tuple                 # layer_bins(instrs, ...)


class PerfModel:
    """The performance model for one program on one board.

        m = PerfModel(program, "u280")
        report = m.run(input_tokens=128, output_tokens=256)

    `fast=False` turns off the exact shortcuts (device deduplication, layer periodicity) for testing them;
    `engines` ("rtl": the hw/ engines as built under the scoreboard controller; "pipelined": the DFX-style
    target with pipelined units, hardware the RTL does not have) and `serial_issue=True` (the RTL's engines
    one instruction at a time, the in-order core) choose the timing (`Timing`); `hbm_access` replaces the RTL's weight-stream
    access pattern (`dfx.perf.hbm`, e.g. `hbm.dfx_access` for DFX's); `prefill_stream="decode"` runs every
    prompt token through the decode stream (LM head included), as DFX's published latencies imply it does. A
    program compiled with a batched prefill stream (`compile_model(prefill_batch=M)`) runs its prompt through it
    in chunks of up to M tokens (`run`); `step(stream, pos, count)` models one run of it over `count` tokens.
    """

    def __init__(self, program: Program, board: str | Board | None = "u280", check_fit: bool = True,
                 fast: bool = True, serial_issue: bool = False, hbm_access: Access | None = None,
                 prefill_stream: str = "prefill", engines: str = "rtl"):
        if not isinstance(program, Program):
            raise PerfError(f"expected a dfx Program, not {type(program).__name__}")
        self.fast = fast
        if prefill_stream not in TOKEN_SERIAL:
            raise PerfError(f"prefill_stream must be one of {TOKEN_SERIAL}, not {prefill_stream!r}")
        self.prefill_stream = prefill_stream
        self.program = program
        self.cfg = program.config
        self.board = load_board(board)
        self.timing = Timing(self.cfg, self.board, serial_issue, hbm_access, engines)
        self.devices = program.n_devices
        self.model = program.manifest.model
        if check_fit:
            self.check_fit()
        node_pcs = program.manifest.node_pcs
        self.n_layer = self.model.n_layer
        self.streams = {}
        self._records = Records()         # decoded instructions (prefill and decode share most), records
        regions = program.manifest.quantization.regions
        self._regions = [{a: r.bytes for a, r in regions[k].items()} for k in range(self.devices)]
        self._batched: dict[str, list] = {}           # batched stream -> per device (instrs, layer bins)
        self._traces: dict[tuple[str, int], list] = {}
        names = ["prefill", "decode"] + [s for s in program.manifest.streams if s not in ("prefill", "decode")]
        for name in names:
            per_dev = []
            for k, dev in enumerate(program.devices):
                if name not in dev.streams:
                    raise PerfError(f"device {k} has no {name!r} stream")
                np_ = node_pcs.get(name, [None] * self.devices)[k] if node_pcs else None
                instrs = dev.streams[name]
                if needs_count(instrs) and name in TOKEN_SERIAL:
                    raise PerfError(f"device {k} {name!r} stream uses CHUNK, SLOT or BATCH +dyn_m, which only a "
                                    "batched prefill stream may (the host runs prefill and decode one token per "
                                    "run); recompile the program")
                if needs_count(instrs):
                    if not instrs or instrs[-1].op.mnemonic != "HALT":
                        raise PerfError(f"device {k} {name}: stream does not end with HALT")
                    per_dev.append(BatchedStream(instrs, layer_bins(instrs, self.n_layer, np_)))
                else:
                    per_dev.append(Trace(instrs, self.timing, self.n_layer, self.devices, np_, self._records,
                                         self._regions[k]))
            if isinstance(per_dev[0], Trace):
                self.streams[name] = per_dev
            else:
                self._batched[name] = per_dev
                self.capacity(name)               # a batched stream without CHUNK: one line, here
        self.max_seq = program.manifest.max_seq
        self._memo: dict[tuple, list[DeviceStep]] = {}
        symbols = program.manifest.symbols
        pieces = symbols.logits_pieces
        V = self.model.vocab_size
        if pieces:
            self.logits_bytes = [2 * sum(b - a for a, b in p) for p in pieces]
        else:
            self.logits_bytes = [2 * V // self.devices] * self.devices
        sym = symbols.prefill_batch
        self.batch_stream = sym.stream if sym and sym.stream in self._batched else None
        self.prefill_chunk = self.capacity(self.batch_stream) if self.batch_stream else None

    # ---- fit
    def hbm_needed(self) -> list[int]:
        return [m.hbm_bytes for m in self.program.manifest.memory]

    def check_fit(self):
        have = self.board.hbm_capacity_bytes
        for k, need in enumerate(self.hbm_needed()):
            if need > have:
                raise PerfError(f"device {k} needs {need / 2**30:.2f} GiB of HBM (weights + KV cache), board "
                                f"{self.board.name} has {have / 2**30:.2f} GiB; use more devices or a smaller "
                                "weight format")

    # ---- steps
    @property
    def batched_streams(self) -> tuple[str, ...]:
        """Streams whose runs take a token count (`step(stream, pos, count)`): batched prefill."""
        return tuple(self._batched)

    def key(self, pos: int) -> int:
        return cdiv(pos + 1, self.timing.g0)

    def capacity(self, stream: str) -> int:
        """The most tokens one run of a batched stream takes (its CHUNK's cap)."""
        caps = set()
        for k, s in enumerate(self._batched[stream]):
            found = [ins.cap for ins in s.instrs if ins.op.mnemonic == "CHUNK"]
            if not found:
                raise PerfError(f"device {k} {stream!r} stream uses SLOT or BATCH +dyn_m without a CHUNK (the "
                                "instruction that reads the run's token table); a batched prefill stream starts "
                                "with CHUNK")
            caps.update(found)
        if len(caps) != 1:
            raise PerfError(f"stream {stream!r}: its CHUNKs disagree on the run's capacity ({sorted(caps)}); one "
                            "cap per batched stream")
        return caps.pop()

    def _trace(self, stream: str, count: int) -> list[Trace]:
        """Every device's batched stream along the path a run of `count` tokens takes (built once per count)."""
        t = self._traces.get((stream, count))
        if t is None:
            t = self._traces[(stream, count)] = [
                Trace(s.instrs, self.timing, self.n_layer, self.devices, None, self._records, self._regions[k],
                      count=count, bins=s.bins) for k, s in enumerate(self._batched[stream])]
        return t

    def _step_key(self, stream: str, pos: int, count: int | None) -> tuple:
        """The memo key: every cost depends on POS only through ceil((POS + 1) / g0) (`key`), per token slot."""
        if stream in self._batched:
            return (stream, count) + tuple(self.key(pos + i) for i in range(count))
        return (stream, self.key(pos))

    def _check_step(self, stream: str, pos: int, count: int | None):
        if stream not in self.streams and stream not in self._batched:
            raise PerfError(f"no stream {stream!r}; the program has {', '.join([*self.streams, *self._batched])}")
        if not 0 <= pos < self.max_seq:
            raise PerfError(f"position {pos} is outside the program's context (max_seq {self.max_seq})")
        if stream in self._batched:
            cap = self.capacity(stream)
            if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= cap:
                raise PerfError(f"stream {stream!r} is a batched prefill: give its token count, an integer in "
                                f"1..{cap}, not {count!r}")
            if pos + count > self.max_seq:
                raise PerfError(f"{count} tokens from position {pos} run past the program's context "
                                f"(max_seq {self.max_seq})")
        elif count not in (None, 1):
            raise PerfError(f"stream {stream!r} runs one token per step, not count {count!r}")

    def step(self, stream: str, pos: int, count: int | None = None, memo: bool = True) -> list[DeviceStep]:
        """Every device's figures for one run of `stream` at position `pos`; a batched prefill stream runs
        `count` tokens, token i at position pos + i."""
        self._check_step(stream, pos, count)
        key = self._step_key(stream, pos, count)
        if memo and key in self._memo:
            return self._memo[key]
        streams = self._trace(stream, count) if stream in self._batched else self.streams[stream]
        r = simulate_step(streams, pos + 1, self.program.manifest.ring, fast=self.fast)
        if memo:
            self._memo[key] = r
        return r

    def step_cycles(self, stream: str, pos: int, count: int | None = None, memo: bool = True) -> int:
        """The slowest device's cycles for one run (`step`)."""
        return max(d.cycles for d in self.step(stream, pos, count, memo=memo))

    @property
    def simulated_steps(self) -> int:
        """How many distinct steps the memo holds (each simulated once; `key`)."""
        return len(self._memo)

    def schedule(self, input_tokens: int, output_tokens: int, batched: bool | None = None) -> list[Run]:
        """The runs of a generation, in order. Token-serial: `prefill` for prompt
        tokens 0..T-2, `decode` for T-1 and each generated token but the last. With a batched prefill stream
        (`batched` None: if the program has one) the prompt tokens 0..T-2 go through it in chunks of its
        capacity, the last chunk taking the rest."""
        T, M = input_tokens, output_tokens
        if batched is None:
            batched = self.batch_stream is not None
        elif batched and self.batch_stream is None:
            raise PerfError("the program has no batched prefill stream; compile it with prefill_batch=M "
                            "(dfx compile --prefill-batch M)")
        runs = []
        if batched:
            chunk = self.prefill_chunk
            runs += [Run("prefill", self.batch_stream, p, min(chunk, T - 1 - p)) for p in range(0, T - 1, chunk)]
        else:
            runs += [Run("prefill", self.prefill_stream, p, None) for p in range(T - 1)]
        return runs + [Run("decode", "decode", p, None) for p in range(T - 1, T + M - 1)]

    def run(self, input_tokens: int, output_tokens: int, memo: bool = True,
            batched: bool | None = None) -> PerfReport:
        """Generation of `output_tokens` after `input_tokens` (`schedule`: token-serial prefill, or batched
        when the program has a batched prefill stream and `batched` is not False), then decode."""
        T, M = input_tokens, output_tokens
        for name, v in (("input_tokens", T), ("output_tokens", M)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise PerfError(f"{name} must be an integer >= 1, not {v!r}")
        if T + M - 1 > self.max_seq:
            raise PerfError(f"{T} input + {M} output tokens need {T + M - 1} positions; the program's context is "
                            f"{self.max_seq} (compile with a larger max_seq)")
        groups: dict[tuple, list[Run]] = {}
        for r in self.schedule(T, M, batched):
            groups.setdefault((r.phase,) + self._step_key(r.stream, r.pos, r.count), []).append(r)
        phases = {"prefill": Phase(), "decode": Phase()}
        nb = len(self.streams["decode"][0].bin_names)
        for ph in phases.values():
            ph.by_bin = [0] * nb
        decode_bytes = []
        for runs in groups.values():
            phase, stream, pos, count = runs[0]
            ph = phases[phase]
            if memo:
                res = [(self.step(stream, pos, count), len(runs))]
            else:
                res = [(self.step(stream, r.pos, r.count, memo=False), 1) for r in runs]
            for devs, cnt in res:
                crit = max(range(len(devs)), key=lambda k: devs[k].cycles)
                c = devs[crit]
                ph.steps += cnt
                ph.tokens += cnt * (count or 1)
                ph.device_cycles += cnt * c.cycles
                for i, v in enumerate(c.by_op):
                    if v:
                        ph.by_op[MNEMONICS[i]] += cnt * v
                for i, v in enumerate(c.by_bin):
                    ph.by_bin[i] += cnt * v
                for dv in devs:
                    for u in range(4):
                        ph.busy[u] += cnt * dv.busy[u]
                    ph.device_time += cnt * dv.cycles
                    ph.hbm_bytes += cnt * dv.hbm_bytes
                    ph.ddr_bytes += cnt * dv.ddr_bytes
                    ph.link_bytes += cnt * dv.link_bytes
                    ph.sync_wait += cnt * dv.sync_wait
                ph.hbm_bytes_max += cnt * max(dv.hbm_bytes for dv in devs)
                ph.ring_cycles += cnt * c.ring_cycles
                if phase == "decode":
                    decode_bytes.append((max(dv.hbm_bytes for dv in devs), cnt))
            table = isa.TOKEN_TABLE_HEADER + 4 * count if count else 0
            ph.host_s += len(runs) * self.timing.host_seconds(self.devices, phase == "decode", self.logits_bytes,
                                                              table)
        return PerfReport(self, T, M, phases, decode_bytes,
                          batched=any(r.stream == self.batch_stream for g in groups.values() for r in g))


def simulate(program: Program, input_tokens: int, output_tokens: int, board: str | Board | None = "u280",
             serial_issue: bool = False) -> PerfReport:
    """One call: the report of `program` generating `output_tokens` after `input_tokens` on `board`."""
    return PerfModel(program, board, serial_issue=serial_issue).run(input_tokens, output_tokens)
