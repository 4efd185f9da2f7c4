"""The simulation core does no I/O: it imports no I/O, clock, threading or randomness module."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "shared" / "sim"
FORBIDDEN = {"os", "io", "sys", "time", "random", "threading", "socket", "pathlib", "shutil",
             "subprocess", "logging", "pika", "msgpack", "structlog", "yaml", "datetime",
             "asyncio", "tempfile", "pickle"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_modules_import_nothing_that_does_io() -> None:
    files = sorted(CORE.glob("*.py"))
    assert len(files) >= 8
    offenders = {f.name: sorted(imported_roots(f) & FORBIDDEN) for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_core_never_calls_builtin_open_or_print() -> None:
    for path in CORE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"open", "print", "input"}, path.name
