"""`dfx run|generate --backend rtl --waves out.fst`: a bad path or backend is one error line and exit 2 before
anything runs; on Icarus the FST holds the debug signals named at the top (verify/waves.py), the PC advances
and the waves agree with the core's own counters."""
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from dfx.cli import main

PROG = str(Path(__file__).resolve().parent / "host" / "fixtures" / "tiny_1dev.dfx")


@pytest.mark.parametrize("where, words", [
    ("{tmp}", "is a folder"),
    ("{tmp}/none/out.fst", "does not exist"),
    ("{tmp}/out.vcd", "give a file ending .fst"),
])
@pytest.mark.parametrize("cmd", [["run", PROG, "-p", "hi"], ["generate", "hi"]])
def test_bad_waves_path_is_one_line_exit_2(cmd, where, words, tmp_path):
    r = CliRunner().invoke(main, [*cmd, "--backend", "rtl", "--waves", where.format(tmp=tmp_path)])
    err = r.stderr if hasattr(r, "stderr") else r.output
    assert r.exit_code == 2 and err.startswith("error:") and err.count("\n") == 1 and words in err, err
    assert not list(tmp_path.iterdir()) or where == "{tmp}"


@pytest.mark.parametrize("cmd", [["run", PROG, "-p", "hi"], ["generate", "hi"]])
def test_waves_need_the_rtl_backend(cmd, tmp_path):
    r = CliRunner().invoke(main, [*cmd, "--backend", "sim", "--waves", str(tmp_path / "o.fst")])
    err = r.stderr if hasattr(r, "stderr") else r.output
    assert r.exit_code == 2 and err.count("\n") == 1 and "--waves is for --backend rtl" in err, err


@pytest.fixture(scope="module")
def byte_program(tmp_path_factory):
    """A 1-layer random GPT-2 with a byte-level vocabulary (no tokenizer files: `dfx run` encodes bytes),
    compiled at the tiny config: the smallest program `dfx run` takes a text prompt for."""
    from gpt2_fixtures import make_hf_gpt2
    d = tmp_path_factory.mktemp("byte")
    make_hf_gpt2(3, n_embd=32, n_layer=1, n_head=2, n_positions=16, vocab_size=256).save_pretrained(d / "model")
    r = CliRunner().invoke(main, ["compile", str(d / "model"), "-o", str(d / "p.dfx"), "--config", "tiny"])
    assert r.exit_code == 0, r.output
    return d / "p.dfx"


def _need_waves_rtl(monkeypatch):
    from dfx.verify.fast_top import BUILD
    from dfx.verify.toolchain import missing_simulator
    pytest.importorskip("pywellen")
    if not (os.environ.get("DFX_RTL") or list(BUILD.glob("waves_tiny_*_icarus_*/stamp.txt"))):
        pytest.skip("set DFX_RTL=1 to build and simulate the core with waves (minutes)")
    if missing_simulator("icarus"):
        pytest.skip(missing_simulator("icarus"))
    monkeypatch.setenv("SIM", "icarus")


@pytest.mark.cocotb
@pytest.mark.slow
def test_run_rtl_writes_fst_with_named_signals(byte_program, tmp_path, monkeypatch):
    """`dfx run --backend rtl --waves` on Icarus: every dbg_* signal is at the FST's top, dbg_pc walks through
    the program, and each unit that ran issued, was busy and completed."""
    from dfx.verify.waves import read_fst, signal_names
    _need_waves_rtl(monkeypatch)
    out = tmp_path / "out.fst"
    r = CliRunner().invoke(main, ["run", str(byte_program), "-p", "ab", "-n", "1", "--backend", "rtl",
                                  "--waves", str(out)])
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 10_000 and f"wrote {out}" in r.output
    sig = read_fst(out, signal_names(1))
    assert {"dbg_pc", "dbg_busy_mpu", "dbg_busy_vpu", "dbg_busy_dma", "dbg_busy_router", "dbg_issue_mpu",
            "dbg_done_vpu"} <= set(sig)
    pcs = sig["dbg_pc"][1]
    assert len(set(pcs)) > 20 and max(pcs) > 20                # the PC walks through the program's streams
    for u in ("mpu", "vpu", "dma"):
        assert any(sig[f"dbg_busy_{u}"][1]) and any(sig[f"dbg_issue_{u}"][1]) and any(sig[f"dbg_done_{u}"][1])


@pytest.mark.cocotb
@pytest.mark.slow
def test_waves_agree_with_the_cores_counters(byte_program, tmp_path, monkeypatch):
    """The same program through the API: the cycles the waves show running and each unit busy equal the
    CYCLES and BUSY counters the session read (the fixture's 4-step run measured 16,454 cycles, exactly)."""
    from dfx.host.rtl_session import run_session
    from dfx.verify.fast_tb import CLOCK_NS
    from dfx.verify.waves import read_fst
    _need_waves_rtl(monkeypatch)
    res = run_session(byte_program, [97, 98], 1, waves=tmp_path / "api.fst")
    sig = read_fst(tmp_path / "api.fst", ["dbg_running", *(f"dbg_busy_{u}" for u in ("mpu", "vpu", "dma"))])
    ps = CLOCK_NS * 1000

    def high(times, values, mask=None):
        """The cycles (rising clock edges) at which the signal is 1, as a set of cycle numbers."""
        out, t_prev, v_prev = set(), None, 0
        for t, v in zip([*times, times[-1] + ps], [*values, 0]):
            if v_prev and t_prev is not None:
                out.update(range(-(-t_prev // ps), -(-t // ps)))
            t_prev, v_prev = t, v
        return out if mask is None else out & mask
    running = high(*sig["dbg_running"])
    s = res["summary"]
    assert s["steps"] == len({c for c in running if c - 1 not in running})      # one running stretch per step
    total = len(running)
    assert total == s["prefill_cycles"] + s["decode_cycles"]                  # CYCLES, summed over the steps
    for u in ("mpu", "vpu", "dma"):
        busy = len(high(*sig[f"dbg_busy_{u}"], mask=running))
        assert busy == round(s["busy_fraction"][u] * total), (u, busy, s["busy_fraction"])     # BUSY_<UNIT>
