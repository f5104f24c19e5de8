"""The PostgreSQL writer lock (``Database.transaction``) is taken before the
transaction's first statement, whichever way that statement goes: in a pipeline
block (the same round trip as a card run's reads), through ``run_sql``, or through
SQLAlchemy (ORM or Core)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from switch.db.engine import WRITER_LOCK_KEY, Database
from switch.db.schema import open_database
from switch.db.sql import pipeline, run_sql, submit_sql
from switch.db.tables import Account, TerminalPresence
from switch.transports.presence import record_presence

_HELD = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
         "AND pid = pg_backend_pid() AND objid = %(key)s AND granted")


@pytest.fixture
def db(pg_url: str) -> Iterator[Database]:
    database = open_database(pg_url)
    yield database
    database.dispose()


def _held(session: Any) -> int:
    """Asked on the DBAPI connection itself, so the question cannot take the lock."""
    cursor = session.connection().connection.dbapi_connection.cursor()
    cursor.execute(_HELD, {"key": WRITER_LOCK_KEY})
    return int(cursor.fetchone()[0])


def _pipelined(connection: Any) -> None:
    with pipeline(connection):
        read = submit_sql(connection, "SELECT 1", ())
    assert read.rows() == [(1,)]


def _raw(connection: Any) -> None:
    run_sql(connection, "SELECT 1", ())


@pytest.mark.parametrize("first", [_pipelined, _raw], ids=["pipeline", "run_sql"])
def test_the_lock_comes_before_a_raw_first_statement(
        db: Database, first: Callable[[Any], None]) -> None:
    with db.transaction() as session:
        first(session.connection())
        assert _held(session) == 1


def test_the_lock_comes_before_an_orm_first_statement(db: Database) -> None:
    with db.transaction() as session:
        session.scalars(select(Account).limit(1)).all()
        assert _held(session) == 1


def test_a_non_exclusive_transaction_takes_no_lock(db: Database) -> None:
    with db.transaction(exclusive=False) as session:
        _raw(session.connection())
        assert _held(session) == 0


def test_nothing_run_means_no_lock_yet(db: Database) -> None:
    with db.transaction() as session:
        assert _held(session) == 0


def test_the_lock_is_not_carried_to_the_next_transaction(db: Database) -> None:
    """A transaction that ran nothing leaves nothing owed on its pooled connection."""
    with db.transaction():
        pass
    with db.transaction(exclusive=False) as session:
        _raw(session.connection())
        assert _held(session) == 0


def test_a_presence_write_does_not_wait_for_the_writer_lock(db: Database) -> None:
    """Presence is not money: written while a batch holds the writer lock, it commits
    at once instead of queueing behind the batch."""
    written = threading.Event()

    def write() -> None:
        record_presence(db, "EDC00042", "online", "mqtt", datetime(2026, 12, 1, tzinfo=UTC))
        written.set()

    with db.transaction() as session:
        _raw(session.connection())
        assert _held(session) == 1
        writer = threading.Thread(target=write)
        writer.start()
        assert written.wait(10), "the presence write waited for the writer lock"
    writer.join()
    with db.transaction(exclusive=False) as session:
        assert session.get_one(TerminalPresence, "EDC00042").status == "online"
