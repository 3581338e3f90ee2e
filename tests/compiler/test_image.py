"""The compiler's memory images (compiler/image.py): written into a temporary file piece by piece, never a zeroed
image per device in memory."""
import tracemalloc

from gpt2_fixtures import make_hf_gpt2
from dfx.compiler import compile_model
from dfx.program import load_program, save_program


def test_compile_holds_no_image_in_memory(tmp_path):
    """Python-heap peak of a 2-device compile of an FP16 checkpoint whose images are 3x its weights (each device's
    DDR holds the 50257 x 256 embedding table, the HBM the LM head): below half the checkpoint's bytes. A zeroed
    image per device (the old bytearrays), a float32 or cleaned copy of the weights, or a whole tiled LM head
    exceeds it; the checkpoint's tensors themselves are memory-mapped (not on the Python heap)."""
    m = make_hf_gpt2(0, n_embd=256, n_head=4, n_layer=1, n_positions=64, vocab_size=50257).half()
    m.save_pretrained(tmp_path / "ckpt", safe_serialization=True)
    weights = (tmp_path / "ckpt" / "model.safetensors").stat().st_size
    compile_model(tmp_path / "ckpt", "dfx", devices=2, max_seq=64)          # warm: imports, caches
    tracemalloc.start()
    try:
        prog = compile_model(tmp_path / "ckpt", "dfx", devices=2, max_seq=64)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    images = sum(mem.hbm_bytes + mem.ddr_bytes for mem in prog.manifest.memory)
    assert images > 2.5 * weights
    assert peak < 0.5 * weights, f"compile peak {peak / 1e6:.1f} MB on the Python heap, weights {weights / 1e6:.1f} MB"
    q = load_program(save_program(prog, tmp_path / "p.dfx"))    # saved member by member, loaded back equal
    assert q.devices == prog.devices
