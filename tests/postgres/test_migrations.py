"""Alembic: the migrations make exactly the models' schema, on both engines."""

from __future__ import annotations

import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

import switch.db.tables  # noqa: F401
from switch.audit.chain import GENESIS_MAC
from switch.db.audit import CHAINS, verify
from switch.db.engine import create_db_engine
from switch.db.schema import SchemaError, current_revision, open_database
from switch.db.tables import Base


def _diff(url: str) -> list[object]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(
                conn, opts={"compare_type": True}), Base.metadata))
    finally:
        engine.dispose()


def test_autogenerate_finds_no_difference_after_upgrade(any_url: str) -> None:
    db = open_database(any_url)
    try:
        assert current_revision(db.engine) == "0005"
        tables = set(inspect(db.engine).get_table_names())
        assert set(Base.metadata.tables) | {"alembic_version"} == tables
    finally:
        db.dispose()
    assert _diff(any_url) == []


def test_upgrade_is_idempotent_and_seeds_the_audit_heads(any_url: str) -> None:
    for _ in range(2):
        open_database(any_url).dispose()
    db = open_database(any_url, create=False)
    try:
        with db.transaction() as session:
            heads = session.execute(text("SELECT id, seq, mac FROM audit_head ORDER BY id")).all()
            assert heads == [(chain, 0, GENESIS_MAC) for chain in range(1, CHAINS + 1)]
            assert verify(session, b"k" * 16).ok
    finally:
        db.dispose()


def test_a_database_made_by_create_all_is_refused(any_url: str) -> None:
    engine = create_engine(any_url)
    Base.metadata.create_all(engine)
    engine.dispose()
    with pytest.raises(SchemaError, match="alembic_version"):
        open_database(any_url)


def test_cli_db_upgrade(any_url: str) -> None:
    env_cmd = [sys.executable, "-m", "switch.cli", "db", "upgrade", "--db", any_url]
    done = subprocess.run(env_cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "0005" in done.stdout
    assert _diff(any_url) == []
