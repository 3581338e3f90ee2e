"""Fixtures of the performance-model tests (programs: perf_programs.py)."""
import pytest
from perf_programs import SMALL, shapes

from dfx.perf import load_board


@pytest.fixture(scope="module")
def board():
    return load_board("u280")


@pytest.fixture(scope="module")
def small4():
    return shapes(SMALL, "tiny", devices=4)


@pytest.fixture(scope="module")
def batched2():
    return shapes(SMALL, "tiny", devices=2, prefill_batch=8)
