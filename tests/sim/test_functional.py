"""The functional simulator's compiled fast paths against its generic handlers, instruction by instruction."""
import numpy as np
import pytest

from dfx.compiler import compile_model
from dfx.errors import SimError
from dfx.models.checkpoint import load_default
from dfx.sim.functional import Device


@pytest.fixture(scope="module")
def program():
    return compile_model(load_default(), "tiny", max_seq=32)


def _lockstep(fast: Device, slow: Device, stream: str, token: int, pos: int) -> int:
    """Run both devices one instruction at a time; VBUF and scalar registers must stay bit-identical."""
    compiled = 0
    for dev in (fast, slow):
        dev.regs["TOKEN"], dev.regs["POS"] = token, pos
    with np.errstate(all="ignore"):
        for pc, ((hf, f, ins, _), (hs, fs, _, _)) in enumerate(zip(fast._streams[stream], slow._streams[stream])):
            if hf is None:                       # router: single device, nothing to do
                continue
            compiled += not hasattr(hf, "__self__")
            done_f, done_s = hf(f), hs(fs)
            assert np.array_equal(fast.vbuf.view(np.uint16), slow.vbuf.view(np.uint16)), (pc, ins)
            assert np.array_equal(fast.s.view(np.uint32), slow.s.view(np.uint32)), (pc, ins)
            if done_f or done_s:
                assert done_f and done_s
                break
    return compiled


def test_fast_vector_paths_equal_the_generic_handlers(program):
    fast, slow = Device(program), Device(program, fast=False)
    compiled = 0
    for pos, tok in enumerate(b"def main(self):"):
        compiled += _lockstep(fast, slow, "prefill" if pos < 14 else "decode", tok, pos)
    assert compiled > 100                        # the fast paths did run


def test_fast_path_leaves_bad_operands_to_the_generic_handler(program):
    """An out-of-range vector operand is not compiled: the generic handler reports it with the PC."""
    from dfx import isa
    from dfx.program import DeviceImage, Program
    entries = program.config.vbuf_entries
    bad = isa.assemble(f"VADD dst=0 a={entries - 1} b=0 n={program.config.d * 4}\nHALT")
    img = program.devices[0]
    prog = Program(program.manifest, [DeviceImage({**img.streams, "bad": bad}, img.hbm, img.ddr)])
    dev = Device(prog)
    with pytest.raises(SimError, match="pc 0 .*exceed"):
        dev.run("bad", 0, 0)
