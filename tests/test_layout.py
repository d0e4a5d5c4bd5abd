"""The layout: one top-level package per concept, and every import points down.

Reads the project's own imports (module level and inside functions) with `ast` and
fails on an import that points up or sideways, on bench/ importing the tests, and on
a module over 600 lines whose docstring does not say why it is that long.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> the project packages it may import (bottom first). campaign is the top.
ALLOWED: dict[str, set[str]] = {
    "history": set(),
    "checker": {"history"},
    "node": set(),
    "sim": {"node", "checker", "history"},
    "cluster": {"history"},
    "nemesis": {"cluster", "history"},
    "workloads": {"history"},
    "report": {"checker", "history"},
    "campaign": {"history", "checker", "node", "sim", "cluster", "nemesis", "workloads",
                 "report"},
    "pytest_raftcheck": {"history", "checker", "cluster", "nemesis", "report", "campaign"},
    "bench": {"history", "checker", "node", "sim", "cluster", "nemesis", "workloads",
              "report", "campaign"},
}
PROJECT = set(ALLOWED) | {"tests"}
MAX_LINES = 600


def modules(package: str, root: Path = ROOT) -> list[Path]:
    return sorted(p for p in (root / package).rglob("*.py") if "__pycache__" not in p.parts)


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level project package) for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in PROJECT:
                found.append((node.lineno, top))
    return found


def upward_imports(package: str, root: Path = ROOT) -> list[str]:
    bad = []
    for path in modules(package, root):
        for line, top in imported_packages(path):
            if top != package and top not in ALLOWED[package]:
                bad.append(f"{path.relative_to(root)}:{line}: {package} imports {top}")
    return bad


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down(package):
    assert (ROOT / package / "__init__.py").exists() or package == "bench"
    assert upward_imports(package) == []


def test_the_check_sees_an_upward_import(tmp_path):
    """The check itself can fail: a node module that imports the checker is caught."""
    fake = tmp_path / "node"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "bad.py").write_text("def f():\n    from checker import check\n")
    assert upward_imports("node", tmp_path) == ["node/bad.py:2: node imports checker"]


def test_every_package_is_checked():
    """A new top-level package must get a place in ALLOWED."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages <= set(ALLOWED), sorted(packages - set(ALLOWED))


def test_node_core_does_no_io():
    """The consensus core (node/core) imports no server, disk or network module."""
    io_modules = {"asyncio", "socket", "aiohttp", "os", "subprocess", "threading",
                  "node.shell"}
    bad = []
    for path in modules("node/core"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module
                     else [])
            for name in names:
                if any(name == m or name.startswith(m + ".") for m in io_modules):
                    bad.append(f"{path.relative_to(ROOT)}: imports {name}")
    assert bad == []


def test_long_modules_say_why():
    """A module over 600 lines says why in its docstring (a line starting "Size:")."""
    bad = []
    for package in ALLOWED:
        for path in modules(package):
            text = path.read_text(encoding="utf-8")
            if text.count("\n") <= MAX_LINES:
                continue
            doc = ast.get_docstring(ast.parse(text)) or ""
            if not any(line.startswith("Size:") for line in doc.splitlines()):
                bad.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
    assert bad == []
