"""Static validation against the ISA (docs/design.md, contract 2): what every executor checks once, when it loads
a stream, before any instruction runs. The tables and the run-time rules are `dfx.isa`'s; this module holds the
rules that do not depend on the run (POS, COUNT, memory contents), so no instruction word that decodes can make an
executor divide by zero, slice an empty tile grid or fall off the end of its stream.

- `check_instr(ins, cfg, devices)`: one instruction. A length field (k, n) of 0 that is not dynamic, BATCH m=0
  without dyn_m, an ALLGATHER granule of 0 or a device count that is not the ring's, an on-chip operand outside
  VBUF or a scalar register the core lacks (`isa.check_operands` on the static lengths), a DMA index register
  that does not exist, a K/V cache store to DDR, a token table that is not 4-byte aligned or holds no token, a
  weight format code on a matrix instruction that cannot dequantise.
- `check_stream(instrs, cfg, devices)`: every instruction, then the stream's structure: it has a HALT (a run
  never falls off its end), a BATCH is followed by an instruction it may prefix (`isa.check_batch`), a SLOT's
  skip lands at or before the last HALT.
- `run_budget(instrs)`: the most instruction executions one run of a stream can take, counting a BATCH-fused
  instruction m times: the watchdog's bound (the ISA has no backward jump, so a legal run never exceeds it).

Each raises `RuleError` with one line; `check_stream` names the pc and the instruction. The simulator
(`dfx.sim.functional`) validates every instruction when it predecodes a stream and stops with that error when
the instruction is reached (as the core flags STATUS at decode); the host refuses a program whose streams fail
`check_stream` before it loads it on any backend; the performance model (`dfx.perf`) refuses the stream.
`cfg` is an `AccelConfig` (d, vbuf_entries, sregs, devices).
"""
from __future__ import annotations

from . import isa
from .errors import RuleError


def _ring(ins: isa.Instr, cfg, devices: int | None) -> None:
    n = ins.devices
    if devices is not None:
        if n != devices:
            raise RuleError(f"ALLGATHER over {n} devices, but the program has {devices}")
    elif not 1 <= n <= cfg.devices:
        raise RuleError(f"ALLGATHER devices={n}: accepted 1..{cfg.devices} (the ring this core is built for)")
    if not ins.gran:
        raise RuleError("ALLGATHER gran=0: the split granule must be >= 1 VBUF entry")


def check_instr(ins: isa.Instr, cfg, devices: int | None = None) -> None:
    """RuleError naming the first rule `ins` breaks whatever the run, for a core of config `cfg` in a ring of
    `devices` (None: any ring the config allows)."""
    op, f = ins.op, ins.fields()
    for spec in op.operands:                                  # zero lengths (a dynamic one is POS + 1 >= 1)
        if spec.length is None or (spec.when is not None and not f[spec.when]):
            continue
        if not f[spec.length] and not (spec.dyn is not None and f[spec.dyn]):
            dyn = f" (or +{spec.dyn}: POS + 1)" if spec.dyn else ""
            raise RuleError(f"{spec.length}=0: a length must be >= 1{dyn}")
    isa.check_operands(isa.operand_ranges(op, f, cfg.d), cfg.vbuf_entries, cfg.sregs)
    mn = op.mnemonic
    if op.fmt is isa.MATRIX and f["wfmt"]:
        if mn != "LINEAR":
            raise RuleError(f"wfmt={f['wfmt']}: quantized weights are for LINEAR only; {mn} reads FP16 (wfmt=0)")
        if f["dyn_k"] or f["dyn_n"] or f["rowmajor"]:
            raise RuleError("quantized weights (wfmt != 0) are static matrices: dyn_k, dyn_n and rowmajor need FP16")
    elif op.fmt is isa.DMA:
        if f["index"] not in isa.INDEX_REGS:
            raise RuleError(f"index={f['index']}: no such row index register; accepted: "
                            + ", ".join(f"{k} {r or 'none'}" for k, r in isa.INDEX_REGS.items()))
        if mn in ("STORE_K", "STORE_VT") and not f["hbm"]:
            raise RuleError(f"{mn} appends to a K/V cache in HBM: +hbm is required")
    elif mn == "ALLGATHER":
        _ring(ins, cfg, devices)
    elif mn == "BATCH":
        if not f["m"] and not f["dyn_m"]:
            raise RuleError("BATCH m=0: m must be >= 1 (or +dyn_m: m = COUNT)")
    elif mn == "CHUNK":
        if f["addr"] % 4:
            raise RuleError(f"the token table at DDR byte {f['addr']} is not 4-byte aligned")
        if not f["cap"]:
            raise RuleError("CHUNK cap=0: the token table must hold >= 1 token")


def check_stream(instrs: list[isa.Instr], cfg, devices: int | None = None) -> None:
    """RuleError ("pc N `text`: why") for the first instruction of the stream that breaks a rule (`check_instr`,
    a BATCH pair, a SLOT's skip), or for a stream a run would fall off without HALT."""
    halts = [pc for pc, ins in enumerate(instrs) if ins.op.mnemonic == "HALT"]
    last = halts[-1] if halts else None
    seen = set()                      # instructions already checked (a stream repeats many)
    for pc, ins in enumerate(instrs):
        try:
            if ins not in seen:
                check_instr(ins, cfg, devices)
                seen.add(ins)
            mn = ins.op.mnemonic
            if mn == "BATCH":
                isa.check_batch(ins, instrs[pc + 1] if pc + 1 < len(instrs) else None, 1)
            elif mn == "SLOT" and last is not None and pc < last and pc + ins.skip >= last:
                raise RuleError(f"skip={ins.skip} jumps over the HALT at pc {last}: the run would fall off the end "
                                "of the stream")
        except RuleError as e:
            raise RuleError(f"pc {pc} `{isa.disassemble(ins)}`: {e}") from None
    if last is None:
        raise RuleError(f"the stream of {len(instrs)} instructions has no HALT: a run would fall off its end")


def run_budget(instrs: list[isa.Instr]) -> int:
    """The most instruction executions one run of `instrs` can take: one per instruction, m for one a BATCH
    prefixes (COUNT <= the largest CHUNK cap for +dyn_m)."""
    cap = max((ins.cap for ins in instrs if ins.op.mnemonic == "CHUNK"), default=1)
    return len(instrs) + sum(max(cap if ins.dyn_m else ins.m, 1) - 1
                             for ins in instrs if ins.op.mnemonic == "BATCH")
