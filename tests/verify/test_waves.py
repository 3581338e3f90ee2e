"""The fast harness's debug probes (verify/waves.py): their names, the cross-module references they make, the
check that the core's Verilog declares what they read, and reading top-level signals back from a waveform."""
import pytest

from dfx.verify.waves import SIGNALS, UNITS, check_probe, probe_verilog, read_fst, signal_names

CORE_OK = """module dfx_core(a);
endmodule
module \\dfx_core.core (x);
  reg running = 1'h0;
  reg [31:0] ir_pc = 32'd0;
""" + "".join(f"  reg [31:0] ex_{u}0_pc = 32'd0;\n" for u in UNITS) + "endmodule\n" + "".join(
    f"module \\dfx_core.core.{u} (ctl__start, ctl__busy, ctl__done);\n  input ctl__start;\n  output ctl__busy;\n"
    f"  output ctl__done;\nendmodule\n" for u in UNITS)


def test_names_and_references():
    names = signal_names(1)
    assert {"dbg_pc", "dbg_running", "dbg_busy_mpu", "dbg_busy_vpu", "dbg_busy_dma", "dbg_busy_router",
            "dbg_issue_mpu", "dbg_done_router", "dbg_pc_dma"} <= set(names)
    assert len(names) == len(SIGNALS) and signal_names(2)[0] == "dev0_dbg_running"
    one = probe_verilog("dfx_fast", 1)
    assert "assign pc = dfx_fast.dut.core.ir_pc;" in one and "assign busy_vpu = dfx_fast.dut.core.vpu.ctl__busy;" in one
    two = probe_verilog("dfx_fast_ring2", 2)
    assert "module dfx_fast_probe1(" in two and "dfx_fast_ring2.dut.dev1.core.ir_pc" in two
    assert "output [31:0] pc_router;" in one


def test_check_probe_names_what_the_core_lacks():
    check_probe(CORE_OK)
    with pytest.raises(RuntimeError, match=r"dfx_core.core.ir_pc"):
        check_probe(CORE_OK.replace("ir_pc", "ir_pc_renamed"))
    with pytest.raises(RuntimeError, match=r"dfx_core.core.mpu.ctl__busy"):
        check_probe(CORE_OK.replace("output ctl__busy;", "output ctl__busy_x;", 1))
    with pytest.raises(RuntimeError, match="core module"):
        check_probe("module top(a);\nendmodule\n")


def test_read_back_top_level_signals(tmp_path):
    """pywellen reads VCD as well as FST: a hand-written VCD with a top scope and a nested one."""
    pytest.importorskip("pywellen")
    vcd = tmp_path / "w.vcd"
    vcd.write_text("""$timescale 1ps $end
$scope module dfx_fast $end
$var wire 32 ! dbg_pc $end
$var wire 1 " dbg_busy_mpu $end
$scope module dut $end
$var wire 1 # dbg_busy_mpu $end
$upscope $end
$upscope $end
$enddefinitions $end
#0
b0 !
0"
1#
#5000
b101 !
1"
#10000
bx !
0"
""")
    sig = read_fst(vcd, ["dbg_pc", "dbg_busy_mpu"])
    assert sig["dbg_pc"] == ([0, 5000, 10000], [0, 5, 0])
    assert sig["dbg_busy_mpu"] == ([0, 5000, 10000], [0, 1, 0])          # the top's, not dut's
    with pytest.raises(KeyError, match="dbg_nope"):
        read_fst(vcd, ["dbg_nope"])
