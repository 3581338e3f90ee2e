"""The compiler: IR verifier between passes, head padding, allocation, and models it cannot lower."""
import numpy as np
import pytest

from gpt2_fixtures import make_hf_gpt2
from dfx import isa
from dfx.compiler import compile_model
from dfx.compiler.allocate import allocate
from dfx.compiler.capture import capture, capture_state
from dfx.compiler.graph import verify
from dfx.compiler.partition import partition
from dfx.compiler.passes import pad_heads, quantize
from dfx.config import PRESETS
from dfx.errors import CompileError
from dfx.symbols import LOGITS, Kind, sym_name

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def small():
    return make_hf_gpt2(3, n_embd=36, n_head=3, n_layer=1, n_positions=16, vocab_size=70)   # head_dim 12


def test_passes_keep_the_ir_valid(small):
    g, _ = capture(small)
    for p in (lambda g: pad_heads(g, TINY), lambda g: quantize(g, TINY), lambda g: partition(g, TINY, 2)):
        g = verify(p(g))
    att = g.node("h.0.attn")
    assert att.attrs["head_pad"] == 16 and g.values["h.0.qkv"] == 3 * 3 * 16
    assert all(p.dtype == np.float16 for n in g.nodes for p in n.params.values())


def test_pad_heads_is_exact(small):
    """Padded c_attn columns and c_proj rows are zeros, and the real ones are where the heads moved."""
    g, _ = capture(small)
    w = g.node("h.0.attn.c_attn").params["weight"].copy()
    pad_heads(g, TINY)
    wp = g.node("h.0.attn.c_attn").params["weight"]
    for j in range(9):                                   # q, k, v x 3 heads
        np.testing.assert_array_equal(wp[:, j * 16:j * 16 + 12], w[:, j * 12:(j + 1) * 12])
        assert not wp[:, j * 16 + 12:(j + 1) * 16].any()
    assert not g.node("h.0.attn.c_proj").params["weight"][12:16].any()


def test_verifier_names_the_node(small):
    g, _ = capture(small)
    g.node("h.0.mlp.c_fc").params["weight"] = np.zeros((36, 7), np.float32)
    with pytest.raises(CompileError, match=r"node h\.0\.mlp\.c_fc \(linear\): shapes do not agree"):
        verify(g)
    g, _ = capture(small)
    g.nodes[3].inputs = ("nowhere",)
    with pytest.raises(CompileError, match="input 'nowhere' is used before it is defined"):
        verify(g)


def test_unlowerable_models(small):
    cfg = small.config.to_dict()
    with pytest.raises(CompileError, match=r"activation 'relu' cannot be lowered"):
        capture_state({**cfg, "activation_function": "relu"}, small.state_dict())
    with pytest.raises(CompileError, match="scale_attn_by_inverse_layer_idx=True cannot be lowered"):
        capture_state({**cfg, "scale_attn_by_inverse_layer_idx": True}, small.state_dict())
    sd = dict(small.state_dict())
    sd.pop("transformer.h.0.mlp.c_fc.bias")
    with pytest.raises(CompileError, match=r"node h\.0\.mlp\.c_fc: weight h\.0\.mlp\.c_fc\.bias is missing"):
        capture_state(cfg, sd)
    with pytest.raises(CompileError, match="VBUF is full"):
        compile_model(small, TINY.replace(vbuf_entries=16))
    with pytest.raises(CompileError, match="model config has no vocab_size"):
        capture({"not": "a model"})
    with pytest.raises(CompileError, match="cannot compile a list"):
        capture([1, 2])


def test_allocation_has_no_overlapping_live_values(small):
    g, _ = capture(small)
    pad_heads(g, TINY)
    partition(g, TINY)
    plan = allocate(g, TINY)
    # every instruction's VBUF operands lie inside the buffer
    prog = compile_model(small, TINY)
    for ins in prog.devices[0].streams["decode"]:
        for field_name, _ in ins.op.reads + ins.op.writes:
            assert getattr(ins, field_name) < plan.vbuf_entries_used


def test_plan_symbols_are_looked_up_by_name(small):
    """The allocator's tables answer the names `sym_name` makes; a misspelt name is a CompileError naming the
    symbol and its nearest known neighbours, not a KeyError."""
    g, _ = capture(small)
    pad_heads(g, TINY)
    partition(g, TINY, 2)
    plan = allocate(g, TINY, device=1)
    assert plan.hbm[sym_name("h.0.attn.c_attn", Kind.WEIGHT, 0)].length > 0
    assert plan.vbuf.address(sym_name("h.0.attn", Kind.SCORE, 1)) >= 0
    with pytest.raises(CompileError, match=r"^unknown HBM symbol 'h\.0\.attn\.k0'; nearest known: h\.0\.attn\.k"):
        plan.hbm[sym_name("h.0.attn", Kind.KCACHE, 0)]               # head 0 is on device 0
    with pytest.raises(CompileError, match=r"^unknown DDR symbol 'h\.0\.ln1\.gamma'; nearest known: "
                                           r"h\.0\.ln_1\.gamma"):
        plan.ddr["h.0.ln1.gamma"]


def test_symbols_do_not_overlap(small):
    """Every DDR and HBM symbol of every device lies inside its image, after the previous one."""
    prog = compile_model(small, TINY, devices=2, prefill_batch=2)
    for k, mem in enumerate(prog.manifest.memory):
        for table, unit, size in ((mem.ddr, 1, mem.ddr_bytes), (mem.hbm, isa.HBM_UNIT, mem.hbm_bytes)):
            end = 0
            for s in sorted(table, key=lambda s: s.address):
                assert s.address * unit >= end, (k, s)
                end = s.address * unit + s.length
            assert 0 < end <= size
        assert len(prog.devices[k].ddr) == mem.ddr_bytes and mem.ddr[LOGITS].address == prog.symbols.logits


def test_shapes_only_compile_of_gpt2_xl():
    prog = compile_model("1.5B", "dfx", devices=4)
    assert not prog.has_weights and prog.n_devices == 4
    qk = [sum(i.op.mnemonic == "QK" for i in d.streams["decode"]) // 48 for d in prog.devices]
    assert qk == [7, 6, 6, 6]                             # 25 heads, not cut to 24 as DFX did
    assert prog.devices[0].streams["decode"][-1] == isa.Instr("HALT")


def test_fp16_checkpoint_compiles_as_stored_to_the_same_program(tmp_path):
    """A checkpoint directory is read as stored (`checkpoint.load_tensors`: FP16 stays FP16, no float32 model);
    the program is byte-identical to the one compiled from the float32 model, subnormals flushed alike."""
    import torch
    from safetensors.torch import load_file, save_file

    from gpt2_fixtures import make_hf_gpt2
    from dfx.models.checkpoint import from_transformers, load_checkpoint, save_checkpoint
    d = save_checkpoint(from_transformers(make_hf_gpt2(5, n_embd=32, n_head=2, n_layer=1, n_positions=16,
                                                       vocab_size=40)), tmp_path / "half", dtype=torch.float16)
    state = load_file(str(d / "model.safetensors"))
    state["transformer.h.0.mlp.c_fc.weight"][0, :4] = torch.tensor([1e-6, -3e-7, 6e-8, 1.0]).half()   # subnormals
    save_file(state, str(d / "model.safetensors"))
    for weights in ("fp16", "int4-oc-g32"):
        a, b = compile_model(d, "tiny", weights=weights), compile_model(load_checkpoint(d), "tiny", weights=weights)
        assert a.devices == b.devices
