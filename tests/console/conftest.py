"""Fixtures of the console tests: the console over a seeded world on each engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console.helpers import ConsoleWorld, make_console_world


@pytest.fixture(params=["sqlite", "postgresql"])
def console(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConsoleWorld]:
    if request.param == "sqlite":
        yield from make_console_world(tmp_path)
        return
    from tests.postgres.pg import fresh_database

    with fresh_database() as url:
        yield from make_console_world(tmp_path, url)


@pytest.fixture
def sqlite_console(tmp_path: Path) -> Iterator[ConsoleWorld]:
    yield from make_console_world(tmp_path)
