"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.world import HostWorld, make_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[HostWorld]:
    """A seeded SQLite world with this period allocated; the money invariant is
    asserted after the test."""
    yield from make_world(tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HostWorld]:
    """The same world on each engine in turn (PostgreSQL: a fresh database, dropped
    after the test; tests/postgres/pg.py says when it skips or fails)."""
    if request.param == "sqlite":
        yield from make_world(tmp_path)
        return
    from tests.postgres.pg import fresh_database

    with fresh_database() as url:
        yield from make_world(tmp_path, url)
