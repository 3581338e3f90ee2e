"""Shared fixtures: small GPT-2 checkpoints built offline (no model hub here)."""
import os
import warnings

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", category=DeprecationWarning)

from gpt2_fixtures import RANDOM_CONFIGS, make_hf_gpt2  # noqa: E402  (tests/ is on sys.path)


@pytest.fixture(scope="module")
def one_thread():
    """PyTorch on one intra-op thread for the module (steadier on a shared two-core machine)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", params=sorted(RANDOM_CONFIGS))
def hf_model(request):
    return make_hf_gpt2(sorted(RANDOM_CONFIGS).index(request.param), **RANDOM_CONFIGS[request.param])


def pytest_collection_modifyitems(config, items):
    """`slow` tests (exhaustive SFU runs, long RTL and ladder runs, DFX-size synthesis) are skipped unless
    selected with `-m slow` (or any -m expression naming them) or DFX_SLOW=1, so the default `pytest` (CI)
    stays within minutes on two cores, whichever folder it is run on."""
    markexpr = config.getoption("-m") or ""
    if "slow" in markexpr or os.environ.get("DFX_SLOW", "0") not in ("", "0"):
        return
    skip = pytest.mark.skip(reason="slow: run with `-m slow` or DFX_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
