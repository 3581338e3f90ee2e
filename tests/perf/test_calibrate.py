"""The calibration hook (dfx.perf.calibrate.compare_rtl): RTL cycles per instruction beside the model's."""
import pytest

from dfx.config import load_config
from dfx.errors import PerfError
from dfx.perf import compare_rtl


def test_calibration_hook():
    rows = compare_rtl([{"asm": "LINEAR dst=4 src=0 k=16 n=8", "cycles": 126},
                        {"asm": "VADD dst=1 a=2 b=3 n=8", "cycles": 14}], load_config("tiny"), engines="pipelined")
    assert rows[0]["model"] == 111 and rows[0]["ratio"] == pytest.approx(126 / 111) and rows[0]["class"] == "matrix"
    assert rows[1]["model"] == 1 + 11 + 2
    with pytest.raises(PerfError, match="record 0"):
        compare_rtl([{"asm": "VADD"}], load_config("tiny"))
    with pytest.raises(PerfError, match="record 0: unknown mnemonic"):
        compare_rtl([{"asm": "FOO x=1", "cycles": 3}], load_config("tiny"))
