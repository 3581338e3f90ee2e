"""dfx.models: the top of the reference ladder.

- `gpt2`: the golden PyTorch GPT-2 (`GPTConfig`, `GPT2` with a KV cache and streaming `generate`), and the
  shapes of the four published sizes (`GPT2_SIZES`, `named_config`).
- `checkpoint`: Hugging Face checkpoint directories in and out (`load_checkpoint`, `save_checkpoint`,
  `from_transformers`), and the embedded default model (`DEFAULT_MODEL_DIR`, `load_default`).
- `tokenizer`: the checkpoint's tokenizer or UTF-8 bytes (`load_tokenizer`).
- `train` / `evaluate`: how the default model was trained on the Python standard library, and its held-out
  perplexity, re-runnable (`python -m dfx.models.train`, `python -m dfx.models.evaluate`).
"""
