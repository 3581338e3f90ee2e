"""The functional simulator's compiled fast paths against its generic handlers, instruction by instruction; the
ISA's validation of every instruction before it runs; the watchdog and the deadline."""
import time

import numpy as np
import pytest

from dfx import isa
from dfx.compiler import compile_model
from dfx.config import PRESETS
from dfx.errors import SimError
from dfx.models.checkpoint import load_default
from dfx.program import DeviceImage, Program
from dfx.sim.functional import DeadlineExceeded, Device


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


# ------------------------------------------------------------------------------------------------ validation, limits
@pytest.mark.parametrize("text,pc,msg", [
    ("NOP\nLINEAR dst=0 src=0 k=0 n=8\nHALT", 1, r"`LINEAR n=8`: k=0: a length must be >= 1"),
    ("SV dst=0 src=0 n=0 +dyn_k\nHALT", 0, "n=0: a length must be >= 1"),
    ("ALLGATHER vaddr=0 n=8 devices=1\nHALT", 0, "ALLGATHER gran=0: the split granule must be >= 1"),
    ("ALLGATHER vaddr=0 n=8 devices=2 gran=1\nHALT", 0, "ALLGATHER over 2 devices, but the program has 1"),
    ("LOAD vaddr=0 n=8 index=3\nHALT", 0, "index=3: no such row index register"),
])
def test_instruction_the_isa_refuses_stops_at_its_pc(program, text, pc, msg):
    """Validated when predecoded (`dfx.isa_check.check_instr`), refused when reached, as the core flags STATUS at
    decode: an instruction after HALT is never reached."""
    dev = Device(_with(program, bad=text, never="HALT\n" + text))
    dev.run("never", 0, 0)
    with pytest.raises(SimError, match=rf"^device 0 bad pc {pc} .*{msg}"):
        dev.run("bad", 0, 0)


def test_stream_without_halt_is_refused_when_loaded(program):
    with pytest.raises(SimError, match=r"^device 0 x: the stream of 2 instructions has no HALT: a run would fall "
                                       r"off its end$"):
        Device(_with(program, x="NOP\nNOP"))


def test_watchdog_budget(program):
    """Derived from the stream (`isa_check.run_budget`): a legal run stays within it. Given: the run stops before
    the instruction that would pass it, a BATCH-fused LINEAR counting m times."""
    dev = Device(program)
    assert dev.run_budget("decode") == len(program.devices[0].streams["decode"])
    dev.run("decode", 5, 0)
    with pytest.raises(SimError, match=r"^device 0 decode pc 10 `.*`: watchdog: the run has executed more than "
                                       r"its budget of 10 instructions$"):
        Device(program, budget=10).run("decode", 5, 0)
    batched = _with(program, x="NOP\nBATCH m=50\nLINEAR dst=0 src=0 k=8 n=8\nHALT")
    with pytest.raises(SimError, match=r"pc 2 `LINEAR k=8 n=8`: watchdog: .* budget of 20 instructions$"):
        Device(batched, budget=20).run("x", 0, 0)
    assert Device(batched).run_budget("x") == 4 + 49
    Device(batched, budget=53).run("x", 0, 0)


def test_deadline_stops_a_long_run(program):
    """A legal LINEAR over 65535 vectors takes tens of seconds; the deadline stops it between two vectors."""
    slow = _with(program, x="BATCH m=65535\nLINEAR dst=0 src=0 k=256 n=256\nHALT")
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"^device 0 x pc 1 `LINEAR k=256 n=256`: the run did not finish by "
                                               r"its deadline$"):
        Device(slow).run("x", 0, 0, deadline=t0 + 0.3)
    assert time.monotonic() - t0 < 5
    with pytest.raises(DeadlineExceeded, match="pc 0 `NOP`"):
        Device(_with(program, y="NOP\nHALT")).run("y", 0, 0, deadline=t0)


def test_quantized_region_off_a_beat_is_refused():
    """A quantized weight region starts on an HBM beat (docs/isa.md, "Quantized matrix region"; the core's tile
    fetcher reports STATUS.address_range elsewhere): the same LINEAR one 64-byte unit later stops the run."""
    cfg = PRESETS["tiny"].replace(hbm_width=512)                  # 256-byte beats: 4 HBM units each
    prog = compile_model(load_default(), cfg, max_seq=16, weights="int4-oc-g32")
    text = next(t for t in map(isa.disassemble, prog.devices[0].streams["decode"])
                if t.startswith("LINEAR ") and "wfmt=" in t and " w=" in t)
    w = int(text.split(" w=")[1].split()[0], 16)
    assert w * isa.HBM_UNIT % cfg.beat_bytes == 0                 # where the compiler put it: on a beat
    dev = Device(_with(prog, ok=f"{text}\nHALT", off=f"{text.replace(f' w={w:#x}', f' w={w + 1:#x}')}\nHALT"))
    dev.run("ok", 0, 0)
    with pytest.raises(SimError, match=r"a quantized weight region starts on an HBM beat \(a multiple of 256 bytes"):
        dev.run("off", 0, 0)
