"""Choose the ring overlap per layer role with the performance model (`--overlap auto` of `dfx compile` and
`dfx perf`, both through `compile_tuned`).

Cutting a gathered linear output into S segments lets the ring move segment s while the MPU computes s+1, but
every segment adds an ALLGATHER (hops, a sync point) and shortens each MPU run (pipeline latency, in-order
accumulation). Whether that pays depends on the layer's shape, the device count, the weight format and the
board, so no fixed S is best everywhere (docs/perf.md). This module asks the model: it compiles a shapes-only
one-layer copy of the network (every decoder layer is the same, so one layer decides for all) for candidate
segment counts, one role at a time (coordinate descent from DFX's blocking sync), and keeps a count only if it
makes the step strictly faster. Blocking (S = 1 everywhere) is the starting point, so the choice is never
slower than blocking on the steps it is measured on: decode at a short, a middle and a long context.
"""
from __future__ import annotations

from dfx.compiler.compile import compile_model, prepare_weights
from dfx.compiler.capture import capture
from dfx.compiler.partition import ROLES
from dfx.config import AccelConfig, load_config
from dfx.program import Program

from .board import Board, load_board
from .model import PerfModel

CANDIDATES = (1, 2, 3, 4, 8)


def _one_layer(hparams: dict) -> dict:
    keys = ("vocab_size", "n_positions", "n_embd", "n_head", "layer_norm_epsilon")
    return {**{k: hparams[k] for k in keys}, "n_layer": 1}


def step_cost(program: Program, board: str | Board, positions, engines: str = "rtl") -> int:
    """Decode cycles summed over `positions` (the slowest device of each step)."""
    m = PerfModel(program, board, engines=engines)
    return sum(m.step_cycles("decode", p) for p in positions)


def tune_overlap(hparams: dict, config: str | AccelConfig, devices: int, weights: str = "fp16",
                 board: str | Board = "u280", max_seq: int | None = None, candidates=CANDIDATES,
                 engines: str = "rtl") -> dict[str, int]:
    """{role: segments} for the gathered linears (`compiler.partition.ROLES`); 1 = blocking.

    hparams: the GPT-2 hyper-parameters (a compiled graph's `model` dict will do); weights: the weight format
    the layers stream. Single-device programs have nothing to gather: every role is 1."""
    choice = {r: 1 for r in ROLES}
    if devices == 1:
        return choice
    cfg = load_config(config)
    board = load_board(board)
    shape = _one_layer(hparams)
    ctx = min(max_seq or shape["n_positions"], shape["n_positions"])
    positions = sorted({0, ctx // 2, ctx - 1})

    def cost(ch):
        prog = compile_model(shape, cfg, devices=devices, weights=weights, max_seq=max_seq, overlap=dict(ch),
                             check=False)
        return step_cost(prog, board, positions, engines)

    best = cost(choice)
    for role in ROLES:
        for s in candidates:
            if s == choice[role]:
                continue
            c = cost({**choice, role: s})
            if c < best:
                best, choice = c, {**choice, role: s}
    return choice


def dominant_format(weights) -> str:
    """The weight format overlap tuning assumes: a format name as given, or for a {param: QuantWeight} dict
    (a model-level quantizer's) the format holding the most weights."""
    if weights is None or isinstance(weights, str):
        return weights or "fp16"
    if not isinstance(weights, dict):
        return weights.name                                    # a dfx.formats.WeightFormat
    count: dict[str, int] = {}
    for q in weights.values():
        count[q.fmt.name] = count.get(q.fmt.name, 0) + int(q.codes.shape[-1] * q.codes.shape[-2])
    return max(count, key=count.get) if count else "fp16"


def compile_tuned(model, config: str | AccelConfig | None = "tiny", devices: int = 1, weights="fp16",
                  max_seq: int | None = None, overlap: int | dict | str = 1, check: bool = True,
                  method: str | None = None, calib=None, prefill_batch: int | None = None,
                  board: str | Board = "u280", engines: str = "rtl") -> Program:
    """`compiler.compile_model` with overlap "auto" resolved first: the model-level quantizer (if `method` asks
    for one) runs once, then `tune_overlap` picks S per layer role for that weight format on `board`, then the
    program is compiled with that choice (tuned for the timing `engines`). Any other overlap goes to compile_model as given. The one
    orchestration behind `dfx compile --overlap auto` and `dfx perf --overlap auto`."""
    if overlap == "auto":
        cfg = load_config(config)
        weights = prepare_weights(model, weights, method, calib)
        overlap = tune_overlap(capture(model)[0].model, cfg, devices, dominant_format(weights), board=board,
                               max_seq=max_seq, engines=engines)
        config = cfg
    return compile_model(model, config, devices=devices, weights=weights, max_seq=max_seq, overlap=overlap,
                         check=check, method=method, calib=calib, prefill_batch=prefill_batch)
