"""Many rows in one statement on PostgreSQL (issue 3: group commit throughput).

A group-commit run writes tens of rows per table (card states, wallet debits,
e-warong credits, transfers, journal entries, request records).  psycopg's
``executemany`` pipelines one statement per row, and each row is still planned-
and-executed on the server and bound in Python on ours: measured, 14 ms of a
64-purchase batch's 40 ms went there.  A :class:`Bulk` binds **all the rows as one
JSON parameter** instead and reads them back as a table with
``json_to_recordset``, so a run's writes are one statement per table::

    INSERT INTO transfers (id, ...) SELECT id, ... FROM json_to_recordset(
        CAST(%(rows)s AS json)) AS v(id INTEGER, ...)
    UPDATE accounts SET ... FROM json_to_recordset(...) AS v(account_id INTEGER,
        debit_sen BIGINT) WHERE ...

Inserts take JSON rather than one array per column (``unnest``), because psycopg
builds an array parameter element by element in Python (9 % of the switch's CPU
at 2,200 purchases/s), where ``json.dumps`` runs in C.  Measured for 64 request
records: 0.65 ms of client CPU with arrays, 0.22 ms with JSON; the server's
0.28 ms becomes 0.33 ms (``json``; ``jsonb`` 0.37 ms, it builds a tree first).

UPDATEs (:func:`unnest`, few columns) keep the arrays: the planner guesses 10 rows
for an ``unnest`` of a parameter and probes the key's index once per row, but 100
for ``json_to_recordset``, and in the prepared generic plan that tipped the joins
onto ``cards`` and ``accounts`` into scans (measured: the database server's CPU at
1,000 purchases/s went from 28 % to 41 % with JSON everywhere).  Each value arrives in
its column's own type (``bytea`` from ``\\x`` hex, ``timestamptz`` from ISO 8601),
except that strings are ``TEXT``: a ``VARCHAR(n)`` there would cut a long value
short silently, where storing it in the column refuses it.

On SQLite (no such function needed; its statements cost microseconds, not round
trips) a :class:`Bulk` runs its row statement (a
:class:`~switch.db.sql.Prepared`) with ``executemany``, so both engines
write the same rows.  A test checks that.

``Bulk.run`` returns the rows affected, like ``executemany``: a conditional
UPDATE's caller compares it with the rows it sent.  ``Bulk.submit`` sends it in a
:func:`~switch.db.sql.pipeline` block (the count comes with the block's
end).  Keys in one UPDATE's rows must be distinct (``UPDATE ... FROM`` changes a
row once): callers sum per key first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, DateTime, LargeBinary, String, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import FromClause

from switch.db.sql import Prepared, Submitted, submit_sql

_PG = postgresql.dialect()  # type: ignore[no-untyped-call]
#: The one parameter of a bulk statement on PostgreSQL.
ROWS_PARAM = "rows"


def unnest(table: FromClause, params: Mapping[str, str]) -> str:
    """``unnest(CAST(%(p)s AS <type>[]), ...) AS v(p, ...)``: parameter ``p`` holds the
    column ``params[p]`` of ``table`` for every row, in the column's own type (strings
    as ``TEXT[]``, see the module).  For UPDATEs (see the module)."""
    arrays = ", ".join(f"CAST(%({name})s AS {_sql_type(table, column)}[])"
                       for name, column in params.items())
    return f"unnest({arrays}) AS v({', '.join(params)})"


def recordset(table: FromClause, params: Mapping[str, str]) -> str:
    """``json_to_recordset(CAST(%(rows)s AS json)) AS v(p <type>, ...)``: field ``p``
    of every row holds the column ``params[p]`` of ``table``, in the column's own type
    (strings as ``TEXT``, see the module)."""
    fields = ", ".join(f"{name} {_sql_type(table, column)}" for name, column in params.items())
    return f"json_to_recordset(CAST(%({ROWS_PARAM})s AS json)) AS v({fields})"


def _sql_type(table: FromClause, column: str) -> str:
    column_type = table.c[column].type
    return "TEXT" if isinstance(column_type, String) else column_type.compile(dialect=_PG)


def _to_json(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _json_converter(table: FromClause, column: str) -> Callable[[Any], Any] | None:
    """How a value of ``column`` becomes JSON (``None``: as it is)."""
    column_type = table.c[column].type
    return _to_json if isinstance(column_type, LargeBinary | DateTime) else None


class Bulk:
    """``Bulk(rowwise, postgresql_sql, table, params).run(connection, rows)``; see the
    module.  ``params`` maps each row key to the column of ``table`` it holds;
    ``postgresql_sql`` reads them with :func:`unnest` (``arrays``) or :func:`recordset`."""

    def __init__(self, rowwise: Prepared, postgresql_sql: str, table: FromClause,
                 params: Mapping[str, str], *, arrays: bool) -> None:
        self.rowwise = rowwise
        self.postgresql_sql = postgresql_sql
        self.arrays = arrays
        self.names = tuple(params)
        self._converters = tuple((name, converter) for name, column in params.items()
                                 if (converter := _json_converter(table, column)))

    @classmethod
    def insert(cls, table: FromClause, columns: Sequence[str], rowwise: Prepared) -> Bulk:
        """``INSERT INTO table (columns) SELECT columns FROM json_to_recordset(...)``; the
        rows' keys are the column names."""
        names = ", ".join(columns)
        sql = (f"INSERT INTO {cast(Table, table).name} ({names}) "
               f"SELECT {names} FROM {recordset(table, {c: c for c in columns})}")
        return cls(rowwise, sql, table, {c: c for c in columns}, arrays=False)

    def run(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Write ``rows`` now; the rows affected."""
        return self.submit(connection, rows).rowcount

    def submit(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> Written:
        """Send the statement (its count once the pipeline block it is in has ended)."""
        if not rows:
            return Written(None, 0)
        if connection.dialect.name != "postgresql":
            return Written(None, self.rowwise.executemany(connection, rows))
        if self.arrays:
            params = {name: [row[name] for row in rows] for name in self.names}
            return Written(submit_sql(connection, self.postgresql_sql, params), 0)
        return Written(submit_sql(connection, self.postgresql_sql,
                                  {ROWS_PARAM: self.json_rows(rows)}), 0)

    def json_rows(self, rows: Sequence[Mapping[str, Any]]) -> str:
        """The rows as the JSON parameter (only this statement's keys)."""
        names, converters = self.names, self._converters
        out = []
        for row in rows:
            values = {name: row[name] for name in names}
            for name, converter in converters:
                values[name] = converter(values[name])
            out.append(values)
        return json.dumps(out, separators=(",", ":"))


class Written:
    """What a :meth:`Bulk.submit` changed: ``rowcount``, read after its pipeline block."""

    def __init__(self, submitted: Submitted | None, rowcount: int) -> None:
        self._submitted = submitted
        self._rowcount = rowcount

    @property
    def rowcount(self) -> int:
        return self._rowcount if self._submitted is None else self._submitted.rowcount
