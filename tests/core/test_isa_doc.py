from pathlib import Path

from dfx import isa, isa_doc

ROOT = Path(__file__).resolve().parents[2]


def test_docs_are_current():
    doc = (ROOT / "docs" / "isa.md").read_text()
    assert doc == isa_doc.doc_markdown(), "docs/isa.md is stale: run `python -m dfx.isa_doc > docs/isa.md`"


def test_docs_name_every_opcode_and_the_optional_operands():
    doc = isa_doc.doc_markdown()
    assert all(f"| {op.mnemonic} |" in doc for op in isa.OPS)
    assert all(f"`{token}`: only when `{flag}`" in doc for token, flag in isa.OPTIONAL.items())
