"""The design the code cites is in the repository (docs/design.md), and every citation names a section or a
contract that exists there."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
SOURCES = [p for pat in ("dfx/*.py", "*/*.py", "*/*/*.py", "docs/*.md", "README.md", "pyproject.toml")
           for p in ROOT.glob(pat) if ".venv" not in p.parts and "tests" not in p.parts and p.name != "design.md"]


def _sections() -> set[str]:
    return {m.group(1).strip() for m in re.finditer(r"^##+ (.+)$", DESIGN.read_text(), re.M)}


def _contracts() -> int:
    block = DESIGN.read_text().split("## Contracts", 1)[1].split("\n## ", 1)[0]
    return len(re.findall(r"^\d+\. \*\*", block, re.M))


def test_design_exists_and_has_its_parts():
    assert {"Layout and layering", "Contracts", "The reference ladder", "Performance modelling",
            "Board flow", "Bad input"} <= _sections()
    assert _contracts() >= 7


def test_every_citation_resolves():
    sections, n = _sections(), _contracts()
    cites = 0
    for path in SOURCES:
        text = path.read_text()
        assert not re.search(r"(?<![/\w])DESIGN\.md", text), f"{path}: cites DESIGN.md, which is not in the repo"
        for m in re.finditer(r'docs/design\.md, "?([^)\n"`;:]+)', text):
            cites += 1
            what = m.group(1).strip().strip('"').rstrip(".")
            nums = re.match(r"contracts? ([\d ,and]+)", what)
            if nums:
                assert all(1 <= int(k) <= n for k in re.findall(r"\d+", nums.group(1))), f"{path}: {what}"
            else:
                assert what in sections, f"{path}: cites section {what!r}, not in docs/design.md"
    assert cites >= 8
