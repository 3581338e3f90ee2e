"""Choose the ring overlap per layer role with the performance model (`dfx compile --overlap auto`).

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

from dfx.config import AccelConfig, load_config

CANDIDATES = (1, 2, 3, 4, 8)


def _one_layer(hparams: dict) -> dict:
    keys = ("vocab_size", "n_positions", "n_embd", "n_head", "layer_norm_epsilon")
    return {**{k: hparams[k] for k in keys}, "n_layer": 1}


def step_cost(program, board, positions) -> int:
    """Decode cycles summed over `positions` (the slowest device of each step)."""
    from dfx.sim.perf import PerfModel
    m = PerfModel(program, board)
    return sum(m.step_cycles("decode", p) for p in positions)


def tune_overlap(hparams: dict, config: str | AccelConfig, devices: int, weights="fp16", board="u280",
                 max_seq: int | None = None, candidates=CANDIDATES) -> dict[str, int]:
    """{role: segments} for the gathered linears (`compiler.partition.ROLES`); 1 = blocking.

    hparams: the GPT-2 hyper-parameters (a compiled graph's `model` dict will do). Single-device programs have
    nothing to gather: every role is 1."""
    from dfx.compiler.compile import compile_model
    from dfx.compiler.partition import ROLES
    from dfx.sim.perf_board import load_board
    choice = {r: 1 for r in ROLES}
    if devices == 1:
        return choice
    cfg = load_config(config)
    board = load_board(board) if isinstance(board, str) else board
    shape = _one_layer(hparams)
    ctx = min(max_seq or shape["n_positions"], shape["n_positions"])
    positions = sorted({0, ctx // 2, ctx - 1})

    def cost(ch):
        prog = compile_model(shape, cfg, devices=devices, weights=weights, max_seq=max_seq, overlap=dict(ch),
                             check=False)
        return step_cost(prog, board, positions)

    best = cost(choice)
    for role in ROLES:
        for s in candidates:
            if s == choice[role]:
                continue
            c = cost({**choice, role: s})
            if c < best:
                best, choice = c, {**choice, role: s}
    return choice
