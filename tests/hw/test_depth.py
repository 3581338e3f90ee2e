"""The logic-depth analysis (`dfx.hw.depth`): the path walk on a hand-written mapped netlist, the delay model
from the board file, the table format, and (when the native Yosys of pyosys is installed) a real
synth_xilinx run on a registered 16-bit adder whose depth is known: one LUT level and four CARRY4 segments."""
import importlib.util
import json
from pathlib import Path

import pytest
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from dfx.hw.depth import (DEPTH_COLUMNS, CritPath, Delays, analyse, depth_row, depth_table, longest_path,
                          longest_paths, parse_depth_table, register_group)

REPO = Path(__file__).resolve().parents[2]
D = Delays.from_board()


def _cell(typ, ins, outs, params=None):
    conns = {**ins, **outs}
    dirs = {**{p: "input" for p in ins}, **{p: "output" for p in outs}}
    return {"type": typ, "parameters": params or {}, "port_directions": dirs, "connections": conns}


def _netlist():
    # q1 (FF) -> LUT -> LUT -> CARRY4 -> CARRY4 -> FF d2;  q1 -> LUT -> FF d3
    cells = {
        "ff1": _cell("FDRE", {"C": [1], "CE": [9], "R": ["0"], "D": [2]}, {"Q": [3]}),
        "l1": _cell("LUT2", {"I0": [3], "I1": [3]}, {"O": [4]}),
        "l2": _cell("LUT3", {"I0": [4], "I1": [3], "I2": [3]}, {"O": [5]}),
        "c1": _cell("CARRY4", {"CI": ["0"], "S": [5, 5, 5, 5], "DI": [3, 3, 3, 3]}, {"CO": [20, 21, 22, 6], "O": [23, 24, 25, 26]}),
        "c2": _cell("CARRY4", {"CI": [6], "S": [5, 5, 5, 5], "DI": [3, 3, 3, 3]}, {"CO": [27, 28, 29, 30], "O": [31, 32, 33, 7]}),
        "ff2": _cell("FDRE", {"C": [1], "CE": [9], "R": ["0"], "D": [7]}, {"Q": [2]}),
        "l3": _cell("LUT1", {"I0": [3]}, {"O": [8]}),
        "ff3": _cell("FDRE", {"C": [1], "CE": [9], "R": ["0"], "D": [8]}, {"Q": [10]}),
    }
    nets = {"stage_a_3": {"bits": [3], "hide_name": 0}, "stage_b_7": {"bits": [2], "hide_name": 0},
            "other_1": {"bits": [10], "hide_name": 0}}
    ports = {"clk": {"direction": "input", "bits": [1]}, "en": {"direction": "input", "bits": [9]}}
    return {"modules": {"top": {"ports": ports, "cells": cells, "netnames": nets}}}


def test_walk_counts_levels_carries_and_nets():
    p = longest_path(_netlist(), "top", D)
    assert (p.luts, p.carry, p.muxf, p.dsp) == (2, 2, 0, 0)
    assert p.nets == 4                           # into l1, l2, c1 (c1 -> c2 is dedicated), into ff2
    assert p.start == "stage_a_3[0]" and p.end == "stage_b_7[0]"
    want = D.overhead + 2 * D.lut + 2 * D.carry4 + 4 * D.net
    assert p.delay_ns == pytest.approx(want, abs=1e-3)
    groups = longest_paths(_netlist(), "top", D, register_group)
    assert set(groups) == {"stage_b", "other", "stage_a"} and groups["other"].luts == 1


def test_dsp_registers_split_paths_by_pin():
    """A DSP48E2 with PREG and an unregistered A (CREG on C): a path into A ends at P through the slice
    (dsp_comb register to register), C is an ordinary end, P starts a path; without PREG the slice is
    combinational from A, and its registered C starts no path through it."""
    def net(preg):
        regs = {"AREG": "0", "BREG": "0", "CREG": "1", "MREG": "0", "PREG": "1" if preg else "0"}
        cells = {
            "ff1": _cell("FDRE", {"C": [1], "D": [2]}, {"Q": [3]}),
            "l1": _cell("LUT1", {"I0": [3]}, {"O": [4]}),
            "dsp": _cell("DSP48E2", {"CLK": [1], "A": [4], "B": ["0"], "C": [3], "CEP": [9]}, {"P": [5]}, regs),
            "l2": _cell("LUT1", {"I0": [5]}, {"O": [6]}),
            "ff2": _cell("FDRE", {"C": [1], "D": [6]}, {"Q": [2]}),
        }
        nets = {"q1": {"bits": [3], "hide_name": 0}, "q2": {"bits": [2], "hide_name": 0},
                "prod": {"bits": [5], "hide_name": 0}}
        ports = {"clk": {"direction": "input", "bits": [1]}, "en": {"direction": "input", "bits": [9]}}
        return {"modules": {"top": {"ports": ports, "cells": cells, "netnames": nets}}}

    into = longest_paths(net(True), "top", D, register_group)
    assert (into["prod"].luts, into["prod"].dsp) == (1, 1)
    assert into["prod"].delay_ns == pytest.approx(2 * D.net + D.lut + D.dsp_comb, abs=1e-3)
    assert into["q2"].start == "prod[0]" and into["q2"].dsp == 0      # P is a register
    comb = longest_path(net(False), "top", D)
    assert (comb.luts, comb.dsp, comb.start, comb.end) == (2, 1, "q1[0]", "q2[0]")


def test_delay_model_comes_from_the_board_file():
    t = json.loads((REPO / "boards" / "u280" / "board.json").read_text())["timing"]
    assert D.target_mhz == t["target_mhz"]["value"] == 300.0
    assert all(t[k]["source"] for k in t)
    assert D.max_levels == int((1000 / 300 - D.overhead - D.net) // (D.lut + D.net))


def test_table_format():
    p = CritPath(luts=5, carry=2, nets=7, delay_ns=3.1, start="a", end="b")
    text = depth_table([depth_row("add32, deep", "stages=8", p, D)])
    rows = parse_depth_table(text)
    assert [list(r) for r in rows] == [list(DEPTH_COLUMNS)]
    assert rows[0]["within target"] == "yes" and rows[0]["est. Fmax (MHz)"] == "323"
    with pytest.raises(ValueError, match="header"):
        parse_depth_table("| a | b |\n|---|---|")


class Add16(wiring.Component):
    a: In(16)
    b: In(16)
    q: Out(16)

    def elaborate(self, platform):
        m = Module()
        ra = Signal(16)
        rb = Signal(16)
        m.d.sync += [ra.eq(self.a), rb.eq(self.b), self.q.eq(ra + rb)]
        return m


@pytest.mark.skipif(importlib.util.find_spec("pyosys") is None, reason="needs the native Yosys of pyosys")
def test_known_depth_of_a_registered_adder(tmp_path):
    p, _ = analyse(Add16(), "add16", tmp_path)
    assert (p.luts, p.carry, p.muxf) == (1, 4, 0)
    assert p.start.startswith(("ra", "rb")) and p.end.startswith("q")
    assert p.nets == 3                               # into the LUT, into the chain, into the register
    (row,) = parse_depth_table(depth_table([depth_row("add16", "-", p, D)]))
    assert row["LUT levels"] == "1" and row["carry (CARRY4)"] == "4" and row["within target"] == "yes"


def test_dsp_adder_specs():
    from dfx.config import PRESETS
    from dfx.hw.depth import unit_factories
    facts = unit_factories(PRESETS["tiny"], ["add32dsp:stages=8", "mpu:gelu=0,dsp_add=1"])
    assert facts["add32dsp:stages=8"][1]().dsp == "primitive"
    assert facts["mpu:gelu=0,dsp_add=1"][1]().dsp_add == "primitive"


@pytest.mark.synthesis
@pytest.mark.skipif(importlib.util.find_spec("pyosys") is None, reason="needs the native Yosys of pyosys")
def test_dsp_adder_maps_to_two_dsp48e2_and_fewer_luts(tmp_path):
    """Yosys synth_xilinx on the adder with its alignment and add on DSP48E2 primitives: exactly 2 DSP48E2,
    fewer LUTs and carry segments than the LUT adder at the same depth."""
    from dfx.hw.depth import synth_json
    from dfx.hw.fp import Fp32AddUnit
    from dfx.hw.synth import count_cells
    counts = {}
    for name, unit in (("lut", Fp32AddUnit(stages=2)), ("dsp", Fp32AddUnit(stages=2, dsp="primitive"))):
        synth_json(unit, f"a_{name}", tmp_path)
        stat = json.loads((tmp_path / f"a_{name}.stat.json").read_text())
        design = stat.get("design") or next(iter(stat["modules"].values()))
        counts[name] = count_cells(design["num_cells_by_type"])
    assert counts["dsp"].dsp == 2 and counts["lut"].dsp == 0
    assert counts["dsp"].lut < 0.8 * counts["lut"].lut and counts["dsp"].carry8 < counts["lut"].carry8


@pytest.mark.synthesis
@pytest.mark.skipif(importlib.util.find_spec("pyosys") is None, reason="needs the native Yosys of pyosys")
@pytest.mark.parametrize("dsp", [None, "primitive"])
def test_deep_adders_meet_the_300mhz_depth(tmp_path, dsp):
    """The quick check of the depth tables: the binary32 adder with every cut, in LUTs and on the DSP48E2
    slices' registers, within `Delays.max_levels` LUT levels and the 300 MHz period (one Yosys run each)."""
    from dfx.hw.fp import ADD_MAX_STAGES, Fp32AddUnit
    p, _ = analyse(Fp32AddUnit(stages=ADD_MAX_STAGES, dsp=dsp), f"add_{dsp}", tmp_path)
    assert p.luts <= D.max_levels and p.delay_ns <= 1000 / D.target_mhz, (p.luts, p.delay_ns, p.start, p.end)


def test_docs_depth_tables_parse():
    """docs/rtl.md's depth tables (written by benchmarks/resource_tables.py) parse, with a default and a deep
    row for the adders."""
    text = (REPO / "docs" / "rtl.md").read_text()
    rows = parse_depth_table(text.split("<!-- depth:tiny -->")[1].split("<!-- /depth:tiny -->")[0])
    units = {r["unit"] for r in rows}
    assert {"add32, default", "add32, deep", "add32dsp, deep", "MPU, deep"} <= units
    dfx = text.split("<!-- depth:dfx -->")[1].split("<!-- /depth:dfx -->")[0] if "<!-- depth:dfx -->" in text else ""
    if dfx.strip():                                  # (written by --config dfx, hours at most)
        parse_depth_table(dfx)


def test_docs_core_depth_table_sets_the_models_clock():
    """docs/rtl.md's depth:core table (`resource_tables.py --depth-core`) parses, one row per module group, and
    the performance model's configuration chosen to fit runs at the slower of it and the operators' clock."""
    import sys
    sys.path.insert(0, str(REPO / "benchmarks"))
    from resource_tables import CLOCK_UNITS, block, core_clock, supported_clock, unit_path
    assert unit_path("m_axi_hbm07_w_slr_0.skid[1]") == "m_axi_hbm*_w_slr_*"
    assert unit_path("core.mpu.rob.count[3]") == "core.mpu.rob" and unit_path("$abc$1") == "(registers Yosys named)"
    rows = parse_depth_table(block(REPO / "docs" / "rtl.md", "depth:core"))
    assert rows and len({r["unit"] for r in rows}) == len(rows)
    slowest = min(float(r["est. Fmax (MHz)"]) for r in rows)
    assert core_clock(block(REPO / "docs" / "rtl.md", "depth:core")) == slowest // 10 * 10
    assert core_clock("") == float("inf")
    tiny = parse_depth_table(block(REPO / "docs" / "rtl.md", "depth:core-tiny"))     # (--core-config tiny)
    assert tiny and all(r["parameters"].startswith("tiny:") for r in tiny)
    units = supported_clock(block(REPO / "docs" / "rtl.md", "depth:tiny"), CLOCK_UNITS)
    perf = (REPO / "docs" / "perf.md").read_text()
    assert f"{min(units, slowest // 10 * 10):.0f} MHz | " in perf
    # the configuration chosen to fit: its INT4 tile fetcher's table too (`--depth-fetcher`)
    fetcher = parse_depth_table(block(REPO / "docs" / "rtl.md", "depth:fetcher"))
    assert fetcher and all(r["parameters"].startswith("dfx-int4:") for r in fetcher)
    best = min(units, slowest // 10 * 10, core_clock(block(REPO / "docs" / "rtl.md", "depth:fetcher")))
    assert f"the codes into the MPU), l=16, {best:.0f} MHz" in perf


@pytest.mark.synthesis
@pytest.mark.skipif(importlib.util.find_spec("pyosys") is None, reason="needs the native Yosys of pyosys")
def test_code_fetcher_meets_the_300mhz_depth(tmp_path):
    """The quick check of `resource_tables.py --depth-fetcher` (the dfx preset's, minutes): the tile-scaled
    core's INT4 tile fetcher (`QuantTiles(codes=True)`: request stages, tag routing, gearboxes, tile walk, setup)
    at the tiny config, every register-to-register path within the 300 MHz depth."""
    from dfx.config import PRESETS
    from dfx.hw.qfetch import QuantTiles
    p, _ = analyse(QuantTiles(PRESETS["tiny"], "int4", codes=True), "qfetch_codes", tmp_path)
    assert p.luts <= D.max_levels and p.delay_ns <= 1000 / D.target_mhz, (p.luts, p.delay_ns, p.start, p.end)
