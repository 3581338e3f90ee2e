"""hw test options: `slow` tests (exhaustive SFU runs, thousands of MPU/VPU beats, DFX-size synthesis) are
skipped unless selected with `-m slow` (or any -m expression naming them) or DFX_SLOW=1, so the default
`pytest` stays within a few minutes on two cores."""
import os

import pytest


def pytest_collection_modifyitems(config, items):
    markexpr = config.getoption("-m") or ""
    if "slow" in markexpr or os.environ.get("DFX_SLOW", "0") not in ("", "0"):
        return
    skip = pytest.mark.skip(reason="slow: run with `-m slow` or DFX_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
