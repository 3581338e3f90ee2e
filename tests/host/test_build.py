"""The U280 build tree (`dfx build`): generated from the core config and dfx.regmap, checked against them
(`dfx build --check`), quoted for the shell and Tcl, and written only with the core's Verilog."""
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from dfx import regmap
from dfx.cli import main
from dfx.host import build as build_mod
from dfx.config import load_config
from dfx.errors import UsageError
from dfx.host.board_files import bank_map, tcl_word
from dfx.host.build import BuildError, build_tree
from dfx.host.build_check import check_tree, verilog_ports
from dfx.host.lint import lint_tree
from dfx.verify.toolchain import venv_path

QUIET = {"run_tools": False, "log": lambda m: None}


def _tree(path, name="tiny", **kw):
    cfg = load_config(name)
    build_tree(cfg, path, verilog=False, **{**QUIET, **kw})
    return cfg


def _edit(path: Path, old: str, new: str):
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


def test_pipeline_profile_of_the_tree(tmp_path):
    """A board build's core is the deep one unless --pipeline default; build.json says which; a bad profile is one
    line, before anything is written."""
    _tree(tmp_path / "a")
    assert json.loads((tmp_path / "a" / "build.json").read_text())["pipeline"] == "deep"
    _tree(tmp_path / "b", pipeline="default")
    assert json.loads((tmp_path / "b" / "build.json").read_text())["pipeline"] == "default"
    with pytest.raises(UsageError, match="^--pipeline must be one of default, deep, not 'fast'$"):
        _tree(tmp_path / "c", pipeline="fast")
    assert not (tmp_path / "c").exists()
    r = CliRunner().invoke(main, ["build", "-o", str(tmp_path / "d"), "--no-verilog", "--pipeline", "fast"])
    assert r.exit_code == 2 and "'fast' is not one of 'default', 'deep'" in r.output
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("name", ["tiny", "dfx"])
def test_tree_agrees_with_the_config(name, tmp_path):
    cfg = load_config(name)
    res = build_tree(cfg, tmp_path, verilog=False, **QUIET)
    assert res.verilog == "skipped (--no-verilog)" and check_tree(tmp_path, cfg) == [] and check_tree(tmp_path) == []
    k = ET.parse(tmp_path / "kernel.xml").getroot().find("kernel")
    assert k.get("hwControlProtocol") == "ap_ctrl_hs"
    masters = [p for p in k.find("ports") if p.get("mode") == "master"]
    assert len(masters) == cfg.hbm_channels + 1
    assert {p.get("dataWidth") for p in masters if "hbm" in p.get("name")} == {str(cfg.hbm_width)}
    args = {a.get("name"): a for a in k.find("args")}
    for r in regmap.regmap(cfg):
        if r.arg:
            assert int(args[r.name.lower()].get("offset"), 16) == r.offset
    conn = (tmp_path / "connectivity.cfg").read_text()
    assert f"sp=dfx_core_1.m_axi_hbm{cfg.hbm_channels - 1:02d}:HBM[{cfg.hbm_channels - 1}]" in conn
    assert "sp=dfx_core_1.m_axi_ddr:DDR[0]" in conn
    assert "stream_connect=dfx_core_1.ring_tx:dfx_core_1.ring_rx" in conn
    # the kernel clock: v++ --kernel_frequency (the platform's scalable clock 0), not a [clock] section
    assert "[clock]" not in conn and "freqHz" not in conn
    sh = (tmp_path / "build.sh").read_text()
    assert f" --kernel_frequency 0:{cfg.clock_mhz:g} " in sh
    # the placement plan: no slr= (docs/board_flow.md says why)
    assert not re.search(r"^slr=", conn, re.M) and "# placement: no slr=" in conn
    # one card: the ring is the card itself, so no ring kernel, Aurora IP or QSFP link config
    assert not (tmp_path / "connectivity_ring.cfg").exists() and not (tmp_path / "aurora").exists()
    assert "--config connectivity.cfg " in sh and "dfx_ring" not in sh
    tcl = (tmp_path / "package_xo.tcl").read_text()
    assert "package_xo" in tcl
    # FREQ_HZ is created on ap_clk before its value is set
    add = tcl.index("ipx::add_bus_parameter FREQ_HZ $clkif")
    assert tcl.index(f"set_property value {int(cfg.clock_mhz * 1e6)} $freq") > add
    assert os.access(tmp_path / "build.sh", os.X_OK)


def test_check_names_an_edited_offset(tmp_path):
    _tree(tmp_path)
    _edit(tmp_path / "kernel.xml", 'name="token" addressQualifier="0" id="6" port="s_axi_control" size="0x4" '
          'offset="0x3c"', 'name="token" addressQualifier="0" id="6" port="s_axi_control" size="0x4" offset="0x40"')
    assert check_tree(tmp_path) == ["kernel.xml: arg token at offset 0x40, dfx.regmap has TOKEN at 0x3c"]


def test_check_names_an_edited_register(tmp_path):
    _tree(tmp_path)
    _edit(tmp_path / "package_xo.tcl", "set reg [ipx::add_register pos $blk]; set_property address_offset 0x40",
          "set reg [ipx::add_register pos $blk]; set_property address_offset 0x44")
    assert check_tree(tmp_path) == [
        "package_xo.tcl: register pos at 0x44, 32 bits; dfx.regmap has POS at 0x40, 32 bits"]


def test_check_names_a_wrong_port_name(tmp_path):
    _tree(tmp_path)
    _edit(tmp_path / "connectivity.cfg", "sp=dfx_core_1.m_axi_hbm01:HBM[1]", "sp=dfx_core_1.m_axi_hbm1:HBM[1]")
    assert check_tree(tmp_path) == [
        "connectivity.cfg:5: sp=dfx_core_1.m_axi_hbm1:HBM[1]: dfx_core has no AXI master port m_axi_hbm1 (kernel.xml)",
        "connectivity.cfg: no sp= line for m_axi_hbm01 (sp=dfx_core_1.m_axi_hbm01:HBM[1])"]


def test_check_names_each_link_config_mismatch(tmp_path):
    cfg = _tree(tmp_path, devices=4)
    _edit(tmp_path / "connectivity.cfg", "m_axi_hbm02:HBM[2]", "m_axi_hbm02:HBM[7]")
    _edit(tmp_path / "connectivity_ring.cfg", "nk=dfx_ring:1:dfx_ring_1", "nk=dfx_ring:2:dfx_ring_1")
    with (tmp_path / "connectivity.cfg").open("a") as f:
        f.write("slr=dfx_core_1:SLR3\nslr=dfx_core_2:SLR0\nsp=dfx_core_2.m_axi_ddr:DDR[0]\n")
    _edit(tmp_path / "build.sh", "--kernel_frequency 0:200", "--kernel_frequency 0:300")
    assert check_tree(tmp_path) == [
        "connectivity.cfg:6: sp=dfx_core_1.m_axi_hbm02:HBM[7]: the core addresses m_axi_hbm02 as HBM[2], not HBM[7]",
        "connectivity.cfg:12: slr=dfx_core_1:SLR3: SLR3 is not an SLR of the board (SLR0, SLR1, SLR2)",
        "connectivity.cfg:13: slr=dfx_core_2:SLR0: dfx_core_2 is not a compute unit declared by nk=",
        "connectivity.cfg:14: sp=dfx_core_2.m_axi_ddr:DDR[0]: dfx_core_2 is not a compute unit of dfx_core (nk=)",
        "connectivity_ring.cfg:9: nk=dfx_ring:2:dfx_ring_1: 2 compute units, 1 named",
        "build.sh: v++ --kernel_frequency 0:300, the config's clock is 0:200 (clock 0 at 200 MHz)"]
    # a valid slr= line passes; the config of another tree is refused by its hash and port count
    good = tmp_path / "good"
    _tree(good)
    with (good / "connectivity.cfg").open("a") as f:
        f.write("slr=dfx_core_1:SLR0\n")
    assert check_tree(good) == []
    other = cfg.replace(hbm_channels=8)
    probs = check_tree(good, other)
    assert probs[0] == f"build.json: config hash {cfg.config_hash}, the config's is {other.config_hash}"
    assert "kernel.xml: no master port m_axi_hbm07 (the core has 9 m_axi ports)" in probs
    assert bank_map(other)["m_axi_hbm07"] == "HBM[7]"


def _fake_verilog(cfg, rename=None, ddr_wdata=None):
    ports = ["input ap_clk;", "input ap_rst_n;", "input [11:0] s_axi_control_awaddr;",
             "output [127:0] ring_tx_tdata;", "input [127:0] ring_rx_tdata;"]
    for c in range(cfg.hbm_channels):
        ports += [f"output [63:0] m_axi_hbm{c:02d}_araddr;", f"input [127:0] m_axi_hbm{c:02d}_rdata;",
                  f"output [127:0] m_axi_hbm{c:02d}_wdata;"]
    ddr = 16 * cfg.d
    ports += ["output [63:0] m_axi_ddr_araddr;", f"input [{ddr - 1}:0] m_axi_ddr_rdata;",
              f"output [{(ddr_wdata or ddr) - 1}:0] m_axi_ddr_wdata;"]
    text = "module dfx_core(...);\n" + "\n".join(ports) + "\nendmodule\n"
    return text.replace(*rename) if rename else text


def test_verilog_port_check(tmp_path):
    cfg = _tree(tmp_path)
    (tmp_path / "src" / "dfx_core.v").write_text(_fake_verilog(cfg, ddr_wdata=64))     # DDR write data too narrow
    assert verilog_ports((tmp_path / "src" / "dfx_core.v").read_text())["m_axi_ddr_wdata"] == 64
    assert check_tree(tmp_path, cfg) == ["src/dfx_core.v: m_axi_ddr_rdata/wdata are 128/64 bits, kernel.xml says 128"]
    # an sp= port that kernel.xml has and the Verilog lacks
    (tmp_path / "src" / "dfx_core.v").write_text(_fake_verilog(cfg, ("m_axi_hbm03_", "m_axi_hbm3_")))
    probs = check_tree(tmp_path, cfg)
    assert "connectivity.cfg:7: sp=dfx_core_1.m_axi_hbm03:HBM[3]: dfx_core has no AXI master port m_axi_hbm03 " \
           "(src/dfx_core.v)" in probs
    assert "src/dfx_core.v has m_axi interfaces kernel.xml lacks: ['m_axi_hbm3']" in probs


def test_cli_check(tmp_path):
    _tree(tmp_path / "t")
    r = CliRunner().invoke(main, ["build", "--check", str(tmp_path / "t")])
    assert r.exit_code == 0 and "agree with the config and dfx.regmap" in r.output
    r = CliRunner().invoke(main, ["build", "--check", str(tmp_path / "t"), "--config", "dfx"])
    assert r.exit_code == 2 and r.output.splitlines()[0].startswith("error: build.json: config hash ")
    _edit(tmp_path / "t" / "kernel.xml", 'offset="0x3c"', 'offset="0x40"')
    _edit(tmp_path / "t" / "connectivity.cfg", "sp=dfx_core_1.m_axi_ddr:DDR[0]", "sp=dfx_core_1.m_axi_dd:DDR[0]")
    r = CliRunner().invoke(main, ["build", "--check", str(tmp_path / "t")])
    assert r.exit_code == 2
    assert r.output.splitlines() == [
        "error: kernel.xml: arg token at offset 0x40, dfx.regmap has TOKEN at 0x3c",
        "error: connectivity.cfg:8: sp=dfx_core_1.m_axi_dd:DDR[0]: dfx_core has no AXI master port m_axi_dd "
        "(kernel.xml)",
        "error: connectivity.cfg: no sp= line for m_axi_ddr (sp=dfx_core_1.m_axi_ddr:DDR[0])"]
    r = CliRunner().invoke(main, ["build", "--check", str(tmp_path)])
    assert r.exit_code == 2 and r.output.strip() == f"error: --check {tmp_path}: no build.json there (not a `dfx " \
                                                    "build` tree)"


def test_cli_build_prints_the_commands(tmp_path):
    r = CliRunner().invoke(main, ["build", "--board", "u280", "-o", str(tmp_path / "b"), "--config", "tiny",
                                  "--no-verilog"])
    assert r.exit_code == 0, r.output
    assert "vivado -mode batch -source package_xo.tcl" in r.output
    assert re.search(r"v\+\+ --link -t hw --platform xilinx_u280_gen3x16_xdma_1_202211_1 --config connectivity.cfg "
                     r"--kernel_frequency 0:200 -o dfx_core_u280.xclbin dfx_core.xo", r.output)
    assert (tmp_path / "b" / "kernel.xml").is_file()


def test_cli_build_bad_input(tmp_path):
    r = CliRunner().invoke(main, ["build", "--board", "u250", "-o", str(tmp_path / "b")])
    assert r.exit_code == 2 and r.output.strip() == "error: unknown board 'u250'; accepted: u280"
    assert not (tmp_path / "b").exists()
    (tmp_path / "f").write_text("")
    r = CliRunner().invoke(main, ["build", "-o", str(tmp_path / "f"), "--no-verilog"])
    assert r.exit_code == 2 and "exists and is not a directory" in r.output
    r = CliRunner().invoke(main, ["build"])
    assert r.exit_code == 2 and r.output.strip() == "error: -o DIR is required (or --check DIR)"


@pytest.mark.parametrize("native", [True, False], ids=["native-yosys", "in-process"])
def test_failed_verilog_is_one_error_line_and_writes_nothing(native, tmp_path, monkeypatch):
    """A config the core cannot be built for (a valid AccelConfig whose d x l tile is not one HBM beat): the
    conversion fails, `dfx build` says so in one line, exits 2 and writes no tree."""
    if native and not build_mod.native_yosys():
        pytest.skip("no native Yosys (pyosys) here")
    monkeypatch.setattr(build_mod, "native_yosys", lambda: native)
    cfg = load_config("tiny").replace(name="bad", hbm_channels=8)
    (tmp_path / "bad.json").write_text(json.dumps(cfg.to_dict()))
    r = CliRunner().invoke(main, ["build", "-o", str(tmp_path / "b"), "--config", str(tmp_path / "bad.json")])
    assert r.exit_code == 2
    assert r.output.splitlines() == [
        "error: src/dfx_core.v: Verilog generation failed at config bad (ValueError: AccelConfig.l: the core "
        "streams one d x l tile per HBM beat, so tile_bytes (64) must equal hbm_channels * hbm_width / 8 (128))"]
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("cfg_changes,weights,msg", [
    ({}, "int4,int5", "error: --weights: int5 is not a weight family the core can read; accepted: a comma list of "
                      "int8, int4, int3, fp8e4m3, fp8e5m2, bcq1, bcq2, bcq3, bcq4"),
    ({"name": "ts", "tile_scale": True}, "int4,int8",
     "error: --weights: config ts is tile-scaled (tile_scale): its core reads int3 and int4 codes only, not int8"),
])
def test_weights_out_of_range_are_one_line(cfg_changes, weights, msg, tmp_path):
    """`dfx build --weights`: a family without a tile fetcher, or one a tile-scaled core cannot multiply as codes,
    is one line on stderr, exit 2, nothing on stdout and no tree."""
    cfg = load_config("tiny").replace(**cfg_changes)
    (tmp_path / "c.json").write_text(json.dumps(cfg.to_dict()))
    r = CliRunner().invoke(main, ["build", "-o", str(tmp_path / "b"), "--config", str(tmp_path / "c.json"),
                                  "--weights", weights, "--no-run-tools"])
    assert (r.exit_code, r.stdout, r.stderr.splitlines()) == (2, "", [msg])
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_tile_scaled_int4_core_in_the_tree(tmp_path):
    """`dfx build --weights int4` of a tile-scaled config at the tiny preset: the core's Verilog has the INT4 code
    fetcher (its CodeTiles) and the MPU's tile-scale multiply, build.json records the family, the tree checks
    clean, and `verilator --lint-only -Wall` is clean where Verilator is installed."""
    cfg = load_config("tiny").replace(name="tiny-int4ts", tile_scale=True)
    (tmp_path / "c.json").write_text(json.dumps(cfg.to_dict()))
    lint_opt = "--lint" if shutil.which("verilator", path=venv_path()) else "--no-lint"
    r = CliRunner().invoke(main, ["build", "-o", str(tmp_path / "t"), "--config", str(tmp_path / "c.json"),
                                  "--weights", "int4", "--no-run-tools", lint_opt])
    assert r.exit_code == 0, r.output[-2000:]
    v = (tmp_path / "t" / "src" / "dfx_core.v").read_text()
    assert "qtiles_int4" in v and "tc0" in v
    assert json.loads((tmp_path / "t" / "build.json").read_text())["weights"] == ["int4"]
    assert check_tree(tmp_path / "t") == []
    if lint_opt == "--lint":
        assert "verilator --lint-only -Wall: clean" in r.output


def test_wasm_yosys_out_of_memory_names_the_way_out(tmp_path, monkeypatch):
    import dfx.hw.top

    def trap(cfg, devices=1, **stages):
        raise RuntimeError("error while executing at wasm backtrace:\n    0: yosys.wasm!abort")
    monkeypatch.setattr(build_mod, "native_yosys", lambda: False)
    monkeypatch.setattr(dfx.hw.top, "verilog", trap)
    with pytest.raises(BuildError) as e:
        build_tree(load_config("dfx"), tmp_path / "c", **QUIET)
    assert str(e.value) == ("src/dfx_core.v: Verilog generation failed at config dfx (RuntimeError: error while "
                            "executing at wasm backtrace); Amaranth's built-in Yosys is WebAssembly (4 GB at most): "
                            "`pip install pyosys` gives `dfx build` a native one")
    assert not (tmp_path / "c").exists()


# ------------------------------------------------------------------------------------------------ quoting
NASTY = "a b$HOME'q\"c;d`e`"


def _stub_tools(bindir: Path, log: Path):
    bindir.mkdir()
    for tool in ("vivado", "v++"):
        p = bindir / tool
        p.write_text('#!/bin/sh\n{ printf "cwd=%s\\n" "$PWD"; printf "arg=%s\\n" "$(basename "$0")" "$@"; } >> '
                     f"'{log}'\n")
        p.chmod(0o755)


def _calls(log: Path) -> list[tuple[str, list[str]]]:
    calls = []
    for ln in log.read_text().splitlines():
        key, _, val = ln.partition("=")
        if key == "cwd":
            calls.append((val, []))
        else:
            calls[-1][1].append(val)
    return calls


def _nothing_else(parent: Path, name: str):
    assert sorted(p.name for p in parent.iterdir()) == [name]


def test_paths_with_shell_characters(tmp_path, monkeypatch):
    """An output directory named with a space, `$`, quotes, `;` and backquotes: build.sh parses and runs the
    tools with exactly their arguments in that directory, `build_tree` runs them as argument lists, and nothing
    outside the directory is written."""
    parent = tmp_path / "parent"
    out = parent / NASTY
    cfg = _tree(out)
    _nothing_else(parent, NASTY)
    sh = out / "build.sh"
    for shell in ("sh", "bash"):
        if shutil.which(shell):
            r = subprocess.run([shell, "-n", str(sh)], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
    log = tmp_path / "calls.log"
    _stub_tools(tmp_path / "bin", log)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run([str(sh)], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    want = [(str(out), ["vivado", "-mode", "batch", "-source", "package_xo.tcl", "-tclargs", "xcu280-fsvh2892-2L-e"]),
            (str(out), ["v++", "--link", "-t", "hw", "--platform", "xilinx_u280_gen3x16_xdma_1_202211_1", "--config",
                        "connectivity.cfg", "--kernel_frequency", "0:200", "-o", "dfx_core_u280.xclbin",
                        "dfx_core.xo"])]
    assert _calls(log) == want
    # build_tree runs the same tools as argument lists, in the tree (a Verilog is needed: a stand-in)
    log.unlink()
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.setattr(build_mod, "core_verilog", lambda c, pipeline, weights=(): (_fake_verilog(c), "a stand-in"))
    res = build_tree(cfg, out, run_tools=True, log=lambda m: None)
    assert [rc for _, rc in res.ran] == [0, 0] and _calls(log) == want
    _nothing_else(parent, NASTY)


_TCL_STUB = r"""
set ::calls {}
rename file _file
proc file {sub args} {
    if {$sub eq "mkdir"} { lappend ::calls [list file mkdir {*}$args]; return }
    _file $sub {*}$args
}
proc unknown {cmd args} { lappend ::calls [list $cmd {*}$args]; return stub_$cmd }
set argv {}
set argc 0
source [lindex $::argv0s 0]
foreach c $::calls {
    if {[lindex $c 0] in {create_project add_files package_xo file create_ip ipx::package_project}} {
        puts [list {*}$c]
    }
}
"""


def _tcl_calls(script: Path) -> list[list[str]]:
    """Source `script` in tclsh with every Vivado command stubbed; the calls that take paths, as word lists."""
    driver = script.parent / "_stub_driver.tcl"
    driver.write_text(f"set ::argv0s [list {tcl_word(str(script))}]\n" + _TCL_STUB)
    try:
        r = subprocess.run(["tclsh", str(driver)], capture_output=True, text=True)
    finally:
        driver.unlink()
    assert r.returncode == 0, r.stderr
    probe = script.parent / "_split.tcl"
    probe.write_text("foreach line [split [read stdin] \\n] { if {$line ne {}} { puts [join $line \\x1f] } }\n")
    try:
        s = subprocess.run(["tclsh", str(probe)], input=r.stdout, capture_output=True, text=True)
    finally:
        probe.unlink()
    return [ln.split("\x1f") for ln in s.stdout.splitlines()]


def test_tcl_with_shell_characters(tmp_path):
    parent = tmp_path / "parent"
    out = parent / NASTY
    _tree(out, devices=2)
    assert tcl_word(NASTY) == "a\\ b\\$HOME'q\\\"c\\;d`e`" and tcl_word("") == "{}"
    for name in ("package_xo.tcl", "aurora/gen_aurora_ip.tcl", "ring/package_xo.tcl"):
        text = (out / name).read_text()
        # no generated line puts a path in the text: every path comes from [info script] at run time
        assert NASTY not in text and str(tmp_path) not in text
    if not shutil.which("tclsh"):
        pytest.skip("tclsh is not installed: the Tcl is checked by the text assertions above only")
    calls = _tcl_calls(out / "package_xo.tcl")
    assert ["create_project", "-force", "dfx_core_pkg", f"{out}/pkg", "-part", "xcu280-fsvh2892-2L-e"] in calls
    assert ["add_files", "-norecurse", f"{out}/src/dfx_core.v"] in calls
    assert ["package_xo", "-force", "-xo_path", f"{out}/dfx_core.xo", "-kernel_name", "dfx_core", "-ctrl_protocol",
            "ap_ctrl_hs", "-ip_directory", f"{out}/pkg/ip", "-kernel_xml", f"{out}/kernel.xml"] in calls
    aur = _tcl_calls(out / "aurora" / "gen_aurora_ip.tcl")
    assert ["create_ip", "-name", "aurora_64b66b", "-vendor", "xilinx.com", "-library", "ip", "-module_name",
            "aurora_qsfp0", "-dir", f"{out}/aurora/ip"] in aur and ["file", "mkdir", f"{out}/aurora/ip"] in aur
    ring = _tcl_calls(out / "ring" / "package_xo.tcl")
    assert ["add_files", "-norecurse", f"{out}/ring/../aurora/ip/aurora_qsfp1/aurora_qsfp1.xci"] in ring
    assert ["package_xo", "-force", "-xo_path", f"{out}/ring/dfx_ring.xo", "-kernel_name", "dfx_ring",
            "-ctrl_protocol", "ap_ctrl_none", "-ip_directory", f"{out}/ring/pkg/ip", "-kernel_xml",
            f"{out}/ring/kernel.xml"] in ring
    _nothing_else(parent, NASTY)


# ------------------------------------------------------------------------------------------------ Verilog
def test_tiny_verilog_in_the_tree(tmp_path):
    """`dfx build --devices 2` at the tiny preset writes the core's and the ring kernel's Verilog (minutes, under
    1 GB), their ports agree with kernel.xml and the link configs, and `verilator --lint-only -Wall` of both
    is clean after the waivers of boards/u280/lint.vlt, where Verilator is installed."""
    lint_opt = "--lint" if shutil.which("verilator", path=venv_path()) else "--no-lint"
    r = CliRunner().invoke(main, ["build", "-o", str(tmp_path), "--config", "tiny", "--no-run-tools", lint_opt,
                                  "--devices", "2"])
    assert r.exit_code == 0, r.output[-2000:]
    assert (tmp_path / "src" / "dfx_core.v").is_file() and (tmp_path / "ring" / "src" / "dfx_ring.v").is_file()
    assert check_tree(tmp_path) == []
    if lint_opt == "--lint":
        assert "verilator --lint-only -Wall: clean (src/dfx_core.v, ring/src/dfx_ring.v;" in r.output
    _edit(tmp_path / "connectivity.cfg", "sp=dfx_core_1.m_axi_hbm03:HBM[3]", "sp=dfx_core_1.m_axi_hbm3:HBM[3]")
    assert check_tree(tmp_path)[0] == ("connectivity.cfg:7: sp=dfx_core_1.m_axi_hbm3:HBM[3]: dfx_core has no AXI "
                                       "master port m_axi_hbm3 (kernel.xml)")


@pytest.mark.slow
def test_dfx_verilog_in_the_tree(tmp_path):
    """The dfx preset (d=64, l=16, 32 HBM ports) and its ring kernel convert to Verilog (docs/rtl.md: minutes,
    several GB; the figures come from benchmarks/verilog_presets.py and benchmarks/dfx_lint.py), the tree checks
    clean against it and `verilator --lint-only -Wall` of both files is clean after the waivers."""
    if not build_mod.native_yosys():
        pytest.skip("the dfx preset needs a native Yosys (pip install pyosys): Amaranth's WebAssembly one has 4 GB")
    cfg = load_config("dfx")
    res = build_tree(cfg, tmp_path, devices=2, **QUIET)
    assert res.verilog is None and check_tree(tmp_path) == []
    ports = verilog_ports((tmp_path / "src" / "dfx_core.v").read_text())
    assert ports["m_axi_hbm31_rdata"] == 512 and ports["m_axi_ddr_wdata"] == 1024
    if shutil.which("verilator", path=venv_path()):
        rep = lint_tree(tmp_path)
        assert rep.clean, rep.lines()


def test_estimate_comparison_names_the_overflow():
    import importlib.util
    spec = importlib.util.spec_from_file_location("u280_estimate", Path(__file__).parents[2] / "boards/u280/estimate.py")
    est = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(est)
    cap = est.capacity()
    assert cap["DSP"] == pytest.approx(9024 * 0.8)
    fits, lines = est.compare({"LUT": 1000, "FF": 10, "BRAM36": 1, "URAM": 0, "DSP": 9024}, cap)
    assert not fits and any(ln.startswith("DSP") and "OVER by 1,805" in ln for ln in lines)
