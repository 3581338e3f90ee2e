"""`make demo` (Makefile) prints the text README's "Quick start" quotes, on the simulator and the golden model."""
import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from dfx.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _demo_args() -> list[str]:
    mk = (ROOT / "Makefile").read_text()
    var = {m.group(1): m.group(2).strip() for m in re.finditer(r"^(\w+) \?= (.*)$", mk, re.M)}
    line = re.search(r"^demo:.*\n\t(.*)$", mk, re.M).group(1)
    for _ in range(3):
        line = re.sub(r"\$\((\w+)\)", lambda m: var[m.group(1)], line)
    words = shlex.split(line)
    assert words[:2] == [".venv/bin/dfx", "generate"]
    return words[1:]


def _readme_demo_text() -> str:
    block = re.search(r"```\n\$ make demo[^\n]*\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return block


def test_make_demo_prints_the_readme_text_on_the_simulator_and_the_golden_model():
    args = _demo_args()
    assert "--seed" in args and "--max-repeat" in args
    want = _readme_demo_text()
    for backend in ("sim", "golden"):
        r = CliRunner().invoke(main, [*args, "--backend", backend])
        assert r.exit_code == 0, r.stderr
        assert r.stdout == want, backend
        assert max(len(m) for m in re.findall(r" +", r.stdout)) <= 12       # no run of spaces past the cap
