"""Fixtures for the ledger tests; every test's ledger is checked for the money
invariant when it ends (unless the test corrupted it on purpose)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from switch.ledger.invariants import check_invariants
from tests.ledger.world import LedgerWorld, build_world


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[LedgerWorld]:
    world = build_world(tmp_path)
    yield world
    report = check_invariants(world.db)
    world.db.dispose()
    if not world.corrupted:
        assert report.ok, report.summary()
