"""The architecture is enforced, not only described (docs/design.md, Layout and layering): import-linter's
contracts in pyproject.toml, no import cycles inside a package, and function-local imports only with a reason."""
import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dfx", "dfx/cli", "models", "compiler", "compiler/quant", "sim", "hw", "perf", "verify", "host", "sweep")


def _lint_imports() -> str | None:
    exe = Path(sys.executable).parent / "lint-imports"
    return str(exe) if exe.exists() else shutil.which("lint-imports")


def _mirror(dst: Path) -> None:
    """The installed layout as real folders: import-linter walks a package's own directory, and dfx's
    subpackages live in top-level folders mapped by pyproject's package-dir."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for pkg, folder in mapping.items():
        out = dst.joinpath(*pkg.split("."))
        out.mkdir(parents=True, exist_ok=True)
        for f in (ROOT / folder).glob("*.py"):
            shutil.copy2(f, out / f.name)


def test_layer_contracts_hold(tmp_path):
    exe = _lint_imports()
    if exe is None:
        pytest.skip("import-linter is not installed (scripts/bootstrap.sh installs it)")
    _mirror(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    r = subprocess.run([exe, str(ROOT / "pyproject.toml")], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"Contracts: \d+ kept, 0 broken", r.stdout), r.stdout


def _sources():
    for pkg in PACKAGES:
        yield from sorted((ROOT / pkg).glob("*.py"))


def _has_reason(lines: list[str], lineno: int) -> bool:
    """`# lazy:` on the import's line or on a line of the block of imports and comments just above it."""
    i = lineno - 1
    while i >= 0:
        line = lines[i].strip()
        if "# lazy:" in line:
            return True
        if i < lineno - 1 and not line.startswith(("import ", "from ", "#")):
            return False
        i -= 1
    return False


def test_function_local_imports_say_why():
    """A function-local import guards a heavy optional dependency (or keeps `dfx --help` fast) and says so with
    `# lazy:`; any other is a hidden cycle or a habit."""
    bad = []
    for path in _sources():
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top \
                    and not _has_reason(lines, node.lineno):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not bad, "function-local imports without a `# lazy:` reason:\n" + "\n".join(bad)


def test_files_are_small():
    big = [f"{p.relative_to(ROOT)}: {n} lines" for p in _sources() if (n := len(p.read_text().splitlines())) > 650]
    assert not big, "files over ~600 lines:\n" + "\n".join(big)


def _module_graph() -> dict[str, set[str]]:
    """dfx module -> the dfx modules it imports (top-level and function-local), from the sources."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    modules = {}
    for pkg, folder in mapping.items():
        for f in (ROOT / folder).glob("*.py"):
            modules[pkg if f.stem == "__init__" else f"{pkg}.{f.stem}"] = (f, pkg)
    graph = {}
    for name, (path, pkg) in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = pkg.rsplit(".", node.level - 1)[0] if node.level else ""
                mod = ".".join(p for p in (base, node.module or "") if p)
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def test_no_import_cycles():
    """No cycle among dfx's modules, counting function-local imports (a cycle hidden in a function is still
    a cycle). Package __init__ modules that only re-export are left out of the walk."""
    graph = _module_graph()
    assert len(graph) > 80 and "dfx.manifest" in graph["dfx.program"]     # the walk sees the code
    inits = {m for m, deps in graph.items() if any(d.startswith(m + ".") for d in deps)}
    cycles, state = [], {}

    def visit(m, stack):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m] - inits):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack)
        stack.pop()
        state[m] = 2

    for m in sorted(set(graph) - inits):
        if m not in state:
            visit(m, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
