"""The engine contract (hw/core_engine.py): every engine of the core carries it, declares a unit and errors the
controller maps to STATUS bits."""
import pytest
from amaranth.lib.wiring import In

from dfx import isa, regmap
from dfx.config import PRESETS
from dfx.hw.core import ENGINES
from dfx.hw.core_engine import Engine, engine_signature

CFG = PRESETS["tiny"]
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")     # engines built, not used


@pytest.mark.parametrize("E", ENGINES, ids=lambda E: E.__name__)
def test_each_engine_carries_the_contract(E):
    e = E(CFG)
    assert isinstance(e, Engine)
    assert e.signature.members["ctl"] == In(engine_signature(CFG, E.ERRORS))
    assert not {"start", "word", "done", "busy", "err", "vbuf"} & set(e.signature.members)   # only in `ctl`


def test_one_engine_per_unit_with_a_busy_counter():
    units = [E.UNIT for E in ENGINES]
    assert sorted(u.name for u in units) == sorted(u.name for u in isa.Unit if u is not isa.Unit.CTRL)
    assert {u.name for u in units} == set(regmap.COUNTER_UNITS)


def test_every_declared_error_is_a_status_bit():
    """The controller maps an engine's error flags to STATUS through one table, `regmap.STATUS_BITS`."""
    declared = {err for E in ENGINES for err in E.ERRORS}
    assert declared == {"illegal_opcode", "address_range", "ring"}
    assert declared <= set(regmap.STATUS_BITS)
    with pytest.raises(ValueError, match=r"engine errors \['timeout'\] are not STATUS bits; accepted: illegal_opcode"):
        engine_signature(CFG, ("timeout",))


def test_error_flags_follow_the_declaration():
    err = engine_signature(CFG, ("illegal_opcode", "address_range")).members["err"].shape
    assert list(dict(err).keys()) == ["illegal_opcode", "address_range"]
    assert engine_signature(CFG, ()).members["err"].shape.size == 0
