"""The command line as a user drives it: every command, and bad input -> one line, exit code 2."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpt2_fixtures import make_hf_gpt2
from dfx.cli import main


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("byte_model")
    make_hf_gpt2(2, n_embd=64, n_head=4, n_layer=2, n_positions=64, vocab_size=256).save_pretrained(d)
    return d


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def test_help_explains_every_command():
    code, out, _ = run("--help")
    assert code == 0
    for cmd in ("doctor", "generate", "compile", "run", "disasm"):
        assert cmd in out
        assert run(cmd, "--help")[0] == 0


def test_doctor_lists_tools():
    code, out, _ = run("doctor")
    assert code == 0
    for tool in ("icarus", "verilator", "yosys", "vivado", "v++", "xrt", "pynq devices", "torch"):
        assert tool in out
    # each line's mark agrees with the machine: a tool on PATH is "ok", one absent is "missing"
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    for tool, exe in (("icarus", "iverilog"), ("vivado", "vivado"), ("v++", "v++")):
        line = next(ln for ln in out.splitlines() if ln[8:].startswith(tool + " "))
        assert line.startswith("ok" if shutil.which(exe, path=path) else "missing"), line
    assert "ok      torch" in out


def test_generate_sim_equals_golden(ckpt):
    code, sim, _ = run("generate", "def f(", "--model", ckpt, "-n", "12")
    assert code == 0, sim
    code, gold, _ = run("generate", "def f(", "--model", ckpt, "-n", "12", "--backend", "golden")
    assert code == 0
    assert sim == gold and sim.startswith("def f(")


def test_generate_with_matrix_matrix_prefill(ckpt):
    """--prefill-batch: the prompt runs in chunks of M tokens; the text is the token-serial text."""
    args = ["generate", "def f(x):", "--model", ckpt, "-n", "10"]
    code, out, err = run(*args, "--prefill-batch", "4")
    assert code == 0, err
    assert out == run(*args)[1]
    for bad, msg in (("0", "an integer in 1.."),):
        code, out, err = run(*args, "--prefill-batch", *bad.split())
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1 and out == "", (out, err)


def test_sampling_is_the_same_on_sim_and_golden(ckpt):
    args = ["generate", "def f(", "--model", ckpt, "-n", "16", "--temperature", "0.9", "--top-k", "20", "--seed", "3"]
    code, sim, _ = run(*args)
    assert code == 0
    assert sim == run(*args, "--backend", "golden")[1]
    assert sim != run(*args[:-1], "4")[1]                 # another seed, another text


def test_compile_run_disasm(ckpt, tmp_path):
    prog = tmp_path / "m.dfx"
    code, _, err = run("compile", ckpt, "-o", prog, "--devices", "2")
    assert code == 0 and prog.is_file() and "2 device(s)" in err
    code, out, _ = run("run", prog, "--prompt", "def f(", "-n", "12")
    assert code == 0
    assert out == run("generate", "def f(", "--model", ckpt, "-n", "12")[1]
    code, _, err = run("run", prog, "--prompt", "x", "--devices", "4")
    assert code == 2 and "compiled for 2 device(s) but 4 were opened" in err
    code, _, err = run("disasm", prog, "--device", "5")
    assert code == 2 and "the program has devices 0..1" in err
    code, out, _ = run("disasm", prog, "--device", "1", "--stream", "decode")
    assert code == 0 and "ALLGATHER" in out and out.rstrip().splitlines()[-1].startswith("HALT")


def test_compile_overlap_auto(ckpt, tmp_path):
    """--overlap auto: the performance model's choice per layer role is recorded, and the text is unchanged."""
    from dfx.program import load_program
    from dfx.perf.tune import tune_overlap
    prog = tmp_path / "auto.dfx"
    code, _, err = run("compile", ckpt, "-o", prog, "--devices", "2", "--overlap", "auto")
    assert code == 0, err
    m = load_program(prog).manifest
    assert m.overlap == tune_overlap(m.model.to_obj(), m.config.name, 2)
    assert run("run", prog, "--prompt", "def f(", "-n", "8")[1] == run("generate", "def f(", "--model", ckpt, "-n", "8")[1]


@pytest.mark.parametrize("args,msg", [
    (["generate", "", "--model", "CKPT"], "the prompt is empty"),
    (["generate", "x", "-n", "100000", "--model", "CKPT"], "exceeds the model's context"),
    (["generate", "x", "--model", "/nonexistent"], "does not exist"),
    (["run", "/nonexistent.dfx", "--prompt", "x"], "does not exist"),
    (["compile", "gpt5", "-o", "/tmp/x.dfx"], "neither a checkpoint directory nor a named GPT-2 size"),
    (["generate", "x", "--model", "CKPT", "-n", "4", "--config", "huge"], "neither a preset"),
    (["generate", "x", "--model", "CKPT", "-n", "4", "--devices", "9"], "at most 8 devices"),
    (["disasm", "CKPT"], "is a directory, not a dfx program file"),
    (["compile", "124M", "-o", "/tmp/x.dfx", "--devices", "2", "--overlap", "fast"], "expected auto or a segment"),
    (["compile", "124M", "-o", "/tmp/x.dfx", "--devices", "2", "--overlap", "0"], "expected auto or a segment"),
])
def test_bad_input_is_one_line_exit_2(args, msg, ckpt):
    args = [str(ckpt) if a == "CKPT" else a for a in args]
    code, out, err = run(*args)
    assert code == 2, (out, err)
    assert msg in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_corrupt_program_subprocess(ckpt, tmp_path):
    """As a real process: exit code 2, one line on stderr, and no traceback."""
    p = tmp_path / "bad.dfx"
    p.write_bytes(b"PK\x03\x04 this is not a program")
    r = subprocess.run([sys.executable, "-m", "dfx.cli", "run", str(p), "--prompt", "x"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
