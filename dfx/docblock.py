"""Generated blocks in the docs: the text between two marker comments, which a benchmark script rewrites with
the figures it measured (the prose around it stays hand-written). One writer for every script, so a block is
replaced, never duplicated, and a missing marker either says what is wrong or adds the block where the script
asks.

    write_block(Path("docs/rtl_core.md"), "<!-- cycles:begin -->", "<!-- cycles:end -->", table)
"""
from __future__ import annotations

from pathlib import Path


def read_block(path: Path, begin: str, end: str) -> str | None:
    """The text between `begin` and `end` in `path` (None when the file or either marker is missing)."""
    if not path.exists():
        return None
    text = path.read_text()
    if begin not in text:
        return None
    rest = text.split(begin, 1)[1]
    return rest.split(end, 1)[0] if end in rest else None


def write_block(path: Path, begin: str, end: str, body: str, *, missing: str = "append",
                after: str | None = None) -> None:
    """Put `body` between `begin` and `end` in `path`, one newline after `begin` and before `end`.

    missing: what to do when the markers are not in the file: "append" adds the block at the end of the file,
    "after" adds it after the first occurrence of `after` (the end of the file if that is not there either),
    "error" raises `ValueError` naming the file and the markers.
    """
    text = path.read_text()
    if begin not in text or end not in text.split(begin, 1)[1]:
        if missing == "error":
            raise ValueError(f"{path} has no '{begin}' ... '{end}' block")
        if missing not in ("append", "after"):
            raise ValueError(f"missing must be 'append', 'after' or 'error', not {missing!r}")
        at = len(text)
        if missing == "after" and after and after in text:
            at = text.index(after) + len(after)
        text = f"{text[:at]}\n\n{begin}\n{end}\n{text[at:]}" if at == len(text) else \
            f"{text[:at]}\n\n{begin}\n{end}{text[at:]}"
    path.write_text(replace_block(text, begin, end, body))


def replace_block(text: str, begin: str, end: str, body: str) -> str:
    """`text` with `body` between its first `begin` and the first `end` after it (one newline after `begin` and
    before `end`); `ValueError` when either marker is missing."""
    if begin not in text or end not in text.split(begin, 1)[1]:
        raise ValueError(f"no '{begin}' ... '{end}' block")
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    return f"{head}{begin}\n{body.rstrip(chr(10))}\n{end}{tail}"
