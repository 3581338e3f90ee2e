"""Board descriptions (dfx.perf.board): every constant validated, and every source citing something that can
be looked up (a file of the repository, a URL / DOI / arXiv id, a named document of `DOCUMENTS`), or saying
it is an assumption; a made-up source is refused."""
import json

import pytest

from dfx.errors import ConfigError
from dfx.perf import Board, available_boards, load_board, source_problem, with_overrides


def test_board_every_constant_has_a_source(board):
    assert "u280" in available_boards()
    consts = board.describe()
    assert len(consts) > 40
    assert board.unsourced() == []
    for name, value, unit, src in consts:
        assert source_problem(src) is None, (name, src)
    assert board.value("resources", "DSP") == 9024
    assert board.hbm_peak_gbytes_per_s == pytest.approx(460.0)
    # QSFP28: 4 x 25.78125 Gb/s, 64b/66b: 100 Gb/s before Aurora framing
    assert board.link_gbytes_per_s == pytest.approx(12.5 * 0.99, rel=1e-4)


@pytest.mark.parametrize("source,why", [
    ("made up by me", "cites no document"),
    ("ANCHORS.md, Alveo U280 limits", "cites ANCHORS.md, which is not a file of this repository"),
    ("docs/nothing_here.md", "cites docs/nothing_here.md, which is not a file of this repository"),
    ("UG9999: 42 cycles", "cites UG9999, which is not a known document"),
    ("assumption: a guess (see NOTES.md)", "cites NOTES.md, which is not a file of this repository"),
    ("assumption:", "'assumption:' with no text"),
    ("DFXX core clock", "cites no document"),
])
def test_made_up_sources_are_named(board, source, why):
    problem = source_problem(source)
    assert problem is not None and problem.startswith(why), problem
    data = json.loads(json.dumps(board.data))
    data["core"]["fp_add_cycles"]["source"] = source
    fake = Board(board.name, board.path, data)
    assert [line.split(":")[0] for line in fake.unsourced()] == ["core.fp_add_cycles"]


@pytest.mark.parametrize("source", [
    "docs/perf.md", "hw/fp.py default stages", "UG1393: 14.375 GB/s per pseudo-channel", "DFX: FP16 add latency 11",
    "arXiv:2209.10797", "https://docs.amd.com/r/en-US/pg074-aurora-64b66b", "10.1000/182",
    "assumption: one comparator level", "derived: 4 lanes x 25.78125 Gb/s x 64/66 / 256 bits",
])
def test_sources_that_can_be_looked_up(source):
    assert source_problem(source) is None


def test_overrides_keep_their_source(board):
    b = with_overrides(board, {"core.fp_add_cycles": 2}, why="what-if")
    assert b.value("core", "fp_add_cycles") == 2 and b.unsourced() == []
    assert b.source("core", "fp_add_cycles").startswith("what-if: 2 instead of 11 (DFX")


@pytest.mark.parametrize("edit,msg", [
    (lambda d: d["hbm"]["efficiency"].update(value=1.5), "hbm.efficiency must be in (0, 1]"),
    (lambda d: d["core"]["fp_add_cycles"].pop("source"), "core.fp_add_cycles has no source"),
    (lambda d: d["link"].pop("lanes"), "link.lanes is missing"),
    (lambda d: d.pop("pcie"), "section 'pcie' is missing"),
    (lambda d: d["resources"]["DSP"].update(value="many"), "resources.DSP must be a number"),
])
def test_invalid_board_files(tmp_path, board, edit, msg):
    data = json.loads(json.dumps(board.data))
    edit(data)
    p = tmp_path / "board.json"
    p.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load_board(p)
    with pytest.raises(ConfigError, match="is not valid JSON"):
        (tmp_path / "bad.json").write_text("{")
        load_board(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="neither a known board"):
        load_board("u999")
