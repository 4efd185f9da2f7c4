"""The simulation core does no I/O and has no hidden randomness: an allow-list, not a deny-list.

Every import statement anywhere under shared/sim (sub-packages, functions, TYPE_CHECKING blocks
included) must name a module on the allow-list below, so a new import of anything that can
touch files, clocks, the network, processes or the environment fails here until someone decides
it belongs in the core. Randomness comes only from the state's seeded Generator
(docs/SIMULATION.md, "Determinism and the state hash"): numpy's global random functions are
refused. (pyproject's import-linter contract checks the indirect side as well.)
"""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "shared" / "sim"
ALLOWED = {
    "__future__", "abc", "collections", "copy", "dataclasses", "enum", "functools", "hashlib",
    "heapq", "itertools", "json", "math", "numbers", "operator", "re", "types", "typing",
    "numpy", "shared.settings", "shared.sim",
}
# numpy.random names that build or describe a seeded generator (never draw from global state).
SEEDED_RANDOM = {"default_rng", "Generator", "PCG64", "SeedSequence", "BitGenerator"}


def core_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module a file imports (relative imports are inside the core)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add("shared.sim" if node.level else str(node.module))
    return found


def allowed(module: str) -> bool:
    return any(module == a or module.startswith(a + ".") for a in ALLOWED) \
        and not module.startswith("numpy.random")


def test_the_core_imports_only_allowed_modules() -> None:
    files = core_files()
    assert len(files) >= 15
    offenders = {str(f.relative_to(CORE)): sorted(m for m in imported_modules(f) if not allowed(m))
                 for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_would_catch_an_import_hidden_in_a_function(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    import uuid\n    from urllib import request\n")
    assert {m for m in imported_modules(probe) if not allowed(m)} == {"uuid", "urllib"}


def test_no_draw_from_numpy_global_random_state() -> None:
    for path in core_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "random":
                assert node.attr in SEEDED_RANDOM, f"{path.name}:{node.lineno} random.{node.attr}"


def test_core_never_calls_builtin_io_or_dynamic_code() -> None:
    for path in core_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"open", "print", "input", "eval", "exec",
                                            "__import__", "breakpoint"}, path.name
