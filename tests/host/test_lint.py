"""`verilator --lint-only -Wall` of a build tree (dfx.host.lint): the waivers of boards/u280/lint.vlt reach only
the generated files, a problem of any other class fails the lint with one line per class, and `dfx build
--check` reports it. The real trees are linted in tests/host/test_build.py (tiny by default, dfx slow)."""
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from dfx.cli import main
from dfx.config import load_config
from dfx.host import ring_build
from dfx.host.build import BuildError, build_tree
from dfx.host.lint import WAIVERS, lint_tree, parse, run, verilator

needs_verilator = pytest.mark.skipif(verilator() is None, reason="verilator is not installed")

STDERR = """%Warning-WIDTHEXPAND: /t/src/dfx_core.v:12:35: Operator LT expects 8 bits on the RHS, but ...
                                                 : ... note: In instance 'dfx_core.core'
   12 |   assign a = b[7:0] < 5'h10;
%Warning-WIDTHEXPAND: /t/src/dfx_core.v:14:3: Operator EQ expects 3 bits
%Warning-UNDRIVEN: /t/src/dfx_core.v:20:8: Signal is not driven: 'x'
%Error-MODMISSING: /t/ring/src/dfx_ring.v:170:3: Cannot find file containing module: 'aurora_qsfp0'
%Error: Exiting due to 1 error(s)
"""

# a width mismatch (waived in the generated files only) and an undriven wire (never waived)
VERILOG = """module {top} (input wire [7:0] a, output wire y, output wire z);
  wire u;
  assign y = a < 5'h10;
  assign z = u;
endmodule
"""


def test_parse_groups_by_file_and_class():
    probs = parse(STDERR, Path("/t"))
    assert [(p.file, p.severity, p.rule, p.count) for p in probs] == [
        ("src/dfx_core.v", "Warning", "WIDTHEXPAND", 2), ("src/dfx_core.v", "Warning", "UNDRIVEN", 1),
        ("ring/src/dfx_ring.v", "Error", "MODMISSING", 1)]
    assert probs[0].line() == ("src/dfx_core.v: WIDTHEXPAND warning x2 (first: src/dfx_core.v:12: Operator LT "
                               "expects 8 bits on the RHS, but ...)")


def test_every_waiver_has_a_reason_and_names_a_generated_file():
    """Each lint_off line of the waiver file is scoped to dfx_core.v or dfx_ring.v and has a comment above it."""
    lines = WAIVERS.read_text().splitlines()
    assert lines[0] == "`verilator_config"
    offs = [i for i, ln in enumerate(lines) if ln.startswith("lint_off")]
    assert len(offs) >= 10
    for i in offs:
        assert ' -file "*dfx_core.v"' in lines[i] or ' -file "*dfx_ring.v"' in lines[i], lines[i]
        j = i - 1
        while lines[j].startswith("lint_off"):
            j -= 1
        assert lines[j].startswith("// ") and len(lines[j]) > 20, lines[i]


@needs_verilator
def test_waivers_reach_only_the_generated_files(tmp_path):
    (tmp_path / "dfx_core.v").write_text(VERILOG.format(top="dfx_core"))
    (tmp_path / "glue.v").write_text(VERILOG.format(top="glue"))
    core, _ = run([tmp_path / "dfx_core.v"], "dfx_core", tmp_path)
    assert [(p.file, p.rule) for p in core] == [("dfx_core.v", "UNDRIVEN")]
    glue, _ = run([tmp_path / "glue.v"], "glue", tmp_path)
    assert {p.rule for p in glue} == {"UNDRIVEN", "WIDTHEXPAND"}


@needs_verilator
def test_check_reports_the_lint(tmp_path):
    """`dfx build --check` lints the tree's Verilog: one line per problem class, exit 2."""
    build_tree(load_config("tiny"), tmp_path, verilog=False, run_tools=False, log=lambda m: None)
    (tmp_path / "src" / "dfx_core.v").write_text(VERILOG.format(top="dfx_core"))
    r = CliRunner().invoke(main, ["build", "--check", str(tmp_path)])
    assert r.exit_code == 2
    assert "error: src/dfx_core.v: UNDRIVEN warning x1 (first: src/dfx_core.v:2: Signal is not driven: 'u')" in r.output
    assert "verilator --lint-only -Wall: 1 problem class, 1 messages (src/dfx_core.v;" in r.output
    r = CliRunner().invoke(main, ["build", "--check", str(tmp_path), "--no-lint"])
    assert r.exit_code == 2 and "UNDRIVEN" not in r.output       # the ports still disagree with kernel.xml


@needs_verilator
def test_aurora_stand_ins_catch_a_wrong_port(tmp_path):
    """The ring kernel is linted against port-only Aurora modules (PG074's names): a port the IP lacks is an
    error. A tree's ring kernel is linted with them (tests/host/test_build.py)."""
    stubs = ring_build.aurora_stubs(json.loads((Path(ring_build.__file__).parents[1] / "boards/u280/board.json")
                                               .read_text()))
    assert sorted(stubs) == ["aurora_qsfp0.v", "aurora_qsfp1.v"]
    for name, text in stubs.items():
        (tmp_path / name).write_text(text)
    top = ("module dfx_ring (input wire c, output wire u);\n"
           "  aurora_qsfp0 a0 (.init_clk(c), .user_clk_out(u), .no_such_port(c));\n"
           "  aurora_qsfp1 a1 (.init_clk(c));\nendmodule\n")
    (tmp_path / "dfx_ring.v").write_text(top)
    probs, _ = run([tmp_path / "dfx_ring.v", *(tmp_path / n for n in stubs)], "dfx_ring", tmp_path)
    assert any(p.severity == "Error" and "no_such_port" in p.first for p in probs), probs
    assert not [p for p in probs if p.file.startswith("aurora_qsfp")]     # the stand-ins themselves lint clean


def test_lint_needs_verilator_and_verilog(tmp_path, monkeypatch):
    """Neither the core's nor the ring kernel's Verilog: one error; no Verilator: one error."""
    with pytest.raises(BuildError, match="no Verilog to lint"):
        lint_tree(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "dfx_core.v").write_text(VERILOG.format(top="dfx_core"))
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(BuildError, match="verilator is not installed"):
        lint_tree(tmp_path)


@pytest.mark.slow      # the ring kernel's Verilog at the dfx preset: ~75 s of WebAssembly Yosys on a loaded machine
@needs_verilator
def test_dfx_ring_kernel_lints_clean(tmp_path):
    """The multi-card kernel at the dfx preset (1024-bit ring beats) lints clean with its Aurora stand-ins."""
    (tmp_path / "ring" / "src").mkdir(parents=True)
    (tmp_path / "ring" / "src" / "dfx_ring.v").write_text(ring_build.verilog(load_config("dfx")))
    rep = lint_tree(tmp_path)
    assert rep.files == ["ring/src/dfx_ring.v"] and rep.clean, rep.lines()
