"""Pinned state hashes: the seeded reference runs of tests/golden/ must not change.

A refactor that changes any hash has changed behaviour. A deliberate rule change regenerates
the pins with ``python -m tests.golden.scenarios --write`` (and says why in its commit).
"""

from __future__ import annotations

import json

import pytest

from tests.golden.scenarios import HASHES, SCENARIOS

PINNED = json.loads(HASHES.read_text())


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_reference_run_reproduces_every_pinned_hash(name: str) -> None:
    got = SCENARIOS[name]()
    expected = PINNED[name]
    assert len(got) == len(expected)
    first = next((t for t, (a, b) in enumerate(zip(got, expected, strict=True), 1) if a != b), None)
    assert first is None, f"{name}: tick {first} differs from the pinned hash"
