"""The compiler with quantized weights: the quantize pass (names and model-level dicts, head padding), regions in
the memory image, the manifest record, multi-device pieces, and the errors for what cannot be compiled."""
import numpy as np
import pytest
import torch

from gpt2_fixtures import make_hf_gpt2
from dfx import formats as F
from dfx import isa
from dfx.compiler import compile_model
from dfx.compiler.capture import capture
from dfx.compiler.graph import verify
from dfx.compiler.passes import head_maps, model_weights, pad_heads, pad_quant, quantize
from dfx.compiler.quant.rtn import rtn
from dfx.config import PRESETS
from dfx.errors import CompileError, SimError
from dfx.host.session import Session

TINY = PRESETS["tiny"]
RNG = np.random.default_rng(7)


@pytest.fixture(scope="module")
def unpadded():                      # head_dim 16: no padding at d=8
    return make_hf_gpt2(4, n_embd=32, n_head=2, n_layer=1, n_positions=16, vocab_size=50)


@pytest.fixture(scope="module")
def padded():                        # head_dim 12 -> 16
    return make_hf_gpt2(3, n_embd=36, n_head=3, n_layer=1, n_positions=16, vocab_size=70)


def _state(model):
    return {k[len("transformer."):] if k.startswith("transformer.") else k: v.detach().float().numpy()
            for k, v in model.state_dict().items()}


def _rtn_dict(model, fmt):
    return {k: rtn(v, fmt) for k, v in _state(model).items() if k.endswith(".weight") and
            any(x in k for x in ("c_attn", "c_proj", "c_fc"))}


@pytest.mark.parametrize("fmt", ["int4-oc-g32", "int4-ic-g32-asym", "fp8e5m2", "int8-ic"])
def test_name_and_model_level_dict_give_the_same_program(unpadded, fmt):
    a = compile_model(unpadded, "tiny", devices=2, weights=fmt)
    b = compile_model(unpadded, "tiny", devices=2, weights=_rtn_dict(unpadded, fmt))
    for da, db in zip(a.devices, b.devices):
        assert da.hbm == db.hbm and da.streams == db.streams
    assert a.manifest.quantization.format == fmt and b.manifest.quantization.format == "per-matrix"
    assert a.manifest.quantization.method == "rtn" and b.manifest.quantization.methods
    mats = a.manifest.quantization.matrices
    assert mats["h.0.attn.c_attn"] == fmt and mats["lm_head"] == "fp16"


def test_regions_in_the_image(unpadded):
    fmt = F.parse("int4-ic-g32")
    prog = compile_model(unpadded, "tiny", devices=2, weights=fmt)
    q = prog.manifest.quantization
    for k, dev in enumerate(prog.devices):
        lin = [i for i in dev.streams["decode"] if i.op.mnemonic == "LINEAR"]
        assert lin and all(i.wfmt == fmt.wfmt for i in lin)
        regions = q.regions[k]
        for i in lin:
            r = regions[i.w]
            a = i.w * isa.HBM_UNIT
            desc = F.read_descriptor(dev.hbm[a:a + 64])
            assert (desc["k"], desc["n"], desc["wfmt"], desc["size"], desc["phase"]) == \
                (i.k, i.n, fmt.wfmt, r.bytes, r.phase)
            assert r.bytes == F.matrix_bytes(fmt, i.k, i.n, TINY.d, TINY.l, r.phase)
        lm = [i for i in dev.streams["decode"] if i.op.mnemonic == "LMHEAD"]
        assert all(i.wfmt == 0 for i in lm)
    one = compile_model(unpadded, "tiny", weights=fmt)
    b1 = sum(r.bytes for r in one.manifest.quantization.regions[0].values())
    fp = compile_model(unpadded, "tiny")
    b16 = sum(r.bytes for r in fp.manifest.quantization.regions[0].values())
    assert b1 < b16 and one.manifest.memory[0].hbm_bytes < fp.manifest.memory[0].hbm_bytes


def test_verifier_checks_quantized_weights(unpadded):
    g, _ = capture(unpadded)
    g = verify(quantize(pad_heads(g, TINY), TINY, "int4-oc-g32"))
    n = g.node("h.0.mlp.c_fc")
    assert isinstance(n.params["weight"], F.QuantWeight) and n.attrs["wformat"].name == "int4-oc-g32"
    n.attrs["wformat"] = F.parse("int8-oc")
    with pytest.raises(CompileError, match=r"node h\.0\.mlp\.c_fc \(linear\): weight is int4-oc-g32 but attrs"):
        verify(g)


# ------------------------------------------------------------------------------------------------ padding
def _src(hd, hp, groups):
    s = np.full((groups, hp), -1)
    s[:, :hd] = np.arange(groups * hd).reshape(groups, hd)
    return s.reshape(-1)


def test_pad_quant_mixed_groups_keep_their_group_scale():
    """head_dim 32 -> 40 with whole-channel groups: a padded group holds real and padding weights; the padding
    takes the group's zero point (asym) so it dequantises to exactly 0."""
    f = F.parse("int4-ic-asym")
    w = RNG.standard_normal((10, 96)).astype(np.float32) + 0.5
    qw = rtn(w, f)
    src = _src(32, 40, 3)
    p = pad_quant(qw, "cols", src, "n", zero_pad=True)
    assert (p.zeros == qw.zeros).all() and not p.dequant()[:, src < 0].any()
    np.testing.assert_array_equal(p.dequant()[:, src >= 0], qw.dequant())


@pytest.mark.parametrize("fmt,axis", [("int4-oc-g32", "cols"), ("int4-ic-g32", "rows"), ("int8-ic", "cols"),
                                      ("fp8e4m3-ic-g32", "rows"), ("bcq2-oc-g32", "cols"), ("int4-oc-g32-asym", "cols"),
                                      ("int3-ic-g32-asym", "cols"), ("int4-oc", "rows"), ("bcq3-ic-g32", "rows")])
def test_pad_quant_keeps_values_and_zeroes_padding(fmt, axis):
    f = F.parse(fmt)
    # head_dim 32 -> 64 (d = 64): every padded group of 32 (or the whole extent) holds one model group or padding
    src = _src(32, 64, 3)
    shape = (96, 50) if axis == "rows" else (50, 96)
    w = RNG.standard_normal(shape).astype(np.float32)
    if f.kind == "bcq":
        from dfx.compiler.quant.bcq import bcq
        qw = bcq(w, f, iters=2)
    else:
        qw = rtn(w, f)
    p = pad_quant(qw, axis, src, "n", zero_pad=axis == "cols")
    dq, dp = qw.dequant(), p.dequant()
    real = src >= 0
    if axis == "cols":
        np.testing.assert_array_equal(dp[:, real].view(np.uint16), dq[:, src[real]].view(np.uint16))
        assert not dp[:, ~real].any()
    else:
        np.testing.assert_array_equal(dp[real].view(np.uint16), dq[src[real]].view(np.uint16))
        if f.kind != "bcq":
            assert not dp[~real].any()


def test_groups_that_do_not_survive_padding_are_refused(padded):
    q = _rtn_dict(padded, "int4-ic-g32")            # c_attn columns: head_dim 12 -> 16 mixes groups
    with pytest.raises(CompileError, match=r"node h\.0\.attn\.c_attn: int4-ic-g32 groups do not survive head "
                                           r"padding: padded col group 1 .* would mix model groups 0, 1"):
        compile_model(padded, "tiny", weights=q)
    q = _rtn_dict(padded, "int4-oc-g32")            # c_proj rows: the same
    with pytest.raises(CompileError, match=r"node h\.0\.attn\.c_proj: int4-oc-g32 groups do not survive"):
        compile_model(padded, "tiny", weights=q)


def test_whole_channel_dicts_survive_padding_and_match_their_golden(padded):
    from dfx.models.checkpoint import from_transformers
    from dfx.models.quantized import fake_quant
    q = _rtn_dict(padded, "int8-oc")
    q["h.0.mlp.c_fc.weight"] = rtn(_state(padded)["h.0.mlp.c_fc.weight"], "fp8e4m3-ic-g32")   # per-matrix formats
    prog = compile_model(padded, "tiny", devices=3, weights=q)
    assert prog.manifest.quantization.matrices["h.0.mlp.c_fc"] == "fp8e4m3-ic-g32"
    g, _ = capture(padded)
    quantize(pad_heads(g, TINY), TINY, q)
    for name, w in model_weights(g).items():              # the program multiplies with exactly the dict's values
        np.testing.assert_array_equal(w.codes.view(np.uint16), q[name].dequant().view(np.uint16))
    ids = [3, 1, 4, 1, 5]
    golden = fake_quant(from_transformers(padded), q)
    with torch.no_grad():
        ref = golden(torch.tensor([ids]))[0][0, -1].numpy()
    got = Session(prog, "sim").feed(ids).astype(np.float64)
    assert np.abs(got - ref).max() <= 0.005 * (ref.max() - ref.min())


def test_bcq_ic_cannot_keep_padding_zero(padded):
    with pytest.raises(CompileError, match=r"node h\.0\.attn\.c_attn: bcq2-ic .*padding columns zero"):
        compile_model(padded, "tiny", weights="bcq2-ic")
    compile_model(padded, "tiny", weights="bcq2-oc")       # per-OC: the padding columns get zero alphas


def test_head_maps(padded):
    g, _ = capture(padded)
    m = head_maps(pad_heads(g, TINY))
    axis, src = m["h.0.attn.c_attn"]
    assert axis == "cols" and len(src) == 144 and src[16] == 12 and src[12] == -1 and src[48] == 36
    axis, src = m["h.0.attn.c_proj"]
    assert axis == "rows" and len(src) == 48


# ------------------------------------------------------------------------------------------------ bad input
def test_unknown_format_lists_the_accepted(unpadded):
    with pytest.raises(CompileError, match=r"unknown weight format 'int4'; accepted: fp16, int\{8,4,3\}"):
        compile_model(unpadded, "tiny", weights="int4")


def test_a_format_the_config_lacks(unpadded):
    cfg = TINY.replace(name="fp16only", weight_formats=("fp16", "int8"))
    compile_model(unpadded, cfg, weights="int8-oc")
    with pytest.raises(CompileError, match=r"node h\.0\.attn\.c_attn: weight format int4-oc-g32 needs the int4 "
                                           r"dequantiser, which config 'fp16only' does not have \(its weight_formats: "
                                           r"fp16, int8\)"):
        compile_model(unpadded, cfg, weights="int4-oc-g32")


def test_bad_dicts(unpadded):
    q = _rtn_dict(unpadded, "int8-oc")
    with pytest.raises(CompileError, match=r"quantized weights for h\.0\.ln_1: not linear"):
        compile_model(unpadded, "tiny", weights={**q, "h.0.ln_1.weight": q["h.0.mlp.c_fc.weight"]})
    with pytest.raises(CompileError, match=r"node h\.0\.mlp\.c_fc: quantized weight is \(32, 64\)"):
        compile_model(unpadded, "tiny", weights={**q, "h.0.mlp.c_fc.weight": rtn(np.ones((32, 64)), "int8-oc")})
    with pytest.raises(CompileError, match="must be a dfx.formats.QuantWeight, not ndarray"):
        compile_model(unpadded, "tiny", weights={"h.0.mlp.c_fc.weight": np.ones((32, 128))})
    with pytest.raises(CompileError, match="model without weights"):
        compile_model({"n_embd": 32, "n_head": 2, "n_layer": 1, "n_positions": 16, "vocab_size": 50,
                       "layer_norm_epsilon": 1e-5}, "tiny", weights=q)


def test_shapes_only_quantized_compile_for_the_perf_model():
    fp = compile_model("124M", "dfx", devices=4)
    q = compile_model("124M", "dfx", devices=4, weights="int4-oc-g128")
    lin = [i for i in q.devices[0].streams["decode"] if i.op.mnemonic == "LINEAR"]
    assert all(i.wfmt == 2 for i in lin)
    regions = q.manifest.quantization.regions[0]
    r = regions[lin[0].w]
    assert r.bytes == F.matrix_bytes("int4-oc-g128", 768, r.n, 64, 16)
    wq = sum(r.bytes for r in regions.values() if r.node != "lm_head")
    w16 = sum(r.bytes for r in fp.manifest.quantization.regions[0].values() if r.node != "lm_head")
    assert 0.25 < wq / w16 < 0.27                        # 4.13 bits per weight of 16


def test_simulator_refuses_broken_regions(unpadded):
    prog = compile_model(unpadded, "tiny", weights="int4-oc-g32")
    dev = prog.devices[0]
    pc, ins = next((pc, i) for pc, i in enumerate(dev.streams["decode"]) if i.op.mnemonic == "LINEAR")
    a = ins.w * isa.HBM_UNIT
    dev.hbm[a:a + 4] = b"XXXX"
    with pytest.raises(SimError, match=rf"pc {pc} `LINEAR .*wfmt=2.*`: weight region at HBM byte {a}: no weight "
                                       "descriptor"):
        Session(prog, "sim").feed([1])
    prog = compile_model(unpadded, "tiny", weights="int4-oc-g32")
    s = prog.devices[0].streams["decode"]
    s[pc] = isa.Instr("LINEAR", **{**s[pc].fields(), "wfmt": 12})
    with pytest.raises(SimError, match="weight format code 12 is not defined"):
        Session(prog, "sim").feed([1])


def test_docs_weight_format_table_is_current():
    from pathlib import Path
    from dfx.compiler.quant.table import weight_format_table
    doc = (Path(__file__).resolve().parents[2] / "docs" / "numerics.md").read_text()
    table = doc.split("<!-- weight-formats -->\n")[1].split("\n<!-- /weight-formats -->")[0]
    assert table == weight_format_table(), "docs/numerics.md weight-format table is stale: regenerate it"


def test_every_matrix_instruction_streams_one_recorded_region():
    """Each quantized LINEAR reads the region the manifest records at its HBM address (its k x n, its exact
    bytes), and a decode step streams exactly the bytes of the device's regions (FP16 LM head included)."""
    prog = compile_model("124M", "dfx", devices=2, weights="int4-ic-g128")
    for k, dev in enumerate(prog.devices):
        regions = prog.manifest.quantization.regions[k]
        total = 0
        for i in dev.streams["decode"]:
            if i.op.mnemonic in ("LINEAR", "LMHEAD"):
                if i.wfmt:
                    r = regions[i.w]
                    assert (r.k, r.n) == (i.k, i.n)
                    assert r.bytes == F.matrix_bytes("int4-ic-g128", i.k, i.n, 64, 16, r.phase)
                    total += r.bytes
                else:
                    total += F.matrix_bytes(F.FP16, i.k, i.n, 64, 16)
        assert total == sum(r.bytes for r in regions.values())

@pytest.mark.parametrize("fmt, why", [
    ("int4-oc-g32-asym", r"int4-oc-g32-asym has zero points \(-asym\)"),
    ("int4-ic-g32", r"int4-ic-g32 has per-input-channel groups \(ic\): one scale per row, not per row tile"),
    ("int8-oc", "int8-oc has 8-bit codes"),
    ("fp8e4m3", "fp8e4m3 has fp8e4m3 codes, not integers"),
])
def test_tile_scaled_config_refuses_what_it_cannot_read(unpadded, fmt, why):
    """Under `AccelConfig.tile_scale` only symmetric int3/int4 per-OC formats with one scale per row tile compile
    (dfx.tilescale); a name and a model-level dict are checked alike. FP16 and int4/int3-oc compile."""
    cfg = TINY.replace(name="tiny_ts", tile_scale=True)
    msg = (r"^node h\.0\.attn\.c_attn: weight format \S+ cannot run on config 'tiny_ts': a tile-scaled core "
           r"\(AccelConfig.tile_scale\) reads symmetric int3/int4 codes with one scale per output column and row "
           rf"tile of d = 8 rows .*; {why}$")
    with pytest.raises(CompileError, match=msg):
        compile_model(unpadded, cfg, weights=fmt)
    with pytest.raises(CompileError, match=msg):
        compile_model(unpadded, cfg, weights=_rtn_dict(unpadded, fmt))
    compile_model(unpadded, TINY, weights=fmt)                  # the dequantising core takes it


def test_tile_scaled_config_compiles_its_formats(unpadded):
    cfg = TINY.replace(name="tiny_ts", tile_scale=True)
    for fmt in ("fp16", "int4-oc-g32", "int3-oc", "int4-oc-g64"):
        prog = compile_model(unpadded, cfg, weights=fmt)
        assert prog.config.tile_scale
    with pytest.raises(CompileError, match="int4-oc-g32 has groups of 32 rows, not a multiple of d = 64"):
        compile_model(unpadded, PRESETS["dfx"].replace(tile_scale=True), weights="int4-oc-g32")
