"""Tokenizers: the checkpoint's own (through `transformers`), or UTF-8 bytes for byte-level models.

Both have one small interface: `encode(str) -> list[int]` (a one-line UsageError for text that is not valid
Unicode, `check_text`), `decode(list[int]) -> str`, and `stream_decoder()`,
whose `push(token) -> str` returns the text a new token completes (holding back the bytes of a UTF-8
character split across tokens) and whose `flush() -> str` returns whatever is left at the end.
"""
from __future__ import annotations

import codecs
from pathlib import Path

from dfx.errors import CheckpointError, UsageError


def check_text(text: str) -> str:
    """`text` if it is valid Unicode (encodable as UTF-8), else a one-line UsageError: a command line in another
    encoding reaches Python as lone surrogates (U+DC80..U+DCFF), which no tokenizer can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise UsageError(f"the text is not valid UTF-8: character {e.start} is {ascii(text[e.start])} (bytes in "
                         "another encoding reach dfx as lone surrogates); give UTF-8 text") from None
    return text


class ByteTokenizer:
    """Token i is byte i of the UTF-8 encoding. Decoding replaces invalid UTF-8 with U+FFFD."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(check_text(text).encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")

    def stream_decoder(self) -> ByteStreamDecoder:
        return ByteStreamDecoder()


class ByteStreamDecoder:
    """Incremental UTF-8: a character whose bytes arrive in several tokens is printed once it is complete."""

    def __init__(self):
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token: int) -> str:
        return self._utf8.decode(bytes([token]))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)


class HFTokenizer:
    """A `transformers` fast tokenizer: from a checkpoint directory (never from the hub), or from the bytes of a
    `tokenizer.json` held in memory (a program file's; nothing is written to disk)."""

    def __init__(self, tok, where: str):
        self.tok, self.where = tok, where
        self.vocab_size = len(tok)

    @classmethod
    def from_dir(cls, path: Path) -> HFTokenizer:
        from transformers import AutoTokenizer  # lazy: transformers takes seconds to import
        try:
            tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
        except Exception as e:   # noqa: BLE001 - transformers raises many types for bad tokenizer files
            raise CheckpointError(f"tokenizer files in {path} cannot be loaded ({_first_line(e)})") from None
        return cls(tok, f"in {path}")

    @classmethod
    def from_json(cls, blob: bytes, where: str) -> HFTokenizer:
        from tokenizers import Tokenizer  # lazy: comes with transformers, which takes seconds to import
        from transformers import PreTrainedTokenizerFast  # lazy: as above
        try:
            tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(blob.decode("utf-8")))
        except Exception as e:   # noqa: BLE001 - tokenizers raises plain Exception for malformed JSON
            raise CheckpointError(f"the tokenizer {where} cannot be loaded ({_first_line(e)})") from None
        return cls(tok, where)

    def to_json(self) -> bytes:
        """The whole tokenizer (model, normalizer, pre-tokenizer, decoder) as one `tokenizer.json`."""
        return self.tok.backend_tokenizer.to_str().encode("utf-8")

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(check_text(text), add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)

    def stream_decoder(self) -> TextStreamDecoder:
        return TextStreamDecoder(self)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


class TextStreamDecoder:
    """Streaming for subword tokenizers: decode the tokens so far and return the new part of the text.

    Text that ends in U+FFFD is held back (a byte-level BPE token can end inside a UTF-8 character).
    """

    def __init__(self, tok: HFTokenizer):
        self.tok, self.ids, self.printed = tok, [], 0

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.tok.decode(self.ids)
        if text.endswith("\ufffd"):
            return ""
        return self._emit(text)

    def flush(self) -> str:
        return self._emit(self.tok.decode(self.ids))

    def _emit(self, text: str) -> str:
        new, self.printed = text[self.printed:], max(self.printed, len(text))
        return new


TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"))
# A program file carries its tokenizer as this one member, in memory (docs/security.md).
PROGRAM_TOKENIZER_FILE = "tokenizer.json"


def has_tokenizer_files(path: str | Path | None) -> bool:
    return path is not None and any(all((Path(path) / f).is_file() for f in files) for files in TOKENIZER_FILE_SETS)


def _check_size(tok: HFTokenizer, vocab_size: int) -> HFTokenizer:
    if tok.vocab_size > vocab_size:
        raise CheckpointError(f"the tokenizer {tok.where} has {tok.vocab_size} tokens but the model only "
                              f"{vocab_size}; accepted: a tokenizer no larger than the model's vocab_size")
    return tok


def load_tokenizer(path: str | Path | None, vocab_size: int) -> ByteTokenizer | HFTokenizer:
    """The checkpoint's tokenizer if `path` holds tokenizer files, else bytes for a 256-token vocabulary."""
    if has_tokenizer_files(path):
        return _check_size(HFTokenizer.from_dir(Path(path)), vocab_size)
    if vocab_size == 256:
        return ByteTokenizer()
    where = f"in {path}" if path is not None else "given"
    raise CheckpointError(f"no tokenizer files {where} (tokenizer.json, or vocab.json + merges.txt), and a "
                          f"byte-level model needs vocab_size 256, not {vocab_size}")


def tokenizer_from_json(blob: bytes | None, vocab_size: int, where: str = "in the program") \
        -> ByteTokenizer | HFTokenizer:
    """A program's tokenizer from its `tokenizer.json` bytes (None: a byte-level model), built in memory."""
    if blob is not None:
        return _check_size(HFTokenizer.from_json(blob, where), vocab_size)
    if vocab_size == 256:
        return ByteTokenizer()
    raise CheckpointError(f"the program has no tokenizer, and a byte-level model needs vocab_size 256, not "
                          f"{vocab_size}; recompile it from a checkpoint with tokenizer files")
