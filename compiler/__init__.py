"""dfx.compiler: lowers (quantized) GPT-2 to per-device DFX instruction streams and memory images.

    graph, tok_dir = capture(model)                  # IR (capture.py)
    pad_heads -> quantize -> allocate -> lower -> build_images
"""
from .compile import compile_model

__all__ = ["compile_model"]
