"""The schema: Alembic migrations for both engines, and opening a database at the newest
revision.

``open_database(url, create=True)`` runs ``upgrade head`` (``bpnt-switch db upgrade``
does the same by hand).  The migrations live in ``migrations/`` beside this module.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, inspect, text

from switch.db.engine import Database, create_db_engine

#: Separate key: concurrent ``upgrade head`` from several starting processes.
MIGRATION_LOCK_KEY = 0x42504E55
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class SchemaError(RuntimeError):
    """The database holds tables that no migration made (a pre-Alembic database)."""


def _alembic_config(connection: Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


_script_cache: dict[str, Any] = {}


def _script_directory() -> Any:
    """Parsed once per process: many tests open a fresh database."""
    from alembic.script import ScriptDirectory

    if "script" not in _script_cache:
        _script_cache["script"] = ScriptDirectory.from_config(_alembic_config())
    return _script_cache["script"]


def upgrade(engine: Engine, revision: str = "head") -> None:
    """``alembic upgrade`` on ``engine``, serialized between processes (PostgreSQL:
    an advisory lock; SQLite: ``BEGIN IMMEDIATE``), in one transaction."""
    # Seven "setup plugin" lines at INFO on every start say nothing to an operator.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from alembic.runtime.environment import EnvironmentContext

    script = _script_directory()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": MIGRATION_LOCK_KEY})
        _refuse_unmanaged_schema(connection)

        def steps(rev: Any, _context: Any) -> Any:
            return script._upgrade_revs(revision, rev)

        with EnvironmentContext(_alembic_config(connection), script, fn=steps,
                                destination_rev=revision):
            from switch.db.migrations.env import configure_and_run

            configure_and_run(connection)


def _refuse_unmanaged_schema(connection: Connection) -> None:
    tables = set(inspect(connection).get_table_names())
    if tables and "alembic_version" not in tables:
        raise SchemaError(
            "this database has tables but no alembic_version: it was created before "
            "migrations (create_all). Recreate it, or if its schema is exactly revision "
            "0001 mark it with `alembic -c alembic.ini stamp 0001`.")


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        rev: str | None = MigrationContext.configure(connection).get_current_revision()
        return rev


def open_database(
    url: str, *, create: bool = True, sqlite_synchronous: str = "FULL",
    writer_lock: bool = True,
) -> Database:
    """Open the database at ``url`` and, by default, migrate it to the newest schema.

    ``sqlite:///path`` (the parent directory is created) or any SQLAlchemy URL,
    e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/bpnt``.
    """
    engine = create_db_engine(url, sqlite_synchronous=sqlite_synchronous)
    if create:
        upgrade(engine)
    return Database(engine, writer_lock=writer_lock)
