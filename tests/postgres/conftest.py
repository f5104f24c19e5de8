"""PostgreSQL fixtures (see tests/postgres/pg.py for skip/fail rules)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres.pg import fresh_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped after the test."""
    with fresh_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[str]:
    """A fresh empty database on each engine in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        return
    with fresh_database() as url:
        yield url
