"""The package's import structure: no import circles between concner's modules, and no module
reaching into another's private names (what a reader of one module cannot see being used)."""

from __future__ import annotations

import ast
from pathlib import Path

from concner.tasks.engine import keys
from tests.conftest import REPO

PACKAGES = {"flows": "concner.flows", "tasks": "concner.tasks", "models": "concner.models"}


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = [p for p in path.relative_to(REPO / folder).with_suffix("").parts if p != "__init__"]
            out[".".join([package, *parts])] = (path, ast.parse(path.read_bytes()))
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the concner modules it imports, at top level or inside functions."""
    modules = _modules()
    return {name: {m for m in keys._imports(name, tree, path.name == "__init__.py") if m in modules and m != name}
            for name, (path, tree) in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles_between_concners_modules():
    assert cycles(import_graph()) == []


def test_no_module_imports_another_modules_private_names():
    private = []
    for name, (path, tree) in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("concner"):
                private += [f"{path.relative_to(REPO)}:{node.lineno} {a.name}" for a in node.names
                            if a.name.startswith("_") and a.name != "__version__"]
    assert private == []
