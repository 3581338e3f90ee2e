"""dfx.host.compare and `dfx compare`: a constructed near-tie is a tie (exit 0), a corrupted weight a mismatch
naming its instruction (exit 1)."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dfx.cli import main
from dfx.compiler import compile_model
from dfx.host import compare as cmp
from dfx.models.checkpoint import from_transformers, load_checkpoint, save_checkpoint
from dfx.program import save_program
from gpt2_fixtures import make_hf_gpt2

PROMPT = [5, 17, 42]


def _net():
    return from_transformers(make_hf_gpt2(2, n_embd=64, n_head=4, n_layer=2, n_positions=64, vocab_size=256))


@pytest.fixture(scope="module")
def near_tie_model(tmp_path_factory):
    """A model whose float32 top-2 at step 0 differ by a relative 1e-4 but are equal in FP16: the LM head row of a
    higher token b is the (FP16-exact) row of the top token a scaled by 1 + 1e-4, which rounds back to row a.
    The float model picks b, the simulator (equal logits, first index) picks a."""
    net = _net()
    with torch.no_grad():
        logits, _ = net(torch.tensor([PROMPT]))
        order = torch.argsort(logits[0, -1], descending=True)
        a = int(order[0])
        assert logits[0, -1, a] > 0
        b = next(t for t in range(a + 1, 256) if t not in PROMPT)
        w = net.wte.weight
        w[a] = w[a].half().float()
        w[b] = w[a] * (1 + 1e-4)
        assert torch.equal(w[b].half(), w[a].half())
    d = save_checkpoint(net, tmp_path_factory.mktemp("near_tie"))
    return d, a, b


def test_scoring_a_constructed_near_tie_and_a_real_swap():
    ref = np.array([0.0, 5.0, 5.0004, -3.0])                  # top-2 margin 0.0004; range 8.0004 -> bound 0.04
    tie = cmp.score("sim", "golden", [1], [2], [ref], [np.array([0.0, 5.001, 5.001, -3.0])])
    assert tie.verdict == "near-tie" and tie.first_divergence == 0 and tie.steps[0].got_token == 1
    swap = cmp.score("sim", "golden", [1], [2], [ref], [np.array([0.0, 6.0, 5.0, -3.0])])
    assert swap.verdict == "mismatch"
    exact = cmp.score("rtl", "sim", [1], [2], [ref], [ref + np.array([0, 0, 0, 1e-3])])
    assert exact.verdict == "mismatch" and exact.steps[0].bound == 0       # against the simulator: bit-exact


def test_near_tie_end_to_end(near_tie_model):
    d, a, b = near_tie_model
    net = load_checkpoint(d)
    c = cmp.compare(compile_model(net, "tiny"), PROMPT, 4, net=net)
    s = c.steps[0]
    assert (s.ref_token, s.got_token) == (b, a)
    assert 0 < s.margin < 1e-3 and s.tie and c.verdict == "near-tie"


def test_cli_near_tie_exits_zero(near_tie_model, tmp_path):
    d, a, b = near_tie_model
    r = CliRunner().invoke(main, ["compare", str(d), "--prompt", bytes(PROMPT).decode(), "-n", "4"])
    assert r.exit_code == 0, r.output
    assert "first divergence: step 0" in r.stdout and f"({b})" in r.stdout and f"({a})" in r.stdout
    assert "verdict: near-tie" in r.stdout


def test_cli_corrupted_weight_is_a_mismatch_naming_its_instruction(tmp_path):
    net = _net()
    d = save_checkpoint(net, tmp_path / "model")
    prog = compile_model(net, "tiny")
    sym = prog.manifest.memory[0].hbm["h.0.attn.c_attn.w0"]
    assert sym.address == 0
    prog.devices[0].hbm[0:64] = b"\x00\x58" * 32                      # 32 weights of c_attn become 128.0
    p = save_program(prog, tmp_path / "bad.dfx")
    r = CliRunner().invoke(main, ["compare", str(p), "--model", str(d), "--prompt", bytes(PROMPT).decode(),
                                  "-n", "3"])
    assert r.exit_code == 1, r.output
    assert "verdict: MISMATCH at step 0" in r.stdout
    line = next(x for x in r.stdout.splitlines() if x.startswith("first differing instruction:"))
    assert "LINEAR" in line and "node h.0.attn.c_attn" in line, line
    # the intact program agrees
    good = save_program(compile_model(net, "tiny"), tmp_path / "good.dfx")
    r = CliRunner().invoke(main, ["compare", str(good), "--model", str(d), "--prompt", bytes(PROMPT).decode(),
                                  "-n", "3"])
    assert r.exit_code == 0 and "verdict: agree" in r.stdout, r.output


def test_bad_rungs_are_one_line_errors(tmp_path):
    r = CliRunner().invoke(main, ["compare", "--prompt", "x", "--backend", "sim", "--against", "sim"])
    assert r.exit_code == 2 and "compares a rung with itself" in r.stderr
