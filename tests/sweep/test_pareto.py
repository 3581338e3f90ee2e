"""Pareto fronts: dominated points drop out, failed points take no part, DFX's point is recognised."""
from dfx.sweep.pareto import front, is_dfx, plots


def row(x, y, **kw):
    return {"status": "ok", "lut": x, "latency_ms": y, "model": "1.5B", "devices": 4, **kw}


def test_front_keeps_only_non_dominated_points():
    rows = [row(1, 10), row(2, 5), row(3, 6), row(4, 1), row(2, 7), row(0.5, 50),
            {"status": "error", "lut": 0.1, "latency_ms": 0.1, "model": "1.5B", "devices": 4}]
    f = front(rows, "lut")
    assert [(r["lut"], r["latency_ms"]) for r in f] == [(0.5, 50), (1, 10), (2, 5), (4, 1)]


def test_dfx_point_with_config_fields_left_at_the_preset():
    r = {"model": "1.5B", "devices": 4, "config": "dfx", "d": None, "l": None, "vpu_width": None,
         "clock_mhz": None, "weights": "fp16", "overlap": 1, "prefill_batch": 0}
    assert is_dfx(r)
    assert not is_dfx({**r, "d": 32})
    assert not is_dfx({**r, "weights": "int8-oc"})


def test_plots_are_written(tmp_path):
    rows = [row(1e5 * i, 100 / i, dsp=100 * i, bits_per_byte=1.8 + 0.01 * i) for i in range(1, 6)]
    made = plots(rows, tmp_path, "png", board_lut=4e5)
    assert [p.name for p in made] == ["pareto_lut.png", "pareto_dsp.png", "pareto_accuracy.png"]
    assert all(p.stat().st_size > 5000 for p in made)
