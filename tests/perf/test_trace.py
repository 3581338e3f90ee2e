"""Stream pre-decode (dfx.perf.trace): the batched-run rules (BATCH, CHUNK, SLOT) as the model checks them."""
import pytest
from perf_programs import SMALL, hand, shapes

from dfx.errors import PerfError
from dfx.perf import PerfModel


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
