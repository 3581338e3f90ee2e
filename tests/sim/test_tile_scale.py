"""The functional simulator on a tile-scaled core (`AccelConfig.tile_scale`; docs/numerics.md, "Tile-scaled
weights"): every quantized LINEAR equals `numerics.mpu` on the codes with the per-tile scales, recomputed here from
the model-level QuantWeights; the logits differ from the dequantising core's and both stay within the quantized
ladder's tolerances of the fake-quant golden; two devices give the logits of one; a program carries the field;
what such a core cannot read is refused when the simulator meets it."""
import numpy as np
import pytest
import torch

from dfx import isa
from dfx import numerics as nx
from dfx.compiler import compile_model
from dfx.config import PRESETS
from dfx.errors import SimError
from dfx.host.session import Session
from dfx.models.quantized import fake_quant
from dfx.program import DeviceImage, Program, load_program, save_program
from dfx.sim.functional import Device

TS = PRESETS["tiny"].replace(name="tiny_ts", tile_scale=True)
FMT = "int4-oc-g128"
IDS = list(b"def f(")
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(scope="module")
def embedded():
    from dfx.models.checkpoint import load_default
    return load_default()


@pytest.fixture(scope="module")
def quantized(embedded):
    from dfx.compiler.quant.model import quantize_model
    return quantize_model(embedded, FMT, "rtn")


@pytest.fixture(scope="module")
def program(embedded, quantized):
    return compile_model(embedded, TS, weights=quantized, max_seq=16)


def _with(prog: Program, **streams) -> Program:
    img = prog.devices[0]
    return Program(prog.manifest, [DeviceImage({**img.streams, **{k: isa.assemble(v) for k, v in streams.items()}},
                                               img.hbm, img.ddr)])


def test_every_quantized_linear_is_the_codes_times_the_tile_scales(program, quantized):
    """Each quantized LINEAR of the decode stream, run alone on random inputs, gives bit for bit
    `numerics.mpu(x, float16(codes), bias, d, act, tile_scale=ts)` with ts[i] = the scales of row group i*d // G,
    taken from the model-level QuantWeight (not from the simulator's region reader)."""
    d = TS.d
    regions = program.manifest.quantization.regions[0]
    lins = [i for i in program.devices[0].streams["decode"] if i.op.mnemonic == "LINEAR" and i.wfmt]
    assert len(lins) == 16
    rng = np.random.default_rng(0)
    texts = {f"l{j}": f"{isa.disassemble(ins)}\nHALT" for j, ins in enumerate(lins)}
    dev = Device(_with(program, **texts))
    for j, ins in enumerate(lins):
        f = ins.fields()
        k, n = f["k"], f["n"]
        qw = quantized[regions[f["w"]].node + ".weight"]
        assert qw.shape == (k, n) and qw.fmt.name == FMT and not f["scale"] and not f["mask"]
        x = nx.to_fp16(rng.standard_normal(k) * 2)
        b = nx.to_fp16(rng.standard_normal(n) * 0.1)
        dev.vbuf[f["src"] * d:f["src"] * d + k] = x
        if f["has_bias"]:
            dev.vbuf[f["bias"] * d:f["bias"] * d + n] = b
        x, b = dev.vector(f["src"], k).copy(), dev.vector(f["bias"], n).copy() if f["has_bias"] else None
        dev.run(f"l{j}", 0, 0)
        ts = qw.scales[(np.arange(-(-k // d)) * d) // (qw.fmt.group or k)]
        want = nx.mpu(x, qw.codes.astype(np.float16), b, d=d, act="gelu" if f["gelu"] else None, tile_scale=ts)
        np.testing.assert_array_equal(nx.fp16_bits(dev.vector(f["dst"], n)), nx.fp16_bits(want))
        if j == 0:                                # ... which is not what the dequantising core computes here
            deq = nx.mpu(x, qw.dequant(), b, d=d, act="gelu" if f["gelu"] else None)
            assert not np.array_equal(nx.fp16_bits(deq), nx.fp16_bits(want))


def _compare(sim, ref):
    sim, ref = sim.astype(np.float64), ref.astype(np.float64)
    return float(sim @ ref / np.linalg.norm(sim) / np.linalg.norm(ref)), float(np.abs(sim - ref).max() /
                                                                                (ref.max() - ref.min()))


def test_logits_differ_from_dequantised_and_both_meet_the_ladder(embedded, quantized, program):
    """The quantized ladder's tolerances (tests/sim/test_quant_ladder.py) against the fake-quant golden for both
    cores; the tile-scaled logits are not the dequantising core's, and greedy tokens match the golden's."""
    golden = fake_quant(embedded, quantized)
    with torch.no_grad():
        ref = golden(torch.tensor([IDS]))[0][0, -1].float().numpy()
    plain = compile_model(embedded, "tiny", weights=quantized, max_seq=16)
    got_ts, got_plain = Session(program, "sim").feed(IDS), Session(plain, "sim").feed(IDS)
    assert not np.array_equal(got_ts.view(np.uint16), got_plain.view(np.uint16))
    for got in (got_ts, got_plain):
        cos, rel = _compare(got, ref)
        assert cos >= 0.9999 and rel <= 0.005, (cos, rel)
    assert list(Session(program, "sim").generate(IDS, 4)) == list(golden.generate(IDS, 4))


def test_program_file_carries_tile_scale(program, tmp_path):
    p = save_program(program, tmp_path / "ts.dfx")
    back = load_program(p, expect=TS)
    assert back.config.tile_scale is True and back.config == TS
    assert TS.config_hash != TS.replace(tile_scale=False).config_hash


def test_simulator_refuses_a_region_a_tile_scaled_core_cannot_read(embedded):
    """A program built for a dequantising core run as a tile-scaled one: its first asymmetric region stops the run,
    naming the region's HBM byte and what a tile-scaled core reads."""
    prog = compile_model(embedded, "tiny", weights="int4-oc-g64-asym", max_seq=16)
    img = prog.devices[0]
    ins = next(i for i in img.streams["decode"] if i.op.mnemonic == "LINEAR" and i.wfmt)
    dev = Device.of_image(TS, DeviceImage({"one": [ins, isa.assemble("HALT")[0]]}, img.hbm, img.ddr))
    with pytest.raises(SimError, match=rf"pc 0 `LINEAR .*`: weight region at HBM byte {ins.w * isa.HBM_UNIT}: a "
                                       r"tile-scaled core \(AccelConfig.tile_scale\) reads symmetric int3/int4 codes "
                                       r".*; int4-oc-g64-asym has zero points \(-asym\)$"):
        dev.run("one", 0, 0)
    Device.of_image(PRESETS["tiny"], DeviceImage({"one": [ins, isa.assemble("HALT")[0]]}, img.hbm, img.ddr)) \
        .run("one", 0, 0)                        # the dequantising core reads it


def test_two_devices_are_bit_identical_to_one(embedded, quantized, program):
    two = compile_model(embedded, TS, devices=2, weights=quantized, max_seq=16)
    np.testing.assert_array_equal(Session(two, "sim").feed(IDS).view(np.uint16),
                                  Session(program, "sim").feed(IDS).view(np.uint16))
