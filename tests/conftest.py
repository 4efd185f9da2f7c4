"""Suite-wide pytest options and the shared process/broker fixtures (tests/procs.py)."""

from __future__ import annotations

import pytest

pytest_plugins = ("tests.procs",)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--chaos-long", action="store_true", default=False,
                     help="chaos tests: many more kills (minutes instead of seconds)")
