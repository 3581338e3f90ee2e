"""What the core build reads off a program (`dfx.verify.core_build`): the quantized weight families a core built
for it needs, and the one-line refusal of a quantized matrix the core cannot read, which the rtl backend raises
before any simulation starts."""
import sys
from pathlib import Path

import pytest
from verify_helpers import FIX

from dfx.errors import DeviceError
from dfx.program import load_program, save_program
from dfx.verify.core_build import quantized_refusal, weight_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gpt2_fixtures import make_hf_gpt2  # noqa: E402


@pytest.fixture(scope="module")
def odd_model():
    """36 wide: per-input-channel groups on k = 36, not a multiple of the tiny config's d = 8."""
    return make_hf_gpt2(8, n_embd=36, n_head=2, n_layer=1, n_positions=16, vocab_size=64)


def test_families_of_programs(odd_model):
    from dfx.compiler import compile_model
    assert weight_families(load_program(FIX / "tiny_1dev.dfx")) == ()
    for weights, fam in (("int4-oc-g128", ("int4",)), ("bcq3-oc-g128", ("bcq3",)), ("fp8e5m2", ("fp8e5m2",))):
        prog = compile_model(odd_model, "tiny", weights=weights)
        assert weight_families(prog) == fam
        assert quantized_refusal(prog) is None


def test_rtl_backend_refuses_what_the_core_cannot_read(odd_model, tmp_path):
    from dfx.compiler import compile_model
    from dfx.host.rtl_session import run_session
    path = tmp_path / "ic.dfx"
    save_program(compile_model(odd_model, "tiny", weights="int4-ic-g32"), path)
    with pytest.raises(DeviceError, match=r"^the rtl backend: device 0 prefill pc \d+: weight format int4-ic-g32: "
                                          r"the RTL core reads per-input-channel .* not 36; recompile"):
        run_session(path, [1, 2], 1)


def test_families_from_the_environment(odd_model, monkeypatch):
    """$DFX_RTL_WFORMATS adds families to every core's build (one build for programs of different formats)."""
    from dfx.compiler import compile_model
    from dfx.formats import FormatError
    from dfx.hw.qfetch import CORE_FAMILIES
    fp16, int4 = load_program(FIX / "tiny_1dev.dfx"), compile_model(odd_model, "tiny", weights="int4-oc-g128")
    monkeypatch.setenv("DFX_RTL_WFORMATS", "all")
    assert weight_families(fp16) == weight_families(int4) == tuple(CORE_FAMILIES)
    monkeypatch.setenv("DFX_RTL_WFORMATS", "bcq2, int8")
    assert weight_families(fp16) == ("int8", "bcq2")
    assert weight_families(int4) == ("int8", "int4", "bcq2")
    monkeypatch.setenv("DFX_RTL_WFORMATS", "")
    assert weight_families(int4) == ("int4",)
    monkeypatch.setenv("DFX_RTL_WFORMATS", "int5,bcq")
    with pytest.raises(FormatError, match=r"^\$DFX_RTL_WFORMATS: not a weight family of the core: bcq, int5; "
                                          r"accepted: all or a comma list of int8, int4"):
        weight_families(fp16)


def test_build_cache_key_covers_every_rtl_module():
    """Every module of hw/ that the cores (`hw.top`, `hw.ring_top`) are built from is in the cached builds' key
    (`source_hash` reads `RTL_SOURCES`): changing one rebuilds the Verilog, not a stale cached core."""
    import subprocess

    from dfx.verify.core_build import RTL_SOURCES
    out = subprocess.run([sys.executable, "-c", "import sys, dfx.hw.top, dfx.hw.ring_top; print(' '.join("
                          "m.split('.')[-1] for m in sys.modules if m.startswith('dfx.hw.')))"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out and not [m for m in out if m.split("_")[0] not in RTL_SOURCES]
