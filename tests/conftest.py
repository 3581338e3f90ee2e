"""Shared fixtures: small GPT-2 checkpoints built offline (no model hub here)."""
import os
import warnings

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", category=DeprecationWarning)

from gpt2_fixtures import RANDOM_CONFIGS, make_hf_gpt2  # noqa: E402  (tests/ is on sys.path)


@pytest.fixture(scope="session", params=sorted(RANDOM_CONFIGS))
def hf_model(request):
    return make_hf_gpt2(sorted(RANDOM_CONFIGS).index(request.param), **RANDOM_CONFIGS[request.param])
