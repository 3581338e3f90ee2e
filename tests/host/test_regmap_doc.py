from pathlib import Path

from dfx import regmap
from dfx.config import load_config


def test_regmap_doc_is_current():
    doc = Path(__file__).parents[2] / "docs" / "regmap.md"
    assert doc.read_text() == regmap.doc(load_config("dfx")), \
        "docs/regmap.md is stale: run `python -m dfx.regmap --doc > docs/regmap.md`"
