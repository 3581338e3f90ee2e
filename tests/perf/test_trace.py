"""Stream pre-decode (dfx.perf.trace): the ISA's operands as scoreboard entries, the path a batched run
takes, and the batched-run rules (BATCH, CHUNK, SLOT: dfx.isa's) as the model applies them."""
import pytest
from perf_programs import BATCHED, SMALL, hand, shapes

from dfx import isa
from dfx.errors import PerfError
from dfx.isa import Batch
from dfx.perf import PerfModel
from dfx.perf.trace import Operand, run_path, vbuf_operands


def operands(text, batch=None):
    ins = isa.assemble_line(text)
    return vbuf_operands(ins.op, ins.fields(), batch, 512, 8)


def test_vbuf_operands():
    """Lengths from k / n (None: POS + 1 for a dynamic one), the bias only with has_bias, scalar registers
    after the VBUF entries; a BATCH-fused LINEAR's m strided vectors, contiguous ones merged into one range."""
    assert operands("LINEAR dst=40 src=0 k=16 n=8") == ([Operand(0, 16)], [Operand(40, 8)])
    assert operands("LINEAR dst=40 src=0 k=16 n=8 bias=30 +has_bias")[0] == [Operand(0, 16), Operand(30, 8)]
    assert operands("QK dst=100 src=0 k=8 +dyn_n") == ([Operand(0, 8)], [Operand(100, None)])
    assert operands("VSUM a=0 n=17 sd=1") == ([Operand(0, 17)], [Operand(513, 1, True)])
    assert operands("LINEAR dst=40 src=0 k=16 n=8", Batch(3, 2, 1)) == ([Operand(0, 48)], [Operand(40, 24)])
    assert operands("LINEAR dst=40 src=0 k=16 n=8", Batch(3, 4, 1))[0] == [Operand(0, 16), Operand(4, 16),
                                                                           Operand(8, 16)]


def test_run_path():
    """COUNT 1: the sections of slots 1 and 2 skipped; BATCH fused into the LINEAR (an entry of its own in serial
    issue); slot i's entries run at POS + i; a COUNT outside 1..cap refused where the CHUNK is."""
    instrs = isa.assemble(BATCHED)
    path = run_path(instrs, 1, serial=False)
    assert (path.pcs, path.slots, path.skips, path.batch) == ([0, 1, 2, 3, 8, 9], [0] * 6, {3}, {4: Batch(1, 1, 1)})
    full = run_path(instrs, 2, serial=True)
    assert full.pcs == [0, 1, 2, 3, 4, 5, 7, 8, 9] and full.slots == [0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert full.skips == {5} and full.batch == {7: Batch(2, 1, 1)}
    with pytest.raises(PerfError, match=r"^pc 0 `CHUNK .*`: the token table at DDR byte 0 holds COUNT 4; accepted: "
                                        r"1\.\.3$"):
        run_path(instrs, 4, serial=False)
    with pytest.raises(PerfError, match="give the run's token count"):
        run_path(instrs, None, serial=False)


def test_batched_errors(batched2):
    m = PerfModel(batched2)
    for args, msg in ((("prefill_batch", 0), r"batched prefill: give its token count, an integer in 1\.\.8, not None"),
                      (("prefill_batch", 0, 9), "not 9"),
                      (("prefill_batch", 250, 8), "run past the program's context"),
                      (("decode", 0, 2), "runs one token per step, not count 2")):
        with pytest.raises(PerfError, match=msg):
            m.step(*args)
    with pytest.raises(PerfError, match="no batched prefill stream; compile it with prefill_batch"):
        PerfModel(shapes(SMALL, "tiny")).run(4, 4, batched=True)
    with pytest.raises(PerfError, match="BATCH must be followed by LINEAR or ALLGATHER, not VADD"):
        PerfModel(hand(["BATCH m=2 src_stride=1 dst_stride=1\nVADD dst=0 a=0 b=0 n=8\nHALT"]))
    with pytest.raises(PerfError, match="SLOT before CHUNK"):
        PerfModel(hand(["HALT"], batch=["SLOT i=0 skip=0\nCHUNK addr=0 cap=2\nHALT"], cap=2)).step(
            "prefill_batch", 0, 1)
