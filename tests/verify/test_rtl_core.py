"""The core's harness (`dfx.verify.rtl_core`): the DDR layout it loads is the host's, and raw instruction
streams on the RTL (slow: the core's Verilog and an Icarus run; the programs end to end are tests/hw/test_core.py)."""
import pytest
from verify_helpers import FIX, need_rtl

from dfx import isa, regmap
from dfx.host.image import device_image
from dfx.program import load_program
from dfx.verify.rtl_core import RtlCore, ddr_layout


@pytest.mark.parametrize("name", ["tiny_1dev", "tiny_2dev"])
def test_ddr_layout_is_the_hosts(name):
    """The harness places the DDR image and the streams where every host backend does (`dfx.host.image`)."""
    prog = load_program(FIX / f"{name}.dfx")
    for k in range(prog.n_devices):
        ddr, entries = ddr_layout(prog, k)
        img = device_image(prog, k)
        assert entries == img.entries
        assert ddr == bytes(img.ddr[:len(ddr)]) and not any(img.ddr[len(ddr):])


@pytest.mark.cocotb
@pytest.mark.slow
def test_core_stops_at_batched_prefill_ops():
    """The RTL core decodes BATCH/CHUNK/SLOT (ISA version 2) but does not implement them: each stops the run
    with STATUS.illegal_opcode at its PC instead of running the prefixed instruction unbatched."""
    need_rtl()

    def word(text):
        return isa.assemble(text)[0].encode()
    streams = {"batch": [word("NOP"), word("BATCH m=2 src_stride=4 dst_stride=4"), word("LINEAR k=8 n=8"),
                         word("HALT")],
               "chunk": [word("CHUNK addr=0x40 cap=4"), word("HALT")],
               "slot": [word("NOP"), word("NOP"), word("SLOT i=1 skip=1"), word("NOP"), word("HALT")],
               "ok": [word("NOP"), word("HALT")]}
    res = RtlCore(load_program(FIX / "tiny_1dev.dfx")).run_words(streams)
    got = {name: (r["status"], r["error_pc"]) for name, r in zip(streams, res.runs)}
    ill = regmap.STATUS_BITS["illegal_opcode"]
    assert got == {"batch": (ill, 1), "chunk": (ill, 0), "slot": (ill, 2), "ok": (regmap.STATUS_BITS["halted"], 0)}
