"""The command line's promise under bad input (issue 21): one `error:` line on stderr, exit code 2, nothing on
stdout, no traceback. Every case the issue lists is here: bad text, numbers and paths on the command line,
click's own parse errors, third-party warnings, and program files whose instruction streams pass every checksum
but break the ISA (each a crash class of the mutation sweep), run too long for --timeout, fall off their end or
never write the logits."""
import json
import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from dfx import isa
from dfx.cli import main
from dfx.compiler import compile_model
from dfx.config import PRESETS
from dfx.host.backends import open_devices
from dfx.host.device import DeviceGroup, KernelError
from dfx.host.image import DDR_BANK
from dfx.models.checkpoint import load_default
from dfx.program import load_program, save_program
from gpt2_fixtures import make_hf_gpt2
from program_forgery import read_members, reseal


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exc_info
    return r.exit_code, r.stdout, r.stderr


def one_error(code, out, err, *want):
    """Exit 2, nothing on stdout, exactly one `error:` line on stderr holding every phrase of `want`."""
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and err.endswith("\n"), err
    for w in want:
        assert w in err, (w, err)


@pytest.fixture(scope="module")
def progs(tmp_path_factory):
    """The embedded model compiled for 1 and 2 devices (byte tokenizer, 32 positions), and a small checkpoint."""
    d = tmp_path_factory.mktemp("rel")
    net = load_default()
    for n in (1, 2):
        save_program(compile_model(net, "tiny", devices=n, max_seq=32), d / f"p{n}.dfx")
    make_hf_gpt2(3, n_embd=32, n_head=2, n_layer=1, n_positions=32, vocab_size=256).save_pretrained(d / "ckpt")
    return d


def mutate(src, dst, stream: str, edit, device: int = 0):
    """A copy of program `src` at `dst` whose `stream` of `device` is `edit(list of Instr)`, checksums and digest
    recomputed (the file passes every integrity check)."""
    members = read_members(src)
    key = f"dev{device}/{stream}.bin"
    members[key] = isa.encode_stream(edit(isa.decode_stream(members[key])))
    reseal(dst, members)
    return dst


def with_fields(ins: isa.Instr, **kw) -> isa.Instr:
    vals = {f.name: ins.bits(f.name) for f in ins.op.fmt.fields}
    vals.update(kw)
    return isa.Instr(ins.op, _raw=True, **vals)


def first(instrs, mnemonic, **kw):
    """The stream with the first `mnemonic` instruction's fields changed."""
    pc = next(i for i, ins in enumerate(instrs) if ins.op.mnemonic == mnemonic)
    return instrs[:pc] + [with_fields(instrs[pc], **kw)] + instrs[pc + 1:]


# ------------------------------------------------------------------------------------------------ command line
@pytest.mark.parametrize("args,want", [
    (["run", "P1", "--bogus"], ("No such option '--bogus'", "(see dfx run --help)")),
    (["run"], ("Missing argument 'PROGRAM'", "(see dfx run --help)")),
    (["run", "P1", "-p", "x", "--backend", "fpga"], ("'fpga' is not one of 'sim', 'rtl', 'xrt', 'pynq'",)),
    (["disasm", "P1", "--stream", "both"], ("'both' is not one of",)),
    (["nosuch"], ("No such command 'nosuch'", "(see dfx --help)")),
    (["run", "P1", "-p", "x", "-n", "two"], ("'two' is not a valid integer",)),
    (["run", "P1", "-p", "x", "--seed", str(2 ** 70)], ("--seed", "0<=x<=18446744073709551615")),
    (["run", "P1", "-p", "x", "--seed", "-1"], ("--seed",)),
    (["run", "P1", "-p", "x", "--timeout", "nan"], ("Invalid value for '--timeout': must be a number of seconds > 0, "
                                                    "not nan",)),
    (["run", "P1", "-p", "x", "--timeout", "0"], ("'--timeout': must be a number",)),
    (["generate", "x", "--model", "CKPT", "--timeout", "-inf"], ("'--timeout': must be a number",)),
    (["compile", "CKPT", "-o", "OUT", "--max-seq", "-1"], ("--max-seq", "-1 is not in the range x>=1")),
    (["compile", "CKPT", "-o", "OUT", "--max-seq", "0"], ("--max-seq", "0 is not in the range x>=1")),
    (["run", "P1", "-p", "\udcff"], ("not valid UTF-8", r"'\udcff'")),
    (["run", "P1", "-p", "ok \udc80\udcff"], ("character 3",)),
    (["generate", "\udcff", "--model", "CKPT", "-n", "2"], ("not valid UTF-8",)),
])
def test_bad_command_line_is_one_error_line(progs, tmp_path, args, want):
    subs = {"P1": progs / "p1.dfx", "CKPT": progs / "ckpt", "OUT": tmp_path / "o.dfx"}
    one_error(*run(*[subs.get(a, a) for a in args]), *want)
    assert not (tmp_path / "o.dfx").exists()


def test_a_non_utf8_prompt_from_a_real_shell(progs):
    """The bytes of a Latin-1 prompt, as a shell passes them: one line, exit 2, nothing on stdout."""
    r = subprocess.run([sys.executable, "-m", "dfx.cli", "run", str(progs / "p1.dfx"), "-p", b"caf\xe9"],
                       capture_output=True, text=True, errors="replace")
    one_error(r.returncode, r.stdout, r.stderr, "not valid UTF-8: character 3")


def test_config_fields_are_type_checked(progs, tmp_path):
    cfg = tmp_path / "fast.json"
    cfg.write_text(json.dumps({**PRESETS["tiny"].to_dict(), "clock_mhz": "fast"}))
    one_error(*run("compile", progs / "ckpt", "-o", tmp_path / "x.dfx", "--config", cfg),
              "AccelConfig.clock_mhz must be a number (MHz) in (0, 1000], not 'fast'")
    cfg.write_text(json.dumps({**PRESETS["tiny"].to_dict(), "weight_formats": "fp16"}))
    one_error(*run("compile", progs / "ckpt", "-o", tmp_path / "x.dfx", "--config", cfg),
              "AccelConfig.weight_formats must be a list")
    assert not (tmp_path / "x.dfx").exists()


def test_output_paths_that_cannot_be_written(progs, tmp_path):
    """-o at a folder, under a file, '' or in a read-only folder: refused in one line (before compiling where the
    path alone says so), nothing written."""
    ck = progs / "ckpt"
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    one_error(*run("compile", ck, "-o", tmp_path), "is a folder; give a file to write")
    one_error(*run("compile", ck, "-o", a_file / "x.dfx"), f"{a_file} is not a folder")
    one_error(*run("compile", ck, "-o", a_file / "sub" / "x.dfx"), "does not exist")
    one_error(*run("compile", ck, "-o", ""), "-o is empty")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if not os.access(ro, os.W_OK):
            one_error(*run("compile", ck, "-o", ro / "x.dfx"), f"the folder {ro} is not writable")
        elif not os.access("/sys", os.F_OK):
            pytest.skip("running as root with no read-only folder to write into")
        else:            # root may write into a 0555 folder; sysfs refuses even root: the write itself fails
            one_error(*run("compile", ck, "-o", "/sys/dfx-test.dfx"), "-o /sys/dfx-test.dfx: cannot write the "
                      "program there")
        assert not list(ro.iterdir())
    finally:
        ro.chmod(0o755)
    assert a_file.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "ro"]


def test_pynq_warnings_are_not_shown(progs, tmp_path):
    """--backend pynq where no board is: pynq warns "No devices found" as it looks; only dfx's one line shows."""
    x = tmp_path / "dfx.xclbin"
    x.write_bytes(b"not a real xclbin")
    code, out, err = run("run", progs / "p1.dfx", "-p", "hi", "-n", "2", "--backend", "pynq", "--xclbin", x)
    one_error(code, out, err)
    assert "Warning" not in err and "warnings.warn" not in err


def test_prompt_is_printed_only_once_the_first_token_came(progs, tmp_path):
    """A run that fails on the device (here: decode's first load reads outside DDR) prints nothing on stdout;
    a good run prints the prompt then the text."""
    bad = mutate(progs / "p1.dfx", tmp_path / "bad.dfx", "decode", lambda s: first(s, "LOAD", addr=(1 << 36) - 1))
    one_error(*run("run", bad, "-p", "def f(", "-n", "3"), "the kernel stopped with error address_range",
              "of the decode stream", "are outside the")
    code, out, err = run("run", progs / "p1.dfx", "-p", "def f(", "-n", "3")
    assert code == 0 and out.startswith("def f(") and len(out) > len("def f(\n"), (out, err)
    code, out, _ = run("run", progs / "p1.dfx", "-p", "def f(", "-n", "0")
    assert code == 0 and out == "def f(\n"


# ------------------------------------------------------------------------------------------------ program crash classes
def _gran0(s):
    return first(s, "ALLGATHER", gran=0)


def _devices0(s):
    return first(s, "ALLGATHER", devices=0)


@pytest.mark.parametrize("devices,stream,edit,want", [
    # ZeroDivisionError in isa.chunk_bounds
    (2, "decode", _gran0, "ALLGATHER gran=0: the split granule must be >= 1"),
    (2, "prefill", _devices0, "ALLGATHER over 0 devices, but the program has 2"),
    # ValueError in fastmpu.from_rows (an empty tile grid)
    (1, "prefill", lambda s: first(s, "LINEAR", k=0), "k=0: a length must be >= 1"),
    (1, "decode", lambda s: first(s, "QK", k=0), "k=0: a length must be >= 1"),
    (1, "decode", lambda s: first(s, "SV", n=0), "n=0: a length must be >= 1"),
    (1, "decode", lambda s: first(s, "SV", dyn_k=0, k=0), "k=0: a length must be >= 1 (or +dyn_k: POS + 1)"),
    (1, "decode", lambda s: first(s, "LMHEAD", n=0), "n=0: a length must be >= 1"),
    (1, "prefill", lambda s: first(s, "VADD", n=0), "n=0: a length must be >= 1"),
    (1, "prefill", lambda s: first(s, "LOAD", index=3), "index=3: no such row index register"),
    (1, "prefill", lambda s: first(s, "STORE_K", hbm=0), "STORE_K appends to a K/V cache in HBM"),
    (1, "prefill", lambda s: first(s, "VADD", a=(1 << 16) - 1), "exceed the 4096-entry buffer"),
    # a stream without HALT ran into the next one (prefill into decode)
    (1, "prefill", lambda s: s[:-1], "prefill stream of device 0: the stream of 319 instructions has no HALT"),
    (1, "decode", lambda s: s[:-1] + [isa.Instr("NOP")], "decode stream of device 0: the stream of 322 "
                                                          "instructions has no HALT"),
    # a decode stream of only HALT returned tokens [0, 0] (logits never written)
    (1, "decode", lambda s: [isa.Instr("HALT")], "decode stream of device 0: no STORE writes its logits"),
])
def test_program_that_breaks_the_isa_is_refused_at_load(progs, tmp_path, devices, stream, edit, want):
    p = mutate(progs / f"p{devices}.dfx", tmp_path / "m.dfx", stream, edit)
    one_error(*run("run", p, "-p", "def f(", "-n", "2"), want)
    code, out, err = run("disasm", p)                  # disasm prints any program that decodes
    assert code == 0 and out.count("HALT") >= 1 and err == "", err


def test_timeout_stops_a_long_run_on_the_sim_backend(progs, tmp_path):
    """A legal `BATCH m=65535` in front of every LINEAR runs for minutes; --timeout 1 stops it after about a
    second with an error naming the timeout and how to raise it."""
    def batch_every_linear(s):
        out = []
        for ins in s:
            if ins.op.mnemonic == "LINEAR":
                out.append(isa.Instr("BATCH", m=(1 << 16) - 1))
            out.append(ins)
        return out
    p = mutate(progs / "p1.dfx", tmp_path / "slow.dfx", "prefill", batch_every_linear)
    t0 = time.monotonic()
    code, out, err = run("run", p, "-p", "def f(", "-n", "2", "--timeout", "1")
    assert time.monotonic() - t0 < 20
    one_error(code, out, err, "did not finish the prefill stream within 1 s", "raise the limit with --timeout")


def test_a_stream_overwritten_after_load_stops_at_its_end(progs):
    """Under the sim backend the kernel fetches the stream from DDR: with its HALT overwritten after the load
    check, the fetch stops at the stream's end (it does not run into the next stream) and the kernel reports
    it."""
    prog = load_program(progs / "p1.dfx")
    group = DeviceGroup(open_devices(prog, "sim"))
    group.load(prog)
    n = len(prog.devices[0].streams["prefill"])
    group.write_all(DDR_BANK, group.devices[0].image.entries["prefill"] + (n - 1) * isa.WORD_BYTES,
                    isa.Instr("FENCE", units=16).to_bytes())
    with pytest.raises(KernelError, match=rf"illegal_opcode .* at pc {n} of the prefill stream: device 0: prefill: "
                                          rf"the stream of {n} instructions has no HALT"):
        group.run("prefill", 5, 0)


@pytest.fixture(scope="module")
def batched(tmp_path_factory):
    p = tmp_path_factory.mktemp("rel_batched") / "b.dfx"
    net = make_hf_gpt2(4, n_embd=32, n_head=2, n_layer=1, n_positions=16, vocab_size=256)
    return save_program(compile_model(net, "tiny", prefill_batch=2), p)


@pytest.mark.parametrize("stream,edit,want", [
    ("decode", lambda s: [isa.Instr("CHUNK", addr=0, cap=1)] + s, "decode stream of device 0 uses COUNT (CHUNK, "
                                                                    "SLOT, BATCH +dyn_m), which only the batched "
                                                                    "prefill stream (prefill_batch) may"),
    ("prefill_batch", lambda s: [i for i in s if i.op.mnemonic not in ("CHUNK", "SLOT", "BATCH")],
     "prefill_batch stream of device 0: the batched prefill stream has no CHUNK"),
])
def test_count_belongs_to_the_batched_stream(batched, tmp_path, stream, edit, want):
    """The host writes the token table for the batched prefill stream only: another stream that reads COUNT, or a
    batched stream without CHUNK, is refused at load (and never reaches the performance model's counters)."""
    p = mutate(batched, tmp_path / "m.dfx", stream, edit)
    one_error(*run("run", p, "-p", "def f(", "-n", "2", "--stats"), want)
