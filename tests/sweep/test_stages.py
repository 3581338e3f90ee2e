"""The stages of a sweep point: the resource count reproduces docs/rtl.md's DFX totals, a failing stage is one
line, and (slow) the accuracy, Yosys and RTL stages on real tools."""
import pytest

from dfx.config import PRESETS
from dfx.errors import ConfigError
from dfx.sweep import stages


def test_lane_count_at_the_dfx_config_is_docs_rtl_md_total():
    r = stages.lane_resources(PRESETS["dfx"])
    assert r["lut"] == 712_731 + 1_076 + 470_155 + 7_652        # MPU + VPU rows of docs/rtl.md (LUT + LUTRAM)
    assert r["dsp"] == 1_104 + 534
    half = stages.lane_resources(PRESETS["dfx"].replace(l=8, vpu_width=32))
    assert half["lut"] < r["lut"] and half["dsp"] < r["dsp"]


def test_point_config_and_failures():
    cfg = stages.accel_config({"config": "dfx", "d": 128, "clock_mhz": 250})
    assert (cfg.d, cfg.l, cfg.clock_mhz) == (128, 16, 250.0) and cfg.name == "dfx[clock_mhz=250,d=128]"
    assert stages.accel_config({"config": "dfx"}) is PRESETS["dfx"]
    with pytest.raises(ConfigError):
        stages.accel_config({"config": "dfx", "d": 32, "vpu_width": 64})
    r = stages.guard(stages.resources, {"config": "dfx", "d": 48, "board": "u280"})
    assert r["status"] == "error" and "power of two" in r["reason"] and "\n" not in r["reason"]
    r = stages.guard(stages.resources, {"config": "dfx", "board": "u280"})
    assert r["status"] == "ok" and r["fits_dsp_est"] and not r["fits_lut"]      # as docs/rtl.md says


@pytest.mark.slow
def test_accuracy_stage_int4_is_worse_than_fp16():
    fp = stages.guard(stages.accuracy, "fp16", "rtn", 4)
    q = stages.guard(stages.accuracy, "int3-oc-g128", "rtn", 4)
    assert fp["status"] == q["status"] == "ok", (fp, q)
    assert q["bits_per_byte"] > fp["bits_per_byte"] > 0.5


@pytest.mark.slow
@pytest.mark.synthesis
def test_yosys_stage_synthesises_a_unit(tmp_path):
    r = stages.guard(stages.yosys_units, {"config": "tiny"}, ("add32",), str(tmp_path))
    assert r["status"] == "ok", r
    assert r["yosys_add32_lut"] > 100 and r["yosys_lut"] == r["yosys_add32_lut"]


@pytest.mark.slow
@pytest.mark.cocotb
def test_rtl_stage_is_bit_exact_at_the_tiny_config():
    r = stages.guard(stages.rtl_check, {"config": "tiny"}, "fp16")
    assert r["status"] == "ok", r
    assert r["rtl_cycles"] > 0
