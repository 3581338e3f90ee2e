"""The core's harness (`dfx.verify.rtl_core`): the DDR layout it loads is the host's (raw streams and programs
on the RTL are tests/hw/test_core.py and tests/hw/test_core_batch.py)."""
import pytest
from verify_helpers import FIX

from dfx.host.image import device_image
from dfx.program import load_program
from dfx.verify.rtl_core import ddr_layout


@pytest.mark.parametrize("name", ["tiny_1dev", "tiny_2dev"])
def test_ddr_layout_is_the_hosts(name):
    """The harness places the DDR image and the streams where every host backend does (`dfx.host.image`)."""
    prog = load_program(FIX / f"{name}.dfx")
    for k in range(prog.n_devices):
        ddr, entries = ddr_layout(prog, k)
        img = device_image(prog, k)
        assert entries == img.entries
        assert ddr == bytes(img.ddr[:len(ddr)]) and not any(img.ddr[len(ddr):])
