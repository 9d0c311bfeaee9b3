"""The import structure: no import circle in framework/, apps/ or bench/; the library imports neither apps nor bench.

The graph is read from the source with :mod:`ast` (nothing is imported). An edge goes from a
module to the most specific module it names (``from a.b import c`` is ``a.b.c`` when that is a
module, else ``a.b``). Every import counts, also one inside a function or under
``if TYPE_CHECKING:``: deferring an import hides a circle from Python, not from the design
(``bench.consume`` <-> ``bench.latency`` and ``bench.sweep`` <-> ``bench.plot`` were such circles).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("framework", "apps", "bench")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements of a module body that run at import (descending into if/try/with, not functions)."""
    out: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                out += _runtime_statements(node.body)
            out += _runtime_statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                out += _runtime_statements(block)
        elif isinstance(node, ast.With):
            out += _runtime_statements(node.body)
        else:
            out.append(node)
    return out


def _targets(module: str, node: ast.stmt) -> list[str]:
    """The modules an import statement of ``module`` names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        is_package = MODULES[module].name == "__init__.py"
        base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    return [f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source for alias in node.names]


def _known(name: str) -> str | None:
    """``name`` or its closest enclosing module among ours, or None for other packages."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(runtime_only: bool = True) -> dict[str, set[str]]:
    """Module -> the modules of ours it imports: at import time only, or anywhere (``runtime_only=False``)."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        nodes = _runtime_statements(tree.body) if runtime_only else list(ast.walk(tree))
        edges = {_known(t) for node in nodes for t in _targets(module, node)}  # type: ignore[arg-type]
        graph[module] = {e for e in edges if e and e != module}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_the_graph_sees_the_packages():
    graph = import_graph()
    assert {"framework.producer.base", "apps.pipeline", "bench.command"} <= set(graph)
    assert "framework.producer.clients" in graph["framework.producer.base"]
    assert "framework.consumer.base" in graph["framework.consumer"]


def test_no_import_circle():
    cycles = find_cycles(import_graph(runtime_only=False))
    assert cycles == [], "import circles (modules that import each other, at any level): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_no_import_circle_at_import_time():
    assert find_cycles(import_graph(runtime_only=True)) == []


def test_the_library_imports_neither_apps_nor_bench():
    graph = import_graph(runtime_only=False)
    wrong = sorted((m, t) for m, targets in graph.items() if m.split(".")[0] == "framework"
                   for t in targets if t.split(".")[0] in ("apps", "bench"))
    assert wrong == []


def test_find_cycles_finds_a_circle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
