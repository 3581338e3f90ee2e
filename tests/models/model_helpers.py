"""Shared helpers for the model tests (imported by name: pytest puts this folder on sys.path)."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny networks run faster on one torch thread than on two on a shared 2-core machine (two threads wait
    on each other around microsecond-sized ops); the setting is restored afterwards. Import it into a test
    module to apply it there."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def save_pytorch_bin(hf, d):
    """Replace model.safetensors in `d` with a pytorch_model.bin laid out like the hub's original GPT-2 files:
    no `transformer.` prefix, the causal-mask buffers h.N.attn.bias / masked_bias, no lm_head."""
    (d / "model.safetensors").unlink()
    n = hf.config.n_positions
    state = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    for i in range(hf.config.n_layer):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n, n, dtype=torch.uint8)).view(1, 1, n, n)
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(state, d / "pytorch_model.bin")
