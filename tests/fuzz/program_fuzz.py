"""Random instruction streams run on the functional simulator, shared by the in-CI fuzzer
(tests/fuzz/test_fuzz_instructions.py, through hypothesis) and the long run (benchmarks/fuzz_programs.py).

A stream is a few 128-bit words: random words (mostly refused by the decoder), decodable words with random or
edge field values (0, 1, max), and instructions of a compiled program with one to three fields mutated, or kept
(so that the fuzzed instructions find real weights, tables and KV caches around them), usually ending in HALT.
It runs on one device or on a ring of two (each device its own mutation of the stream) of a small compiled GPT-2,
at a random token and position, with a small watchdog budget and a deadline. The outcome of a run is "ok",
"refused" (a one-line `DfxError`: the decoder, the ISA's validation, the simulator's run-time checks), "hang"
(the deadline passed: the watchdog did not stop it) or "crash" (any other exception: a bug).
"""
from __future__ import annotations

import random
import time
import traceback
from dataclasses import dataclass

from dfx import isa
from dfx.compiler import compile_model
from dfx.errors import DfxError
from dfx.program import DeviceImage, Program
from dfx.sim.functional import DeadlineExceeded, Device
from dfx.sim.ring import Ring
from gpt2_fixtures import make_hf_gpt2

BUDGET = 64                 # instruction executions per run (a BATCH-fused instruction counts m times)
DEADLINE_S = 10.0           # a run still going after this is a hang
OUTCOMES = ("ok", "refused", "hang", "crash")


def programs() -> dict[int, Program]:
    """A 1-layer GPT-2 (n_embd 32, 2 heads, 16 positions, byte vocabulary) compiled for 1 and 2 devices, with
    a batched prefill stream (BATCH, CHUNK, SLOT in the pool)."""
    net = make_hf_gpt2(11, n_embd=32, n_head=2, n_layer=1, n_positions=16, vocab_size=256)
    return {n: compile_model(net, "tiny", devices=n, prefill_batch=2) for n in (1, 2)}


def pool(prog: Program) -> list[isa.Instr]:
    """The distinct instructions of a program's streams, in a stable order."""
    seen = {}
    for img in prog.devices:
        for instrs in img.streams.values():
            for ins in instrs:
                seen.setdefault(ins, None)
    return list(seen)


def _value(rng: random.Random, f: isa.Field, old: int) -> int:
    top = (1 << f.width) - 1
    return rng.choice((0, 1, top, top - 1, 1 << (f.width - 1), rng.randint(0, top), max(old - 1, 0),
                       min(old + 1, top)))


def mutate(rng: random.Random, ins: isa.Instr) -> isa.Instr:
    """`ins` with one to three fields set to an edge, a neighbour or a random value."""
    vals = {f.name: ins.bits(f.name) for f in ins.op.fmt.fields}
    fields = ins.op.fmt.fields
    for f in rng.sample(fields, min(len(fields), rng.randint(1, 3))) if fields else ():
        vals[f.name] = _value(rng, f, vals[f.name])
    return isa.Instr(ins.op, _raw=True, **vals)


def random_instr(rng: random.Random) -> isa.Instr:
    """A decodable instruction of any opcode, every field an edge or a random value."""
    op = rng.choice(isa.OPS)
    return isa.Instr(op, _raw=True, **{f.name: _value(rng, f, 0) for f in op.fmt.fields})


def random_word(rng: random.Random, instrs: list[isa.Instr]) -> int:
    kind = rng.random()
    if kind < 0.03:
        return rng.getrandbits(isa.WORD_BITS)                                  # almost always refused
    if kind < 0.08:
        return rng.choice(isa.OPS).code | rng.getrandbits(isa.WORD_BITS - isa.OPCODE_BITS) << isa.OPCODE_BITS
    if kind < 0.3:
        return random_instr(rng).encode()
    if kind < 0.85:
        return mutate(rng, rng.choice(instrs)).encode()
    return rng.choice(instrs).encode()


def random_stream(rng: random.Random, instrs: list[isa.Instr], max_len: int = 8) -> bytes:
    """A stream of 1..max_len words, most ending in HALT."""
    words = [random_word(rng, instrs) for _ in range(rng.randint(1, max_len))]
    if rng.random() < 0.9:
        words.append(isa.Instr("HALT").encode())
    return b"".join(w.to_bytes(isa.WORD_BYTES, "little") for w in words)


@dataclass
class Result:
    outcome: str            # one of OUTCOMES
    detail: str             # the error's message, or the traceback of a crash


def _with_stream(prog: Program, streams: list[list[isa.Instr]]) -> Program:
    return Program(prog.manifest, [DeviceImage({"fuzz": s}, img.hbm, img.ddr)
                                   for s, img in zip(streams, prog.devices)])


def run(prog: Program, blobs: list[bytes], token: int, pos: int, budget: int = BUDGET,
        deadline_s: float = DEADLINE_S) -> Result:
    """Decode one stream per device of `prog` and run it once (a ring when there are several devices)."""
    try:
        streams = [isa.decode_stream(b) for b in blobs]
        fuzzed = _with_stream(prog, streams)
        deadline = time.monotonic() + deadline_s
        if prog.n_devices == 1:
            Device(fuzzed, budget=budget).run("fuzz", token, pos, deadline)
        else:
            Ring(fuzzed, budget=budget).run("fuzz", token, pos, deadline)
    except DeadlineExceeded as e:
        return Result("hang", str(e))
    except DfxError as e:
        msg = str(e)
        if "\n" in msg or not msg:
            return Result("crash", f"a refusal that is not one line: {msg!r}")
        return Result("refused", msg)
    except Exception:  # noqa: BLE001 - any other exception is what the fuzzer looks for
        return Result("crash", traceback.format_exc())
    return Result("ok", "")


def case(rng: random.Random, progs: dict[int, Program], pools: dict[int, list[isa.Instr]]):
    """One random case: (program, one stream per device, token, pos)."""
    n = rng.choice((1, 1, 2))
    prog, instrs = progs[n], pools[n]
    first = random_stream(rng, instrs)
    blobs = [first] + [first if rng.random() < 0.5 else random_stream(rng, instrs) for _ in range(n - 1)]
    vocab, seq = prog.symbols.vocab_size, prog.manifest.max_seq
    token = rng.choice((0, vocab - 1, rng.randrange(vocab), rng.randrange(1 << 32)))
    pos = rng.choice((0, seq - 1, rng.randrange(seq), seq, rng.randrange(1 << 16)))
    return prog, blobs, token, pos
