"""Many rows in one statement on PostgreSQL (issue 3: group commit throughput).

A group-commit run writes tens of rows per table (card states, wallet debits,
e-warong credits, transfers, journal entries, request records).  psycopg's
``executemany`` pipelines one statement per row, and each row is still planned-
and-executed on the server and bound in Python on ours: measured, 14 ms of a
64-purchase batch's 40 ms went there.  A :class:`Bulk` binds **one array per
column** instead and reads them back as a table with ``unnest``, so a run's
writes are one statement per table::

    INSERT INTO transfers (id, ...) SELECT * FROM unnest(CAST(%(id)s AS INTEGER[]), ...)
    UPDATE accounts SET ... FROM unnest(...) AS v(account_id, debit_sen) WHERE ...

On SQLite (no arrays; and its statements cost microseconds, not round trips) a
:class:`Bulk` runs its row statement (a :class:`~switch.ledger.prepared.Prepared`)
with ``executemany``, so both engines write the same rows.  A test checks that.

``Bulk.run`` returns the rows affected, like ``executemany``: a conditional
UPDATE's caller compares it with the rows it sent.  ``Bulk.submit`` sends it in a
:func:`~switch.ledger.prepared.pipeline` block (the count comes with the block's
end).  Keys in one UPDATE's rows must be distinct (``UPDATE ... FROM`` changes a
row once): callers sum per key first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection, String, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import FromClause

from switch.ledger.prepared import Prepared, Submitted, submit_sql

_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


def unnest(table: FromClause, params: Mapping[str, str]) -> str:
    """``unnest(CAST(%(p)s AS <type>[]), ...) AS v(p, ...)``: parameter ``p`` holds the
    column ``params[p]`` of ``table`` for every row, in the column's own type, except
    that strings are ``TEXT``: a cast to ``VARCHAR(n)`` would cut a long value short
    silently, where storing it in the column refuses it."""
    arrays = ", ".join(f"CAST(%({name})s AS {_array_type(table, column)}[])"
                       for name, column in params.items())
    return f"unnest({arrays}) AS v({', '.join(params)})"


def _array_type(table: FromClause, column: str) -> str:
    column_type = table.c[column].type
    return "TEXT" if isinstance(column_type, String) else column_type.compile(dialect=_PG)


class Bulk:
    """``Bulk(rowwise, postgresql_sql, names).run(connection, rows)``; see the module."""

    def __init__(self, rowwise: Prepared, postgresql_sql: str, names: Sequence[str]) -> None:
        self.rowwise = rowwise
        self.postgresql_sql = postgresql_sql
        self.names = tuple(names)

    @classmethod
    def insert(cls, table: FromClause, columns: Sequence[str], rowwise: Prepared) -> Bulk:
        """``INSERT INTO table (columns) SELECT * FROM unnest(...)``; the rows' keys are
        the column names."""
        sql = (f"INSERT INTO {cast(Table, table).name} ({', '.join(columns)}) "
               f"SELECT * FROM {unnest(table, {c: c for c in columns})}")
        return cls(rowwise, sql, columns)

    def run(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Write ``rows`` now; the rows affected."""
        return self.submit(connection, rows).rowcount

    def submit(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> Written:
        """Send the statement (its count once the pipeline block it is in has ended)."""
        if not rows:
            return Written(None, 0)
        if connection.dialect.name != "postgresql":
            return Written(None, self.rowwise.executemany(connection, rows))
        arrays = {name: [row[name] for row in rows] for name in self.names}
        return Written(submit_sql(connection, self.postgresql_sql, arrays), 0)


class Written:
    """What a :meth:`Bulk.submit` changed: ``rowcount``, read after its pipeline block."""

    def __init__(self, submitted: Submitted | None, rowcount: int) -> None:
        self._submitted = submitted
        self._rowcount = rowcount

    @property
    def rowcount(self) -> int:
        return self._rowcount if self._submitted is None else self._submitted.rowcount
