"""Small GPT-2 models built offline (no model hub here), shared by tests and benchmarks.

(Not in conftest.py: several test folders have a conftest, and `from conftest import` would pick any of them.)
"""

# Random GPT-2 configs the reference ladder runs on: n_embd not a multiple of 64, odd head counts, a vocab
# that is not a multiple of the lane count.
RANDOM_CONFIGS = {
    "e96_h3": dict(n_embd=96, n_head=3, n_layer=2, n_positions=64, vocab_size=301),
    "e80_h5": dict(n_embd=80, n_head=5, n_layer=1, n_positions=48, vocab_size=257),
    "e128_h2": dict(n_embd=128, n_head=2, n_layer=3, n_positions=40, vocab_size=203),
}


def make_hf_gpt2(seed: int, **kw):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(seed)
    cfg = GPT2Config(**kw, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    m = GPT2LMHeadModel(cfg).eval()
    # GPT-2's init is tiny (std 0.02): widen it so logits spread and greedy tokens are decisive
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.2 if "wte" in name or "wpe" in name else 0.08)
            elif "ln" in name and name.endswith("weight"):
                p.uniform_(0.8, 1.2)
            else:
                p.normal_(0, 0.05)
    return m
