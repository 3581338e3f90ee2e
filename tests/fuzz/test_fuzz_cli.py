"""Fuzzing the command line (issue 21): random commands, options and values (edge numbers, bad paths, surrogates,
unknown options, stray arguments) through click's CliRunner never end in a traceback: exit 0, or exit 2 with
one `error:` line on stderr and nothing on stdout."""
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dfx.cli import main
from dfx.program import save_program
from gpt2_fixtures import make_hf_gpt2
from program_fuzz import programs

INTS = ("-1", "0", "1", "2", "3", str(2 ** 70), "x", "", "1.5", "nan")
FLOATS = ("nan", "inf", "-inf", "-1", "0", "0.001", "0.5", "1", "30", "1e400", "x", "")
TEXT = st.sampled_from(("def f(", "x", "", " ", "\udcff", "caf\u00e9 \U0001F600", "\x00", "a" * 40)) | st.text(max_size=6)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_fuzz")
    save_program(programs()[1], d / "p.dfx")
    make_hf_gpt2(5, n_embd=32, n_head=2, n_layer=1, n_positions=16, vocab_size=256).save_pretrained(d / "ckpt")
    (d / "file.txt").write_text("x")
    (d / "cfg.json").write_text('{"clock_mhz": "fast"}')
    return {"prog": str(d / "p.dfx"), "ckpt": str(d / "ckpt"), "dir": str(d), "file": str(d / "file.txt"),
            "under": str(d / "file.txt" / "x.dfx"), "missing": str(d / "nope.dfx"), "out": str(d / "out.dfx"),
            "cfg": str(d / "cfg.json"), "empty": ""}


def _path(paths, *kinds):
    return st.sampled_from(kinds).map(paths.get)


def _options(paths, command):
    """(option, value strategy or None for a flag) of each command fuzzed here (the fast ones)."""
    samp = [("-n", st.sampled_from(("0", "1", "2", "-1", "x", str(2 ** 70)))), ("--temperature", st.sampled_from(FLOATS)),
            ("--top-k", st.sampled_from(INTS)), ("--top-p", st.sampled_from(FLOATS)), ("--seed", st.sampled_from(INTS)),
            ("--timeout", st.sampled_from(FLOATS)), ("--stats", None),
            ("--backend", st.sampled_from(("sim", "rtl", "pynq", "golden", "x", ""))),
            ("--xclbin", _path(paths, "missing", "file", "dir", "empty"))]
    if command == "run":
        return samp + [("-p", TEXT), ("--devices", st.sampled_from(INTS)),
                       ("--require-signed", _path(paths, "missing", "file", "dir"))]
    if command == "generate":
        return samp + [("--config", st.sampled_from(("tiny", "dfx", "huge", "")) | _path(paths, "cfg", "file")),
                       ("--devices", st.sampled_from(INTS)), ("--weights", st.sampled_from(("fp16", "int4-oc", "x", ""))),
                       ("--prefill-batch", st.sampled_from(INTS))]
    if command == "compile":
        return [("-o", _path(paths, "out", "dir", "under", "empty", "file")),
                ("--config", st.sampled_from(("tiny", "huge", "")) | _path(paths, "cfg")),
                ("--devices", st.sampled_from(INTS)), ("--max-seq", st.sampled_from(INTS)),
                ("--weights", st.sampled_from(("fp16", "int8-oc", "bcq9-oc", "x"))),
                ("--method", st.sampled_from(("rtn", "gptq", "x"))), ("--overlap", st.sampled_from(("1", "2", "0", "x"))),
                ("--prefill-batch", st.sampled_from(INTS)), ("--sign", _path(paths, "missing", "file", "dir")),
                ("--calib", st.sampled_from(("corpus", "")) | _path(paths, "file", "missing"))]
    return [("--device", st.sampled_from(INTS)),
            ("--stream", st.sampled_from(("all", "prefill", "decode", "prefill_batch", "x")))]


@st.composite
def command_lines(draw, paths):
    cmd = draw(st.sampled_from(("run", "generate", "compile", "disasm")))
    head = {"run": [_path(paths, "prog", "prog", "prog", "missing", "dir", "file", "empty")],
            "generate": [TEXT], "compile": [_path(paths, "ckpt", "ckpt", "missing", "file")],
            "disasm": [_path(paths, "prog", "prog", "missing", "dir", "empty")]}[cmd]
    args = [cmd] + [draw(s) for s in head if draw(st.integers(0, 9))]
    if cmd == "run" and draw(st.integers(0, 4)):
        args += ["-p", "def f("]
    if cmd in ("run", "generate"):
        args += ["-n", "2"]                         # a short run unless a later -n says otherwise
    if cmd == "generate":
        args += ["--model", paths["ckpt"]]
    opts = _options(paths, cmd)
    for _ in range(draw(st.integers(0, 4))):
        name, value = draw(st.sampled_from(opts))
        args.append(name)
        if value is not None:
            args.append(draw(value))
    if not draw(st.integers(0, 9)):
        args.insert(draw(st.integers(1, len(args))), draw(st.sampled_from(("--nope", "-z", "extra", "--", "-"))))
    return args


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_command_lines_never_give_a_traceback(paths, data):
    args = data.draw(command_lines(paths))
    if "--backend" in args and "rtl" in args:
        args = [a if a != "rtl" else "sim" for a in args]      # the RTL backend builds a simulator: not in CI
    r = CliRunner().invoke(main, args)
    event(f"{args[0]} exit {r.exit_code}")
    assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.exc_info)
    assert r.exit_code in (0, 2), (args, r.exit_code, r.stderr)
    assert "Traceback" not in r.stderr, (args, r.stderr)
    if r.exit_code == 2:
        assert r.stdout == "" and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, (args, r.stdout,
                                                                                                  r.stderr)
