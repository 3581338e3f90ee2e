import json
import re

import pytest

from dfx.config import PRESETS, AccelConfig, load_config
from dfx.errors import ConfigError


def test_dfx_preset_matches_the_paper():
    c = PRESETS["dfx"]
    assert (c.d, c.l, c.hbm_channels, c.hbm_width, c.clock_mhz) == (64, 16, 32, 512, 200.0)
    assert c.tile_bytes == c.beat_bytes == 2048           # one d x l FP16 tile = one beat on all 32 channels
    assert c.hbm_peak_gbps == pytest.approx(409.6)


def test_hash_is_stable_and_sensitive():
    a = PRESETS["tiny"]
    assert a.config_hash == AccelConfig.from_dict(a.to_dict()).config_hash
    assert a.config_hash == a.replace(name="other").config_hash       # the name is not hardware
    assert a.config_hash != a.replace(l=8).config_hash
    assert len(a.config_hash) == 8


@pytest.mark.parametrize("field,value,msg", [
    ("d", 48, "AccelConfig.d must be a power of two"),
    ("l", 0, "AccelConfig.l must be a positive integer"),
    ("vpu_width", 128, "AccelConfig.vpu_width must be <= d"),
    ("sregs", 32, r"AccelConfig.sregs must be <= 16 \(4-bit register fields\), not 32"),
    ("vbuf_entries", 65537, r"AccelConfig.vbuf_entries must be <= 65536 \(16-bit addresses\), not 65537"),
    ("devices", 64, "AccelConfig.devices must be <= 63 .*, not 64"),
    ("hbm_width", 96, "AccelConfig.hbm_width"),
    ("weight_formats", ("int5",), "'int5' is not one of"),
    ("clock_mhz", 0.0, "AccelConfig.clock_mhz"),
])
def test_validation_names_the_field(field, value, msg):
    with pytest.raises(ConfigError, match=msg):
        PRESETS["tiny"].replace(**{field: value})


def test_load_config(tmp_path):
    assert load_config("dfx") is PRESETS["dfx"]
    p = tmp_path / "c.json"
    p.write_text(json.dumps(PRESETS["tiny"].replace(name="mine", l=8).to_dict()))
    assert load_config(str(p)).l == 8
    p.write_text(json.dumps({"d": 8, "bogus": 1}))
    with pytest.raises(ConfigError, match="unknown AccelConfig field"):
        load_config(str(p))
    with pytest.raises(ConfigError, match="neither a preset"):
        load_config("nope")


@pytest.mark.parametrize("field,value,msg", [
    ("clock_mhz", "fast", r"^AccelConfig.clock_mhz must be a number \(MHz\) in \(0, 1000\], not 'fast'$"),
    ("clock_mhz", True, "AccelConfig.clock_mhz must be a number"),
    ("clock_mhz", float("nan"), r"AccelConfig.clock_mhz must be in \(0, 1000\], not nan"),
    ("d", "8", "^AccelConfig.d must be a positive integer, not '8'$"),
    ("devices", [], "^AccelConfig.devices must be a positive integer, not \\[\\]$"),
    ("vbuf_entries", 4.0, "AccelConfig.vbuf_entries must be a positive integer, not 4.0"),
    ("name", 7, "^AccelConfig.name must be a string, not 7$"),
    ("weight_formats", ("fp16", 4), "^AccelConfig.weight_formats holds names of dequantiser families"),
])
def test_fields_are_type_checked(field, value, msg):
    """Every field's type is checked before it is compared or hashed: a ConfigError naming the field and what it
    accepts, never a TypeError."""
    with pytest.raises(ConfigError, match=msg):
        PRESETS["tiny"].replace(**{field: value})


@pytest.mark.parametrize("data,msg", [
    ({"clock_mhz": "fast"}, "AccelConfig.clock_mhz must be a number"),
    ({"weight_formats": "fp16"}, "^AccelConfig.weight_formats must be a list of dequantiser families, not 'fp16'"),
    ({"weight_formats": {"fp16": 1}}, "AccelConfig.weight_formats must be a list"),
    ({"hbm_width": None}, "AccelConfig.hbm_width must be a positive integer, not None"),
])
def test_config_file_fields_are_type_checked(tmp_path, data, msg):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({**PRESETS["tiny"].to_dict(), **data}))
    with pytest.raises(ConfigError, match=msg):
        load_config(str(p))


def test_pipeline_profile_from_the_environment(monkeypatch):
    from dfx.config import PIPELINE_ENV, pipeline_profile
    monkeypatch.delenv(PIPELINE_ENV, raising=False)
    assert pipeline_profile() == "default"
    monkeypatch.setenv(PIPELINE_ENV, "deep")
    assert pipeline_profile() == "deep"
    monkeypatch.setenv(PIPELINE_ENV, "fast")
    with pytest.raises(ConfigError, match=r"^DFX_RTL_PIPELINE='fast': the pipeline profile must be one of "
                                          r"default, deep$"):
        pipeline_profile()


def test_tile_scale_field():
    """`tile_scale` (docs/numerics.md, "Tile-scaled weights"): a bool, off in the presets, carried by to_dict /
    from_dict and JSON; a config without it (an older manifest or file) loads with it off and keeps its hash."""
    import hashlib
    for p in PRESETS.values():
        assert p.tile_scale is False
        body = {k: v for k, v in p.to_dict().items() if k not in ("name", "tile_scale")}
        old = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:8]
        assert p.config_hash == old                            # the hash it had before the field existed
    on = PRESETS["tiny"].replace(tile_scale=True)
    assert on.to_dict()["tile_scale"] is True and on.config_hash != PRESETS["tiny"].config_hash
    for c in (on, PRESETS["tiny"]):
        back = AccelConfig.from_dict(json.loads(json.dumps(c.to_dict())))
        assert back == c and back.config_hash == c.config_hash
    legacy = {k: v for k, v in on.to_dict().items() if k != "tile_scale"}
    assert AccelConfig.from_dict(legacy).tile_scale is False


@pytest.mark.parametrize("value", [1, 0, "true", None, 1.0])
def test_tile_scale_must_be_a_bool(value):
    with pytest.raises(ConfigError, match=rf"^AccelConfig.tile_scale must be a bool \(true: int3/int4 codes scaled "
                                          rf"per row tile; false: dequantised weights\), not {re.escape(repr(value))}$"):
        PRESETS["tiny"].replace(tile_scale=value)


def test_tile_scale_in_a_config_file(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({**PRESETS["tiny"].to_dict(), "tile_scale": True}))
    assert load_config(str(p)).tile_scale is True
    p.write_text(json.dumps({**PRESETS["tiny"].to_dict(), "tile_scale": "yes"}))
    with pytest.raises(ConfigError, match="AccelConfig.tile_scale must be a bool"):
        load_config(str(p))


def test_tile_dimensions_are_bounded():
    """A d or l past `DIM_MAX` (a mutated manifest's config) is one ConfigError, not a simulator that asks numpy
    for terabytes."""
    import pytest

    from dfx.config import DIM_MAX, PRESETS
    from dfx.errors import ConfigError
    for f in ("d", "l"):
        with pytest.raises(ConfigError, match=f"AccelConfig.{f} must be <= {DIM_MAX}"):
            PRESETS["tiny"].replace(**{f: 2 * DIM_MAX})
