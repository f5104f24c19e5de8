"""A real PostgreSQL for tests: a fresh database per use, dropped afterwards.

The server is ``BPNT_TEST_PG_URL`` (default: trust auth on 127.0.0.1:5432 as
``postgres``).  Without a server the tests skip, except in CI (``CI=true``),
where a missing PostgreSQL fails them: CI must prove the production engine.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

SERVER_URL = os.environ.get(
    "BPNT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
CONNECT_TIMEOUT_S = 3


def _server_problem() -> str | None:
    try:
        engine = create_engine(SERVER_URL, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure to reach the server is the same verdict
        return f"PostgreSQL not reachable at {make_url(SERVER_URL).render_as_string()}: " \
               f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


_checked: dict[str, str | None] = {}


def require_postgres() -> None:
    """Skip (or in CI fail) the calling test when no PostgreSQL server answers."""
    if "problem" not in _checked:
        _checked["problem"] = _server_problem()
    problem = _checked["problem"]
    if problem is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{problem} (CI=true: PostgreSQL is required)")
    pytest.skip(f"{problem} (set BPNT_TEST_PG_URL or start PostgreSQL; CI fails here)")


@contextmanager
def fresh_database(prefix: str = "bpnt_test") -> Iterator[str]:
    """``CREATE DATABASE <prefix>_<random>``; yields its URL; drops it afterwards."""
    require_postgres()
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
