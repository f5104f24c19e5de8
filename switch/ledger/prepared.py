"""Prepared statements for the host's hot path (issue 3: group commit throughput).

A :class:`Prepared` is a SQLAlchemy Core statement compiled **once per dialect**
and then run straight on the transaction's DBAPI cursor.  SQLAlchemy still
writes the SQL (from the ORM models, for SQLite and PostgreSQL alike) and its
type bind processors still convert the parameters (so a ``DateTime`` is stored
exactly as the ORM stores it); what is skipped is SQLAlchemy's per-execution
work (cache-key generation, execution context, result metadata), which measured
~50-80 µs per statement against ~2 µs for the DBAPI call on SQLite — about ten
statements per purchase made it the largest single cost of an authorization.

The cursor belongs to the SQLAlchemy connection of the caller's session, so the
statements run inside the same database transaction as everything else (BEGIN
IMMEDIATE / the writer lock, the commit).  DBAPI errors are raised as
SQLAlchemy's own (``IntegrityError``, ``OperationalError``, ...), which is what
the host's lost-race and RC 91 handling expect.

Limits: no expanding ``IN`` parameters, no result-type processing (the hot path
reads ints, strings and bytes; callers convert booleans).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

_CURSOR = "bpnt.prepared.cursor"


@dataclass(frozen=True)
class _Compiled:
    sql: str
    #: Parameter names in placeholder order (positional paramstyles), else ``None``.
    order: tuple[str, ...] | None
    #: Values of the statement's own literals (``status='blocked'``).
    defaults: Mapping[str, Any]
    processors: Mapping[str, Callable[[Any], Any]]


class Prepared:
    """``Prepared(core_statement).execute(connection, params)`` → the DBAPI cursor."""

    def __init__(self, statement: ClauseElement, *,
                 column_keys: Sequence[str] | None = None) -> None:
        """``column_keys``: for an ``insert(Model)``, the columns it sets (parameters
        named after them), as ``Connection.execute`` would infer from the values."""
        self.statement = statement
        self.column_keys = list(column_keys) if column_keys is not None else None
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            done = self.statement.compile(dialect=dialect, column_keys=self.column_keys)
            assert isinstance(done, SQLCompiler), "a SQL statement compiles to SQL"
            processors = {}
            defaults = {}
            for name, bind in done.binds.items():
                processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if processor is not None:
                    processors[name] = processor
                if not bind.required:
                    defaults[name] = bind.effective_value
            order = tuple(done.positiontup) if dialect.positional and done.positiontup else None
            compiled = self._compiled[dialect.name] = _Compiled(
                str(done), order, defaults, processors)
        return compiled

    def _arguments(self, compiled: _Compiled, params: Mapping[str, Any]) -> Any:
        values = {**compiled.defaults, **params} if compiled.defaults else dict(params)
        for name, processor in compiled.processors.items():
            if name in values:
                values[name] = processor(values[name])
        if compiled.order is not None:
            return tuple(values[name] for name in compiled.order)
        return values

    def execute(self, connection: Connection, params: Mapping[str, Any] | None = None) -> Any:
        compiled = self._for(connection.dialect)
        arguments = self._arguments(compiled, params or {})
        cursor = _cursor(connection)
        try:
            cursor.execute(compiled.sql, arguments)
        except connection.dialect.loaded_dbapi.Error as exc:
            raise _wrapped(connection, compiled.sql, arguments, exc) from exc
        return cursor

    def executemany(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run once per row (psycopg pipelines them); the rows affected, in total."""
        if not rows:
            return 0
        compiled = self._for(connection.dialect)
        arguments = [self._arguments(compiled, row) for row in rows]
        cursor = _cursor(connection)
        try:
            cursor.executemany(compiled.sql, arguments)
        except connection.dialect.loaded_dbapi.Error as exc:
            raise _wrapped(connection, compiled.sql, arguments, exc) from exc
        return int(cursor.rowcount)


#: Tables whose ids :func:`reserve_ids` hands out (a fixed list: names go into SQL).
RESERVABLE_TABLES = frozenset({"request_records", "transfers"})


def reserve_ids(connection: Connection, table: str, count: int) -> list[int]:
    """``count`` new primary keys of ``table`` for rows the caller inserts itself.

    PostgreSQL: from the table's sequence, so ORM inserts later in the same
    transaction (or in other processes) never collide.  SQLite: the next ids after
    the largest, which is safe because the caller holds the write lock (``BEGIN
    IMMEDIATE``) and inserts them before any other insert into ``table`` in its
    transaction.  Ids reserved but not used are simply gaps.
    """
    assert table in RESERVABLE_TABLES, f"no id reservation for {table!r}"
    if count <= 0:
        return []
    cursor = _cursor(connection)
    if connection.dialect.name == "postgresql":
        cursor.execute(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) "
                       "FROM generate_series(1, %(n)s)", {"n": count})
        return sorted(int(row[0]) for row in cursor.fetchall())
    cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}")
    (largest,) = cursor.fetchone()
    return list(range(int(largest) + 1, int(largest) + 1 + count))


def _cursor(connection: Connection) -> Any:
    """One DBAPI cursor per SQLAlchemy connection (kept in its ``info``)."""
    dbapi_connection = connection.connection.dbapi_connection
    held = connection.info.get(_CURSOR)
    if held is None or held[0] is not dbapi_connection:
        assert dbapi_connection is not None, "a connection in a transaction has a DBAPI side"
        held = connection.info[_CURSOR] = (dbapi_connection, dbapi_connection.cursor())
    return held[1]


def _wrapped(connection: Connection, sql: str, arguments: Any,
             exc: Exception) -> StatementError:
    dbapi = connection.dialect.loaded_dbapi
    return DBAPIError.instance(sql, arguments, exc, dbapi.Error,
                               dialect=connection.dialect)
