"""dfx.sampling.TokenSampler: greedy, seeded sampling, and the repetition cap (max_repeat)."""
import pytest
import torch

from dfx.errors import UsageError
from dfx.sampling import TokenSampler


def _runs(tokens):
    best = run = 1
    for a, b in zip(tokens, tokens[1:]):
        run = run + 1 if a == b else 1
        best = max(best, run)
    return best


def test_greedy_without_cap_repeats_the_argmax():
    pick = TokenSampler()
    logits = torch.tensor([0.0, 3.0, 2.0])
    assert [pick(logits) for _ in range(20)] == [1] * 20


@pytest.mark.parametrize("cap", [1, 3, 12])
def test_max_repeat_caps_greedy_runs(cap):
    pick = TokenSampler(max_repeat=cap)
    logits = torch.tensor([0.0, 3.0, 2.0])
    got = [pick(logits) for _ in range(40)]
    assert _runs(got) == cap
    # after `cap` picks of the argmax comes the runner-up once, then the argmax again
    assert got[:cap + 2] == [1] * cap + [2, 1]


def test_max_repeat_caps_sampled_runs_and_stays_reproducible():
    logits = torch.tensor([8.0, 0.0, 0.0, 0.0])                  # token 0 nearly always
    a = TokenSampler(temperature=1.0, seed=5, max_repeat=4)
    b = TokenSampler(temperature=1.0, seed=5, max_repeat=4)
    ta, tb = [a(logits) for _ in range(60)], [b(logits) for _ in range(60)]
    assert ta == tb and _runs(ta) <= 4 and ta.count(0) >= 40


def test_a_single_token_vocabulary_is_never_masked_away():
    pick = TokenSampler(max_repeat=1)
    assert [pick(torch.tensor([1.0])) for _ in range(3)] == [0, 0, 0]


def test_negative_max_repeat_is_refused():
    with pytest.raises(UsageError, match="max_repeat must be >= 0"):
        TokenSampler(max_repeat=-1)
