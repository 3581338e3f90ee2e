"""docs/numerics.md's error table: measured against float64, live, and current in the docs."""
from pathlib import Path

import numpy as np
import pytest

from dfx import numerics as nx
from dfx import numerics_errors as ne
from dfx.numerics_errors import ulp_err

F32, F64 = np.float32, np.float64
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
DOC = Path(__file__).resolve().parents[2] / "docs" / "numerics.md"


# ============================================================================== error bounds (docs table)
# the figures docs/numerics.md states (exhaustive measurements; see `dfx.numerics_errors.error_table`)
STATED = {("exp16", "binary16 ulp"): 0.51, ("gelu16", "absolute"): 1e-3, ("gelu16", "binary16 ulp"): 0.6,
          ("recip", "binary32 ulp"): 1.25, ("rsqrt", "binary32 ulp"): 1.17,
          ("exp16", "share not correctly rounded"): 1e-3}


def test_error_bounds_against_float64():
    rows = {(name, unit): err for name, _, err, unit in ne.error_table()}
    for key, bound in STATED.items():
        assert rows[key] <= bound, (key, rows[key])
    assert rows[("exp16", "binary16 ulp")] >= 0.5                   # the final rounding alone costs 0.5 ulp


def test_error_table_catches_a_worse_approximation(monkeypatch):
    """The measurement is live: a seed ROM with one Newton step's worth of error shows up."""
    x = np.ldexp(np.random.default_rng(0).uniform(1, 2, 20000), 0).astype(F32)
    ref = 1.0 / x.astype(F64)
    good = ulp_err(nx.recip(x).astype(F64), ref, 23).max()
    bad = ulp_err(nx.RECIP_SEED[(nx.fp32_bits(x) >> 16) & 127].astype(F64), ref, 23).max()
    assert good <= 1.25 < 1000 < bad


def test_docs_table_is_current_and_cli_prints_it(capsys):
    doc = DOC.read_text()
    table = doc.split("<!-- error-table -->\n")[1].split("\n<!-- /error-table -->")[0]
    assert table == ne.error_table_markdown(), "docs/numerics.md is stale: paste `python -m dfx.numerics_errors --error-table`"
    assert ne.main(["--error-table"]) == 0
    assert capsys.readouterr().out.strip() == table


