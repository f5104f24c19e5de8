"""The PostgreSQL writer lock (``Database.transaction``) is taken before the
transaction's first statement, whichever way that statement goes: in a pipeline
block (the same round trip as a card run's reads), through ``run_sql``, or through
SQLAlchemy (ORM or Core)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from switch.ledger.database import WRITER_LOCK_KEY, Database, open_database
from switch.ledger.models import Account
from switch.ledger.prepared import pipeline, run_sql, submit_sql

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
