"""The report of one modelled generation: totals, prefill vs decode, breakdowns by instruction class, mnemonic
and layer, unit utilisation, HBM bandwidth and the decode roofline; as text (`format`) or JSON (`to_dict`)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .trace import CLASS_OF, CLASSES, UNIT_NAMES


@dataclass(slots=True)
class Phase:
    """Totals of one phase (prefill or decode) over its token steps."""
    steps: int = 0                       # runs (a batched prefill run processes several tokens)
    tokens: int = 0                      # tokens processed
    device_cycles: int = 0               # sum over steps of the slowest device's cycles
    host_s: float = 0.0
    by_op: Counter = field(default_factory=Counter)      # exposed cycles (critical device), by mnemonic
    by_bin: list = field(default_factory=list)
    busy: list = field(default_factory=lambda: [0, 0, 0, 0])   # summed over devices
    device_time: int = 0                 # sum over steps and devices of each device's cycles
    hbm_bytes: int = 0                   # summed over devices
    hbm_bytes_max: int = 0               # the busiest device's bytes
    ddr_bytes: int = 0
    link_bytes: int = 0
    sync_wait: int = 0                   # summed over devices
    ring_cycles: int = 0                 # critical device


class PerfReport:
    """The figures of one run: totals, prefill vs decode, breakdowns, utilisation, bandwidth, roofline."""

    def __init__(self, model: PerfModel, T: int, M: int, phases: dict[str, Phase], decode_bytes,
                 batched: bool = False):
        self.m = model
        self.input_tokens, self.output_tokens = T, M
        self.phases = phases
        self.clock_hz = model.timing.clock_hz
        self.port_peak = model.cfg.beat_bytes * self.clock_hz            # bytes/s the core's ports can take
        self.board_peak = model.board.hbm_peak_gbytes_per_s * 1e9       # bytes/s the board's HBM delivers
        self.batched = batched
        n = sum(c for _, c in decode_bytes)
        self.decode_bytes_per_token = sum(b * c for b, c in decode_bytes) / n if n else 0.0

    # ---- headline figures
    def ms(self, phase: str | None = None) -> float:
        phs = [self.phases[phase]] if phase else self.phases.values()
        return sum(p.device_cycles / self.clock_hz + p.host_s for p in phs) * 1e3

    @property
    def total_cycles(self) -> int:
        return sum(p.device_cycles for p in self.phases.values())

    @property
    def total_ms(self) -> float:
        return self.ms()

    @property
    def decode_ms_per_token(self) -> float:
        d = self.phases["decode"]
        return self.ms("decode") / d.steps if d.steps else 0.0

    @property
    def prefill_ms_per_token(self) -> float:
        """Prefill ms per prompt token (a batched run counts each of its tokens)."""
        p = self.phases["prefill"]
        return self.ms("prefill") / p.tokens if p.tokens else 0.0

    @property
    def prefill_batch(self) -> int | None:
        """Tokens per batched prefill run when the prefill was batched, else None (token-serial)."""
        return self.m.prefill_chunk if self.batched else None

    @property
    def tokens_per_s(self) -> float:
        return 1e3 / self.decode_ms_per_token if self.decode_ms_per_token else 0.0

    def roofline_ms(self, peak: str = "port") -> float:
        """Decode roofline: HBM bytes the busiest device streams per token (weights + KV cache, as tiled) /
        peak bandwidth. peak='port': the core's HBM ports (width x clock, at most the board's); 'board': the
        board's HBM peak."""
        bw = min(self.port_peak, self.board_peak) if peak == "port" else self.board_peak
        return self.decode_bytes_per_token / bw * 1e3

    def roofline_pct(self, peak: str = "port") -> float:
        return 100.0 * self.roofline_ms(peak) / self.decode_ms_per_token if self.decode_ms_per_token else 0.0

    def utilisation(self, phase: str | None = None) -> dict[str, float]:
        phs = [self.phases[phase]] if phase else list(self.phases.values())
        t = sum(p.device_time for p in phs)
        return {UNIT_NAMES[u]: (sum(p.busy[u] for p in phs) / t if t else 0.0) for u in range(4)}

    def hbm_gbps(self, phase: str | None = None) -> float:
        """Achieved HBM bandwidth per device while the devices run (bytes / device time)."""
        phs = [self.phases[phase]] if phase else list(self.phases.values())
        t = sum(p.device_time for p in phs) / self.clock_hz
        return sum(p.hbm_bytes for p in phs) / t / 1e9 if t else 0.0

    def by_class(self, phase: str | None = None) -> dict[str, float]:
        """Exposed time (ms) of the critical device per instruction class, plus the host."""
        phs = [self.phases[phase]] if phase else list(self.phases.values())
        out = {c: 0.0 for c in CLASSES}
        for p in phs:
            for mn, cyc in p.by_op.items():
                out[CLASS_OF[mn]] += cyc / self.clock_hz * 1e3
        out["host"] = sum(p.host_s for p in phs) * 1e3
        return out

    def by_op(self, phase: str | None = None) -> dict[str, float]:
        phs = [self.phases[phase]] if phase else list(self.phases.values())
        c = Counter()
        for p in phs:
            c.update(p.by_op)
        return {k: v / self.clock_hz * 1e3 for k, v in sorted(c.items(), key=lambda kv: -kv[1])}

    def by_layer(self, phase: str | None = None) -> dict[str, float]:
        phs = [self.phases[phase]] if phase else list(self.phases.values())
        names = self.m.streams["decode"][0].bin_names
        return {nm: sum(p.by_bin[i] for p in phs) / self.clock_hz * 1e3 for i, nm in enumerate(names)}

    def to_dict(self) -> dict:
        m = self.m
        ph = {}
        for name, p in self.phases.items():
            ph[name] = {"steps": p.steps, "tokens": p.tokens, "device_cycles": p.device_cycles, "ms": self.ms(name),
                        "host_ms": p.host_s * 1e3,
                        "ms_per_token": self.ms(name) / p.tokens if p.tokens else 0.0,
                        "by_class_ms": self.by_class(name), "by_op_ms": self.by_op(name),
                        "by_layer_ms": self.by_layer(name), "utilisation": self.utilisation(name),
                        "hbm_gbps_per_device": self.hbm_gbps(name), "hbm_bytes": p.hbm_bytes,
                        "ddr_bytes": p.ddr_bytes, "link_bytes": p.link_bytes,
                        "sync_wait_ms": p.sync_wait / max(m.devices, 1) / self.clock_hz * 1e3,
                        "ring_ms": p.ring_cycles / self.clock_hz * 1e3}
        return {
            "model": m.model.to_obj(), "config": m.cfg.to_dict(), "board": m.board.name,
            "devices": m.devices, "overlap": m.program.manifest.overlap,
            "prefill_batch": self.prefill_batch,
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "total_cycles": self.total_cycles, "total_ms": self.total_ms,
            "prefill_ms_per_token": self.prefill_ms_per_token, "decode_ms_per_token": self.decode_ms_per_token,
            "tokens_per_s": self.tokens_per_s,
            "decode_hbm_bytes_per_token": self.decode_bytes_per_token,
            "roofline_ms_port": self.roofline_ms("port"), "roofline_ms_board": self.roofline_ms("board"),
            "roofline_pct_port": self.roofline_pct("port"), "roofline_pct_board": self.roofline_pct("board"),
            "utilisation": self.utilisation(), "hbm_gbps_per_device": self.hbm_gbps(),
            "phases": ph,
        }

    def format(self) -> str:
        m = self.m
        lines = [
            f"model: GPT-2 n_layer={m.model.n_layer} n_embd={m.model.n_embd} on {m.devices} x "
            f"{m.board.name}, config {m.cfg.name} (d={m.cfg.d}, l={m.cfg.l}, {m.cfg.clock_mhz:g} MHz), "
            f"overlap {m.program.manifest.overlap}",
            f"tokens: {self.input_tokens} in, {self.output_tokens} out",
            f"total: {self.total_ms:.2f} ms ({self.total_cycles} device cycles + "
            f"{sum(p.host_s for p in self.phases.values()) * 1e3:.3f} ms host)",
            f"prefill: {self.phases['prefill'].steps} steps"
            + (f" (matrix-matrix, up to {self.prefill_batch} tokens each)" if self.prefill_batch else "")
            + f", {self.ms('prefill'):.2f} ms ({self.prefill_ms_per_token:.3f} ms/token)",
            f"decode: {self.phases['decode'].steps} steps, {self.ms('decode'):.2f} ms "
            f"({self.decode_ms_per_token:.3f} ms/token, {self.tokens_per_s:.1f} tokens/s)",
            f"decode roofline: {self.decode_bytes_per_token / 1e6:.1f} MB/token on the busiest device -> "
            f"{self.roofline_ms('port'):.3f} ms at {min(self.port_peak, self.board_peak) / 1e9:.1f} GB/s "
            f"({self.roofline_pct('port'):.0f}% of roofline), {self.roofline_ms('board'):.3f} ms at "
            f"{self.board_peak / 1e9:.1f} GB/s ({self.roofline_pct('board'):.0f}%)",
            f"achieved HBM bandwidth: {self.hbm_gbps():.1f} GB/s per device",
            "unit utilisation: " + ", ".join(f"{k} {v * 100:.0f}%" for k, v in self.utilisation().items()),
            "exposed time by class (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in self.by_class().items() if v),
        ]
        return "\n".join(lines)


