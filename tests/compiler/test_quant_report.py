"""`dfx quant-report` and the table code behind benchmarks/quant_report.py, on a truncated held-out set."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dfx.cli import main
from dfx.compiler.quant.report_cli import (default_rows, hbm_bytes_per_token, markdown_table, parse_rows,
                                           report)
from dfx.errors import UsageError
from dfx.models.checkpoint import save_checkpoint
from dfx.models.gpt2 import GPT2, GPTConfig


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    """A byte-level model whose width (48) no group size divides."""
    m = GPT2(GPTConfig(vocab_size=256, n_positions=64, n_embd=48, n_layer=1, n_head=2))
    m.reset_parameters(seed=0)
    return save_checkpoint(m, tmp_path_factory.mktemp("small") / "m", dtype=torch.float16)


def cli(*args):
    return CliRunner().invoke(main, ["quant-report", *args])


@pytest.mark.filterwarnings("ignore::UserWarning")      # the width 48 gives short groups: expected
def test_report_rows_on_truncated_eval(small_dir):
    rows = parse_rows("fp16,int8-oc,int4-oc-g32:gptq,int4-oc-g32:adadim,bcq2-oc-g32,fp8e4m3,mixed", budget=5)
    res, meta = report(small_dir, rows, n_windows=2, calib_windows=24)
    assert [r["method"] for r in res] == ["rtn", "rtn", "gptq", "adadim", "bcq", "rtn", "mixed"]
    fp16 = res[0]
    assert fp16["bits_per_weight"] == 16 and fp16["rel_output_error"] < 1e-6
    assert meta["eval_bytes"] == 2 * 64 and meta["calib_tokens"] == 24 * 64
    for r in res[1:]:
        assert r["model_bytes"] < fp16["model_bytes"] and r["hbm_bytes_per_token"] < fp16["hbm_bytes_per_token"]
        assert np.isfinite(r["ppl"]) and r["bits_per_byte"] == pytest.approx(np.log2(r["ppl"]))
    assert res[-1]["bits_per_weight"] <= 5
    table = markdown_table(res)
    assert table.count("\n") == len(res) + 1 and "| RTN int8-oc | int8-oc | 8." in table


def test_hbm_bytes_per_token_parts():
    m = GPT2(GPTConfig(vocab_size=256, n_positions=64, n_embd=64, n_layer=2, n_head=2))
    b = hbm_bytes_per_token(m, {})
    assert b["kv"] == 2 * 2 * (32 + 1) * 64 * 2 and b["lm_head"] == 64 * 256 * 2
    assert b["weights"] == 2 * 2 * 64 * 64 * 12                 # FP16 tiles, nothing padded at 64 x 16
    assert b["total"] == b["weights"] + b["lm_head"] + b["small"] + b["kv"]


def test_default_rows_cover_the_issue():
    labels = " ".join(r.label for r in default_rows())
    for want in ("FP16", "INT8 per-OC", "INT4 per-OC g128", "INT4 per-IC g128", "AdaDim", "GPTQ INT4",
                 "BCQ 3-bit", "BCQ 4-bit", "FP8 E4M3", "FP8 E5M2", "Mixed"):
        assert want in labels


def test_cli_prints_the_table_and_warns_on_short_groups(small_dir):
    r = cli("--model", str(small_dir), "--windows", "1", "--calib-windows", "16", "--rows", "fp16,int4-oc-g32")
    assert r.exit_code == 0, r.output
    assert "| RTN int4-oc-g32 | int4-oc-g32 |" in r.stdout
    assert ("warning: h.0.attn.c_attn.weight: group size 32 does not divide K (inputs) = 48; the last group is "
            "shorter (16 weights)") in r.stderr


@pytest.mark.parametrize("args, msg", [
    (["--rows", "int4-xc-g128"], "'int4-xc-g128'"),
    (["--rows", "int4-oc:awq"], "unknown quantization method 'awq'; accepted: rtn, bcq, gptq, adadim, mixed"),
    (["--rows", "fp8e4m3:gptq"], "method gptq does not quantize fp8e4m3 weights; it takes int formats"),
    (["--rows", "int4-oc-g100"], "group size 100 is not one of 32, 64, 128"),
    (["--calib", "/nonexistent/calib.txt"], "calibration file /nonexistent/calib.txt does not exist"),
    (["--windows", "0"], "--windows must be >= 1, not 0"),
])
def test_cli_bad_input_exits_2(small_dir, args, msg):
    r = cli("--model", str(small_dir), *args)
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and msg in r.stderr, r.output
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.output


def test_cli_short_calibration_text(small_dir, tmp_path):
    f = tmp_path / "calib.txt"
    f.write_bytes(b"x = 1\n" * 40)
    r = cli("--model", str(small_dir), "--calib", str(f), "--rows", "int4-oc-g32:gptq")
    assert r.exit_code == 2
    assert r.stderr.startswith("error: calibration text") and "too short: 240 bytes; at least 1024 are needed" \
        in r.stderr


def test_report_refuses_a_non_byte_model(tmp_path):
    m = GPT2(GPTConfig(vocab_size=300, n_positions=16, n_embd=32, n_layer=1, n_head=2))
    d = save_checkpoint(m, tmp_path / "m")
    with pytest.raises(UsageError, match="needs vocab_size 256"):
        report(d, parse_rows("fp16"), n_windows=1)


def test_cli_help():
    r = cli("--help")
    assert r.exit_code == 0 and "--rows" in r.stdout and "adadim" in r.stdout and "--calib" in r.stdout
