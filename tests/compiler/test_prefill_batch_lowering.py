"""The compiler's batched prefill (`compile_model(prefill_batch=M)`, `dfx compile --prefill-batch M`): the
token-serial streams and images stay byte-identical, the prefill_batch stream has the documented shape, and a
chunk that does not fit VBUF fails naming the largest one that does."""
import numpy as np
import pytest

from gpt2_fixtures import make_hf_gpt2
from dfx import isa
from dfx.compiler import compile_model
from dfx.errors import CompileError
from dfx.manifest import PrefillBatch

SMALL = dict(n_embd=36, n_head=3, n_layer=2, n_positions=16, vocab_size=70)


@pytest.fixture(scope="module")
def small():
    return make_hf_gpt2(3, **SMALL)


@pytest.mark.parametrize("devices", [1, 2])
def test_token_serial_program_is_unchanged(small, devices):
    ref = compile_model(small, "tiny", devices=devices)
    prog = compile_model(small, "tiny", devices=devices, prefill_batch=4)
    assert ref.symbols.prefill_batch is None and ref.manifest.streams == ("prefill", "decode")
    assert prog.manifest.streams == ("prefill", "decode", "prefill_batch")
    for a, b in zip(ref.devices, prog.devices):
        assert a.streams == {k: v for k, v in b.streams.items() if k != "prefill_batch"}
        assert a.hbm == b.hbm and b.ddr[:len(a.ddr)] == a.ddr and not any(b.ddr[len(a.ddr):])
    sym = prog.symbols.prefill_batch
    assert sym == PrefillBatch(stream="prefill_batch", max_tokens=4, tokens=len(ref.devices[0].ddr))
    assert sym.tokens % 64 == 0 and len(prog.devices[0].ddr) - sym.tokens >= 4 * (1 + 4)


def _count(instrs, mnemonic):
    return sum(i.op.mnemonic == mnemonic for i in instrs)


def _w(ins):
    """An instruction without its VBUF addresses (the batched layout places vectors elsewhere)."""
    return {k: v for k, v in ins.fields().items() if k not in ("dst", "src", "bias", "vaddr")}


def _per_node(instrs, pcs) -> dict[str, list]:
    """Instructions of each node of a token-serial stream, from the manifest's node pcs."""
    ends = [pc for pc, _ in pcs[1:]] + [len(instrs)]
    return {name: instrs[pc:end] for (pc, name), end in zip(pcs, ends)}


@pytest.mark.parametrize("devices", [1, 2])
def test_stream_shape(small, devices):
    M, L = 3, SMALL["n_layer"]
    prog = compile_model(small, "tiny", devices=devices, prefill_batch=M)
    last = f"h.{L - 1}.attn"
    for k, dev in enumerate(prog.devices):
        s = dev.streams["prefill_batch"]
        serial = _per_node(dev.streams["prefill"], prog.manifest.node_pcs["prefill"][k])
        names = list(serial)
        kept = names[:names.index(last) + 1]          # what feeds a K/V cache: up to the last attention
        assert sorted(n for _, n in prog.manifest.node_pcs["prefill_batch"][k]) == sorted(kept)
        assert s[0] == isa.Instr("CHUNK", addr=prog.symbols.prefill_batch.tokens, cap=M)
        assert s[-1].op.mnemonic == "HALT"
        # every weight piece of the kept linears once, batched over the chunk
        lin = [pc for pc, i in enumerate(s) if i.op.mnemonic == "LINEAR"]
        assert all(s[pc - 1].op.mnemonic == "BATCH" and s[pc - 1].dyn_m for pc in lin)
        assert [_w(s[pc]) for pc in lin] == [_w(i) for n in kept for i in serial[n] if i.op.mnemonic == "LINEAR"]
        # the all-gathers likewise, but none for the last attention (nothing reads its output)
        gathers = [pc for pc, i in enumerate(s) if i.op.mnemonic == "ALLGATHER"]
        assert all(s[pc - 1].op.mnemonic == "BATCH" for pc in gathers)
        assert [_w(s[pc]) for pc in gathers] == [_w(i) for n in kept[:-1] for i in serial[n]
                                                  if i.op.mnemonic == "ALLGATHER"]
        # per token: every cache append, attention in all but the last layer
        assert _count(s, "STORE_K") == M * _count(dev.streams["prefill"], "STORE_K") > 0
        assert _count(s, "QK") == M * sum(_count(serial[n], "QK") for n in kept[:-1])
        # one section per slot and group: embed+ln_1, attention (x L), res1+ln_2 (x L-1), res2+ln_1 (x L-1)
        slots = [i for i in s if i.op.mnemonic == "SLOT"]
        assert len(slots) == M * (1 + L + 2 * (L - 1)) and [i.i for i in slots[:M]] == list(range(M))
        for pc, i in enumerate(s):                # an empty slot skips to the end of its group's sections
            if i.op.mnemonic == "SLOT":
                nxt = s[pc + 1 + i.skip]
                assert nxt.op.mnemonic != "SLOT" or nxt.i == 0


def test_chunk_too_large_names_the_largest_that_fits(small):
    with pytest.raises(CompileError, match=r"the largest chunk that fits is (\d+)") as e:
        compile_model(small, _small_vbuf(), prefill_batch=16)
    best = int(e.value.args[0].rsplit("use --prefill-batch ", 1)[1])
    compile_model(small, _small_vbuf(), prefill_batch=best)
    with pytest.raises(CompileError, match="VBUF entries"):
        compile_model(small, _small_vbuf(), prefill_batch=best + 1)


def _small_vbuf():
    from dfx.config import PRESETS
    return PRESETS["tiny"].replace(name="tiny-vbuf", vbuf_entries=400)


@pytest.mark.parametrize("m", [0, -2, 17, True, 2.5, "4"])
def test_bad_chunk_sizes(small, m):
    with pytest.raises(CompileError, match=r"--prefill-batch .*: give the tokens per batched prefill run, an "
                                           r"integer in 1\.\.16"):
        compile_model(small, "tiny", prefill_batch=m)
