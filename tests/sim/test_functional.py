"""The functional simulator's compiled fast paths against its generic handlers, instruction by instruction."""
import numpy as np
import pytest

from dfx import isa
from dfx.compiler import compile_model
from dfx.config import PRESETS
from dfx.errors import SimError
from dfx.models.checkpoint import load_default
from dfx.program import DeviceImage, Program
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
            compiled += not hasattr(hf, "__self__") and hasattr(hs, "__self__")    # a closure for a generic method
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


def _with(program: Program, **streams) -> Program:
    img = program.devices[0]
    extra = {k: isa.assemble(v) for k, v in streams.items()}
    return Program(program.manifest, [DeviceImage({**img.streams, **extra}, img.hbm, img.ddr)])


def test_bad_operand_stops_at_its_pc(program):
    """An out-of-range vector operand (static, so checked once when predecoding) stops the run when it is
    reached, naming the PC, the instruction and the operand (`dfx.isa.check_operands`)."""
    entries, d = program.config.vbuf_entries, program.config.d
    dev = Device(_with(program, bad=f"NOP\nVADD dst=0 a={entries - 1} b=0 n={d * 4}\nHALT",
                       never=f"HALT\nVADD dst=0 a={entries - 1} b=0 n={d * 4}"))
    dev.run("never", 0, 0)                                      # never reached: fine
    with pytest.raises(SimError, match=rf"^device 0 bad pc 1 `VADD a={entries - 1} n={d * 4}`: a: VBUF entries "
                                       rf"{entries - 1}\.\.{entries + 3} exceed the {entries}-entry buffer$"):
        dev.run("bad", 0, 0)


def test_operands_of_length_pos_plus_one_are_checked_at_run_time(program):
    entries, d = program.config.vbuf_entries, program.config.d
    dev = Device(_with(program, dyn=f"VMAX a={entries - 2} sd=0 +dyn_n\nHALT"))
    dev.run("dyn", 0, 2 * d - 1)                                # 2d elements: the last two entries
    with pytest.raises(SimError, match=rf"pc 0 .*a: VBUF entries {entries - 2}\.\.{entries + 1} exceed"):
        dev.run("dyn", 0, 2 * d)


def test_scalar_registers_are_the_configs():
    """A config with 4 scalar registers: the simulator has S0..S3 and stops at an instruction naming S5."""
    cfg = PRESETS["tiny"].replace(sregs=4)
    prog = compile_model(load_default(), cfg, max_seq=16)
    dev = Device(_with(prog, s="SMOVI sd=3 imm=2.0\nVMULS dst=0 a=0 n=8 sa=3\nSADDI sd=1 sa=5 imm=1.0\nHALT"))
    assert dev.s.shape == (4,)
    with pytest.raises(SimError, match=r"pc 2 .*: sa: scalar register S5 does not exist; accepted: S0\.\.S3$"):
        dev.run("s", 0, 0)
    assert dev.s[3] == 2.0
