"""Sweep specs: TOML, YAML and --grid give the same points; groups, random search and bad input."""
import pytest

from dfx.errors import UsageError
from dfx.sweep import from_dict, grid_spec, load_spec, point_hash

TOML = """
[sweep]
name = "t"
stages = ["perf"]
d = [32, 64]
weights = "fp16"

[[group]]
model = "1.5B"
devices = 4
overlap = [1, 2]

[[group]]
model = "355M"
devices = 1
"""


def test_toml_groups_are_products_over_the_top_level(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(TOML)
    s = load_spec(p)
    pts = s.points()
    assert len(pts) == 2 * 2 + 2
    assert {(q["model"], q["devices"]) for q in pts} == {("1.5B", 4), ("355M", 1)}
    assert all(q["weights"] == "fp16" and q["output_tokens"] == 256 for q in pts)
    assert len({point_hash(q) for q in pts}) == len(pts)
    assert s.stages == ("perf",) and s.name == "t"


def test_yaml_and_grid_match_toml(tmp_path):
    pytest.importorskip("yaml")
    y = tmp_path / "s.yaml"
    y.write_text("name: t\nstages: [perf]\nd: [32, 64]\nmodel: 124M\ndevices: 1\n")
    g = grid_spec(["d=32,64", "model=124M", "devices=1"], {"stages": ["perf"]})
    assert [point_hash(p) for p in load_spec(y).points()] == [point_hash(p) for p in g.points()]


def test_random_search_draws_distinct_seeded_points():
    s = from_dict({"search": "random", "samples": 5, "seed": 3, "d": [16, 32, 64, 128], "l": [4, 8, 16]})
    a, b = s.points(), s.points()
    assert len(a) == 5 and a == b
    assert len({point_hash(p) for p in a}) == 5


@pytest.mark.parametrize("data, words", [
    ({"sweep": {"nope": 1}}, "unknown setting"),
    ({"nope": 1}, "unknown parameter"),
    ({"group": [{"dd": [1]}]}, "unknown parameter"),
    ({"stages": ["perf", "magic"]}, "stages"),
    ({"search": "random"}, "samples"),
    ({"d": []}, "empty list"),
])
def test_bad_specs_name_the_problem(data, words):
    with pytest.raises(UsageError, match=words):
        from_dict(data)


def test_missing_file_and_bad_grid(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_spec(tmp_path / "none.toml")
    with pytest.raises(UsageError, match="KEY=V1,V2"):
        grid_spec(["d"])
    bad = tmp_path / "b.toml"
    bad.write_text("d = [1,\n")
    with pytest.raises(UsageError, match="cannot parse"):
        load_spec(bad)
