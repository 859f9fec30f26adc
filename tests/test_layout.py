"""The package reads like its pipeline and has no import cycles (module-level or inside functions; imports
for the type checker only, under ``if TYPE_CHECKING:``, never run and do not count).

A cycle is found on the source, by parsing every module's imports (``import a.b``, ``from a import b``,
``from .x import y``, at any depth): a strongly connected group of two or more modules fails the test.
"""
from __future__ import annotations

import ast
from pathlib import Path

GRADER = Path(__file__).resolve().parents[1] / "grader"


def _module_name(path: Path) -> str:
    parts = path.relative_to(GRADER.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _executed(tree: ast.AST) -> list[ast.AST]:
    """Every node that can run: all of ``tree`` but the bodies of ``if TYPE_CHECKING:`` (imports for the type
    checker only, which never execute, so they make no cycle at run time)."""
    nodes: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        nodes.append(node)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))
    return nodes


def _imports() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in GRADER.rglob("*.py")}
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _executed(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    edges[name].add(target if target in modules else base)
            elif isinstance(node, ast.Import):
                edges[name].update(alias.name for alias in node.names)
        edges[name] = {t for t in edges[name] if t in modules and t != name}
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of two or more modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_module_of_the_grader_imports_itself_back() -> None:
    edges = _imports()
    assert "grader.sandbox.process" in edges and edges["grader.sandbox.process"]  # the scan sees imports
    assert _cycles(edges) == []


def test_the_scan_finds_a_cycle_when_there_is_one() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_top_level_reads_like_the_pipeline() -> None:
    stages = {"load.py", "probe.py", "checks.py", "training.py", "diagnose.py", "score.py", "assignment.py"}
    packages = {"sandbox", "batch", "integrations", "render"}
    assert stages <= {p.name for p in GRADER.glob("*.py")}
    assert packages <= {p.name for p in GRADER.iterdir() if (p / "__init__.py").is_file()}
    assert not (GRADER / "execute.py").exists() and not (GRADER / "sandbox_worker.py").exists()


def test_every_package_of_the_grader_is_installed() -> None:
    """pyproject lists its packages by hand (reference/ and rubrics/ install inside grader/): a new package
    left out of the list works in a checkout and is missing from every real install."""
    import tomllib

    listed = set(tomllib.loads((GRADER.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {_module_name(p) for p in GRADER.rglob("__init__.py")}
    assert found - listed == set()
