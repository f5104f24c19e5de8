"""The reports run on both engines: ``any_url`` from the PostgreSQL fixtures."""

from __future__ import annotations

from tests.postgres.conftest import any_url

__all__ = ["any_url"]
