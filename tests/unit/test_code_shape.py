"""The shape of the whole code base: the layer map holds, no import circles, small files.

The layer map and the dependency rules live in pyproject.toml ([tool.importlinter]) and are
checked by import-linter; this test runs it so `pytest` alone proves them. Circles are checked
on the full import graph (grimp reads every import statement, including those inside
functions and under TYPE_CHECKING), not only between siblings.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "workers", "ops")
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_anywhere_in_the_project() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert _cycles(edges) == []


def test_the_layer_map_and_dependency_rules_hold() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    done = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_no_production_file_or_function_is_too_long() -> None:
    too_long: list[str] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            lines = text.count("\n")
            if lines > MAX_FILE_LINES:
                too_long.append(f"{path.relative_to(ROOT)}: {lines} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: "
                                        f"{length} lines")
    assert too_long == []


def _reads_environment(node: ast.AST) -> bool:
    """``os.getenv(...)``, ``os.environ.get(...)`` or ``os.environ[...]`` (a read, not a copy)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        func = node.func
        if func.attr == "getenv":
            return True
        return func.attr == "get" and isinstance(func.value, ast.Attribute) \
            and func.value.attr == "environ"
    return isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) \
        and isinstance(node.value, ast.Attribute) and node.value.attr == "environ"


def test_settings_are_read_from_the_environment_in_shared_config_only() -> None:
    readers = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "shared" / "config.py":
                continue
            tree = ast.parse(path.read_text())
            readers += [f"{path.relative_to(ROOT)}:{node.lineno}" for node in ast.walk(tree)
                        if _reads_environment(node)]
    assert readers == []


def test_the_shard_worker_stays_orchestration() -> None:
    """docs/ARCHITECTURE.md: worker.py only calls down into inbox, outbox and durability."""
    lines = (ROOT / "workers" / "shard" / "worker.py").read_text().count("\n")
    assert lines <= 250, f"workers/shard/worker.py has {lines} lines: move a concern out"
