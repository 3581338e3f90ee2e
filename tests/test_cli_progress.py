"""Long commands show progress on stderr; stdout (the generated text) is the same with and without it."""
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from dfx.cli import main
from dfx.compiler import compile_model
from dfx.models.checkpoint import from_transformers
from dfx.program import save_program
from gpt2_fixtures import make_hf_gpt2
from dfx.host.rtl_session import progress_relay

sys.path.insert(0, str(Path(__file__).parent / "verify"))
from verify_helpers import need_rtl  # noqa: E402 - the RTL harness's helpers live with its tests


def _run(monkeypatch, flag, *args):
    monkeypatch.setenv("DFX_PROGRESS", flag)
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.stdout, r.stderr


def test_generate_progress_goes_to_stderr_and_stdout_is_unchanged(monkeypatch):
    args = ("generate", "def main(", "-n", "12")
    out_on, err_on = _run(monkeypatch, "1", *args)
    out_off, err_off = _run(monkeypatch, "0", *args)
    assert out_on == out_off and out_on.startswith("def main(")
    assert "[sim] tokens" in err_on and "/20 [" in err_on and "tok/s]" in err_on     # 9 prompt + 12 new - 1 runs
    assert "[sim] tokens" not in err_off and "tok/s" not in out_on


def test_compile_with_gptq_shows_calibration_and_layer_progress(monkeypatch, tmp_path):
    _, err = _run(monkeypatch, "1", "compile", "--weights", "int4-oc-g128", "--method", "gptq", "--calib",
                  "corpus", "-o", tmp_path / "g.dfx")
    for label in ("calibration", "quantize gptq int4-oc-g128", "16/16", "compile"):
        assert label in err


def test_the_rtl_progress_relay_carries_lines_from_the_simulator_process():
    seen = []
    with progress_relay(lambda count, cycles: seen.append((count, cycles))) as path:
        with open(path, "a") as f:
            f.write("1 116049\n1 1160")                          # a line still being written stays pending
        time.sleep(1.5)
        with open(path, "a") as f:
            f.write("50\n")
    real = [s for s in seen if s != (0, 0)]
    assert real == [(1, 116049), (1, 116050)]
    assert (0, 0) in seen                                         # heartbeats while the core is being built
    with progress_relay(None) as path:
        assert path is None


@pytest.mark.cocotb
@pytest.mark.slow
def test_rtl_run_shows_steps_and_cycles_per_second_and_compare_agrees(monkeypatch, tmp_path):
    """`dfx run --backend rtl`: a progress line with token steps and simulated cycles/s on stderr, the same text
    as the simulator on stdout; `dfx compare --backend rtl --against sim` agrees (exit 0)."""
    need_rtl()
    prog = tmp_path / "byte.dfx"
    save_program(compile_model(from_transformers(make_hf_gpt2(4, n_embd=32, n_head=2, n_layer=1, n_positions=16,
                                                              vocab_size=256)), "tiny"), prog)
    out_rtl, err = _run(monkeypatch, "1", "run", prog, "-p", "ab", "-n", "3", "--backend", "rtl")
    out_sim, _ = _run(monkeypatch, "0", "run", prog, "-p", "ab", "-n", "3")
    assert out_rtl == out_sim
    assert "[rtl] tokens" in err and "cycles/s" in err and "/4 [" in err
    out, _ = _run(monkeypatch, "1", "compare", prog, "-p", "ab", "-n", "3", "--backend", "rtl", "--against", "sim")
    assert "verdict: agree" in out


def test_a_step_without_a_count_shows_its_elapsed_time(monkeypatch, capsys):
    """`dfx build`'s Verilog generation (minutes at the dfx preset) shows a ticking elapsed time on stderr."""
    import time

    from dfx import progress
    monkeypatch.setenv("DFX_PROGRESS", "1")
    with progress.Ticking("verilog: dfx_core (tiny)"):
        time.sleep(1.5)
    out, err = capsys.readouterr()
    assert out == "" and "verilog: dfx_core (tiny): 00:01 elapsed" in err
