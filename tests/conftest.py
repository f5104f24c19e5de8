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
