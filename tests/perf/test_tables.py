"""DFX's published figures and the reproduction's helpers (dfx.perf.tables): the per-token slope of DFX's table,
the 20% band, and DFX's way of running a model (its access pattern, prompt tokens through the decode path)."""
import pytest
from perf_programs import SMALL, shapes

from dfx.perf import PerfModel, tables


def test_dfx_table_is_linear_in_token_steps():
    """DFX's nine totals lie on one line in T + M - 1: a prompt token costs what a generated one does."""
    slope, fixed = tables.linear_fit([{"input": T, "output": M, "ms": v}
                                      for (T, M), v in tables.DFX_LATENCY_MS.items()], "ms")
    assert slope == pytest.approx(6.88, abs=0.01) == tables.dfx_per_token_ms() and 0 < fixed < 10
    for (T, M), v in tables.DFX_LATENCY_MS.items():
        assert v == pytest.approx(fixed + slope * (T + M - 1), abs=3)
    assert tables.within(80, 100) and tables.within(120, 100) and not tables.within(79, 100)


def test_dfx_model_runs_prompt_tokens_through_decode():
    prog = shapes(SMALL, "dfx", devices=1, max_seq=32)
    m = tables.dfx_model(prog, 16)
    assert m.prefill_stream == "decode" and m.timing.hbm_access.burst_bytes == 64
    assert m.timing.hbm_rate.limit == "outstanding"
    r = m.run(8, 4)
    assert r.phases["prefill"].steps == 7 and r.phases["decode"].steps == 4
    # a prompt token at position p costs the decode step at p
    assert r.phases["prefill"].device_cycles == sum(m.step_cycles("decode", p) for p in range(7))
    # our compiler's prefill stream skips the LM head: fewer cycles on the same units and memory access
    own = PerfModel(prog, hbm_access=m.timing.hbm_access, engines="pipelined").run(8, 4)
    assert own.phases["prefill"].device_cycles < r.phases["prefill"].device_cycles


def test_prefill_stream_checked():
    from dfx.errors import PerfError
    with pytest.raises(PerfError, match="prefill_stream must be one of"):
        PerfModel(shapes(SMALL, "dfx", devices=1, max_seq=32), prefill_stream="prefill_batch")
