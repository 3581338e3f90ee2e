"""Training and evaluation of the default model, on tiny configs so each test takes well under a second."""
import json
import math

import numpy as np
import pytest
import torch

from dfx.models import evaluate, train
from dfx.models.checkpoint import load_checkpoint, save_checkpoint
from dfx.models.gpt2 import GPT2, GPTConfig
from model_helpers import one_torch_thread  # noqa: F401 - autouse fixture

TINY = GPTConfig(vocab_size=256, n_positions=16, n_embd=16, n_layer=1, n_head=2)
DATA = np.frombuffer(b"def f(x):\n    return x + 1\n\n" * 200, np.uint8)


def test_corpus_is_the_stdlib_without_tests_in_a_stable_order():
    files = train.corpus_files()
    root = train.stdlib_root()
    rel = [p.relative_to(root).as_posix() for p in files]
    assert rel == sorted(rel) and len(rel) > 300
    assert "os.py" in rel and not any(part in train.SKIP_DIRS for r in rel for part in r.split("/"))
    held = [r for r in rel if train.is_held_out(r)]
    assert 0.02 < len(held) / len(rel) < 0.08                   # about HELD_OUT_PERCENT of the files
    assert held == [r for r in rel if train.is_held_out(r)]     # the same split every time


def test_split_is_pinned():
    """The split depends only on the relative path's SHA-256: the same on every machine and PYTHONHASHSEED."""
    picked = [f"m{i}.py" for i in range(1000) if train.is_held_out(f"m{i}.py")]
    assert picked[:4] == ["m10.py", "m15.py", "m58.py", "m60.py"] and len(picked) == 47
    assert train.is_held_out("ast.py") and train.is_held_out("email/parser.py") and not train.is_held_out("os.py")


def test_windows_are_inputs_and_next_byte_targets():
    x, y = train.windows(DATA, [0, 5], 8)
    assert x.shape == y.shape == (2, 8) and x.dtype == torch.int64
    assert bytes(x[0].tolist()) == b"def f(x)" and bytes(y[0].tolist()) == b"ef f(x):"


def test_learning_rate_schedule():
    a = train.TrainArgs(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert train.learning_rate(a, 0, 0.0) == pytest.approx(1e-4)             # warm-up
    assert train.learning_rate(a, 9, 0.0) == pytest.approx(1e-3)
    assert train.learning_rate(a, 500, 0.5) == pytest.approx(0.55e-3)        # half-way down the cosine
    assert train.learning_rate(a, 999, 1.0) == pytest.approx(1e-4)           # floor


def test_training_lowers_the_loss_and_is_reproducible_by_steps():
    a = train.TrainArgs(steps=30, batch=8, lr=1e-2, warmup_steps=5, seed=1)
    m1 = GPT2(TINY)
    before = train.heldout_nll(m1, DATA)
    stats = train.train(m1, DATA, a, progress_bar=False)
    assert stats["train_steps"] == 30 and stats["tokens_seen"] == 30 * 8 * 16
    after = train.heldout_nll(m1, DATA)
    assert after < before - 1.0, (before, after)
    m2 = GPT2(TINY)
    train.train(m2, DATA, a, progress_bar=False)
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))


def test_heldout_nll_is_deterministic_and_in_nats():
    m = GPT2(TINY).eval()
    m.reset_parameters(seed=0)
    with torch.no_grad():
        m.wte.weight.zero_()                                     # uniform predictions: ln(256) nats per byte
    nll = train.heldout_nll(m, DATA, n_windows=5)
    assert nll == pytest.approx(math.log(256), abs=1e-6)
    metrics = train.nll_metrics(nll)
    assert metrics["heldout_bits_per_byte"] == pytest.approx(8.0, abs=1e-4)
    assert metrics["heldout_ppl"] == pytest.approx(256, abs=1e-2)


def test_train_main_writes_model_and_metrics(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train, "DEFAULT_CONFIG", TINY)
    monkeypatch.setattr(train, "load_corpus", lambda root=None: (DATA, DATA[:2000]))
    train.main(["--out", str(tmp_path / "m"), "--steps", "3", "--batch", "2", "--threads", "1"])
    m = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert m["train_steps"] == 3 and m["tokens_seen"] == 3 * 2 * 16
    assert m["command"] == f"python -m dfx.models.train --out {tmp_path / 'm'} --steps 3 --batch 2 --threads 1"
    assert {"heldout_ppl", "heldout_bits_per_byte", "wall_minutes", "python"} <= set(m)
    assert load_checkpoint(tmp_path / "m").config == TINY
    assert json.loads(capsys.readouterr().out) == m


def test_evaluate_reproduces_the_training_figure(tmp_path, monkeypatch, capsys):
    held = DATA[:3000]
    monkeypatch.setattr(evaluate, "load_corpus", lambda: (DATA, held))
    m = GPT2(TINY)
    m.reset_parameters(seed=3)
    save_checkpoint(m, tmp_path, dtype=torch.float16)
    evaluate.main(["--model", str(tmp_path), "--threads", "1"])
    out = json.loads(capsys.readouterr().out)
    assert out["heldout_bits_per_byte"] == train.nll_metrics(train.heldout_nll(load_checkpoint(tmp_path), held))[
        "heldout_bits_per_byte"]


def test_evaluate_refuses_a_non_byte_model(tmp_path, capsys):
    save_checkpoint(GPT2(GPTConfig(vocab_size=300, n_positions=8, n_embd=8, n_layer=1, n_head=2)), tmp_path)
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--model", str(tmp_path)])
    assert e.value.code == 2
    assert capsys.readouterr().err == ("error: held-out perplexity is measured per byte: the model needs "
                                       "vocab_size 256, not 300\n")
