"""`dfx compile --weights/--method/--calib` and `dfx generate --weights`: formats listed by --help, bad input in
one line with exit 2, quantized programs that run."""
import pytest
from click.testing import CliRunner

from dfx.cli import main
from dfx.program import load_program


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_lists_the_formats():
    for cmd in ("compile", "generate"):
        r = run(cmd, "--help")
        assert r.exit_code == 0
        text = " ".join(r.output.split())
        assert "fp16, int{8,4,3}-{oc,ic}[-g{32,64,128}][-asym]" in text and "bcq{1,2,3,4}" in text
    assert "--calib" in run("compile", "--help").output


@pytest.mark.parametrize("args,msg", [
    (("--weights", "int4"), "error: --weights: unknown weight format 'int4'; accepted: fp16, int{8,4,3}"),
    (("--weights", "int4-oc-g48"), "group size 48 is not one of 32, 64, 128; accepted:"),
    (("--weights", "int4-oc", "--method", "gptq"), "error: --method gptq needs calibration text"),
    (("--weights", "fp8e4m3", "--method", "gptq", "--calib", "corpus"), "method gptq does not quantize fp8e4m3"),
    (("--weights", "int4-oc", "--calib", "corpus"), "--calib is for --method gptq, adadim or mixed"),
    (("--weights", "int4-oc", "--method", "adadim", "--calib", "/nonexistent"), "--calib /nonexistent: no such file"),
    (("--weights", "int4-oc", "--config", "{cfg}"), "needs the int4 dequantiser, which config 'fp16only'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, msg):
    from dfx.config import PRESETS
    cfg = tmp_path / "c.json"
    import json
    cfg.write_text(json.dumps(PRESETS["tiny"].replace(name="fp16only", weight_formats=("fp16",)).to_dict()))
    out = tmp_path / "p.dfx"
    r = CliRunner().invoke(main, ["compile", "-o", str(out), *[a.format(cfg=cfg) for a in args]])
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and msg in lines[0], r.output
    assert not out.exists()


def test_compile_and_generate_quantized(tmp_path):
    out = tmp_path / "q.dfx"
    r = run("compile", "-o", str(out), "--weights", "int4-ic-g64", "--devices", "2", "--max-seq", "24")
    assert r.exit_code == 0, r.output
    prog = load_program(out)
    q = prog.manifest.quantization
    assert q.format == "int4-ic-g64" and q.method == "rtn" and len(q.regions) == 2
    sim = CliRunner().invoke(main, ["generate", "def f(", "-n", "6", "--weights", "int4-ic-g64"])
    gold = CliRunner().invoke(main, ["generate", "def f(", "-n", "6", "--weights", "int4-ic-g64", "--backend", "golden"])
    assert sim.exit_code == gold.exit_code == 0
    assert sim.stdout == gold.stdout
