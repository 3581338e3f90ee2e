"""The fast harness's own Verilator build (`dfx.verify.fast_verilator`) and its lean control-port master
(`dfx.verify.fast_axil`): the build makes public only what the testbench reads and traces only when asked; a
small design built that way still shows its ports and a `mem` array deep in the hierarchy to cocotb; the master
writes and reads a register slave that withholds its ready signals, once per access, on Icarus and Verilator."""
from pathlib import Path

import pytest

from dfx.verify.fast_verilator import (HUGE_STAMP, LEVERS, PUBLIC_VLT, build_lever, huge_commands, recipe,
                                      verilator_build, verilator_build_huge, verilator_commands)
from dfx.verify.toolchain import missing_simulator, run_module, runner_build, sim_env

HERE = Path(__file__).parent

SLAVE = r"""
module axil_regs(input clk, input rst_n,
  input awvalid, output reg awready, input [7:0] awaddr, input wvalid, output reg wready, input [31:0] wdata,
  input [3:0] wstrb, output reg bvalid, input bready, output [1:0] bresp,
  input arvalid, output reg arready, input [7:0] araddr, output reg rvalid, input rready, output reg [31:0] rdata,
  output [1:0] rresp, output reg [7:0] writes, output reg [7:0] reads);
  reg [31:0] mem [0:3];
  reg [7:0] wa; reg [31:0] wd; reg have_a, have_w; reg [2:0] cnt;
  assign bresp = 2'b00; assign rresp = 2'b00;
  always @(posedge clk) begin
    cnt <= cnt + 3'd1;
    if (!rst_n) begin
      awready <= 0; wready <= 0; bvalid <= 0; arready <= 0; rvalid <= 0; have_a <= 0; have_w <= 0; cnt <= 0;
      writes <= 0; reads <= 0;
    end else begin
      awready <= !have_a && !awready && cnt[0];          // ready pulses: the master waits for them
      if (awvalid && awready) begin wa <= awaddr; have_a <= 1; end
      wready <= !have_w && !wready && cnt[1];
      if (wvalid && wready) begin wd <= wdata; have_w <= 1; end
      if (have_a && have_w && !bvalid) begin
        mem[wa[3:2]] <= wd; bvalid <= 1; have_a <= 0; have_w <= 0; writes <= writes + 8'd1;
      end
      if (bvalid && bready) bvalid <= 0;
      arready <= !arready && !rvalid && cnt[0];
      if (arvalid && arready) begin rdata <= mem[araddr[3:2]]; rvalid <= 1; reads <= reads + 8'd1; end
      if (rvalid && rready) rvalid <= 0;
    end
  end
endmodule

module \fvtop.inner (input clk, input rst_n,
  input awvalid, output awready, input [7:0] awaddr, input wvalid, output wready, input [31:0] wdata,
  input [3:0] wstrb, output bvalid, input bready, output [1:0] bresp,
  input arvalid, output arready, input [7:0] araddr, output rvalid, input rready, output [31:0] rdata,
  output [1:0] rresp, output [7:0] writes, output [7:0] reads);
  axil_regs regs(.clk(clk), .rst_n(rst_n), .awvalid(awvalid), .awready(awready), .awaddr(awaddr),
    .wvalid(wvalid), .wready(wready), .wdata(wdata), .wstrb(wstrb), .bvalid(bvalid), .bready(bready),
    .bresp(bresp), .arvalid(arvalid), .arready(arready), .araddr(araddr), .rvalid(rvalid), .rready(rready),
    .rdata(rdata), .rresp(rresp), .writes(writes), .reads(reads));
endmodule

module fvtop(input clk, input rst_n,
  input ctl_awvalid, output ctl_awready, input [7:0] ctl_awaddr, input ctl_wvalid, output ctl_wready,
  input [31:0] ctl_wdata, input [3:0] ctl_wstrb, output ctl_bvalid, input ctl_bready, output [1:0] ctl_bresp,
  input ctl_arvalid, output ctl_arready, input [7:0] ctl_araddr, output ctl_rvalid, input ctl_rready,
  output [31:0] ctl_rdata, output [1:0] ctl_rresp, output [7:0] writes, output [7:0] reads);
  \fvtop.inner inner(.clk(clk), .rst_n(rst_n), .awvalid(ctl_awvalid), .awready(ctl_awready),
    .awaddr(ctl_awaddr), .wvalid(ctl_wvalid), .wready(ctl_wready), .wdata(ctl_wdata), .wstrb(ctl_wstrb),
    .bvalid(ctl_bvalid), .bready(ctl_bready), .bresp(ctl_bresp), .arvalid(ctl_arvalid), .arready(ctl_arready),
    .araddr(ctl_araddr), .rvalid(ctl_rvalid), .rready(ctl_rready), .rdata(ctl_rdata), .rresp(ctl_rresp),
    .writes(writes), .reads(reads));
endmodule
"""


def test_build_commands_keep_the_design_private(tmp_path):
    pytest.importorskip("cocotb_tools")
    verilate, make = verilator_commands(tmp_path / "d.v", "top", tmp_path, waves=False)
    assert "--public-flat-rw" not in verilate and "--trace-fst" not in verilate
    assert str(tmp_path / "public.vlt") in verilate and "--vpi" in verilate
    assert "VM_TRACE=0" in make and any(a.startswith("OPT_FAST=-O") for a in make)
    verilate, make = verilator_commands(tmp_path / "d.v", "top", tmp_path, waves=True)
    assert "--trace-fst" in verilate and "VM_TRACE=1" in make
    assert '-var "mem"' in PUBLIC_VLT and '-module "{top}"' in PUBLIC_VLT


@pytest.mark.cocotb
@pytest.mark.parametrize("sim", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)])  # C++ build: minutes
def test_lean_master_and_hierarchy(sim, tmp_path):
    run_on_slave(sim, "cocotb_fast_axil", tmp_path)


def run_on_slave(sim: str, module: str, tmp_path: Path):
    """Build the register slave `SLAVE` for `sim` (the fast harness's Verilator build, or cocotb's runner) and run
    the one cocotb test of `module` (a file beside this one) on it; it must pass."""
    why = missing_simulator(sim, axi=False)
    if why:
        pytest.skip(why)
    bdir = tmp_path / "build"
    bdir.mkdir()
    src = bdir / "fvtop.v"
    src.write_text(SLAVE)
    if sim == "verilator":
        runner = verilator_build(src, "fvtop", bdir, fresh=True, waves=False)
    else:
        runner = runner_build(sim, src, "fvtop", bdir, fresh=True, waves=False)
    log = tmp_path / "test.log"
    tests, fails = run_module(runner, module, "fvtop", bdir, tmp_path, sim_env(PYTHONPATH=str(HERE)), log)
    assert tests == 1 and fails == 0, log.read_text()[-3000:]


@pytest.mark.cocotb
@pytest.mark.slow       # three C++ builds of a small design (minutes on a loaded machine)
def test_lever_builds_run_and_pgo_trains(tmp_path):
    """A build variant of the speed experiment (`build_lever`) reuses the base build's C++ and compiles it with
    its own flags; the PGO variant is compiled instrumented, trained (the profile files appear), compiled again,
    and still runs the design."""
    why = missing_simulator("verilator", axi=False)
    if why:
        pytest.skip(why)
    base = tmp_path / "base"
    base.mkdir()
    src = base / "fvtop.v"
    src.write_text(SLAVE)
    verilator_build(src, "fvtop", base, fresh=True, waves=False)
    env = sim_env(PYTHONPATH=str(HERE))
    trained = []

    def train(runner):
        run_module(runner, "cocotb_fast_axil", "fvtop", tmp_path / "pgo", tmp_path, env, tmp_path / "train.log")
        trained.extend((tmp_path / "pgo").glob("*.gcda"))

    assert "pgo" in "O3-native-pgo" and "O3-native-pgo" in LEVERS
    runner = build_lever(src, "fvtop", base, tmp_path / "pgo", "O3-native-pgo", train=train)
    assert trained, "the instrumented build wrote no profile"
    log = tmp_path / "test.log"
    tests, fails = run_module(runner, "cocotb_fast_axil", "fvtop", tmp_path / "pgo", tmp_path, env, log)
    assert tests == 1 and fails == 0, log.read_text()[-3000:]
    assert "-fprofile-use" in (tmp_path / "pgo" / "build.log").read_text()


def test_huge_profile_commands_and_the_default_build_untouched(tmp_path):
    """The profile for very large designs: no Verilator -O3, the C++ at -O1 in small pieces, no PGO; the default
    build's recipe (its cache stamp) does not depend on it."""
    pytest.importorskip("cocotb_tools")
    verilate, make = huge_commands(tmp_path / "d.v", "top", tmp_path)
    assert "-O3" not in verilate and "--output-split" in verilate and str(tmp_path / "public.vlt") in verilate
    assert "OPT_FAST=-O1" in make and not any("-fprofile" in m for m in make)
    assert "verilator_build_huge" not in recipe() and "HUGE" not in recipe()


@pytest.mark.cocotb
@pytest.mark.slow       # two C++ builds of a small design (minutes on a loaded machine)
def test_huge_build_runs_the_design_and_resumes(tmp_path):
    """A design built with the huge profile runs; a second call rebuilds nothing, and a build whose executable
    is gone compiles again without verilating again (the profile's stamp)."""
    why = missing_simulator("verilator", axi=False)
    if why:
        pytest.skip(why)
    bdir = tmp_path / "build"
    bdir.mkdir()
    src = bdir / "fvtop.v"
    src.write_text(SLAVE)
    env = sim_env(PYTHONPATH=str(HERE))
    runner = verilator_build_huge(src, "fvtop", bdir)
    tests, fails = run_module(runner, "cocotb_fast_axil", "fvtop", bdir, tmp_path, env, tmp_path / "test.log")
    assert tests == 1 and fails == 0, (tmp_path / "test.log").read_text()[-3000:]
    assert (bdir / HUGE_STAMP).read_text().startswith("built ")
    log = (bdir / "build.log").read_text()
    assert log.count("$ ") == 2 and "Maximum resident set size" in log
    verilator_build_huge(src, "fvtop", bdir)
    assert (bdir / "build.log").read_text() == log                  # nothing redone
    (bdir / "fvtop").unlink()
    verilator_build_huge(src, "fvtop", bdir)
    again = (bdir / "build.log").read_text()[len(log):]
    assert again.count("$ ") == 1 and "make" in again and (bdir / "fvtop").exists()
    with pytest.raises(ValueError, match="without PGO"):
        verilator_build_huge(src, "fvtop", bdir, pgo=True)
