"""The poller's reads (SQLAlchemy Core, one read-only transaction per poll).

Every read of ``request_records`` and ``alerts`` is a primary-key range (``id >
after``, bounded by a ``LIMIT`` or an upper id): nothing here scans a whole table or
needs an index the switch's insert path would have to maintain.  The joins are
primary- or unique-key lookups (terminal by TID, e-warong, card, KPM, the original
record of a reversal).  ``terminal_presence`` and ``ewarongs`` are small registry
tables and are read whole.

**The grouped read** (:func:`record_groups`, :func:`terminals_seen`; what the poller
uses): the database counts the records of an id range by UTC minute and by what they
count as (:class:`~console.live.rows.RecordGroup`), so a poll reads one row per group,
not per record.  Per record it joins the terminal and its e-warong (small tables);
the join to the card and its KPM (for the NIK prefix) holds only when the e-warong
has no usable region, the one to the original record only for a reversal (its RC)
or for a record without a card of its own whose e-warong has no region.  :func:`records_after`
reads the same records one by one (a :class:`~console.live.rows.RecordRow` each): the
grouped read's reference.

**Ids and commits.**  A record's id is reserved early in its transaction
(``nextval``) and inserted later; an alert's comes from its serial default at insert.
On SQLite there is one writer at a time, so ids become visible in order and reading
``last seen < id <= max(id)`` in the poll's snapshot misses nothing.  On PostgreSQL
host batches of several processes commit concurrently (issue 17), so a lower id can
become visible after a higher one was read; the poller reads only up to a *safe
horizon* (:mod:`console.live.horizon`):

* A *writer* is a transaction with a row in ``pg_locks`` for the writer lock
  :data:`~switch.db.engine.WRITER_LOCK_KEY` in this database (advisory, ``classid``
  and ``objid`` the key's halves, ``objsubid = 1``; granted or waiting, shared or
  exclusive), named by its ``virtualtransaction`` (unique per transaction).  Every
  writer of the two tables takes that lock as its first statement (host batches
  shared, administration exclusively) and holds it until it ends.
* Each poll, before its snapshot, one short READ COMMITTED read-only transaction
  (:func:`read_committed`) reads a *probe* (:func:`probe`): ``M = max(id)`` of each
  table first, then the writers ``P``; then (:func:`writers`) the writers ``Q`` of now.
* A probe none of whose writers is in ``Q`` is *clear*: every id ``<= M`` is final
  (committed, or never to be).  An id ``<= M`` was drawn before ``M`` was (the
  sequences ascend: ``CACHE 1``), so before ``M`` was read; a transaction still holding
  one when ``P`` was read had taken the lock before drawing it, so it is in ``P``; one
  not in ``Q`` had ended before ``Q`` was read, so before the snapshot, which sees its
  rows (PostgreSQL makes a commit visible before it releases the transaction's locks)
  or it rolled back, and its ids are never used.
* The horizon ``H`` is the largest ``M`` of a clear probe (it never moves back).  Probes
  not yet clear wait on the poller for the next polls (at most ``MAX_PENDING``: beyond
  it the oldest is merged into the next, with the union of their writers, which is
  safe; dropping it would not be).  Records are read ``last < id <= min(H, the
  max_reads bound)``, alerts ``last < id <= H``; the back-fill's top is ``H`` too, and
  it waits until a first probe is clear.
* On an idle database (``P`` empty) a probe is clear at once: a poll right after a
  write sees it.  Under load the console lags about one poll.

Outside the argument: a transaction that takes no writer lock
(``transaction(exclusive=False)``: reads, presence upserts and the KPM import, none of
which writes either table; ``Database(writer_lock=False)`` in tests) and a sequence with
``CACHE`` above 1.  Each poll reads ``pg_locks`` twice (a view
over the whole lock table, which it briefly locks: cheap at a poll every few seconds).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Table, and_, case, func, or_, select, text
from sqlalchemy.orm import aliased

from console.live.horizon import Probe
from console.live.rows import (
    AlertRow,
    EwarongRow,
    PresenceRow,
    RecordBatch,
    RecordGroup,
    RecordRow,
    TerminalSeen,
)
from switch.core.facts import utc
from switch.db.engine import WRITER_LOCK_KEY, Database
from switch.db.tables import (
    Alert,
    Card,
    Ewarong,
    Kpm,
    RequestRecord,
    Terminal,
    TerminalPresence,
)

RECORDS = cast(Table, RequestRecord.__table__)
ALERTS = cast(Table, Alert.__table__)
TERMINALS = cast(Table, Terminal.__table__)
EWARONGS = cast(Table, Ewarong.__table__)
CARDS = cast(Table, Card.__table__)
KPM = cast(Table, Kpm.__table__)
PRESENCE = cast(Table, TerminalPresence.__table__)
NIK_DIGITS = 4
#: the region digits the rule looks at (console.live.rows), and the fewest it takes
REGION_DIGITS = 4
REGION_MIN_DIGITS = 2
#: The writers (module docstring): every transaction holding or waiting for the writer
#: lock in this database.  A bigint advisory key is ``classid`` (its high 32 bits),
#: ``objid`` (its low ones), ``objsubid = 1``.
_WRITERS = text(
    "SELECT virtualtransaction FROM pg_locks WHERE locktype = 'advisory' "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    f"AND classid = {WRITER_LOCK_KEY >> 32} AND objid = {WRITER_LOCK_KEY & 0xFFFFFFFF} "
    "AND objsubid = 1")


@contextmanager
def read_snapshot(db: Database) -> Iterator[Connection]:
    """One read-only transaction (PostgreSQL: REPEATABLE READ, READ ONLY); it takes
    no writer lock and never blocks the switch (SQLite WAL: a deferred BEGIN)."""
    with db.read() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield connection


@contextmanager
def read_committed(db: Database) -> Iterator[Connection]:
    """One short read-only transaction in which each statement reads what is
    committed when it starts (PostgreSQL only: the horizon's probe)."""
    with db.read() as connection:
        connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY")
        yield connection


def writers(connection: Connection) -> frozenset[str]:
    """The ``virtualtransaction`` of every writer now (PostgreSQL)."""
    return frozenset(str(v) for v in connection.scalars(_WRITERS))


def probe(connection: Connection) -> Probe:
    """``max(id)`` of both tables, then the writers, each statement after the other
    (``connection``: :func:`read_committed`)."""
    records_top = max_record_id(connection)
    alerts_top = max_alert_id(connection)
    return Probe(records_top, alerts_top, writers(connection))


def max_record_id(connection: Connection) -> int:
    return int(connection.scalar(select(func.max(RECORDS.c.id))) or 0)


def max_alert_id(connection: Connection) -> int:
    return int(connection.scalar(select(func.max(ALERTS.c.id))) or 0)


def records_after(connection: Connection, after_id: int, *, limit: int,
                  up_to_id: int | None = None, since: datetime | None = None
                  ) -> list[RecordRow]:
    """Records with ``after_id < id [<= up_to_id]`` (and ``created_at >= since``), in
    id order, at most ``limit``."""
    r, original = RECORDS, aliased(RECORDS, name="original")
    card_id = func.coalesce(r.c.card_id, original.c.card_id)
    query = (
        select(r.c.id, r.c.tid, r.c.kind, r.c.processing_code, r.c.response_code,
               r.c.created_at, TERMINALS.c.ewarong_id, EWARONGS.c.region,
               func.substr(KPM.c.nik, 1, NIK_DIGITS).label("nik_prefix"),
               original.c.response_code.label("original_rc"))
        .select_from(r)
        .outerjoin(TERMINALS, TERMINALS.c.tid == r.c.tid)
        .outerjoin(EWARONGS, EWARONGS.c.id == TERMINALS.c.ewarong_id)
        .outerjoin(original, original.c.id == r.c.original_record_id)
        .outerjoin(CARDS, CARDS.c.id == card_id)
        .outerjoin(KPM, KPM.c.id == CARDS.c.kpm_id)
        .where(r.c.id > after_id)
        .order_by(r.c.id)
        .limit(limit))
    if up_to_id is not None:
        query = query.where(r.c.id <= up_to_id)
    if since is not None:
        query = query.where(r.c.created_at >= since)
    return [_record(row) for row in connection.execute(query)]


def _record(row: Any) -> RecordRow:
    kind = str(row.kind)
    return RecordRow(
        id=int(row.id), tid=str(row.tid), kind=kind,
        processing_code=str(row.processing_code), response_code=str(row.response_code),
        created_at=utc(row.created_at),
        ewarong_id=None if row.ewarong_id is None else int(row.ewarong_id),
        ewarong_region=row.region, nik_prefix=row.nik_prefix,
        original_rc=row.original_rc if kind == "reversal" else None)


def read_records(connection: Connection, after_id: int, up_to_id: int, *, batch_rows: int,
                 since: datetime | None = None) -> RecordBatch:
    """The records with ``after_id < id <= up_to_id`` (and ``created_at >= since``),
    grouped, read in id ranges of at most ``batch_rows`` ids."""
    batch = RecordBatch(after_id, after_id)
    for start in range(after_id, up_to_id, batch_rows):
        end = min(up_to_id, start + batch_rows)
        batch.extend(RecordBatch(
            start, end, record_groups(connection, start, up_to_id=end, since=since),
            {s.tid: s for s in terminals_seen(connection, start, up_to_id=end,
                                              since=since)}))
    batch.up_to_id = max(batch.up_to_id, up_to_id)
    return batch


def _minute(connection: Connection, at: ColumnElement[Any]) -> ColumnElement[Any]:
    """The UTC minute of ``at``: PostgreSQL stores ``timestamptz`` (truncated in UTC,
    whatever the session's zone), SQLite the UTC time as text."""
    if connection.dialect.name == "postgresql":
        return func.date_trunc("minute", func.timezone("UTC", at))
    return func.strftime("%Y-%m-%d %H:%M:00", at)


def _moment(value: Any) -> datetime:
    """A timestamp as read (SQLite's computed ones are text), in UTC."""
    return utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


def record_groups(connection: Connection, after_id: int, *, up_to_id: int,
                  since: datetime | None = None) -> list[RecordGroup]:
    """The records with ``after_id < id <= up_to_id`` (and ``created_at >= since``),
    counted by minute and by what they count as (module docstring)."""
    r, original = RECORDS, aliased(RECORDS, name="original")
    region = EWARONGS.c.region
    no_region = or_(region.is_(None), func.length(region) < REGION_MIN_DIGITS)
    # Joins, not correlated subqueries: PostgreSQL memoizes a join's lookups, and
    # plans a subquery per row (on small tables a scan per row).  The join
    # conditions say when a lookup is needed at all.
    is_reversal = r.c.kind == "reversal"
    rows = (
        select(_minute(connection, r.c.created_at).label("minute"), r.c.kind,
               r.c.processing_code, r.c.response_code, TERMINALS.c.ewarong_id,
               func.substr(region, 1, REGION_DIGITS).label("region"),
               case((no_region, func.substr(KPM.c.nik, 1, NIK_DIGITS)))
               .label("nik_prefix"),
               case((is_reversal, original.c.response_code)).label("original_rc"))
        .select_from(r)
        .outerjoin(TERMINALS, TERMINALS.c.tid == r.c.tid)
        .outerjoin(EWARONGS, EWARONGS.c.id == TERMINALS.c.ewarong_id)
        .outerjoin(original, and_(
            original.c.id == r.c.original_record_id,
            or_(is_reversal, and_(r.c.card_id.is_(None), no_region))))
        .outerjoin(CARDS, and_(
            CARDS.c.id == func.coalesce(r.c.card_id, original.c.card_id), no_region))
        .outerjoin(KPM, KPM.c.id == CARDS.c.kpm_id)
        .where(r.c.id > after_id, r.c.id <= up_to_id))
    if since is not None:
        rows = rows.where(r.c.created_at >= since)
    new = rows.subquery("new")
    keys = [new.c.minute, new.c.kind, new.c.processing_code, new.c.response_code,
            new.c.ewarong_id, new.c.region, new.c.nik_prefix, new.c.original_rc]
    query = select(*keys, func.count().label("n")).group_by(*keys)
    return [RecordGroup(
        minute=_moment(row.minute), kind=str(row.kind),
        processing_code=str(row.processing_code), response_code=str(row.response_code),
        ewarong_id=None if row.ewarong_id is None else int(row.ewarong_id),
        ewarong_region=row.region, nik_prefix=row.nik_prefix,
        original_rc=row.original_rc, count=int(row.n))
        for row in connection.execute(query)]


def terminals_seen(connection: Connection, after_id: int, *, up_to_id: int,
                   since: datetime | None = None) -> list[TerminalSeen]:
    """Each TID's newest ``created_at`` among the records with ``after_id < id <=
    up_to_id`` (and ``created_at >= since``), with its terminal's e-warong."""
    r = RECORDS
    newest = (select(r.c.tid, func.max(r.c.created_at).label("at"))
              .where(r.c.id > after_id, r.c.id <= up_to_id).group_by(r.c.tid))
    if since is not None:
        newest = newest.where(r.c.created_at >= since)
    seen = newest.subquery("seen")
    query = (select(seen.c.tid, seen.c.at, TERMINALS.c.ewarong_id)
             .select_from(seen.outerjoin(TERMINALS, TERMINALS.c.tid == seen.c.tid)))
    return [TerminalSeen(str(row.tid), _moment(row.at),
                         None if row.ewarong_id is None else int(row.ewarong_id))
            for row in connection.execute(query)]


def alerts_after(connection: Connection, after_id: int, *, limit: int,
                 up_to_id: int | None = None, since: datetime | None = None
                 ) -> list[AlertRow]:
    """Alerts with ``after_id < id [<= up_to_id]`` (and ``created_at >= since``), in id
    order, at most ``limit``; an alert with no e-warong is its terminal's."""
    a = ALERTS
    query = (select(a.c.id, a.c.created_at, a.c.rule, a.c.action, a.c.tid,
                    func.coalesce(a.c.ewarong_id, TERMINALS.c.ewarong_id).label("ewarong"),
                    a.c.detail)
             .select_from(a).outerjoin(TERMINALS, TERMINALS.c.tid == a.c.tid)
             .where(a.c.id > after_id).order_by(a.c.id).limit(limit))
    if up_to_id is not None:
        query = query.where(a.c.id <= up_to_id)
    if since is not None:
        query = query.where(a.c.created_at >= since)
    return [AlertRow(int(row.id), utc(row.created_at), str(row.rule), str(row.action),
                     row.tid, None if row.ewarong is None else int(row.ewarong),
                     str(row.detail or "{}"))
            for row in connection.execute(query)]


def presence(connection: Connection) -> list[PresenceRow]:
    p = PRESENCE
    query = (select(p.c.tid, p.c.status, p.c.last_seen_at, p.c.source,
                    TERMINALS.c.ewarong_id)
             .select_from(p).outerjoin(TERMINALS, TERMINALS.c.tid == p.c.tid)
             .order_by(p.c.tid))
    return [PresenceRow(str(row.tid), str(row.status), utc(row.last_seen_at),
                        str(row.source),
                        None if row.ewarong_id is None else int(row.ewarong_id))
            for row in connection.execute(query)]


def ewarongs(connection: Connection) -> list[EwarongRow]:
    e = EWARONGS
    return [EwarongRow(int(row.id), str(row.mid), str(row.name), row.region)
            for row in connection.execute(select(e.c.id, e.c.mid, e.c.name, e.c.region)
                                          .order_by(e.c.id))]
