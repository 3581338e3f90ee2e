"""dfx.progress: bars on stderr only, on a terminal or with DFX_PROGRESS=1, off with DFX_PROGRESS=0."""
import io
import sys

from dfx import progress


def test_mode_follows_the_environment_and_the_terminal(monkeypatch):
    monkeypatch.setenv("DFX_PROGRESS", "1")
    assert progress.mode() == "on"
    monkeypatch.setenv("DFX_PROGRESS", "0")
    assert progress.mode() == "off"
    monkeypatch.delenv("DFX_PROGRESS")
    monkeypatch.setattr(sys, "stderr", io.StringIO())           # not a terminal: no bar in logs and pipes
    assert progress.mode() == "off"


def test_step_bar_counts_tokens_and_cycles_on_stderr(monkeypatch, capsys):
    monkeypatch.setenv("DFX_PROGRESS", "1")
    b = progress.StepBar("[rtl] tokens", 5, leave=True)
    for _ in range(3):
        b(1, 40_000)
    b.close()
    b(1, 1)                                                     # ignored after close
    out, err = capsys.readouterr()
    assert out == ""
    assert "[rtl] tokens" in err and "3/5" in err and "cycles/s" in err
    assert b.cycles == 120_000


def test_track_yields_everything_and_is_silent_when_off(monkeypatch, capsys):
    monkeypatch.setenv("DFX_PROGRESS", "0")
    assert list(progress.track(range(4), "x")) == [0, 1, 2, 3]
    assert capsys.readouterr() == ("", "")
