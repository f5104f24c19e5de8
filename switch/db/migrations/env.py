"""Alembic environment for both engines (SQLite and PostgreSQL).

Run by ``open_database(url, create=True)`` / ``bpnt-switch db upgrade`` with a
connection passed in ``config.attributes["connection"]``, or by the ``alembic``
command line (``alembic.ini`` at the repository root), which connects to
``sqlalchemy.url`` if set, else to ``BPNT_DATABASE_URL`` (the switch settings).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from switch.db.tables import Base

target_metadata = Base.metadata


def configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: later revisions use batch mode there.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        configure_and_run(connection)
        return
    from switch.db.engine import create_db_engine
    from switch.settings import load_settings

    url = context.config.get_main_option("sqlalchemy.url") or load_settings().database_url
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            configure_and_run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: connect to a database")
_run_online()
