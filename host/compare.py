"""Two rungs of the reference ladder side by side, token by token (`dfx compare`).

The reference rung (`golden`: the float32 PyTorch model; `sim`: the bit-exact functional simulator) decodes
greedily; the tested rung (`sim`, `rtl` or `pynq`) is fed the same tokens (teacher forcing), so both give
logits for the same context at every step and a difference cannot snowball. Per step: both argmax tokens, the
reference's top-2 margin and the largest logit difference.

The verdict uses the datapath's documented error bound (docs/numerics.md, "Network-level accuracy"): against
the float32 model every logit may differ by up to `LOGIT_TOLERANCE` of the reference logits' range (max - min),
so two candidates closer than twice that may swap: a divergence there is a **near-tie**. Against the
simulator the bound is 0: the RTL and the boards compute the same bits, so any difference is a **mismatch**.
A mismatch is also any logit difference beyond the bound, even where the tokens agree.

On a mismatch `Comparison.instruction` names the first instruction whose result differs:
- rtl: `dfx.verify.rtl_core.bisect` (the RTL's write trace against the simulator, instruction by instruction);
- sim against golden for a program: the program and one compiled afresh from the model with the program's
  options, executed in lockstep on the simulator (finds a corrupted weight or instruction).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from dfx import isa, progress
from dfx.compiler import compile_model
from dfx.errors import UsageError
from dfx.program import Program
from dfx.sim.functional import Device
from dfx.verify.rtl_core import RtlCore
from dfx.verify.rtl_core import bisect as rtl_bisect

from .session import Session

LOGIT_TOLERANCE = 0.005      # docs/numerics.md: max |sim - float32| <= 0.5% of the float32 logits' range
REFERENCES = ("golden", "sim")
TESTED = ("sim", "rtl", "pynq")


@dataclass
class Step:
    ref_token: int
    got_token: int
    margin: float            # reference top-1 minus top-2 logit
    max_diff: float          # max |tested - reference| over the vocabulary
    bound: float             # the per-logit error bound at this step (0 against the simulator)

    @property
    def diverges(self) -> bool:
        return self.ref_token != self.got_token

    @property
    def tie(self) -> bool:
        return self.diverges and self.margin <= 2 * self.bound

    @property
    def mismatch(self) -> bool:
        return self.max_diff > self.bound or (self.diverges and not self.tie)


@dataclass
class Comparison:
    tested: str
    reference: str
    prompt: list[int]
    steps: list[Step] = field(default_factory=list)
    instruction: str | None = None        # the bisection's line on a mismatch (None: agree, tie or unavailable)
    bisect_note: str | None = None        # why there is no bisection line

    @property
    def first_divergence(self) -> int | None:
        return next((i for i, s in enumerate(self.steps) if s.diverges), None)

    @property
    def largest(self) -> int:
        return int(np.argmax([s.max_diff for s in self.steps])) if self.steps else 0

    @property
    def first_mismatch(self) -> int | None:
        return next((i for i, s in enumerate(self.steps) if s.mismatch), None)

    @property
    def verdict(self) -> str:
        """`mismatch` (a real one: exit non-zero), `near-tie` (tokens differ within the bound) or `agree`."""
        if self.first_mismatch is not None:
            return "mismatch"
        return "near-tie" if self.first_divergence is not None else "agree"


# ------------------------------------------------------------------------------------------------ rungs
def golden_rung(net) -> Callable:
    """The float32 model as a rung: feed(tokens) -> logits after the last one (KV cache kept between calls)."""
    state = {"past": None}

    @torch.no_grad()
    def feed(tokens):
        logits, state["past"] = net(torch.tensor([list(tokens)]), state["past"])
        return logits[0, -1].double().numpy()
    return feed


def _session_rung(sess: Session) -> Callable:
    return lambda tokens: np.asarray(sess.feed(list(tokens)), np.float64)


def _margin(logits: np.ndarray) -> float:
    top2 = np.sort(logits)[-2:] if logits.size > 1 else np.array([logits[0], -np.inf])
    return float(top2[1] - top2[0])


def reference_run(feed: Callable, prompt: list[int], n: int, on_step=None) -> tuple[list[int], list[np.ndarray]]:
    """Greedy decoding on the reference rung: (the n tokens, the logits before each)."""
    tokens, logits = [], []
    cur = feed(prompt)
    for i in range(n):
        logits.append(cur)
        tokens.append(int(np.argmax(cur)))
        if on_step:
            on_step(i)
        if i + 1 < n:
            cur = feed([tokens[-1]])
    return tokens, logits


def teacher_steps(prompt: list[int], ref_tokens: list[int]) -> list[tuple[str, int, int]]:
    """The runs that feed the tested rung the reference's tokens: (stream, token, position)."""
    seq = list(prompt) + list(ref_tokens[:-1])
    return [("prefill" if p < len(prompt) - 1 else "decode", t, p) for p, t in enumerate(seq)]


def session_logits(sess: Session, prompt: list[int], ref_tokens: list[int], on_step=None) -> list[np.ndarray]:
    feed = _session_rung(sess)
    out = [feed(prompt)]
    for i, t in enumerate(ref_tokens[:-1]):
        if on_step:
            on_step(i)
        out.append(feed([t]))
    return out


def score(tested: str, reference: str, prompt, ref_tokens, ref_logits, got_logits) -> Comparison:
    c = Comparison(tested, reference, list(prompt))
    for t, r, g in zip(ref_tokens, ref_logits, got_logits):
        r = np.asarray(r, np.float64)
        g = np.asarray(g, np.float64)[:r.size]
        bound = LOGIT_TOLERANCE * float(r.max() - r.min()) if reference == "golden" else 0.0
        with np.errstate(invalid="ignore"):
            d = np.abs(g - r)
        c.steps.append(Step(int(t), int(np.argmax(g)), _margin(r), float(np.nanmax(d)) if np.isfinite(d).all()
                            else float("inf"), bound))
    return c


# ------------------------------------------------------------------------------------------------ bisection
def _instr_steps(dev: Device, stream: str, token: int, pos: int):
    """Execute one run of `stream` on a single functional Device one instruction at a time, yielding
    (pc, instruction) after each (router instructions are a ring of one)."""
    dev.regs["TOKEN"], dev.regs["POS"] = int(token), int(pos)
    with np.errstate(all="ignore"):
        for pc, (handler, f, ins, _) in enumerate(dev._streams[stream]):
            stop = handler(f) if handler is not None else None
            yield pc, ins
            if stop:
                return


def node_at(program: Program, stream: str, pc: int, device: int = 0) -> str | None:
    """The compiler's node (e.g. h.0.attn.c_attn) that instruction `pc` of `stream` belongs to."""
    pcs = (program.manifest.node_pcs or {}).get(stream)
    if not pcs:
        return None
    node = None
    for np_ in pcs[device]:
        if np_.pc <= pc:
            node = np_.node
    return node


def lockstep(tested: Program, reference: Program, steps) -> str | None:
    """Run both single-device programs on the functional simulator instruction by instruction; one line
    naming the first instruction after which VBUF or a scalar register differs, or None when none does."""
    a, b = Device(tested, 0), Device(reference, 0)
    for i, (stream, token, pos) in enumerate(steps):
        for (pc, ins), _ in zip(_instr_steps(a, stream, token, pos), _instr_steps(b, stream, token, pos)):
            va, vb = a.vbuf.view(np.uint16), b.vbuf.view(np.uint16)
            if not np.array_equal(va, vb) or not np.array_equal(a.s.view(np.uint32), b.s.view(np.uint32)):
                diff = np.flatnonzero(va != vb)
                where = (f"VBUF element {diff[0]} is {a.vbuf[diff[0]]!r} here, {b.vbuf[diff[0]]!r} in the fresh "
                         f"compile" if diff.size else "a scalar register differs")
                node = node_at(tested, stream, pc)
                return (f"step {i} ({stream}, token {token}, pos {pos}) pc {pc} `{isa.disassemble(ins)}`"
                        f"{f' (node {node})' if node else ''}: {where}")
    return None


def same_code(a: Program, b: Program) -> bool:
    return all(da.streams == db.streams for da, db in zip(a.devices, b.devices)) and a.n_devices == b.n_devices


def check_rungs(tested: str, reference: str) -> None:
    if tested not in TESTED:
        raise UsageError(f"--backend {tested}: accepted: {', '.join(TESTED)}")
    if reference not in REFERENCES:
        raise UsageError(f"--against {reference}: accepted: {', '.join(REFERENCES)}")
    if tested == reference:
        raise UsageError(f"--backend {tested} --against {reference} compares a rung with itself; use --against "
                         f"golden, or --backend rtl|pynq")


def fresh_compile(program: Program, net) -> Program | None:
    """`net` compiled with `program`'s options (config, devices, context, overlap, prefill batch, weight format),
    or None when they cannot be repeated (a quantizer that needs calibration data)."""
    m = program.manifest
    q = m.quantization
    if q.method not in ("rtn", "bcq") or len(set(q.matrices.values()) | {q.format}) > 1:
        return None
    batch = m.symbols.prefill_batch
    return compile_model(net, m.config, devices=program.n_devices, weights=q.format, method=q.method,
                         max_seq=m.max_seq, overlap=m.overlap, prefill_batch=batch.max_tokens if batch else None)


def compare(program: Program, prompt: list[int], n: int, *, tested: str = "sim", reference: str = "golden",
            net=None, fresh: Program | None = None, backend_opts: dict | None = None) -> Comparison:
    """Run `reference` greedily for `n` tokens from `prompt`, feed the same tokens to `tested`, and score them.

    net: the float32 GPT2 (needed for reference golden). fresh: `program` compiled afresh from `net` (for the
    lockstep bisection when `program` is a given file). Progress bars (tokens of each rung) go to stderr."""
    check_rungs(tested, reference)
    if reference == "golden" and net is None:
        raise UsageError("--against golden needs the float model: give a checkpoint (MODEL or --model DIR)")
    prompt = [int(t) for t in prompt]
    if len(prompt) + n > program.manifest.max_seq:
        raise UsageError(f"prompt ({len(prompt)} tokens) + -n {n} exceeds the program's context of "
                         f"{program.manifest.max_seq} positions")

    b = progress.bar(f"[compare] reference ({reference})", n, "tok", leave=False)
    if reference == "golden":
        ref_tokens, ref_logits = reference_run(golden_rung(net), prompt, n, lambda i: b.update(1))
    else:
        with Session(program, "sim") as s:
            ref_tokens, ref_logits = reference_run(_session_rung(s), prompt, n, lambda i: b.update(1))
    b.close()
    steps = teacher_steps(prompt, ref_tokens)
    rtl = None
    if tested == "rtl":
        rtl = RtlCore(program).run_steps(steps, logits=True, trace=True)
        got = [r["logits"].astype(np.float64) for r in rtl.runs if r["stream"] == "decode"]
    else:
        b = progress.bar(f"[compare] tested ({tested})", max(n - 1, 0), "tok", leave=False)
        with Session(program, tested, **(backend_opts or {})) as s:
            got = session_logits(s, prompt, ref_tokens, lambda i: b.update(1))
        b.close()
    c = score(tested, reference, prompt, ref_tokens, ref_logits, got)
    if c.verdict != "mismatch":
        return c
    upto = steps[:len(prompt) + c.first_mismatch]
    if rtl is not None:
        c.instruction = rtl_bisect(program, steps, rtl) or None
        c.bisect_note = None if c.instruction else "the RTL's write trace agrees with the simulator"
    elif tested == "sim" and fresh is not None and program.n_devices == 1:
        if not same_code(program, fresh):
            c.bisect_note = "the program's instruction streams differ from a fresh compile of the model"
        else:
            c.instruction = lockstep(program, fresh, upto)
            c.bisect_note = None if c.instruction else ("the program executes exactly as a fresh compile of the "
                                                        "model: the difference is between the simulator and the "
                                                        "float model")
    else:
        c.bisect_note = {"pynq": "the boards record no write trace; compare --backend rtl --against sim",
                         "sim": "no instruction-level reference (give a program and --model for a fresh compile, "
                                "single device)"}.get(tested, "no bisection")
    return c
