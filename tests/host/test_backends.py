"""Which backend runs: one rule everywhere (`dfx.host.resolve_backend`): the argument, else $DFX_BACKEND, else
sim; on the main paths (`open_backend`, `Session`, `dfx run`) with no backend named, the variable decides."""
from pathlib import Path

import pytest
from click.testing import CliRunner

from dfx.cli import main
from dfx.errors import DeviceError
from dfx.host import BACKENDS, resolve_backend
from dfx.host.backends import open_backend
from dfx.host.session import Session
from dfx.host.transports import OPENERS
from dfx.program import load_program

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def prog1():
    return load_program(FIX / "tiny_1dev.dfx")


def test_rule(monkeypatch):
    monkeypatch.delenv("DFX_BACKEND", raising=False)
    assert resolve_backend() == resolve_backend(None) == "sim"
    monkeypatch.setenv("DFX_BACKEND", "pynq")
    assert resolve_backend() == "pynq" and resolve_backend("rtl") == "rtl"
    with pytest.raises(DeviceError, match=r"^unknown backend 'nope'; accepted: sim, rtl, xrt, pynq$"):
        resolve_backend("nope")
    monkeypatch.setenv("DFX_BACKEND", "golden")
    assert resolve_backend(None, ("golden", *BACKENDS)) == "golden"
    assert set(OPENERS) == set(BACKENDS)


def test_main_path_honours_the_environment(prog1, monkeypatch, tmp_path):
    monkeypatch.setenv("DFX_BACKEND", "bogus")
    for open_ in (open_backend, Session):
        with pytest.raises(DeviceError, match=r"^unknown DFX_BACKEND 'bogus'; accepted: sim, rtl, xrt, pynq$"):
            open_(prog1)
    monkeypatch.setenv("DFX_BACKEND", "pynq")          # not the default: the pynq transport asks for its xclbin
    monkeypatch.delenv("DFX_XCLBIN", raising=False)
    with pytest.raises(DeviceError, match="the pynq backend needs an xclbin"):
        open_backend(prog1)
    monkeypatch.setenv("DFX_BACKEND", "sim")
    b = open_backend(prog1)
    assert b.name == "sim" and b.devices[0].t.backend == "sim"
    b.close()
    with Session(prog1) as s:
        assert s.summary()["backend"] == "sim"


@pytest.fixture(scope="module")
def default_program(tmp_path_factory):
    """The embedded model compiled by `dfx compile` (it carries its tokenizer, so `dfx run` can encode text)."""
    path = tmp_path_factory.mktemp("prog") / "default.dfx"
    r = CliRunner().invoke(main, ["compile", "-o", str(path), "--max-seq", "32"])
    assert r.exit_code == 0, r.stderr
    return str(path)


@pytest.mark.parametrize("var,want", [
    ("DFX_RTL_QTABLES", "error: DFX_RTL_QTABLES='yes': must be 0 (element dequantisers) or 1 (table dequantisers for "
                        "int3 and int4)"),
    ("DFX_RTL_MPU", "error: DFX_RTL_MPU='yes': the MPU profile must be one of default, deep"),
    ("DFX_RTL_PIPELINE", "error: DFX_RTL_PIPELINE='yes': the pipeline profile must be one of default, deep")])
def test_cli_refuses_a_bad_core_choice_in_the_environment(default_program, monkeypatch, var, want):
    """A core choice the rtl backend reads from the environment, out of range: one line naming the variable and
    what it accepts, exit 2, nothing on stdout, before anything is built."""
    monkeypatch.setenv(var, "yes")
    r = CliRunner().invoke(main, ["run", default_program, "--prompt", "ab", "-n", "1", "--backend", "rtl"])
    assert (r.exit_code, r.stdout, r.stderr.strip()) == (2, "", want)


def test_cli_honours_the_environment(default_program, monkeypatch):
    prog = default_program
    monkeypatch.setenv("DFX_BACKEND", "bogus")
    r = CliRunner().invoke(main, ["run", prog, "--prompt", "ab", "-n", "2"])
    assert r.exit_code == 2 and r.stderr.strip() == "error: unknown DFX_BACKEND 'bogus'; accepted: sim, rtl, xrt, pynq"
    r = CliRunner().invoke(main, ["generate", "ab", "-n", "2"])
    assert r.exit_code == 2 and r.stderr.strip() == ("error: unknown DFX_BACKEND 'bogus'; accepted: golden, sim, "
                                                     "rtl, xrt, pynq")
    monkeypatch.setenv("DFX_BACKEND", "pynq")
    monkeypatch.delenv("DFX_XCLBIN", raising=False)
    r = CliRunner().invoke(main, ["run", prog, "--prompt", "ab", "-n", "2"])
    assert r.exit_code == 2 and "the pynq backend needs an xclbin" in r.stderr
    monkeypatch.setenv("DFX_BACKEND", "sim")
    r = CliRunner().invoke(main, ["run", prog, "--prompt", "ab", "-n", "2"])
    assert r.exit_code == 0 and r.stdout.startswith("ab"), r.stderr
    assert CliRunner().invoke(main, ["run", prog, "--prompt", "ab", "-n", "2", "--backend", "sim"]).stdout == r.stdout
