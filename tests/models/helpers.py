"""Shared helpers for the model tests."""
import torch


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
