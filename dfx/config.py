"""The hardware configuration: one frozen dataclass passed explicitly everywhere (docs/design.md, contract 1).

Primary parameters are fields; derived sizes are properties. `AccelConfig.__post_init__` rejects a field of the
wrong type or an inconsistent value with a `ConfigError` naming the field and what it accepts. `config_hash` is stamped into programs and into the RTL's ID
register, so a program built for one configuration is refused by another.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from . import isa
from .errors import ConfigError
from .formats import FAMILIES

# dequantiser families a core can be built with (`dfx.formats.FAMILIES`: one per MATRIX wfmt code, bcq for 1-4
# planes); a weight format compiles for a config when its family is listed (`WeightFormat.family`)
WEIGHT_FORMATS = FAMILIES


# The RTL core's pipeline profile, one knob for every unit and the top (docs/rtl.md, "The core's pipeline
# profile"): "default", the units at their default depths, no reset pipeline or SLR slices: what the simulation
# backends run (fewest cycles, the same results bit for bit); "deep", every unit at its 300 MHz depths (hw.mpu,
# hw.vpu and hw.dequant STAGES_300MHZ), the pipelined reset and the HBM ports' SLR register slices
# (hw.pipe.DEEP_TOP): what `dfx build` writes for a board. $DFX_RTL_PIPELINE picks it for one process and the
# processes it starts.
PIPELINE_ENV = "DFX_RTL_PIPELINE"
PIPELINES = ("default", "deep")


def pipeline_profile() -> str:
    """The RTL core's pipeline profile: $DFX_RTL_PIPELINE, else "default"; a ConfigError (one line) for any
    other value."""
    p = os.environ.get(PIPELINE_ENV) or "default"
    if p not in PIPELINES:
        raise ConfigError(f"{PIPELINE_ENV}={p!r}: the pipeline profile must be one of {', '.join(PIPELINES)}")
    return p


def _pow2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0


DIM_MAX = 1024                       # the largest d and l a config may ask for

@dataclass(frozen=True)
class AccelConfig:
    name: str = "custom"
    d: int = 64                      # MPU vector width: elements per lane per cycle (adder-tree inputs)
    l: int = 16                      # MPU lanes: output columns per cycle
    vpu_width: int = 64              # VPU elements per cycle
    vbuf_entries: int = 1024         # on-chip vector buffer, in entries of d fp16 elements
    sregs: int = 16                  # fp32 scalar registers
    hbm_channels: int = 32           # HBM pseudo-channels, each an AXI port
    hbm_width: int = 512             # bits per HBM port beat (as the core sees it)
    hbm_channel_mb: int = 256        # capacity per pseudo-channel
    ddr_mb: int = 16384              # DDR capacity used for tables and I/O
    clock_mhz: float = 200.0
    devices: int = 1                 # devices in the ring this core is built for (max)
    weight_formats: tuple[str, ...] = ("fp16",)   # dequantiser families (dfx.formats.FAMILIES)
    # quantized int3/int4 weights go to the MPU as codes, each lane's tree sum scaled by its tile's group scale:
    # docs/numerics.md, "Tile-scaled weights" (dfx.tilescale)
    tile_scale: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str):
            raise ConfigError(f"AccelConfig.name must be a string, not {self.name!r}")
        ints = ("d", "l", "vpu_width", "vbuf_entries", "sregs", "hbm_channels", "hbm_width",
                "hbm_channel_mb", "ddr_mb", "devices")
        for f in ints:
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"AccelConfig.{f} must be a positive integer, not {v!r}")
        for f in ("d", "l", "vpu_width", "hbm_channels"):
            if not _pow2(getattr(self, f)):
                raise ConfigError(f"AccelConfig.{f} must be a power of two, not {getattr(self, f)}")
        for f in ("d", "l"):
            if getattr(self, f) > DIM_MAX:
                raise ConfigError(f"AccelConfig.{f} must be <= {DIM_MAX} (the MPU's tile, the simulator's VBUF of "
                                  f"vbuf_entries x d elements), not {getattr(self, f)}")
        if self.hbm_width % 64 or not _pow2(self.hbm_width):
            raise ConfigError(f"AccelConfig.hbm_width must be a power of two multiple of 64 bits, not {self.hbm_width}")
        if self.vpu_width > self.d:
            raise ConfigError(f"AccelConfig.vpu_width must be <= d ({self.d}), not {self.vpu_width}")
        if (self.tile_bytes % self.beat_bytes) and (self.beat_bytes % self.tile_bytes):
            raise ConfigError(
                f"AccelConfig.l: a d x l FP16 tile ({self.tile_bytes} B) and an HBM beat across all channels "
                f"({self.beat_bytes} B) must divide one another")
        if self.tile_bytes % 64:
            raise ConfigError(f"AccelConfig.l: a d x l FP16 tile must be a multiple of 64 bytes (d*l >= 32), "
                              f"not {self.tile_bytes} B")
        if self.vbuf_entries > isa.VBUF_ENTRIES_MAX:
            raise ConfigError(f"AccelConfig.vbuf_entries must be <= {isa.VBUF_ENTRIES_MAX} ({isa.VADDR_BITS}-bit "
                              f"addresses), not {self.vbuf_entries}")
        if self.sregs > isa.SREG_COUNT:
            raise ConfigError(f"AccelConfig.sregs must be <= {isa.SREG_COUNT} ({isa.SREG_BITS}-bit register fields), "
                              f"not {self.sregs}")
        if isinstance(self.clock_mhz, bool) or not isinstance(self.clock_mhz, (int, float)):
            raise ConfigError(f"AccelConfig.clock_mhz must be a number (MHz) in (0, 1000], not {self.clock_mhz!r}")
        if not (0 < self.clock_mhz <= 1000):
            raise ConfigError(f"AccelConfig.clock_mhz must be in (0, 1000], not {self.clock_mhz!r}")
        if not isinstance(self.weight_formats, tuple) or not self.weight_formats:
            raise ConfigError("AccelConfig.weight_formats must be a non-empty tuple")
        for w in self.weight_formats:
            if not isinstance(w, str):
                raise ConfigError(f"AccelConfig.weight_formats holds names of dequantiser families (strings), not "
                                  f"{w!r}; accepted: {', '.join(WEIGHT_FORMATS)}")
            if w not in WEIGHT_FORMATS:
                raise ConfigError(f"AccelConfig.weight_formats: {w!r} is not one of {', '.join(WEIGHT_FORMATS)} "
                                  "(dequantiser families; formats such as int4-oc-g128 need their family, int4)")
        if "fp16" not in self.weight_formats:
            raise ConfigError("AccelConfig.weight_formats must include fp16 (the KV cache and LM head are FP16)")
        if not isinstance(self.tile_scale, bool):
            raise ConfigError(f"AccelConfig.tile_scale must be a bool (true: int3/int4 codes scaled per row tile; "
                              f"false: dequantised weights), not {self.tile_scale!r}")
        if self.devices > isa.MAX_DEVICES:
            raise ConfigError(f"AccelConfig.devices must be <= {isa.MAX_DEVICES} (the largest ring an ALLGATHER "
                              f"names), not {self.devices}")

    # ---- derived sizes
    @property
    def tile_elems(self) -> int:
        """Weights the MPU consumes per cycle: one d x l tile."""
        return self.d * self.l

    @property
    def tile_bytes(self) -> int:
        return self.tile_elems * 2

    @property
    def beat_bytes(self) -> int:
        """Bytes read per cycle when every HBM channel delivers one beat."""
        return self.hbm_channels * self.hbm_width // 8

    @property
    def channel_beat_bytes(self) -> int:
        return self.hbm_width // 8

    @property
    def hbm_bytes(self) -> int:
        return self.hbm_channels * self.hbm_channel_mb << 20

    @property
    def ddr_bytes(self) -> int:
        return self.ddr_mb << 20

    @property
    def vbuf_elems(self) -> int:
        return self.vbuf_entries * self.d

    @property
    def hbm_peak_gbps(self) -> float:
        return self.beat_bytes * self.clock_mhz * 1e6 / 1e9

    # ---- identity
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["weight_formats"] = list(self.weight_formats)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "AccelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown AccelConfig field(s) {', '.join(unknown)}; accepted: {', '.join(sorted(names))}")
        data = dict(data)
        if "weight_formats" in data:
            wf = data["weight_formats"]
            if not isinstance(wf, (list, tuple)):
                raise ConfigError(f"AccelConfig.weight_formats must be a list of dequantiser families, not {wf!r}; "
                                  f"accepted: {', '.join(WEIGHT_FORMATS)}")
            data["weight_formats"] = tuple(wf)
        return cls(**data)

    @property
    def config_hash(self) -> str:
        """Stable 32-bit hash (8 hex digits) of every field but the name. `tile_scale` counts only when set, so
        every config without it keeps the hash it had before the field existed (programs and builds stay valid)."""
        body = {k: v for k, v in self.to_dict().items() if k != "name" and (k != "tile_scale" or v)}
        blob = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:8]

    def replace(self, **changes) -> "AccelConfig":
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, AccelConfig] = {
    # Small enough for RTL simulation: 8-wide trees, 4 lanes, 4 HBM channels of 128 bit.
    "tiny": AccelConfig(name="tiny", d=8, l=4, vpu_width=8, vbuf_entries=4096, hbm_channels=4, hbm_width=128,
                        hbm_channel_mb=64, ddr_mb=256, clock_mhz=200.0, devices=8, weight_formats=FAMILIES),
    # DFX (MICRO'22): d=64, l=16, 32 HBM pseudo-channels x 512 bit, 200 MHz, FP16; with our dequantisers in
    # front of the MPU (every weight format; DFX itself stores FP16 only).
    "dfx": AccelConfig(name="dfx", d=64, l=16, vpu_width=64, vbuf_entries=2048, hbm_channels=32, hbm_width=512,
                       hbm_channel_mb=256, ddr_mb=16384, clock_mhz=200.0, devices=8, weight_formats=FAMILIES),
}


def load_config(spec: str | AccelConfig | None) -> AccelConfig:
    """A preset name (tiny, dfx), a JSON file of AccelConfig fields, or a config object."""
    if spec is None:
        return PRESETS["tiny"]
    if isinstance(spec, AccelConfig):
        return spec
    if spec in PRESETS:
        return PRESETS[spec]
    p = Path(spec)
    if not p.is_file():
        raise ConfigError(f"config {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a JSON file")
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"config file {spec} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {spec} must hold a JSON object of AccelConfig fields")
    return AccelConfig.from_dict(data)
