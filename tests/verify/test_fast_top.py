"""The fast harness's memory depths (`dfx.verify.fast_top`): sized from the images a program needs, the defaults
the least, a one-line refusal above the maximum."""
import pytest
from verify_helpers import FIX

from dfx.config import load_config
from dfx.errors import DeviceError
from dfx.program import load_program
from dfx.verify.fast_top import DDR_ABITS, HBM_ABITS, MAX_ABITS, memory_abits, program_abits

MiB = 1 << 20


def test_memory_abits_next_power_of_two_with_the_defaults_as_least():
    cfg = load_config("tiny")                       # 16-byte words in DDR and in each HBM pseudo-channel
    assert (cfg.hbm_width, DDR_ABITS, HBM_ABITS) == (128, 16, 16)
    assert memory_abits(cfg, 0, 0) == (16, 16)
    assert memory_abits(cfg, 290_368, MiB) == (16, 16)               # exactly 2**16 words: no deeper
    assert memory_abits(cfg, MiB + 1, MiB + 16) == (17, 17)
    assert memory_abits(cfg, 100, int(1.78 * MiB)) == (16, 17)       # the embedded FP16 model at 256 positions
    assert memory_abits(cfg, 5 * MiB, 9 * MiB) == (19, 20)
    assert memory_abits(cfg, 16 * MiB, 16 * MiB) == (MAX_ABITS, MAX_ABITS)


@pytest.mark.parametrize("ddr, hbm, what", [(1, 16 * MiB + 1, "each HBM channel image"),
                                            (17 * MiB, 1, "the DDR image")])
def test_memory_abits_refuses_above_the_maximum_in_one_line(ddr, hbm, what):
    with pytest.raises(DeviceError) as e:
        memory_abits(load_config("tiny"), ddr, hbm)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(what) and "16 MiB" in msg and f"2**{MAX_ABITS} words" in msg


def test_program_abits_holds_every_device_image():
    prog = load_program(FIX / "tiny_1dev.dfx")
    cfg = prog.config
    ddr_abits, hbm_abits = program_abits(prog)
    assert (ddr_abits, hbm_abits) == (DDR_ABITS, HBM_ABITS)        # a small program: the defaults
    per_channel = -(-len(prog.devices[0].hbm) // cfg.beat_bytes) * cfg.channel_beat_bytes
    assert per_channel <= (cfg.hbm_width // 8) << hbm_abits
