"""The text of docs/isa.md: the ISA's prose (dependency rules, batched prefill) around the tables of `dfx.isa`.

`python -m dfx.isa_doc > docs/isa.md` writes it; tests/core/test_isa_doc.py fails when docs/isa.md is stale. The
machine model is `dfx.isa`'s module docstring; formats, opcodes and operands are its tables; the weight formats
come from `dfx.formats`. The rules the prose states are functions of `dfx.isa` ("rules").
"""
from __future__ import annotations

import argparse
import ast
import inspect
from pathlib import Path

from . import formats as F
from . import isa

DEPENDENCY_RULES = """\
One instruction stream per device, executed in program order by the controller, which dispatches each
instruction to its unit's in-order queue (MPU, VPU, DMA, ROUTER); the units run in parallel.

1. **On-chip hazards are tracked by hardware.** The scoreboard holds the VBUF entry ranges and scalar registers
   that in-flight instructions read and write (the `reads`/`writes` columns below). An instruction issues only
   when no older in-flight instruction writes a range it reads (RAW), reads a range it writes (WAR) or writes a
   range it writes (WAW). So compute, DMA and router instructions overlap exactly when they touch disjoint
   on-chip data: a LOAD of the next layer's biases runs under the current matrix instruction.
2. **Off-chip hazards are the program's job.** HBM and DDR are not tracked. A program that writes off-chip memory
   and reads it later (K/V cache append then QK/SV; logits STORE then host read) must put a `FENCE` with the
   writer's unit between them. `HALT` drains every unit.
3. **Router instructions complete when their data has moved**: SEND when the data left, RECV/ALLGATHER when every
   chunk arrived. They block their queue only, so compute on other data continues (communication overlap).
4. The functional simulator executes instructions one at a time in program order; rules 1-3 guarantee that the
   parallel machine computes the same result. The simulator checks rule 2 and reports a missing FENCE.
5. **BATCH and its instruction are one instruction** for dispatch and the scoreboard: the VBUF ranges it reads
   and writes are the union, over i = 0..m-1, of the unbatched instruction's ranges moved by i strides. All m
   inputs count as read before any output is written, so they may overlap the outputs.
6. **CHUNK and SLOT run in the controller, in program order.** An instruction takes the TOKEN and POS it uses
   (DMA index, dyn_n/dyn_k lengths, the mask) when it is dispatched, so a SLOT that changes them does not wait
   for older instructions. The token table is off-chip data the host writes before ap_start (rule 2 needs no
   FENCE for it).
7. **A vector instruction's output is disjoint from each of its inputs, or exactly one of them** (in place:
   each element is read before it is written). A partial overlap is undefined: the VPU streams its inputs while
   the results of earlier beats are written back, so what it reads would depend on the operation's latency. The
   compiler emits none; the functional simulator reads every input first.
"""

BATCHED_DOC = """\
ISA version 2 adds matrix-matrix prefill: one run processes a chunk of up to M prompt tokens and streams every
weight matrix from HBM once per chunk instead of once per token. The MATRIX word is full (127 of 128 bits), so
the batched form is a control-class prefix instead of a wider LINEAR, plus two instructions that give each token
of the chunk its TOKEN and POS:

- `BATCH m src_stride dst_stride [+dyn_m]` makes the next instruction run over m vectors. It must be followed
  by LINEAR or ALLGATHER (anything else, or a BATCH at the end of the stream, is an error).
  - LINEAR: for i = 0..m-1, `dst + i*dst_stride = act(src + i*src_stride . W + bias)`. The MPU holds each d x l
    weight tile once and applies it to the m input vectors (m cycles per tile instead of 1, one HBM read per
    tile); the bias vector is shared. `dyn_k`/`dyn_n` must be 0 (no batched QK/SV).
  - ALLGATHER: m all-gathers of the vectors at `vaddr + i*dst_stride`, each exactly as the unbatched one
    (`src_stride` must equal `dst_stride`: the gather is in place).
  - `+dyn_m`: m = COUNT, the tokens of this run (an error before CHUNK has run).
- `CHUNK addr cap` starts a batched run: COUNT = the u32 at DDR byte `addr` (it must be 1..cap), TBASE =
  addr + 4, POS0 = POS.
- `SLOT i skip`: if i < COUNT, TOKEN = the u32 at DDR byte TBASE + 4i and POS = POS0 + i; otherwise the next
  `skip` instructions are skipped (a forward branch; it must stay inside the stream). An error before CHUNK.

**Numerics.** Output row i of a batched LINEAR is computed exactly as the unbatched LINEAR on input i: the same
products, the same adder-tree order and group accumulation, the same bias add, scale, rounding and GELU
(docs/numerics.md). Batching changes the schedule (each tile is applied to m vectors), never a result: row i
is bit-identical to `LINEAR dst=dst+i*dst_stride src=src+i*src_stride ...`.

**Token table (host protocol).** The compiler reserves it in DDR (manifest `symbols.prefill_batch.tokens`, a
byte address, 64-byte aligned) with room for `max_tokens` tokens: u32 COUNT at byte 0, then COUNT u32 token ids,
little-endian. For each chunk of m <= max_tokens prompt tokens the host writes COUNT = m and the m tokens into
every device's table, writes POS = the first token's position (TOKEN = the first token, unused), and starts the
`prefill_batch` stream on every device. Token j of the chunk is processed at position POS + j and its K and V are
appended to the cache there; it attends to positions <= POS + j.

**Stream shape** (`dfx compile --prefill-batch M`, compiler/lower.py): `CHUNK`, then per decoder layer: the
per-token work as one section per slot (`SLOT i skip` + that token's embedding (first layer), LayerNorm,
attention with its own POS, residual adds) and the weight-heavy linears (c_attn, attn c_proj, c_fc, mlp
c_proj) as `BATCH +dyn_m` + LINEAR, their all-gathers (multi-device) as `BATCH +dyn_m` + ALLGATHER. Every
vector of the layer has M copies in VBUF, one per slot, so VBUF capacity bounds M. Work that feeds no K/V
cache is left out (the last layer's attention itself, projection, MLP and residuals, and ln_f: only its K/V
append remains); the host runs the last prompt token through `decode`.

The RTL core (hw/core.py) runs BATCH, CHUNK and SLOT in its controller, bit-exact to the functional simulator; it
dispatches a batched instruction once per vector, so its matrix engine streams the weights m times instead of once
(docs/rtl_core.md, "Batched prefill").
"""


def doc_markdown() -> str:
    """The text of docs/isa.md, generated from the tables of `dfx.isa` and the prose above."""
    out = [
        "# The DFX instruction set",
        "",
        f"Generated by `python -m dfx.isa_doc > docs/isa.md` from `dfx/isa.py` and `dfx/isa_doc.py` (ISA version "
        f"{isa.ISA_VERSION}); "
        "a test fails when this file is stale. Do not edit by hand.",
        "",
        f"Every instruction is one {isa.WORD_BITS}-bit little-endian word. Bits [7:0] are the opcode; the fields of "
        "the opcode's format follow from bit 8 upward. Reserved (high) bits must be zero.",
        "",
        "## Machine state",
        "",
        isa.__doc__.split("Machine model the semantics refer to (all sizes from `AccelConfig`):")[1].strip(),
        "",
        "## Dependency rules",
        "",
        DEPENDENCY_RULES,
        "## Validation",
        "",
        *_validation_doc(),
        "## Batched prefill",
        "",
        BATCHED_DOC,
        "## Formats",
        "",
    ]
    for fmt in isa.FORMATS:
        out += [f"### {fmt.name}", "", fmt.doc, "", "| bits | field | kind | meaning |", "|---|---|---|---|",
                "| 7:0 | opcode | u | |"]
        for f in fmt.fields:
            lsb, w = fmt.offsets()[f.name]
            out.append(f"| {lsb + w - 1}:{lsb} | `{f.name}` | {f.kind} | {f.doc} |")
        out.append("")
    out += ["## Opcodes", "", "| opcode | mnemonic | unit | format | VBUF reads | VBUF writes | semantics |",
            "|---|---|---|---|---|---|---|"]
    for op in isa.OPS:
        r = ", ".join(f"{a}[{n}]" for a, n in op.reads) or "-"
        w = ", ".join(f"{a}[{n}]" for a, n in op.writes) or "-"
        out.append(f"| 0x{op.code:02x} | {op.mnemonic} | {op.unit.value} | {op.fmt.name} | {r} | {w} | {op.doc} |")
    out += ["", "; ".join(f"`{token}`: only when `{flag}`" for token, flag in isa.OPTIONAL.items())
            + ". Scalar registers read/written are `sa`/`sd` (VECTOR, SCALAR) and `s` (MATRIX).", ""]
    out += _weight_format_doc()
    out += ["## Assembly", "", "`MNEMONIC field=value ... +flag`, one instruction per line, `#` comments. "
            "Numbers are decimal or 0x-hex; FP32 immediates are decimals or 0x-bit patterns. Example:", "",
            "```", "LINEAR dst=64 src=0 bias=160 w=0x40 k=256 n=768 +has_bias",
            "QK dst=300 src=64 w=0x800 k=64 +scale +dyn_n s=2", "VMAX a=300 sd=0 +dyn_n", "```", ""]
    return "\n".join(out)


def _validation_doc() -> list[str]:
    """The validation section of docs/isa.md: `dfx.isa_check`'s docstring, read from its source (the two modules
    are independent layers, so this one does not import it)."""
    text = ast.get_docstring(ast.parse((Path(__file__).parent / "isa_check.py").read_text()))
    return [text, "",
            "At run time the executors also enforce the rules that depend on POS, COUNT and memory contents",
            "(`dfx.isa` `check_operands`, `check_batch`, `check_chunk`, `check_slot`) and a watchdog: a run that",
            "executes more than its `run_budget` of instructions stops with an error. The RTL core checks opcodes",
            "and operand ranges in its decode stage and stops with a STATUS error bit and ERROR_PC",
            "(docs/rtl_core.md). The host's `--timeout` bounds the wall time of each run on every backend.", ""]


def _weight_format_doc() -> list[str]:
    """The quantized-weight section of docs/isa.md, from `dfx.formats`."""
    src = inspect.getsource(F)
    a = src.index("# A quantized matrix (wfmt != 0)")
    b = src.index("DESC_BYTES = 64")
    layout = "\n".join(line[2:] for line in src[a:b].strip().splitlines())
    out = ["## Weight formats", "",
           f"MATRIX `wfmt` ({isa.MATRIX.field('wfmt').width} bits) selects the dequantiser in front of the MPU's "
           "multipliers. Every format is "
           "dequantised to binary16 exactly as `dfx.formats.dequant` defines (docs/numerics.md, \"Weight formats\"); "
           "the multipliers, adder trees and accumulation are unchanged. Axis, group size, zero points and where the "
           "scales are come from a 64-byte descriptor at the start of the matrix's HBM region, so the 128-bit "
           "instruction word does not grow. Only LINEAR takes quantized weights (the KV cache and the tied LM "
           "head are FP16); the descriptor's wfmt, k and n must equal the instruction's.", "",
           "| wfmt | kind | code bits | config family |", "|---|---|---|---|"]
    for (kind, bits), code in sorted(F.WFMT_CODES.items(), key=lambda kv: kv[1]):
        fam = F.WeightFormat(kind, bits, None if kind == "fp16" else "oc").family
        out.append(f"| {code} | {kind} | {bits}{' planes' if kind == 'bcq' else ''} | {fam} |")
    codes = range(1 << isa.MATRIX.field("wfmt").width)
    out += [f"| {', '.join(str(c) for c in codes if c not in F.WFMT_CODES.values())} | reserved "
            "(the simulator stops with a SimError) | | |", "",
            f"Format names (`dfx compile --weights`): {F.ACCEPTED}. A format compiles for a config whose "
            "`weight_formats` lists its family.", "",
            "### Quantized matrix region", "", "```text", layout, "```", "",
            f"### Descriptor ({F.DESC_BYTES} bytes, little-endian, unused bytes zero)", "",
            "| byte | field | type | meaning |", "|---|---|---|---|"]
    off = 0
    for name, code, doc in F.DESCRIPTOR:
        size = {"I": 4, "H": 2, "B": 1}[code]
        out.append(f"| {off} | `{name}` | u{8 * size} | {doc} |")
        off += size
    out += ["", "Bytes per weight including every overhead (`dfx.formats.matrix_bytes`) are tabulated in "
            "docs/numerics.md.", ""]
    return out


def _main(argv=None):
    argparse.ArgumentParser(prog="python -m dfx.isa_doc", description="Print docs/isa.md.").parse_args(argv)
    print(doc_markdown(), end="")


if __name__ == "__main__":
    _main()
