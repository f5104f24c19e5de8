"""Engine and transactions for SQLite (embedded default) and PostgreSQL.

SQLite runs in WAL mode with ``foreign_keys=ON`` and a ``busy_timeout``, and
every transaction takes the write lock at ``BEGIN IMMEDIATE`` (the SQLAlchemy
pysqlite "serializable isolation" recipe), so a read-then-write (check the
balance, then debit) can never interleave with another writer.

``synchronous`` defaults to ``FULL``: an approval acknowledged to a terminal
(HOST_SPEC §4: the stored response) survives a power cut, not only a process
crash.  ``NORMAL`` is faster in WAL mode and still crash-safe for the process;
pass ``sqlite_synchronous="NORMAL"`` where losing the last commits on power loss
is acceptable (tests, load benches).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

import switch.audit.models  # noqa: F401  (registers the audit tables on Base.metadata)
from switch.ledger.models import Base

SQLITE_BUSY_TIMEOUT_MS = 5000
SQLITE_SYNCHRONOUS = ("FULL", "NORMAL")


class Database:
    """An engine and its sessions; ``transaction()`` is the only way in."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One database transaction: commit on success, roll back on any exception."""
        with self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def _prepare_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN (pysqlite's own is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def open_database(
    url: str, *, create: bool = True, sqlite_synchronous: str = "FULL"
) -> Database:
    """Open (and by default create the schema of) the database at ``url``.

    ``sqlite:///path`` (the parent directory is created) or any SQLAlchemy URL,
    e.g. ``postgresql+psycopg://...``.  ``create_all`` until migrations arrive.
    """
    if sqlite_synchronous not in SQLITE_SYNCHRONOUS:
        raise ValueError(f"sqlite_synchronous must be one of {SQLITE_SYNCHRONOUS}")
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        _prepare_sqlite(engine, sqlite_synchronous)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    if create:
        Base.metadata.create_all(engine)
    return Database(engine)
