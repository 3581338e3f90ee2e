"""Shared by the tests of dfx.verify: when the integrated core may be built and simulated here."""
import os
from pathlib import Path

import pytest

from dfx.verify.core_build import BUILD
from dfx.verify.toolchain import missing_simulator

FIX = Path(__file__).resolve().parents[1] / "host" / "fixtures"


def need_rtl():
    """Skip unless the core may be built and simulated here (DFX_RTL=1 or a cached tiny build, a simulator)."""
    cached = list(BUILD.glob("tiny_*_icarus/stamp.txt"))
    if not (os.environ.get("DFX_RTL") or cached):
        pytest.skip("set DFX_RTL=1 to build and simulate the core (minutes; see verify/rtl_core.py)")
    why = missing_simulator()
    if why:
        pytest.skip(why)


def need_fast_rtl(sim: str | None = None):
    """Skip unless the fast harness may be built and simulated here (DFX_RTL=1 or a cached build, a simulator)."""
    from dfx.verify.fast_top import BUILD as FAST_BUILD
    from dfx.verify.toolchain import simulator
    sim = simulator(sim)
    cached = list(FAST_BUILD.glob(f"tiny_*_{sim}_*/stamp.txt"))
    if not (os.environ.get("DFX_RTL") or cached):
        pytest.skip("set DFX_RTL=1 to build and simulate the core (minutes; see verify/fast_core.py)")
    why = missing_simulator(sim)
    if why:
        pytest.skip(why)
