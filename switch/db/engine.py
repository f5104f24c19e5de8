"""Engine and transactions for SQLite (embedded default) and PostgreSQL.

The schema comes from the Alembic migrations (:mod:`switch.db.schema`).

SQLite runs in WAL mode with ``foreign_keys=ON`` and a ``busy_timeout``, and
every transaction takes the write lock at ``BEGIN IMMEDIATE`` (the SQLAlchemy
pysqlite "serializable isolation" recipe), so a read-then-write (check the
balance, then debit) can never interleave with another writer.

``synchronous`` defaults to ``FULL``: an approval acknowledged to a terminal
(HOST_SPEC §4: the stored response) survives a power cut, not only a process
crash.  ``NORMAL`` is faster in WAL mode and still crash-safe for the process;
pass ``sqlite_synchronous="NORMAL"`` where losing the last commits on power loss
is acceptable (tests, load benches).

PostgreSQL (``postgresql+psycopg://...``, psycopg 3) runs READ COMMITTED with
``synchronous_commit=on`` set on every connection (durable, whatever the server
default).  Two kinds of writer transaction (issue 17: no global writer lock):

* ``Database.transaction()`` (administration, day-to-day tools) first takes the
  transaction-scoped advisory lock :data:`WRITER_LOCK_KEY` **exclusively**: the
  PostgreSQL counterpart of ``BEGIN IMMEDIATE``, it waits for every writer and
  every writer waits for it.
* ``Database.transaction(keys=...)`` (the host's batches) takes the same lock
  **shared**, so host batches of any number of processes run at once, and then an
  exclusive advisory lock per key (:func:`lock_key`: a terminal, a card), all in one
  statement, in ascending order (no two batches can wait for each other), before
  the batch's first read.  What one key protects is in :mod:`switch.host.store`.
  A family's wallet (shared by its cards) is row-locked by the batch's card read;
  rows shared by many keys (an e-warong's payable account or stock) are changed only
  by conditional ``UPDATE``s, which PostgreSQL re-checks after the row lock is
  granted.

Without any lock a reversal and its original racing in two switch processes could
each miss the other's uncommitted idempotency record (different rows, so no
unique key catches it) and the original would be approved after its reversal was
answered as "unknown": the terminal's key serializes them.
``transaction(exclusive=False)`` skips every lock, for bulk loads that touch no
existing rows (the KPM import).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from switch.db.sql import forget_owed, owe_first, pay_owed

SQLITE_BUSY_TIMEOUT_MS = 5000
SQLITE_SYNCHRONOUS = ("FULL", "NORMAL")
#: ``pg_advisory_xact_lock`` key of the single-writer lock ("BPNT" in ASCII).
WRITER_LOCK_KEY = 0x42504E54
_WRITER_LOCK_SQL = "SELECT pg_advisory_xact_lock(%(key)s)"
#: The host batch's locks: the writer lock shared, then each key exclusively, in the
#: order of the array (ascending: :meth:`Database.transaction` sorts it).
_KEYED_LOCKS_SQL = ("SELECT pg_advisory_xact_lock_shared(%(key)s), "
                    "(SELECT count(pg_advisory_xact_lock(k)) "
                    "FROM unnest(CAST(%(keys)s AS bigint[])) AS k)")
#: Execution option of :meth:`Database.read` connections.
_READ_ONLY = "bpnt_read_only"


class Database:
    """An engine and its sessions; ``transaction()`` is the only way in."""

    def __init__(self, engine: Engine, *, writer_lock: bool = True) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        #: PostgreSQL only (SQLite always locks at BEGIN IMMEDIATE); tests turn it
        #: off to prove the host's retry on a lost unique-key race.
        self.writer_lock = writer_lock and self.is_postgres
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._file_lock = _SqliteWriterQueue.for_engine(engine)

    @contextmanager
    def transaction(self, *, exclusive: bool = True,
                    keys: Iterable[int] | None = None) -> Iterator[Session]:
        """One database transaction: commit on success, roll back on any exception.

        ``exclusive`` (PostgreSQL): hold the writer lock from the start, like
        SQLite's ``BEGIN IMMEDIATE``.  With ``keys`` (:func:`lock_key` values), hold
        it shared and each key exclusively instead (see the module).  SQLite has one
        writer at a time whatever is asked.
        """
        with self._file_lock.held(), self._sessions() as session, session.begin():
            if not (exclusive and self.writer_lock):
                yield session
                return
            # Taken before the transaction's first statement, in the same round trip
            # as that statement when it is pipelined (a card run's reads).
            connection = session.connection()
            if keys is None:
                owe_first(connection, _WRITER_LOCK_SQL, {"key": WRITER_LOCK_KEY})
            else:
                owe_first(connection, _KEYED_LOCKS_SQL,
                          {"key": WRITER_LOCK_KEY, "keys": sorted(set(keys))})
            try:
                yield session
            finally:
                forget_owed(connection)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction that takes no writer lock (SQLite: a deferred
        ``BEGIN``, so it never waits for or blocks a writer in WAL mode; PostgreSQL:
        no advisory lock).  For work that may run before the writer's transaction
        (the host's precheck); nothing read here may be trusted under the lock
        without being read again there."""
        with self.engine.connect() as connection:
            reading = connection.execution_options(**{_READ_ONLY: True})
            transaction = reading.begin()
            try:
                yield reading
            finally:
                transaction.rollback()  # it wrote nothing: nothing to commit

    def dispose(self) -> None:
        self.engine.dispose()
        self._file_lock.close()


def lock_key(kind: str, name: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of one thing a host batch
    changes: ``kind`` says what (``"T"`` a terminal, ``"C"`` a card), ``name`` which.
    A collision of two keys only makes their batches wait for each other."""
    digest = hashlib.blake2b(f"{kind}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class _SqliteWriterQueue:
    """Writers of one SQLite file wait their turn on an ``flock`` before ``BEGIN
    IMMEDIATE`` (processes) and a thread lock (threads of one process).

    SQLite's own wait for the write lock (``busy_timeout``) polls with sleeps of up
    to 100 ms, so two switch processes on one file spend their time asleep instead
    of alternating batches; a blocking ``flock`` wakes the next writer the moment
    the lock is released.  Writers that do not queue here (the ``sqlite3`` shell)
    still meet ``BEGIN IMMEDIATE`` and the busy timeout, as before.  A no-op for
    PostgreSQL and in-memory databases.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._thread_lock = threading.Lock()
        self._fd: int | None = None

    @classmethod
    def for_engine(cls, engine: Engine) -> _SqliteWriterQueue:
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        if not database or database == ":memory:" or database.startswith("file:"):
            return cls(None)
        return cls(Path(f"{database}-writer.lock"))

    @contextmanager
    def held(self) -> Iterator[None]:
        if self.path is None:
            yield
            return
        # Bounded like SQLite's own wait: a transaction nested in the same thread (or
        # a writer stuck for longer) skips the queue and meets BEGIN IMMEDIATE's busy
        # timeout, which fails cleanly ("database is locked") instead of hanging.
        if not self._thread_lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            yield
            return
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # only other processes can hold it
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        with self._thread_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


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
        if connection.get_execution_options().get(_READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_db_engine(url: str, *, sqlite_synchronous: str = "FULL") -> Engine:
    """The engine for ``url``, configured as described in the module docstring."""
    if sqlite_synchronous not in SQLITE_SYNCHRONOUS:
        raise ValueError(f"sqlite_synchronous must be one of {SQLITE_SYNCHRONOUS}")
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        _prepare_sqlite(engine, sqlite_synchronous)
        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        # Durable commits even if the server (or a role) defaults to async commit.
        connect_args["options"] = "-c synchronous_commit=on"
    # No pool_pre_ping: it cost every batch a round trip (SELECT 1 at checkout, ~4 % of
    # the switch's samples in a py-spy profile).  A connection found dead by a batch
    # fails that batch (RC 91, signed) and SQLAlchemy, seeing a disconnect, invalidates
    # the pool's older connections: the next batch connects anew (through the host
    # list after a failover, docs/SCALING.md).
    engine = create_engine(url, connect_args=connect_args)

    @event.listens_for(engine, "before_cursor_execute")
    def _owed_first(connection: Connection, cursor: Any, *_: Any) -> None:
        pay_owed(connection, cursor)  # the writer lock, before an ORM/Core statement

    return engine
