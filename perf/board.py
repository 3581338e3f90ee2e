"""Board descriptions as data (`boards/<name>/board.json`): load, validate, and derive the timing constants.

Every constant is an object ``{"value": ..., "unit": "...", "source": "..."}``; `load_board` refuses a file
whose constant lacks a value or a source, or whose value is out of range, with one line naming the field.
`Board.value(section, key)` reads a value; `Board.describe()` lists every constant with its source (the
docs and `dfx perf --constants` print it); `Board.unsourced()` names the constants whose source cites nothing
that can be looked up (`source_problem`).
"""
from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from dfx.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
BOARDS_DIR = REPO / "boards"

# Documents a board constant may cite by name (besides a file of this repository, a DOI, an arXiv id or a URL).
DOCUMENTS = {
    "DS963": "AMD, Alveo U280 Data Center Accelerator Card Data Sheet",
    "UG1393": "AMD, Vitis Unified Software Platform Documentation: Application Acceleration Development",
    "PG276": "AMD, AXI High Bandwidth Memory Controller LogiCORE IP Product Guide",
    "PG074": "AMD, Aurora 64B/66B LogiCORE IP Product Guide",
    "PG046": "AMD, Aurora 8B/10B LogiCORE IP Product Guide",
    "PG056": "AMD, CPRI LogiCORE IP Product Guide (delay through the GTYE4 transceiver)",
    "UG573": "AMD, UltraScale Architecture Memory Resources User Guide",
    "DFX": "Hong et al., DFX: A Low-latency Multi-FPGA Appliance for Accelerating Transformer-based Text "
           "Generation, MICRO 2022, arXiv:2209.10797",
    "Shuhai": "Wang et al., Shuhai: Benchmarking High Bandwidth Memory on FPGAs, FCCM 2020",
    "pcie-bench": "Neugebauer et al., Understanding PCIe performance for end host networking, SIGCOMM 2018",
    "xilinx_u280_gen3x16_xdma": "AMD, the Alveo U280 XDMA deployment platform (its platform metadata)",
    "QSFP28": "SFF-8665, QSFP+ 28 Gb/s 4X Pluggable Transceiver Solution",
    "DDR4": "JEDEC JESD79-4, DDR4 SDRAM standard",
    "JESD235": "JEDEC JESD235, High Bandwidth Memory (HBM) DRAM standard (HBM2 timings)",
    "PCIe Gen3": "PCI-SIG, PCI Express Base Specification 3.0",
}
# kinds of statement that need no citation: an assumption says so, a derivation computes from the others
UNCITED = ("assumption:", "derived:")
_DOC_ID = re.compile(r"\b(?:DS|UG|PG|XAPP|WP)\d{3,4}\b")
_PATH = re.compile(r"(?<![\w/.])((?:[\w-]+/)*[\w-]+\.(?:md|py|json|tcl|v|txt))\b")
_EXTERNAL = re.compile(r"https?://\S+|\b10\.\d{4,9}/\S+|\barXiv:\d{4}\.\d{4,5}\b")


def source_problem(source: str) -> str | None:
    """What is wrong with a constant's source, or None. A source either is an explicit assumption or a
    derivation ("assumption: ...", "derived: ..."), or cites at least one document that can be looked up: a
    file of this repository that exists, a URL, a DOI, an arXiv id, or a document of `DOCUMENTS` by its name;
    every document id (DS/UG/PG/XAPP/WP number) and every file it names must be one of those."""
    text = source.strip()
    cited = bool(_EXTERNAL.search(text))
    for doc in _DOC_ID.findall(text):
        if doc not in DOCUMENTS:
            return f"cites {doc}, which is not a known document ({', '.join(sorted(DOCUMENTS))})"
        cited = True
    for path in _PATH.findall(_EXTERNAL.sub("", text)):
        if not (REPO / path).is_file():
            return f"cites {path}, which is not a file of this repository"
        cited = True
    cited = cited or any(re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) for name in DOCUMENTS)
    for prefix in UNCITED:
        if text.lower().startswith(prefix):
            return None if text[len(prefix):].strip() else f"{prefix!r} with no text"
    return None if cited else ("cites no document: name a file of this repository, a URL, DOI or arXiv id, a "
                               f"document of dfx.perf.board.DOCUMENTS, or start with {' or '.join(UNCITED)}")

# section -> key -> kind: "pos" (number > 0), "nonneg" (number >= 0), "frac" (0 < x <= 1), "int" (integer > 0),
# "count" (integer >= 0), "str". (A memory model without refresh or converters, as calibrate's, sets those to 0.)
SCHEMA: dict[str, dict[str, str]] = {
    "": {"platform": "str", "part": "str", "kernel_clock_mhz": "pos"},
    "resources": {"LUT": "int", "FF": "int", "BRAM36": "int", "URAM": "int", "DSP": "int", "GTY": "int",
                  "CMAC": "int", "usable_fraction": "frac", "dsp_per_fp16_mul": "int", "dsp_per_fp_add": "int"},
    "hbm": {"capacity_gb": "pos", "pseudo_channels": "int", "channel_mb": "int", "channel_peak_gbps": "pos",
            "axi_port_bits": "int", "axi_clock_mhz": "pos", "page_bytes": "int", "banks": "int",
            "efficiency": "frac", "read_latency_ns": "pos", "page_closed_latency_ns": "pos",
            "page_miss_latency_ns": "pos", "refresh_interval_ns": "pos", "refresh_cycle_ns": "nonneg",
            "row_cycle_ns": "pos", "converter_cycles": "count", "write_latency_ns": "pos"},
    "ddr": {"channels": "int", "channel_peak_gbps": "pos", "efficiency": "frac", "axi_port_bits": "int",
            "read_latency_ns": "pos"},
    "link": {"qsfp_ports": "int", "lanes": "int", "lane_rate_gbps": "pos", "encoding_efficiency": "frac",
             "framing_efficiency": "frac", "gt_latency_ui": "pos", "aurora_pe_cycles": "pos", "user_clk_mhz": "pos",
             "cable_m": "pos", "propagation_ns_per_m": "pos", "router_cycles": "pos"},
    "pcie": {"gen": "int", "lanes": "int", "lane_rate_gts": "pos", "encoding_efficiency": "frac",
             "protocol_efficiency": "frac", "mmio_write_ns": "pos", "mmio_read_ns": "pos", "dma_setup_us": "pos",
             "host_sample_us": "pos"},
    "core": {"fp16_mul_cycles": "int", "fp_add_cycles": "int", "fp32_mul_cycles": "int", "fp_round_cycles": "int",
             "fp_cmp_cycles": "int", "rom_cycles": "int", "vbuf_cycles": "int", "queue_depth": "int"},
}


@dataclass(frozen=True)
class Board:
    name: str
    path: str
    data: dict

    def value(self, section: str, key: str):
        node = self.data if not section else self.data[section]
        return node[key]["value"]

    def source(self, section: str, key: str) -> str:
        node = self.data if not section else self.data[section]
        return node[key]["source"]

    def unsourced(self) -> list[str]:
        """One line per constant whose source cites nothing that can be looked up (`source_problem`)."""
        out = []
        for name, _, _, src in self.describe():
            why = source_problem(src)
            if why:
                out.append(f"{name}: {why} (source: {src!r})")
        return out

    def describe(self) -> list[tuple[str, object, str, str]]:
        """(section.key, value, unit, source) for every constant, in file order."""
        out = []
        for section, keys in SCHEMA.items():
            for key in keys:
                node = self.data if not section else self.data[section]
                c = node[key]
                out.append((f"{section}.{key}" if section else key, c["value"], c.get("unit", ""), c["source"]))
        return out

    # ---- derived link / host figures (the model converts them to cycles with the core clock)
    @property
    def link_gbytes_per_s(self) -> float:
        """Payload bandwidth of one ring link, GB/s."""
        v = self.value
        return (v("link", "lanes") * v("link", "lane_rate_gbps") * v("link", "encoding_efficiency")
                * v("link", "framing_efficiency") / 8)

    @property
    def hop_latency_ns(self) -> float:
        """One hop of the ring, first byte in to first byte out: transceivers, Aurora, cable, router."""
        v = self.value
        ui_ns = 1.0 / v("link", "lane_rate_gbps")
        return (v("link", "gt_latency_ui") * ui_ns + v("link", "aurora_pe_cycles") * 1e3 / v("link", "user_clk_mhz")
                + v("link", "cable_m") * v("link", "propagation_ns_per_m"))

    @property
    def hbm_peak_gbytes_per_s(self) -> float:
        return self.value("hbm", "pseudo_channels") * self.value("hbm", "channel_peak_gbps")

    @property
    def hbm_capacity_bytes(self) -> int:
        return int(self.value("hbm", "capacity_gb") * (1 << 30))

    @property
    def pcie_gbytes_per_s(self) -> float:
        v = self.value
        return (v("pcie", "lanes") * v("pcie", "lane_rate_gts") * v("pcie", "encoding_efficiency")
                * v("pcie", "protocol_efficiency") / 8)


def _check(data: dict, where: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a JSON object with the sections {', '.join(s for s in SCHEMA if s)}")
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise ConfigError(f"{where}: 'name' must be a non-empty string")
    for section, keys in SCHEMA.items():
        node = data
        if section:
            node = data.get(section)
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: section '{section}' is missing (needed: {', '.join(keys)})")
        for key, kind in keys.items():
            name = f"{section}.{key}" if section else key
            c = node.get(key)
            if not isinstance(c, dict) or "value" not in c:
                raise ConfigError(f"{where}: {name} is missing; write it as {{\"value\": ..., \"unit\": ..., "
                                  f"\"source\": ...}}")
            src = c.get("source")
            if not isinstance(src, str) or not src.strip():
                raise ConfigError(f"{where}: {name} has no source; every constant names where it comes from "
                                  "(a document, a measurement, or 'assumption: ...')")
            v = c["value"]
            if kind == "str":
                if not isinstance(v, str) or not v:
                    raise ConfigError(f"{where}: {name} must be a non-empty string, not {v!r}")
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"{where}: {name} must be a number, not {v!r}")
            if kind == "int" and (v != int(v) or v < 1):
                raise ConfigError(f"{where}: {name} must be a positive integer, not {v!r}")
            if kind == "pos" and v <= 0:
                raise ConfigError(f"{where}: {name} must be > 0, not {v!r}")
            if kind == "nonneg" and v < 0:
                raise ConfigError(f"{where}: {name} must be >= 0, not {v!r}")
            if kind == "count" and (v != int(v) or v < 0):
                raise ConfigError(f"{where}: {name} must be an integer >= 0, not {v!r}")
            if kind == "frac" and not 0 < v <= 1:
                raise ConfigError(f"{where}: {name} must be in (0, 1], not {v!r}")


def available_boards() -> list[str]:
    return sorted(p.parent.name for p in BOARDS_DIR.glob("*/board.json"))


def parse_override(text: str) -> tuple[str, float]:
    """`section.key=value` (command line `--set`) -> (section.key, value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: write section.key=value, e.g. core.fp_add_cycles=2")
    k, v = text.split("=", 1)
    try:
        return k.strip(), float(v) if not v.strip().lstrip("-").isdigit() else int(v)
    except ValueError:
        raise ConfigError(f"--set {text!r}: {v!r} is not a number") from None


def with_overrides(board: Board, overrides: dict | None, why: str = "override") -> Board:
    """A copy of `board` with some constants replaced ({"core.fp_add_cycles": 2, ...}); each replaced
    constant's source says so. Validated like a file."""
    if not overrides:
        return board
    data = copy.deepcopy(board.data)
    for name, value in overrides.items():
        section, _, key = name.rpartition(".")
        node = data.get(section) if section else data
        if section not in SCHEMA or key not in SCHEMA[section] or not isinstance(node, dict):
            known = ", ".join(f"{s}.{k}" if s else k for s, ks in SCHEMA.items() for k in ks)
            raise ConfigError(f"board constant {name!r} does not exist; known: {known}")
        old = node[key]
        node[key] = {"value": value, "unit": old.get("unit", ""),
                     "source": f"{why}: {value} instead of {old['value']} ({old['source']})"}
    _check(data, f"board {board.name} with overrides")
    return Board(board.name, board.path, data)


def load_board(spec: str | Path | Board | None = None, overrides: dict | None = None) -> Board:
    """A board by name (`u280`), a board.json path, or a directory holding one; `overrides` replaces constants
    (`with_overrides`)."""
    if isinstance(spec, Board):
        return with_overrides(spec, overrides)
    spec = "u280" if spec is None else spec
    p = Path(spec)
    if (BOARDS_DIR / str(spec) / "board.json").is_file() and not p.exists():
        p = BOARDS_DIR / str(spec) / "board.json"
    elif p.is_dir():
        p = p / "board.json"
    if not p.is_file():
        raise ConfigError(f"board {str(spec)!r} is neither a known board ({', '.join(available_boards())}) nor a "
                          "board.json file")
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"board file {p} is not valid JSON: {e}") from None
    _check(data, f"board file {p}")
    return with_overrides(Board(data["name"], str(p), data), overrides)
