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

Ids become visible in order: the switch reserves them and commits under its single
writer lock (``switch.db.engine``), so reading ``id > last seen`` misses nothing.
Without that lock (the scale-out issue: processes committing concurrently) a lower id
could commit after a higher one was read; the poller then needs another cursor (a
commit sequence, or ``created_at`` read with a lag).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Table, and_, case, func, or_, select
from sqlalchemy.orm import aliased

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
from switch.db.engine import Database
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


@contextmanager
def read_snapshot(db: Database) -> Iterator[Connection]:
    """One read-only transaction (PostgreSQL: REPEATABLE READ, READ ONLY); it takes
    no writer lock and never blocks the switch (SQLite WAL: a deferred BEGIN)."""
    with db.read() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield connection


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
                 since: datetime | None = None) -> list[AlertRow]:
    """Alerts with ``id > after_id`` (and ``created_at >= since``), in id order; an
    alert with no e-warong is its terminal's."""
    a = ALERTS
    query = (select(a.c.id, a.c.created_at, a.c.rule, a.c.action, a.c.tid,
                    func.coalesce(a.c.ewarong_id, TERMINALS.c.ewarong_id).label("ewarong"),
                    a.c.detail)
             .select_from(a).outerjoin(TERMINALS, TERMINALS.c.tid == a.c.tid)
             .where(a.c.id > after_id).order_by(a.c.id).limit(limit))
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
