"""Quantizers (compiler/quant): each beats or matches RTN on its own objective where theory says it should."""
import warnings

import numpy as np
import pytest
import torch

from dfx import formats as F
from dfx.compiler.quant.bcq import bcq, ungroup
from dfx.compiler.quant.calib import collect_calibration, output_error
from dfx.compiler.quant.methods import QuantWarning
from dfx.compiler.quant.model import quantize_model
from dfx.compiler.quant.rtn import group_view
from dfx.errors import UsageError
from dfx.models.gpt2 import GPT2, GPTConfig


pytestmark = pytest.mark.usefixtures("one_thread")


def heavy_tailed(k, n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_t(4, size=(k, n)) * 0.02).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    m = GPT2(GPTConfig(vocab_size=64, n_positions=64, n_embd=64, n_layer=2, n_head=2))
    m.reset_parameters(seed=3)
    return m.eval()


@pytest.fixture(scope="module")
def calib(model):
    g = torch.Generator().manual_seed(0)
    return collect_calibration(model, torch.randint(0, 64, (24, 64), generator=g))


# ------------------------------------------------------------------------------------------------ BCQ
@pytest.mark.parametrize("fmt", ["bcq1-oc", "bcq2-oc-g32", "bcq3-ic-g32", "bcq4-oc-g64"])
def test_bcq_als_not_worse_than_greedy(fmt):
    w = heavy_tailed(96, 80)
    greedy, als = bcq(w, fmt, als=False), bcq(w, fmt)
    eg = ((greedy.dequant().astype(np.float64) - w) ** 2).sum()
    ea = ((als.dequant().astype(np.float64) - w) ** 2).sum()
    assert ea <= eg
    if F.parse(fmt).bits > 1:
        assert ea < 0.95 * eg                    # ALS really refines for q >= 2
    assert als.codes.shape == (F.parse(fmt).bits, 96, 80) and als.meta["method"] == "bcq-als"


def test_bcq_more_planes_less_error():
    w = heavy_tailed(128, 64)
    errs = [((bcq(w, f"bcq{q}-oc-g32").dequant() - w) ** 2).sum() for q in (1, 2, 3, 4)]
    assert errs == sorted(errs, reverse=True)


def test_bcq_one_plane_is_sign_times_mean_abs():
    w = heavy_tailed(64, 8)
    qw = bcq(w, "bcq1-oc")
    np.testing.assert_allclose(qw.scales[0, 0], np.abs(w).mean(0), rtol=1e-3)
    assert np.array_equal(qw.codes[0], (w >= 0).astype(np.uint8))


@pytest.mark.parametrize("fmt", ["bcq2-oc-g32", "bcq2-ic-g32"])
def test_ungroup_inverts_group_view(fmt):
    w = heavy_tailed(70, 45)                    # neither dimension divides 32: short last groups
    f = F.parse(fmt)
    blocks, _ = group_view(w, f)
    assert np.array_equal(ungroup(blocks, f, 70, 45), w)


def test_bcq_short_last_group_ignores_padding():
    w = heavy_tailed(40, 3) + 0.5               # all positive: padding zeros would pull the alphas down
    qw = bcq(w, "bcq1-oc-g32")
    np.testing.assert_allclose(qw.scales[0, 1], np.abs(w[32:]).mean(0), rtol=1e-3)


# ------------------------------------------------------------------------------------------------ model
def test_quantize_model_covers_every_conv1d(model):
    q = quantize_model(model, "int4-oc-g32")
    assert sorted(q) == sorted(f"h.{i}.{s}.weight" for i in range(2)
                               for s in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"))
    for name, qw in q.items():
        assert qw.fmt.name == "int4-oc-g32" and qw.meta["layer"] == name
        qw.check()


def test_calibration_hessian_is_xtx(model, calib):
    st = calib["h.0.attn.c_attn.weight"]
    assert st.hessian.shape == (64, 64) and st.n_tokens == 24 * 64
    assert np.allclose(st.hessian, st.hessian.T) and np.linalg.eigvalsh(st.hessian).min() > -1e-6 * np.trace(st.hessian)
    # tr(D^T H D) is ||X D||^2: check on the first window against a direct computation
    x = []
    h = model.h[0].attn.c_attn.register_forward_pre_hook(lambda m, i: x.append(i[0].reshape(-1, 64)))
    with torch.no_grad():
        model(calib.tokens)
    h.remove()
    X = torch.cat(x).double().numpy()
    d = np.random.default_rng(0).normal(size=(64, 192))
    np.testing.assert_allclose(output_error(d, 0 * d, st.hessian), ((X @ d) ** 2).sum(), rtol=1e-6)


# ------------------------------------------------------------------------------------------------ bad input
def test_unknown_method_and_format(model):
    with pytest.raises(UsageError, match="accepted: rtn, bcq, gptq, adadim, mixed"):
        quantize_model(model, "int4-oc", method="awq")
    with pytest.raises(UsageError, match="'int4-xc'.*accepted"):
        quantize_model(model, "int4-xc")
    with pytest.raises(UsageError, match="int5.*8, 4, 3"):
        quantize_model(model, "int5-oc")
    with pytest.raises(UsageError, match="does not quantize"):
        quantize_model(model, "fp8e4m3", method="gptq")


def test_calibration_missing_or_short(model):
    with pytest.raises(UsageError, match="needs calibration text.*at least"):
        quantize_model(model, "int4-oc", method="gptq")
    with pytest.raises(UsageError, match=r"too short: 40 tokens; at least 1024 are needed \(e.g. 16 windows"):
        collect_calibration(model, torch.zeros(40, dtype=torch.long))


def test_group_that_does_not_divide_warns():
    m = GPT2(GPTConfig(vocab_size=32, n_positions=16, n_embd=48, n_layer=1, n_head=2)).eval()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        q = quantize_model(m, "int4-oc-g32")
    msgs = [str(r.message) for r in rec if issubclass(r.category, QuantWarning)]
    assert "h.0.attn.c_attn.weight: group size 32 does not divide K (inputs) = 48; the last group is shorter " \
           "(16 weights)" in msgs
    assert q["h.0.attn.c_attn.weight"].scales.shape == (2, 144)


# ------------------------------------------------------------------------------------------------ GPTQ
from dfx.compiler.quant.adadim import adadim  # noqa: E402
from dfx.compiler.quant.gptq import gptq  # noqa: E402
from dfx.compiler.quant.mixed import choose  # noqa: E402
from dfx.compiler.quant.rtn import rtn  # noqa: E402


def layer(model, name):
    return dict(model.named_parameters())[name].detach().numpy()


@pytest.mark.parametrize("fmt", ["int4-oc-g32", "int4-ic-g32", "int3-oc-asym", "int8-oc", "int4-oc-g64-asym"])
@pytest.mark.parametrize("name", ["h.0.attn.c_attn.weight", "h.1.mlp.c_proj.weight"])
def test_gptq_output_error_not_above_rtn(model, calib, fmt, name):
    w, h = layer(model, name), calib[name].hessian
    e_rtn = output_error(w, rtn(w, fmt).dequant(), h)
    for act_order in (False, True):
        qw = gptq(w, fmt, h, act_order=act_order)
        assert qw.fmt.name == fmt and qw.meta["method"] == "gptq"
        assert output_error(w, qw.dequant(), h) <= e_rtn


def test_gptq_with_uncorrelated_inputs_is_rtn():
    """H = I: no error to spread, GPTQ's codes and scales are RTN's."""
    w = heavy_tailed(96, 40)
    for fmt in ("int4-oc-g32", "int4-ic-g32", "int3-oc-g64-asym"):
        a, b = gptq(w, fmt, np.eye(96)), rtn(w, fmt)
        assert np.array_equal(a.codes, b.codes) and np.array_equal(a.scales, b.scales), fmt


def test_gptq_lazy_batches_do_not_change_the_result(model, calib):
    name = "h.1.mlp.c_proj.weight"
    w, h = layer(model, name), calib[name].hessian
    for fmt in ("int4-oc-g32", "int4-ic-g32"):
        a, b = gptq(w, fmt, h, block=256, act_order=False), gptq(w, fmt, h, block=24, act_order=False)
        assert np.array_equal(a.codes, b.codes) and np.array_equal(a.scales, b.scales)


def test_gptq_takes_int_formats_only(model, calib):
    with pytest.raises(F.FormatError, match="GPTQ quantizes int formats"):
        gptq(layer(model, "h.0.mlp.c_fc.weight"), "fp8e4m3", calib["h.0.mlp.c_fc.weight"].hessian)


# ------------------------------------------------------------------------------------------------ AdaDim
def test_adadim_picks_the_lower_error_axis(model, calib):
    q = quantize_model(model, "int4-oc-g32", "adadim", calib)
    for name, qw in q.items():
        w, h = layer(model, name), calib[name].hessian
        errs = {ax: output_error(w, rtn(w, f"int4-{ax}-g32").dequant(), h) for ax in ("oc", "ic")}
        assert qw.fmt.axis == min(errs, key=errs.get)
        assert qw.meta["output_error"] == pytest.approx(errs)


def test_adadim_isolates_outlier_rows_and_columns():
    """Rows of large weights (inputs) spoil per-OC scales -> per-IC; large columns (outputs) -> per-OC."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(512, 64))
    h = x.T @ x
    w = rng.normal(size=(64, 64)).astype(np.float32) * 0.02
    rows, cols = w.copy(), w.copy()
    rows[[3, 17, 40]] *= 30
    cols[:, [5, 33, 50]] *= 30
    assert adadim(rows, "int4-oc-g32", h).fmt.axis == "ic"
    assert adadim(cols, "int4-ic-g32", h).fmt.axis == "oc"
    assert adadim(rows, "int4-oc-g32", h, base="gptq").meta["method"] == "adadim-gptq"


# ------------------------------------------------------------------------------------------------ mixed
def test_choose_is_the_exact_knapsack_optimum():
    import itertools
    rng = np.random.default_rng(2)
    damage = rng.random((5, 3))
    cost = np.sort(rng.integers(10, 100, (5, 3)), 1).astype(float)
    damage = np.sort(damage, 1)[:, ::-1]                      # more bits, less damage
    budget = cost.sum() / 3 * 1.0
    pick = choose(damage, cost, budget)
    assert cost[np.arange(5), pick].sum() <= budget
    best = min((sum(damage[i, c] for i, c in enumerate(p)), p) for p in itertools.product(range(3), repeat=5)
               if sum(cost[i, c] for i, c in enumerate(p)) <= budget - budget / 2000 * 5)
    assert damage[np.arange(5), pick].sum() <= best[0] + 1e-12


@pytest.mark.parametrize("importance", ["kl", "output"])
def test_mixed_respects_the_budget(model, calib, importance):
    cands = ("int3-oc-g32", "int4-oc-g32", "int8-oc-g32")
    last = None
    for budget in (3.6, 4.6, 6.0):
        q = quantize_model(model, None, "mixed", calib, candidates=cands, budget_bits=budget, importance=importance)
        n = sum(int(np.prod(qw.shape)) for qw in q.values())
        bits = sum(qw.fmt.ideal_bytes(*qw.shape) * 8 for qw in q.values()) / n          # with scales
        assert bits <= budget and {qw.fmt.name for qw in q.values()} <= set(cands)
        total = sum(qw.meta["damage"][qw.fmt.name] for qw in q.values())
        assert last is None or total <= last + 1e-12          # more bits never more (modelled) damage
        last = total


def test_mixed_bad_budget_and_arguments(model, calib):
    with pytest.raises(UsageError, match=r"bit budget 2 bits/weight is below the cheapest candidate mix \(3\.5"):
        quantize_model(model, None, "mixed", calib, candidates=("int3-oc-g32",), budget_bits=2)
    with pytest.raises(UsageError, match="pass fmt=None with candidates"):
        quantize_model(model, "int4-oc", "mixed", calib)
    with pytest.raises(UsageError, match="unknown importance score 'hessian'; accepted: kl, output"):
        quantize_model(model, None, "mixed", calib, importance="hessian")
