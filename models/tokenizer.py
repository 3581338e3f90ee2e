"""Tokenizers: the checkpoint's own (through `transformers`) or UTF-8 bytes for byte-level models.

Both offer encode/decode and a streaming decoder that prints text as tokens arrive, holding back the bytes of a
UTF-8 character until it is complete.
"""
from __future__ import annotations

import codecs
from pathlib import Path

from dfx.errors import CheckpointError

TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


class ByteTokenizer:
    """Token i is byte i. Decoding replaces invalid UTF-8 with U+FFFD."""
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")

    def stream_decoder(self):
        return _ByteStream()


class _ByteStream:
    def __init__(self):
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token: int) -> str:
        return self._dec.decode(bytes([token]))

    def flush(self) -> str:
        return self._dec.decode(b"", final=True)


class HFTokenizer:
    """A `transformers` tokenizer loaded from the checkpoint directory (no hub access)."""

    def __init__(self, path: Path):
        from transformers import AutoTokenizer
        try:
            self.tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as e:   # noqa: BLE001 - transformers raises many types
            raise CheckpointError(f"tokenizer files in {path} cannot be loaded ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0] if str(e) else ''})") from None
        self.vocab_size = len(self.tok)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)

    def stream_decoder(self):
        return _TextStream(self)


class _TextStream:
    """Decode the whole sequence each time and emit the new suffix (handles merges across tokens)."""

    def __init__(self, tok):
        self.tok, self.ids, self.done = tok, [], ""

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.tok.decode(self.ids)
        if text.endswith("\ufffd"):               # an incomplete character: wait for more tokens
            return ""
        new, self.done = text[len(self.done):], text
        return new

    def flush(self) -> str:
        text = self.tok.decode(self.ids)
        new, self.done = text[len(self.done):], text
        return new


def has_tokenizer_files(path: str | Path | None) -> bool:
    return path is not None and any((Path(path) / f).is_file() for f in TOKENIZER_FILES)


def load_tokenizer(path: str | Path | None, vocab_size: int):
    """The checkpoint's tokenizer if `path` has tokenizer files; bytes for a 256-token vocabulary."""
    if has_tokenizer_files(path):
        return HFTokenizer(Path(path))
    if vocab_size == 256:
        return ByteTokenizer()
    where = f"in {path}" if path else "with the model"
    raise CheckpointError(f"no tokenizer files {where} (tokenizer.json or vocab.json + merges.txt), and a "
                          f"byte-level model needs vocab_size 256, not {vocab_size}")
