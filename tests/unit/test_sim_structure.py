"""The simulation core's shape: no import circles, a state that knows no system, the tick order.

Imports are read from the source (every ``import`` anywhere in a module: inside functions and
under ``TYPE_CHECKING`` too), so a circle cannot hide behind a lazy import.
"""

from __future__ import annotations

import ast
from pathlib import Path

from shared.sim.scheduler import SYSTEMS

CORE = Path(__file__).resolve().parents[2] / "shared" / "sim"
# The state and what it is built from: systems may import these, these import no system.
STATE_MODULES = {"state", "catalog", "codec", "events", "tables"}


def sim_imports(path: Path) -> set[str]:
    """Names of the shared.sim modules a file imports, wherever the import statement is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                base = node.module
            elif node.module and node.module.startswith("shared.sim"):
                base = node.module.removeprefix("shared.sim").lstrip(".") or None
            else:
                continue
            if base:
                found.add(base.split(".")[0])
            else:  # from . import a, b  /  from shared.sim import a, b
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("shared.sim."):
                    found.add(alias.name.split(".")[2])
    return found


def graph() -> dict[str, set[str]]:
    modules = {p.stem for p in CORE.glob("*.py")}
    return {p.stem: sim_imports(p) & modules for p in CORE.glob("*.py")}


def reachable(g: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(g[start])
    while todo:
        mod = todo.pop()
        if mod not in seen:
            seen.add(mod)
            todo.extend(g[mod])
    return seen


def test_the_import_reader_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "    from .world import World\n"
                     "def f():\n    from shared.sim import jobs\n    import shared.sim.social\n")
    assert sim_imports(probe) == {"world", "jobs", "social"}


def test_no_module_of_the_core_imports_itself_back() -> None:
    g = graph()
    assert len(g) >= 15
    circles = sorted(m for m in g if m in reachable(g, m))
    assert circles == []


def test_the_state_imports_no_system() -> None:
    g = graph()
    system_modules = {type(s).__module__.rsplit(".", 1)[1] for s in SYSTEMS}
    assert system_modules == {"needs", "day", "jobs", "policy", "affordances", "social",
                              "employment", "lifecycle"}
    for mod in STATE_MODULES:
        assert reachable(g, mod) <= STATE_MODULES, mod
        assert not reachable(g, mod) & system_modules, mod


def test_systems_run_in_the_documented_tick_order() -> None:
    assert [s.name for s in SYSTEMS] == [
        "needs", "nightly_reset", "shifts", "policy", "affordances", "relationships",
        "employment", "respawns"]
    assert len({s.name for s in SYSTEMS}) == len(SYSTEMS)


def test_core_files_and_functions_stay_small() -> None:
    for path in CORE.glob("*.py"):
        source = path.read_text()
        assert source.count("\n") <= 400, path.name
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                assert length <= 60, f"{path.name}: {node.name} has {length} lines"
