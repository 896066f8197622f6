"""No module of ``trio_delta`` imports itself through others.

Every ``import`` and ``from ... import`` counts, also those inside functions
and under ``TYPE_CHECKING``: a circle there is still two modules that know
each other, just one that happens not to fail at import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import trio_delta

SRC = Path(trio_delta.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules ``path`` imports (a package's ``__init__`` when
    a name comes from it)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            # "from pkg import mod" imports a module; "from mod import name" the module
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            if target in modules:
                found.add(target)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    paths = sorted(SRC.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _imports(p, modules) for p in paths}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_module_imports_itself_through_others() -> None:
    graph = _graph()
    # A package's __init__ that only re-exports is imported by nobody inside.
    graph = {m: {t for t in deps if t != "trio_delta"} for m, deps in graph.items()}
    assert len(graph) > 40  # the walk found the package
    assert _cycles(graph) == []


def test_the_walk_finds_a_circle_when_there_is_one() -> None:
    graph = _graph()
    graph["trio_delta._types"] = graph["trio_delta._types"] | {"trio_delta._client"}
    assert any("trio_delta._types" in group for group in _cycles(graph))
