"""A timeline of one token step as a Chrome / Perfetto trace (the JSON trace-event format: open it at
ui.perfetto.dev or chrome://tracing). `dfx perf ... --trace out.json` writes it.

- one process per device ("device k"), one thread (track) per unit: MPU, VPU, DMA, ROUTER, and CTRL for FENCEs;
- every instruction a complete ("X") slice from its start to the cycle its unit is free again (occupancy; the
  cycle its result is ready is `args.done_us`), named by its mnemonic, with its PC, disassembly and layer;
- every ALLGATHER a ring sync: flow arrows from each device's gather slice to the next device's in the ring.

Times are microseconds at the config's clock. The step is scheduled without the exact shortcuts (every device
and every layer simulated), so its cycles equal the model's (`PerfModel.step_cycles`).
"""
from __future__ import annotations

import json
from pathlib import Path

from dfx import isa
from dfx.errors import PerfError

from .model import PerfModel
from .schedule import simulate_step
from .trace import CLASS_OF, MNEMONICS

TRACKS = ("MPU", "VPU", "DMA", "ROUTER", "CTRL")
PHASES = ("X", "M", "s", "f")

# The subset of the trace-event format this module writes (Trace Event Format, "JSON Object Format").
SCHEMA = {
    "type": "object",
    "required": ["traceEvents"],
    "properties": {
        "traceEvents": {"type": "array", "items": {"$ref": "#/$defs/event"}},
        "displayTimeUnit": {"enum": ["ms", "ns"]},
        "otherData": {"type": "object"},
    },
    "$defs": {"event": {
        "type": "object",
        "required": ["name", "ph", "pid", "tid"],
        "properties": {
            "name": {"type": "string"}, "cat": {"type": "string"}, "ph": {"enum": list(PHASES)},
            "pid": {"type": "integer", "minimum": 0}, "tid": {"type": "integer", "minimum": 0},
            "ts": {"type": "number", "minimum": 0}, "dur": {"type": "number", "minimum": 0},
            "id": {"type": "integer"}, "bp": {"enum": ["e"]}, "args": {"type": "object"},
        },
        "allOf": [
            {"if": {"properties": {"ph": {"const": "X"}}}, "then": {"required": ["ts", "dur"]}},
            {"if": {"properties": {"ph": {"enum": ["s", "f"]}}}, "then": {"required": ["ts", "id", "cat"]}},
            {"if": {"properties": {"ph": {"const": "M"}}},
             "then": {"required": ["args"], "properties": {"name": {"enum": ["process_name", "thread_name",
                                                                          "process_sort_index",
                                                                          "thread_sort_index"]}}}},
        ],
    }},
}


def step_logs(model: PerfModel, stream: str = "decode", pos: int = 0) -> dict[int, list]:
    """Every device's instructions of one step: device -> [(entry, unit, op, start, release, end)]."""
    if stream not in model.streams:
        raise PerfError(f"--trace: stream {stream!r} is not a token-serial stream of the program "
                        f"({', '.join(model.streams)})")
    if not 0 <= pos < model.max_seq:
        raise PerfError(f"--trace: position {pos} is outside the program's context (max_seq {model.max_seq})")
    logs: dict[int, list] = {}
    simulate_step(model.streams[stream], pos + 1, model.program.manifest.ring, fast=False, logs=logs)
    return logs


def chrome_trace(model: PerfModel, stream: str = "decode", pos: int = 0) -> dict:
    """The trace-event JSON object of one run of `stream` at position `pos`."""
    logs = step_logs(model, stream, pos)
    mhz = model.cfg.clock_mhz
    ev = []
    for k in sorted(logs):
        ev.append({"name": "process_name", "ph": "M", "pid": k, "tid": 0, "args": {"name": f"device {k}"}})
        ev.append({"name": "process_sort_index", "ph": "M", "pid": k, "tid": 0, "args": {"sort_index": k}})
        for u, t in enumerate(TRACKS):
            ev.append({"name": "thread_name", "ph": "M", "pid": k, "tid": u, "args": {"name": t}})
            ev.append({"name": "thread_sort_index", "ph": "M", "pid": k, "tid": u, "args": {"sort_index": u}})
    gathers: dict[int, list[dict]] = {}
    end = 0
    for k in sorted(logs):
        tr = model.streams[stream][k]
        for entry, unit, op, start, rel, done in sorted(logs[k], key=lambda r: (r[3], r[0])):
            mn = MNEMONICS[op]
            pc = tr.pcs[entry]
            e = {"name": mn, "cat": CLASS_OF.get(mn, "control"), "ph": "X", "pid": k, "tid": unit,
                 "ts": start / mhz, "dur": (rel - start) / mhz,
                 "args": {"pc": pc, "asm": isa.disassemble(tr.src[pc]), "layer": tr.bin_names[tr.bins[entry]],
                          "done_us": done / mhz}}
            ev.append(e)
            end = max(end, done)
            if mn == "ALLGATHER":
                gathers.setdefault(k, []).append(e)
    order = list(model.program.manifest.ring or range(len(logs)))
    n_sync = min((len(v) for v in gathers.values()), default=0) if len(gathers) == len(logs) > 1 else 0
    fid = 0
    for i in range(n_sync):
        for j, k in enumerate(order):
            a, b = gathers[k][i], gathers[order[(j + 1) % len(order)]][i]
            fid += 1
            ev.append({"name": "ring sync", "cat": "ring", "ph": "s", "id": fid, "pid": a["pid"], "tid": a["tid"],
                       "ts": a["ts"]})
            ev.append({"name": "ring sync", "cat": "ring", "ph": "f", "bp": "e", "id": fid, "pid": b["pid"],
                       "tid": b["tid"], "ts": b["ts"]})
    m = model.model
    other = {"stream": stream, "pos": pos, "devices": model.devices, "clock_mhz": mhz, "cycles": end,
             "config": model.cfg.name, "model": f"GPT-2 n_layer={m.n_layer} n_embd={m.n_embd}",
             "ring_syncs": n_sync}
    return {"traceEvents": ev, "displayTimeUnit": "ns", "otherData": other}


def write_trace(model: PerfModel, path: str | Path, stream: str = "decode", pos: int = 0) -> dict:
    """Write `chrome_trace` to `path`; returns it."""
    t = chrome_trace(model, stream, pos)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(t, separators=(",", ":")))
    return t
