"""The layers stay apart: ``optimizer`` (library) < ``evals`` (harness) < ``ragtrim`` (app).

The import graph is read from the source with :mod:`ast` (every ``import`` statement,
including those inside functions, since a lazy import is still a dependency), so the test
needs nothing installed and catches imports that only run on some code paths.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("optimizer", "evals", "ragtrim")
MAX_FUNCTION_LINES = 60

def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of import nodes under ``if TYPE_CHECKING:`` (they never run)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return out


def imports_of(path: Path, known: set[str], *, runtime_only: bool) -> set[str]:
    """Modules of ``known`` that ``path`` imports (``from pkg import mod`` resolves to ``pkg.mod``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree) if runtime_only else set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known}


def import_graph(*, runtime_only: bool = True) -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(path, set(modules), runtime_only=runtime_only) - {name} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _layer(module: str) -> str:
    return module.split(".")[0]


def test_the_graph_sees_known_imports():
    graph = import_graph()
    assert "optimizer.records" in graph["optimizer.pipeline"]
    assert "optimizer.pipeline" in graph["evals.sweep"]


@pytest.mark.parametrize("lower, upper", [("optimizer", "evals"), ("optimizer", "ragtrim"), ("evals", "ragtrim")])
def test_a_lower_layer_never_imports_a_higher_one(lower, upper):
    graph = import_graph(runtime_only=False)
    bad = sorted(f"{m} -> {d}" for m, deps in graph.items() if _layer(m) == lower for d in deps if _layer(d) == upper)
    assert not bad, f"{lower} must not import {upper}: {bad}"


@pytest.mark.parametrize("package", ["optimizer", "evals", "ragtrim"])
def test_no_import_cycle_inside_a_package(package):
    graph = {m: {d for d in deps if _layer(d) == package} for m, deps in import_graph().items() if _layer(m) == package}
    assert not cycles(graph), f"import cycles in {package}: {cycles(graph)}"


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of the body, without the signature and the docstring (a keyword-only settings list
    and parameter docs are not code to hold in one's head)."""
    body = node.body
    first = body[0]
    if len(body) > 1 and isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        body = body[1:]
    return node.end_lineno - body[0].lineno + 1


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``path:line name (n lines)`` for every function longer than ``limit`` lines outside tests."""
    out = []
    for folder in (*PACKAGES, "bench", "datasets"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = function_lines(node)
                    if n > limit:
                        out.append(f"{rel}:{node.lineno} {node.name} ({n} lines)")
    return out




def test_no_function_is_longer_than_60_lines():
    assert long_functions() == []


def test_the_length_check_sees_long_functions():
    assert long_functions(limit=40), "no function over 40 lines at all? the walk is broken"
