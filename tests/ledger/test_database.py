"""open_database and Database.transaction on a real SQLite file."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from switch.db.schema import open_database
from switch.db.tables import Account


def test_sqlite_file_settings(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'new' / 'dir' / 'ledger.db'}")
    try:
        assert (tmp_path / "new" / "dir" / "ledger.db").exists()
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        db.dispose()


def test_transaction_commits_or_rolls_back(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'ledger.db'}", sqlite_synchronous="NORMAL")
    try:
        with db.transaction() as s:
            s.add(Account(kind="program", owner_ref="BPNT"))
        with pytest.raises(RuntimeError), db.transaction() as s:
            s.add(Account(kind="kpm_wallet", owner_ref="NIK:1"))
            s.flush()
            raise RuntimeError("boom")
        with db.transaction() as s:
            assert s.scalar(text("SELECT count(*) FROM accounts")) == 1
    finally:
        db.dispose()


def test_a_transaction_holds_the_write_lock_from_begin(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE: a second writer cannot even start while the first is open,
    so a read-then-write (check the balance, then debit) cannot interleave."""
    path = tmp_path / "ledger.db"
    db = open_database(f"sqlite:///{path}")
    other = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    try:
        with db.transaction() as s:
            s.execute(text("SELECT 1"))  # a read only, yet the lock is taken
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # free again after commit
        other.execute("ROLLBACK")
    finally:
        other.close()
        db.dispose()


def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        with pytest.raises(Exception, match="FOREIGN KEY"), db.transaction() as s:
            s.execute(text("INSERT INTO journal_entries (transfer_id, account_id, amount_sen) "
                           "VALUES (42, 42, 1)"))
    finally:
        db.dispose()


def test_bad_synchronous_is_refused() -> None:
    with pytest.raises(ValueError):
        open_database("sqlite:///:memory:", sqlite_synchronous="OFF")


def test_sqlite_writers_of_other_processes_queue_on_the_file_lock(tmp_path: Path) -> None:
    """Every write transaction holds ``<db>-writer.lock`` (flock) from before BEGIN
    IMMEDIATE to the end, so a writer in another process waits on it (and wakes at
    once) instead of sleeping in SQLite's busy handler."""
    path = tmp_path / "ledger.db"
    open_database(f"sqlite:///{path}").dispose()
    child = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys\n"
            "from switch.db.schema import open_database\n"
            f"db = open_database('sqlite:///{path}')\n"
            "with db.transaction():\n"
            "    print('in', flush=True)\n"
            "    sys.stdin.readline()\n"
            "db.dispose()\n")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lock = os.open(f"{path}-writer.lock", os.O_RDWR | os.O_CREAT)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "in"  # the child is inside its transaction
        with pytest.raises(BlockingIOError):
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(10) == 0
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released with the transaction
        fcntl.flock(lock, fcntl.LOCK_UN)
    finally:
        os.close(lock)
        if child.poll() is None:
            child.kill()
