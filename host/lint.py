"""`verilator --lint-only -Wall` of a `dfx build` tree's Verilog (docs/board_flow.md, Lint).

    report = lint_tree(out)          # src/dfx_core.v and, in a multi-card tree, ring/src/dfx_ring.v
    report.clean                     # no error and no warning left after the waivers
    report.lines()                   # one line per (file, problem class), with the count and the first place

Both files are generated (Amaranth 0.5 elaborates, Yosys `write_verilog` prints). The warnings that generator
prints by construction are waived in boards/u280/lint.vlt, each rule with its reason and scoped with `-file`
to the two generated files; everything else (an error, a warning of another class, any warning in a
hand-written file) makes the tree unclean. The ring kernel instantiates the two Aurora 64B/66B cores that
Vivado generates (aurora/gen_aurora_ip.tcl); lint reads them as port-only modules written from
boards/u280/aurora_stub.v.in (the ports of PG074 the kernel connects, widths from board.json), so Verilator
checks the instance's names, directions and widths against the IP's.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from dfx import progress
from dfx.verify.toolchain import venv_path

from . import ring_build
from .ring_build import RING_DIR, RING_KERNEL, BuildError

BOARD_DIR = Path(__file__).resolve().parents[1] / "boards" / "u280"
WAIVERS = BOARD_DIR / "lint.vlt"
CORE = "dfx_core"
FLAGS = ("--lint-only", "-Wall", "-Wno-fatal")
_HEAD = re.compile(r"^%(Error|Warning)(?:-([A-Z0-9_]+))?: (?:(\S+?):(\d+):(?:\d+:)? )?(.*)$")


@dataclass
class Problem:
    """One class of problem in one file: every message Verilator printed with that severity and rule."""
    file: str                             # relative to the tree ("" when Verilator named none)
    severity: str                         # "Error" or "Warning"
    rule: str                             # the Verilator rule (WIDTHEXPAND, ...); "" for a plain %Error
    count: int
    first: str                            # the first message: "file:line: text"

    def line(self) -> str:
        what = f"{self.rule or 'error'} {self.severity.lower()}"
        return f"{self.file or 'verilator'}: {what} x{self.count} (first: {self.first})"


@dataclass
class LintReport:
    files: list[str]                      # the Verilog files linted, relative to the tree
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    output: str = ""                      # Verilator's stderr, all runs

    @property
    def clean(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        return [p.line() for p in self.problems]

    def summary(self) -> str:
        files = ", ".join(self.files)
        if self.clean:
            return f"verilator --lint-only -Wall: clean ({files}; waivers: boards/u280/lint.vlt; {self.seconds:.0f} s)"
        n = sum(p.count for p in self.problems)
        k = len(self.problems)
        return (f"verilator --lint-only -Wall: {k} problem class{'es' * (k != 1)}, {n} messages ({files}; "
                f"{self.seconds:.0f} s)")


def verilator() -> str | None:
    """The Verilator executable (the venv's first), or None."""
    return shutil.which("verilator", path=venv_path())


def parse(stderr: str, root: Path | None = None) -> list[Problem]:
    """Verilator's messages grouped by (file, severity, rule), in order of first appearance. The closing
    `%Error: Exiting due to N error(s)` line is not a problem of its own."""
    seen: dict[tuple[str, str, str], Problem] = {}
    for ln in stderr.splitlines():
        m = _HEAD.match(ln)
        if not m:
            continue
        sev, rule, path, lineno, text = m.groups()
        if sev == "Error" and not rule and not path and text.startswith("Exiting due to"):
            continue
        rel = _rel(path, root) if path else ""
        key = (rel, sev, rule or "")
        if key in seen:
            seen[key].count += 1
        else:
            seen[key] = Problem(rel, sev, rule or "", 1, f"{rel}:{lineno}: {text.strip()}" if path else text.strip())
    return list(seen.values())


def _rel(path: str, root: Path | None) -> str:
    p = Path(path)
    if root is not None:
        try:
            return str(p.resolve().relative_to(root.resolve()))
        except ValueError:
            pass
    return p.name if p.is_absolute() else path


def run(sources: list[Path], top: str, root: Path, waivers: Path | None = WAIVERS) -> tuple[list[Problem], str]:
    """Lint `sources` (top module `top`) with boards/u280/lint.vlt; (problems, Verilator's stderr)."""
    exe = verilator()
    if not exe:
        raise BuildError("verilator is not installed (scripts/bootstrap.sh links it into .venv/bin)")
    argv = [exe, *FLAGS, "--top-module", top, *([str(waivers)] if waivers else []), *map(str, sources)]
    r = subprocess.run(argv, capture_output=True, text=True, cwd=root)
    problems = parse(r.stderr, root)
    if r.returncode and not any(p.severity == "Error" for p in problems):
        problems.append(Problem("", "Error", "", 1, f"verilator exited with {r.returncode}: "
                                f"{(r.stderr.strip().splitlines() or ['no message'])[-1]}"))
    return problems, r.stderr


def lint_tree(out: str | Path, log=None) -> LintReport:
    """Lint the tree's Verilog, the core's and the ring kernel's where there (see the module docstring); a
    BuildError when Verilator is missing or the tree has neither. `log`: a callable for one progress line per file."""
    out = Path(out)
    core = out / "src" / f"{CORE}.v"
    ring = out / RING_DIR / "src" / f"{RING_KERNEL}.v"
    if not core.is_file() and not ring.is_file():
        raise BuildError(f"{core}: no Verilog to lint (written by `dfx build` unless --no-verilog)")
    jobs = [([core], CORE)] if core.is_file() else []
    rep = LintReport([f"src/{CORE}.v"] if core.is_file() else [])
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dfx-lint-") as tmp:
        if ring.is_file():
            stubs = []
            for name, text in ring_build.aurora_stubs(json.loads((BOARD_DIR / "board.json").read_text())).items():
                stubs.append(Path(tmp) / name)
                stubs[-1].write_text(text)
            jobs.append(([ring, *stubs], RING_KERNEL))
            rep.files.append(f"{RING_DIR}/src/{RING_KERNEL}.v")
        for sources, top in jobs:
            what = f"lint: verilator --lint-only -Wall {sources[0].relative_to(out)}"
            if log:
                log(what)
            with progress.Ticking(what):
                problems, err = run(sources, top, out)
            rep.problems += problems
            rep.output += err
    rep.seconds = time.monotonic() - t0
    return rep

