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

A list of keys (a run's PANs, terminals, idempotency keys) is one JSON parameter
read by :func:`in_json_list` (``json_each`` / ``jsonb_array_elements``), so the
statement's text does not change with the list's length: SQLite and psycopg keep it
prepared (no planning per run), and both engines probe the index once per key.
``IN (?, ?, ...)`` of a run's length would be a new statement every time, and SQLite
answers a row-value ``IN`` of constants by scanning the whole table.

Round trips: on PostgreSQL every statement waits for the server (~0.1 ms idle
on loopback, several times that with both cores busy), and a batch sent one
statement at a time made ~17 of them.  Statements *submitted*
(:meth:`Prepared.submit`, :func:`submit_sql`) inside a :func:`pipeline` block
are sent without waiting (psycopg's pipeline mode) and their results arrive
together when the block ends: one round trip for a run's reads, one for its
writes.  The server still runs them one after another in the order sent, in the
same transaction.  On SQLite a block changes nothing (statements run when
submitted; they cost microseconds).  A result is read after its block
(:class:`Submitted` refuses earlier), and an error of any statement in it is
raised when the block ends, as SQLAlchemy's own exception.

Limits: no expanding ``IN`` parameters; results are processed only where the
column's type asks for it on the dialect (SQLite's ``DateTime`` strings), see
:meth:`Prepared.rows`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import Connection, bindparam
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ClauseElement, ColumnElement, coercions, roles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter

_CURSOR = "bpnt.prepared.cursor"
#: ``Connection.info`` key: the :func:`pipeline` block open on it (its identity).
_PIPELINE = "bpnt.prepared.pipeline"
#: ``Connection.info`` key: a statement owed before any other (:func:`owe_first`).
_OWED = "bpnt.prepared.owed"


@dataclass(frozen=True)
class _Compiled:
    sql: str
    #: Parameter names in placeholder order (positional paramstyles), else ``None``.
    order: tuple[str, ...] | None
    #: Values of the statement's own literals (``status='blocked'``).
    defaults: Mapping[str, Any]
    processors: Mapping[str, Callable[[Any], Any]]
    #: Result processors by column position (only the columns that have one).
    results: tuple[tuple[int, Callable[[Any], Any]], ...]
    #: The positional arguments out of the (processed) values, in ``order``: one C
    #: call per row (``None``: named paramstyle).
    pick: Callable[[Mapping[str, Any]], tuple[Any, ...]] | None = None


class Prepared:
    """``Prepared(core_statement).execute(connection, params)`` → the DBAPI cursor."""

    def __init__(self, statement: ClauseElement, *,
                 column_keys: Sequence[str] | None = None,
                 postgresql: ClauseElement | None = None) -> None:
        """``column_keys``: for an ``insert(Model)``, the columns it sets (parameters
        named after them), as ``Connection.execute`` would infer from the values.
        ``postgresql``: the statement to run there instead (same parameters, same
        result columns), where its planner needs another form."""
        self.statement = statement
        self.postgresql = postgresql
        self.column_keys = list(column_keys) if column_keys is not None else None
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            statement = (self.postgresql if dialect.name == "postgresql"
                         and self.postgresql is not None else self.statement)
            done = statement.compile(dialect=dialect, column_keys=self.column_keys)
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
            results = []
            for position, column in enumerate(getattr(self.statement, "selected_columns", ())):
                processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
                if processor is not None:
                    results.append((position, processor))
            compiled = self._compiled[dialect.name] = _Compiled(
                str(done), order, defaults, processors, tuple(results), _picker(order))
        return compiled

    def _arguments(self, compiled: _Compiled, params: Mapping[str, Any]) -> Any:
        values = {**compiled.defaults, **params} if compiled.defaults else dict(params)
        for name, processor in compiled.processors.items():
            if name in values:
                values[name] = processor(values[name])
        if compiled.pick is not None:
            return compiled.pick(values)
        return values

    def execute(self, connection: Connection, params: Mapping[str, Any] | None = None) -> Any:
        compiled = self._for(connection.dialect)
        return run_sql(connection, compiled.sql, self._arguments(compiled, params or {}))

    def rows(self, connection: Connection,
             params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """The rows of a ``select``, each column processed as SQLAlchemy's result would
        (a SQLite ``DateTime`` string comes back a ``datetime``)."""
        return self.submit(connection, params).rows()

    def submit(self, connection: Connection,
               params: Mapping[str, Any] | None = None) -> Submitted:
        """Send the statement; inside a :func:`pipeline` block its result comes when the
        block ends (see the module)."""
        compiled = self._for(connection.dialect)
        return submit_sql(connection, compiled.sql, self._arguments(compiled, params or {}),
                          compiled.results)

    def executemany(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run once per row (psycopg pipelines them); the rows affected, in total."""
        if not rows:
            return 0
        compiled = self._for(connection.dialect)
        arguments = [self._arguments(compiled, row) for row in rows]
        return int(run_sql(connection, compiled.sql, arguments, many=True).rowcount)


def _picker(order: tuple[str, ...] | None,
            ) -> Callable[[Mapping[str, Any]], tuple[Any, ...]] | None:
    """``values -> tuple(values[name] for name in order)``, as one ``itemgetter`` call
    (which returns a bare value, not a 1-tuple, for a single name)."""
    if order is None:
        return None
    if not order:
        return lambda values: ()
    if len(order) == 1:
        (only,) = order
        return lambda values: (values[only],)
    return cast(Callable[[Mapping[str, Any]], tuple[Any, ...]], itemgetter(*order))


class InJsonList(ColumnElement[Any]):
    """``column IN (the strings of a JSON array parameter)``, or for several columns
    ``(a, b, c) IN`` (the rows of a JSON array of arrays); see :func:`in_json_list`."""

    inherit_cache = True
    # no Boolean type: SQLite would render the condition as "... = 1", which its
    # planner cannot use as an index probe

    def __init__(self, columns: Sequence[Any], name: str) -> None:
        self.columns = [coercions.expect(roles.ExpressionElementRole, column)
                        for column in columns]
        self.parameter: BindParameter[str] = bindparam(name)


def in_json_list(name: str, *columns: Any) -> InJsonList:
    """A condition on ``columns`` against the JSON parameter ``name``, bound with
    :func:`json_list` (a list of strings for one column, of lists for several)."""
    return InJsonList(columns, name)


def json_list(values: Iterable[Any]) -> str:
    """The value of an :func:`in_json_list` parameter (sorted, without repeats)."""
    return json.dumps(sorted({tuple(v) if isinstance(v, list) else v for v in values}))


@compiles(InJsonList, "postgresql")
def _in_json_list_postgresql(element: InJsonList, compiler: Any, **kw: Any) -> str:
    """One column: ``= ANY(ARRAY(...))``, an index scan whatever the statistics (an
    ``IN (SELECT ...)`` of the list is a semi-join that PostgreSQL's planner, guessing
    100 rows from the function, answered with a sequential scan of a table of
    10,000 cards, in the prepared generic plan for good).  Several columns: a
    semi-join, with the same risk; where it matters, give :class:`Prepared` a
    ``postgresql=`` statement that probes per key (``CROSS JOIN LATERAL``)."""
    bind = compiler.process(element.parameter, **kw)
    columns = [compiler.process(column, **kw) for column in element.columns]
    if len(columns) == 1:
        return (f"{columns[0]} = ANY(ARRAY("
                f"SELECT jsonb_array_elements_text(CAST({bind} AS jsonb))))")
    picks = ", ".join(f"k ->> {i}" for i in range(len(columns)))
    return (f"({', '.join(columns)}) IN "
            f"(SELECT {picks} FROM jsonb_array_elements(CAST({bind} AS jsonb)) AS k)")


@compiles(InJsonList)
def _in_json_list_sqlite(element: InJsonList, compiler: Any, **kw: Any) -> str:
    bind = compiler.process(element.parameter, **kw)
    columns = [compiler.process(column, **kw) for column in element.columns]
    if len(columns) == 1:
        return f"{columns[0]} IN (SELECT value FROM json_each({bind}))"
    picks = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(columns)))
    return f"({', '.join(columns)}) IN (SELECT {picks} FROM json_each({bind}))"


#: Tables whose ids :func:`reserve_ids` hands out (a fixed list: names go into SQL).
RESERVABLE_TABLES = frozenset({"request_records", "transfers"})
#: Those whose ids name something outside the table (a request record's id is the
#: RRN of its answer, HOST_SPEC §3, refusals included): never handed out twice.
COUNTED_TABLES = frozenset({"request_records"})


def reserve_ids(connection: Connection, table: str, count: int) -> list[int]:
    """``count`` new primary keys of ``table`` for rows the caller inserts itself.

    PostgreSQL: from the table's sequence, so ORM inserts later in the same
    transaction (or in other processes) never collide.  SQLite: the next ids after
    the largest, which is safe because the caller holds the write lock (``BEGIN
    IMMEDIATE``) and inserts them before any other insert into ``table`` in its
    transaction.  Ids reserved but not used are simply gaps; for the tables in
    :data:`COUNTED_TABLES` SQLite also remembers the last id handed out
    (``id_counters``), so an id reserved and left unused (a refusal's RRN) is never
    handed out again.
    """
    return Reservation(connection, table, count).ids()


class Reservation:
    """:func:`reserve_ids`, submitted (so it can share a :func:`pipeline` block)."""

    def __init__(self, connection: Connection, table: str, count: int) -> None:
        assert table in RESERVABLE_TABLES, f"no id reservation for {table!r}"
        self.count = count
        self._postgres = connection.dialect.name == "postgresql"
        self._counted = not self._postgres and table in COUNTED_TABLES
        self._submitted: Submitted | None = None
        if count <= 0:
            return
        if self._postgres:
            self._submitted = submit_sql(
                connection, f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) "
                "FROM generate_series(1, %(n)s)", {"n": count})
        elif table in COUNTED_TABLES:
            self._submitted = submit_sql(connection, _COUNTER_SQL.format(table=table),
                                         (table, count, count))
        else:
            self._submitted = submit_sql(connection,
                                         f"SELECT COALESCE(MAX(id), 0) FROM {table}", ())

    def ids(self) -> list[int]:
        if self._submitted is None:
            return []
        rows = self._submitted.rows()
        if self._postgres:
            return sorted(int(row[0]) for row in rows)
        largest = int(rows[0][0])
        if self._counted:  # the counter returns the last id it handed out
            largest -= self.count
        return list(range(largest + 1, largest + 1 + self.count))


#: SQLite: hand out ids after both the counter and the table's largest id (a row
#: inserted without a reservation, or a database older than the counter).
_COUNTER_SQL = (
    "INSERT INTO id_counters (name, last_id) "
    "VALUES (?, (SELECT COALESCE(MAX(id), 0) FROM {table}) + ?) "
    "ON CONFLICT (name) DO UPDATE SET last_id = "
    "MAX(id_counters.last_id, (SELECT COALESCE(MAX(id), 0) FROM {table})) + ? "
    "RETURNING last_id")


class Submitted:
    """A statement sent by :func:`submit_sql`: its rows and row count, readable once the
    :func:`pipeline` block it was sent in has ended (at once outside a block)."""

    def __init__(self, connection: Connection, cursor: Any,
                 results: tuple[tuple[int, Callable[[Any], Any]], ...] = ()) -> None:
        self._connection = connection
        self._cursor = cursor
        self._results = results
        self._block = connection.info.get(_PIPELINE)
        self._rows: list[Any] | None = None
        self._rowcount = -1
        if self._block is None:  # ran already: keep what it gave (the cursor may be reused)
            self._collect()

    def _collect(self) -> None:
        cursor = self._cursor
        self._rowcount = int(cursor.rowcount)
        self._rows = cursor.fetchall() if cursor.description is not None else []
        self._cursor = None

    def _ready(self) -> None:
        if self._cursor is None:
            return
        assert self._connection.info.get(_PIPELINE) is not self._block, (
            "a pipelined statement's result is read after its block ends")
        self._collect()

    @property
    def rowcount(self) -> int:
        self._ready()
        return self._rowcount

    def rows(self) -> list[tuple[Any, ...]]:
        """Each column processed as SQLAlchemy's result would (:meth:`Prepared.rows`)."""
        self._ready()
        assert self._rows is not None
        if not self._results:
            return [tuple(row) for row in self._rows]
        processed = []
        for row in self._rows:
            values = list(row)
            for position, processor in self._results:
                values[position] = processor(values[position])
            processed.append(tuple(values))
        return processed


class _Block:
    """One open :func:`pipeline` block (identity only)."""


@contextmanager
def pipeline(connection: Connection) -> Iterator[None]:
    """PostgreSQL: what is submitted inside goes to the server without waiting, and every
    result (or the first error, as SQLAlchemy's exception) arrives when the block ends:
    one round trip.  SQLite: nothing changes.  Blocks may nest (the outer one syncs)."""
    if connection.dialect.name != "postgresql" or _PIPELINE in connection.info:
        yield
        return
    raw = connection.connection.dbapi_connection
    assert raw is not None, "a connection in a transaction has a DBAPI side"
    connection.info[_PIPELINE] = _Block()
    try:
        with raw.pipeline():
            owed = connection.info.pop(_OWED, None)
            if owed is not None:  # first, in the same round trip
                submit_sql(connection, *owed)
            yield
    except connection.dialect.loaded_dbapi.Error as exc:
        raise dbapi_error(connection, "-- pipelined statements", None, exc) from exc
    finally:
        del connection.info[_PIPELINE]


def submit_sql(connection: Connection, sql: str, arguments: Any,
               results: tuple[tuple[int, Callable[[Any], Any]], ...] = ()) -> Submitted:
    """``sql`` on the transaction; in a :func:`pipeline` block on a cursor of its own,
    so that its result waits there for the block's end."""
    if connection.info.get(_PIPELINE) is None:
        return Submitted(connection, run_sql(connection, sql, arguments), results)
    raw = connection.connection.dbapi_connection
    assert raw is not None, "a connection in a transaction has a DBAPI side"
    cursor = raw.cursor()
    try:
        cursor.execute(sql, arguments)
    except connection.dialect.loaded_dbapi.Error as exc:
        raise dbapi_error(connection, sql, arguments, exc) from exc
    return Submitted(connection, cursor, results)


def owe_first(connection: Connection, sql: str, arguments: Any) -> None:
    """Run ``sql`` before the next statement of this transaction, whatever sends it: at
    the start of a :func:`pipeline` block (the same round trip), before a
    :func:`run_sql`, or before a SQLAlchemy execution (:func:`pay_owed`, from the
    engine's ``before_cursor_execute``).  The caller clears it with :func:`forget_owed`
    when the transaction ends.  (The PostgreSQL writer lock: taking it with the
    batch's first reads saves the round trip between being granted it and reading.)"""
    connection.info[_OWED] = (sql, arguments)


def forget_owed(connection: Connection) -> None:
    connection.info.pop(_OWED, None)


def pay_owed(connection: Connection, cursor: Any) -> None:
    """Run the owed statement (if any) on ``cursor`` now."""
    owed = connection.info.pop(_OWED, None)
    if owed is None:
        return
    try:
        cursor.execute(*owed)
    except connection.dialect.loaded_dbapi.Error as exc:
        raise dbapi_error(connection, owed[0], owed[1], exc) from exc


def run_sql(connection: Connection, sql: str, arguments: Any, *, many: bool = False) -> Any:
    """``sql`` on the transaction's DBAPI cursor (``executemany`` with ``many``); a DBAPI
    error comes out as SQLAlchemy's own.  Returns the cursor."""
    assert _PIPELINE not in connection.info, "in a pipeline block, statements are submitted"
    cursor = dbapi_cursor(connection)
    pay_owed(connection, cursor)
    try:
        if many:
            cursor.executemany(sql, arguments)
        else:
            cursor.execute(sql, arguments)
    except connection.dialect.loaded_dbapi.Error as exc:
        raise dbapi_error(connection, sql, arguments, exc) from exc
    return cursor


def dbapi_cursor(connection: Connection) -> Any:
    """One DBAPI cursor per SQLAlchemy connection (kept in its ``info``)."""
    dbapi_connection = connection.connection.dbapi_connection
    held = connection.info.get(_CURSOR)
    if held is None or held[0] is not dbapi_connection:
        assert dbapi_connection is not None, "a connection in a transaction has a DBAPI side"
        held = connection.info[_CURSOR] = (dbapi_connection, dbapi_connection.cursor())
    return held[1]


def dbapi_error(connection: Connection, sql: str, arguments: Any,
             exc: Exception) -> StatementError:
    dbapi = connection.dialect.loaded_dbapi
    return DBAPIError.instance(sql, arguments, exc, dbapi.Error,
                               dialect=connection.dialect)
