"""Black boxes for measuring what surrounds a unit (`hw/blackbox.py`): a boxed unit keeps its ports and
attributes, its stub declares the ports the instance connects, and Yosys maps the design around it (the
tiny vector engine with its VPU boxed: the quick check of `benchmarks/resource_tables.py --fit`'s method)."""
import re

import pytest
from amaranth.back import rtlil
from hw_helpers import built_only

from dfx.config import PRESETS
from dfx.hw import core_vpu
from dfx.hw.blackbox import Blackbox, stub_verilog, swap_units, synth_boxed
from dfx.hw.core_vpu import VectorEngine
from dfx.hw.fp import Fp32AddUnit
from dfx.hw.vpu import VPU

TINY = PRESETS["tiny"]


def test_box_keeps_ports_and_attributes():
    unit = Fp32AddUnit(stages=2)
    box = Blackbox(unit, "box_add")
    assert box.latency == unit.latency and box.signature == unit.signature
    ports = box.ports()
    assert ("input", "i__valid", 1) in ports and ("output", "o__valid", 1) in ports
    assert ("input", "i__payload", 64) in ports and ("output", "o__payload", 32) in ports
    stub = stub_verilog([box, Blackbox(Fp32AddUnit(stages=2), "box_add")])
    assert stub.count("module box_add") == 1 and "(* blackbox *)" in stub
    assert re.search(r"input \[63:0\] i__payload", stub) and re.search(r"output \[0:0\] i__ready", stub)


def test_swap_units_boxes_the_units_a_design_builds_and_restores_them():
    with swap_units(core_vpu, ("VPU",)) as made:
        eng = VectorEngine(TINY)
        text = rtlil.convert(eng, name="veng", emit_src=False)
    assert core_vpu.VPU is VPU and len(made) == 1 and isinstance(eng.vpu, Blackbox)
    assert eng.vpu.latency == built_only(VPU(TINY, **VectorEngine.vpu_params(TINY))).latency
    assert "box_vpu_0" in text and "fp32_add" not in text


@pytest.mark.synthesis
def test_synth_boxed_maps_the_rest_only(tmp_path):
    """The tiny vector engine with its VPU boxed: the box maps to nothing (no DSP48E2: every multiplier is in
    the VPU), the engine's FIFOs and control to a few hundred LUTs, far below the VPU's tens of thousands."""
    r = synth_boxed(lambda: VectorEngine(TINY), "veng_novpu", {core_vpu: ("VPU",)}, tmp_path)
    assert r.dsp == 0 and 0 < r.lut + r.lutram < 5_000 and r.ff > 100
    again = synth_boxed(lambda: VectorEngine(TINY), "veng_novpu", {core_vpu: ("VPU",)}, tmp_path)
    assert again == r                                      # reused from the build folder


@pytest.mark.synthesis
def test_synth_boxed_without_mfs(tmp_path):
    """ABC9 without &mfs (the whole-core fit's option for designs where &mfs runs for hours): the same design
    maps to a count of its own, about the default's (&mfs only recovers area)."""
    r = synth_boxed(lambda: VectorEngine(TINY), "veng_novpu", {core_vpu: ("VPU",)}, tmp_path)
    fast = synth_boxed(lambda: VectorEngine(TINY), "veng_novpu", {core_vpu: ("VPU",)}, tmp_path, mfs=False)
    assert (tmp_path / "veng_novpu_nomfs.stat.json").is_file()
    assert fast.dsp == 0 and fast.ff == r.ff and r.lut + r.lutram <= fast.lut + fast.lutram < 2 * (r.lut + r.lutram)


@pytest.mark.synthesis
def test_synth_boxed_netlist_walks_around_the_box(tmp_path):
    """`netlist=True` (`resource_tables.py --depth-core`): the mapped netlist is written beside the counts, the
    depth walk finds a worst path into each module of the engine, and no path passes through the boxed VPU (its
    instance is a boundary)."""
    import json

    from dfx.hw.depth import Delays, longest_paths
    r = synth_boxed(lambda: VectorEngine(TINY), "veng_novpu", {core_vpu: ("VPU",)}, tmp_path, mfs=False,
                    netlist=True)
    net = json.loads((tmp_path / "veng_novpu_nomfs.json").read_text())
    mod = net["modules"]["veng_novpu_nomfs"]
    boxes = [n for n, c in mod["cells"].items() if c["type"].startswith("box_vpu")]
    assert len(boxes) == 1 and r.ff > 100
    groups = longest_paths(net, "veng_novpu_nomfs", Delays.from_board(), lambda end: end.split(".")[0])
    assert groups and all(p.luts >= 0 and p.delay_ns > 0 for p in groups.values())
    assert not any(c.split(":", 1)[-1] in boxes for p in groups.values() for c in p.cells)
