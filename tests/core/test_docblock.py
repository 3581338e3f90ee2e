"""`dfx.docblock`: the one writer of the docs' generated blocks (benchmark scripts rewrite their tables with it)."""
import pytest

from dfx.docblock import read_block, write_block

B, E = "<!-- t:begin -->", "<!-- t:end -->"


def test_replaces_the_block_and_keeps_the_prose(tmp_path):
    doc = tmp_path / "d.md"
    doc.write_text(f"# Title\n\nprose before\n\n{B}\nold table\n{E}\n\nprose after\n")
    write_block(doc, B, E, "| new | table |\n")
    assert doc.read_text() == f"# Title\n\nprose before\n\n{B}\n| new | table |\n{E}\n\nprose after\n"
    assert read_block(doc, B, E) == "\n| new | table |\n"
    write_block(doc, B, E, "| again |")                      # idempotent in shape: one block, one newline each side
    assert doc.read_text().count(B) == 1 and f"{B}\n| again |\n{E}" in doc.read_text()


def test_missing_block_append_after_or_error(tmp_path):
    doc = tmp_path / "d.md"
    doc.write_text("# T\n\n<!-- other:end -->\n\nlast line\n")
    assert read_block(doc, B, E) is None and read_block(tmp_path / "none.md", B, E) is None
    with pytest.raises(ValueError, match="has no '<!-- t:begin -->'"):
        write_block(doc, B, E, "x", missing="error")
    assert B not in doc.read_text()                           # nothing written on the error
    write_block(doc, B, E, "x", missing="after", after="<!-- other:end -->")
    assert doc.read_text() == f"# T\n\n<!-- other:end -->\n\n{B}\nx\n{E}\n\nlast line\n"
    doc.write_text("# T\n")
    write_block(doc, B, E, "y")                               # append: at the end of the file
    assert doc.read_text() == f"# T\n\n\n{B}\ny\n{E}\n"
    doc.write_text(f"# T\n{B}\nno end marker\n")              # a begin without its end is a missing block too
    write_block(doc, B, E, "z", missing="after", after="nowhere")
    assert doc.read_text().endswith(f"{B}\nz\n{E}\n")


def test_replace_block_on_text():
    """The text form (docs/perf.md's blocks share one end marker: the first after the begin is the block's)."""
    from dfx.docblock import replace_block
    end = "<!-- END -->"
    text = f"a\n<!-- B: x -->\nold x\n{end}\nmid\n<!-- B: y -->\nold y\n{end}\n"
    assert replace_block(text, "<!-- B: y -->", end, "new y\n") == \
        f"a\n<!-- B: x -->\nold x\n{end}\nmid\n<!-- B: y -->\nnew y\n{end}\n"
    with pytest.raises(ValueError, match="no '<!-- B: z -->'"):
        replace_block(text, "<!-- B: z -->", end, "z")
