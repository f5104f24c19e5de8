"""The day's reconciliation report (HOST_SPEC 1.1 §4; FAILURES F2): per e-warong and per
terminal, what the switch approved, what the terminals settled, what the batch uploads
showed, and what the programme owes each e-warong, with a red line for every double
posting and every payable that does not add up.

**The day** is a calendar day in the switch's local zone, WIB (UTC+7, no daylight
saving; :data:`switch.clock.WIB`): from 00:00:00 WIB inclusive to 00:00:00 WIB of the
next day exclusive, i.e. ``[D-1 17:00:00 UTC, D 17:00:00 UTC)``.  Records,
settlements and transfers belong to the day by their ``created_at`` (stored UTC, the
switch's clock when it decided; a record and the transfer it posted are written in one
transaction with one timestamp, so they always fall on the same day).  DE 13 (the
terminal's date) plays no part.

**The switch's totals** of a terminal are the day's events: approved purchases (0210,
DE 3 000000, RC 00), approved voids (020000, RC 00), reversals that restored a
purchase's debit to the wallet, and reversals of voids that reinstated the purchase's
debit.  Net debits = purchases − voids − purchase reversals + void reversals: the
e-warong's due from its terminals' records.  A reversal that moved nothing (unknown
original, a declined original, a voided purchase, or a void that stands because the
wallet no longer covers the purchase) is counted apart and listed.

**What the programme owes** an e-warong for the day is its payable account's net
movement: the sum of ``journal_entries.amount_sen`` on that account for the transfers
created that day.  It must equal the net debits of its terminals' records; if it does
not, a red line.

**Double postings (F2).**  A purchase transfer's idempotency key is
``pur:TID:YYYYMMDD:STAN`` (the request's key, :meth:`RequestKey.transfer_key`) and one
approved record claims it (``request_records.transfer_id``).  The unique keys allow one
request record per (TID, key date, STAN) and one record per transfer, so a second
purchase transfer for one key is necessarily claimed by no approved record: every
purchase (void, reversal) transfer of the day that no approved record claims is a red
line, named a double posting when another purchase transfer or an approved record
holds the same (TID, key date, STAN).  Checked too, although the schema forbids them:
two approved purchase records of one key, two records sharing a transfer, and an
approved purchase or void without its own transfer of its amount.

**Not recorded.**  A replay (same key, same content) and a 94 (same key, different
content) are answered from the stored record and leave only a log line
(:func:`switch.core.replies.replay`): neither is in the database, so the report says
so rather than count them.

One function reads (:func:`reconciliation`, SQLAlchemy Core, one read-only transaction:
PostgreSQL REPEATABLE READ, SQLite a deferred ``BEGIN`` in WAL mode, both one
snapshot) and returns a :class:`Report`; :func:`render_md`, :func:`render_csv` and
:func:`summary_lines` only format it.  It never writes.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, case, func, or_, select
from sqlalchemy.sql import ColumnElement, Select

from switch.clock import WIB
from switch.core.batch import PURCHASE_CODE, VOID_CODE, Totals
from switch.core.request import rrn_for
from switch.db.engine import Database
from switch.db.tables import (
    AuditRecord,
    BatchUpload,
    Ewarong,
    JournalEntry,
    RequestRecord,
    Settlement,
    SettlementDifference,
    Terminal,
    Transfer,
)
from switch.money import rupiah

__all__ = [
    "Anomaly", "DifferenceLine", "EwarongReport", "Report", "ReversalLine",
    "SettlementLine", "SwitchTotals", "TerminalReport", "UnknownEwarong", "VoidLine",
    "Window", "day_window", "parse_day", "reconciliation", "render_csv", "render_md",
    "summary_lines",
]

_RECORDS = cast(Table, RequestRecord.__table__)
_TRANSFERS = cast(Table, Transfer.__table__)
_ENTRIES = cast(Table, JournalEntry.__table__)
_EWARONGS = cast(Table, Ewarong.__table__)
_TERMINALS = cast(Table, Terminal.__table__)
_SETTLEMENTS = cast(Table, Settlement.__table__)
_UPLOADS = cast(Table, BatchUpload.__table__)
_DIFFERENCES = cast(Table, SettlementDifference.__table__)
_AUDIT = cast(Table, AuditRecord.__table__)

#: switch.core.reversal's audit detail when a void's reversal could not reinstate it.
VOID_STANDS = "void stands: the wallet no longer covers the purchase"
#: What the database does not hold (see the module).
NOT_RECORDED = (
    "replays (same key, same content: the stored answer again) and refusals 94 (same key, "
    "different content) are answered without a record or an audit entry, a log line "
    "only (switch.core.replies.replay): not recorded, so not counted here")
#: Anomalies fetched per check: a thoroughly broken day still yields a report.
MAX_FETCHED = 1000
_IN_CHUNK = 500
_PURCHASE_KEY = re.compile(r"^pur:(?P<tid>[^:]+):(?P<key_date>\d{8}):(?P<stan>\d{6})")


class UnknownEwarong(ValueError):
    """``--ewarong MID`` names no registered e-warong."""


# -- the day ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    """A day in WIB as a half-open UTC interval ``[start, end)``."""

    day: date
    start: datetime
    end: datetime

    def describe(self) -> str:
        def utc(at: datetime) -> str:
            return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return (f"{self.day.isoformat()} in WIB (UTC+7): from {self.day.isoformat()} "
                f"00:00:00 WIB inclusive to {(self.day + timedelta(days=1)).isoformat()} "
                f"00:00:00 WIB exclusive = [{utc(self.start)}, {utc(self.end)}), "
                "by created_at (stored UTC)")


def day_window(day: date) -> Window:
    """The WIB calendar day ``day`` as UTC instants.

    >>> w = day_window(date(2026, 11, 23))
    >>> w.start.isoformat(), w.end.isoformat()
    ('2026-11-22T17:00:00+00:00', '2026-11-23T17:00:00+00:00')
    """
    start = datetime.combine(day, time(0), WIB).astimezone(UTC)
    return Window(day, start, start + timedelta(days=1))


def parse_day(text: str) -> date:
    """``YYYY-MM-DD`` strictly (ValueError otherwise).

    >>> parse_day("2026-11-23")
    datetime.date(2026, 11, 23)
    """
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ValueError(f"not a YYYY-MM-DD date: {text!r}")
    return date.fromisoformat(text)


# -- the report --------------------------------------------------------------------------

@dataclass
class SwitchTotals:
    """The switch's money events of a terminal (or an e-warong) on the day, in sen."""

    purchase_count: int = 0
    purchase_sen: int = 0
    void_count: int = 0
    void_sen: int = 0
    #: Reversals that paid a purchase's debit back to the wallet.
    purchase_reversal_count: int = 0
    purchase_reversal_sen: int = 0
    #: Reversals of voids that reinstated the purchase's debit.
    void_reversal_count: int = 0
    void_reversal_sen: int = 0
    #: Reversals answered 00 that moved no money (listed in the report).
    idle_reversal_count: int = 0

    @property
    def net_sen(self) -> int:
        """What the e-warong is owed for these events."""
        return (self.purchase_sen - self.void_sen - self.purchase_reversal_sen
                + self.void_reversal_sen)

    def __add__(self, other: SwitchTotals) -> SwitchTotals:
        return SwitchTotals(*(a + b for a, b in zip(self._values(), other._values(),
                                                     strict=True)))

    def _values(self) -> tuple[int, ...]:
        return (self.purchase_count, self.purchase_sen, self.void_count, self.void_sen,
                self.purchase_reversal_count, self.purchase_reversal_sen,
                self.void_reversal_count, self.void_reversal_sen, self.idle_reversal_count)


@dataclass(frozen=True)
class SettlementLine:
    """A settlement (0500) of the day: the terminal's DE 63 against the switch's batch."""

    rrn: str
    tid: str
    batch_number: str
    processing_code: str
    response_code: str
    closed: bool
    terminal: Totals
    switch: Totals
    uploads: int
    differences: int
    at: datetime

    @property
    def agree(self) -> bool:
        return self.terminal == self.switch


@dataclass(frozen=True)
class DifferenceLine:
    """A difference a batch upload showed (``settlement_differences``)."""

    settlement_rrn: str
    tid: str
    batch_number: str
    kind: str
    processing_code: str
    rrn: str | None
    invoice: str | None
    switch_amount_sen: int | None
    terminal_amount_sen: int | None


@dataclass(frozen=True)
class VoidLine:
    """An approved void of the day and what became of it."""

    rrn: str
    tid: str
    stan: str
    invoice: str | None
    amount_sen: int
    purchase_rrn: str | None
    state: str
    at: datetime


@dataclass(frozen=True)
class ReversalLine:
    """A reversal (0400/0401) of a purchase or a void answered on the day."""

    rrn: str
    tid: str
    stan: str
    processing_code: str
    restored_sen: int
    original_rrn: str | None
    state: str
    at: datetime
    moved_money: bool

    @property
    def of_void(self) -> bool:
        return self.processing_code == VOID_CODE

    @property
    def void_stands(self) -> bool:
        """A void's reversal answered 00 that could not reinstate the purchase."""
        return self.of_void and not self.moved_money and self.state.startswith("void stands")


@dataclass(frozen=True)
class Anomaly:
    """Something that does not add up; ``red``: a red line (exit 1)."""

    kind: str
    red: bool
    detail: str
    mid: str | None = None
    tid: str | None = None
    rrn: str | None = None
    amount_sen: int | None = None


@dataclass
class TerminalReport:
    tid: str
    mid: str
    totals: SwitchTotals = field(default_factory=SwitchTotals)
    settlements: list[SettlementLine] = field(default_factory=list)


@dataclass
class EwarongReport:
    mid: str
    name: str
    payable_account_id: int
    terminals: list[TerminalReport] = field(default_factory=list)
    #: The payable account's net movement on the day (sum of its journal entries).
    payable_movement_sen: int = 0
    #: ... per transfer kind (purchase, void, reversal).
    payable_by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def totals(self) -> SwitchTotals:
        out = SwitchTotals()
        for terminal in self.terminals:
            out = out + terminal.totals
        return out

    @property
    def payable_agrees(self) -> bool:
        return self.payable_movement_sen == self.totals.net_sen


@dataclass
class Report:
    window: Window
    #: The ``--ewarong`` filter (``None``: every e-warong).
    mid: str | None
    ewarongs: list[EwarongReport] = field(default_factory=list)
    settlements: list[SettlementLine] = field(default_factory=list)
    differences: list[DifferenceLine] = field(default_factory=list)
    voids: list[VoidLine] = field(default_factory=list)
    reversals: list[ReversalLine] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    not_recorded: str = NOT_RECORDED

    @property
    def red_lines(self) -> list[Anomaly]:
        return [a for a in self.anomalies if a.red]

    @property
    def ok(self) -> bool:
        return not self.red_lines

    @property
    def exit_code(self) -> int:
        """The command's: 0 no red line, 1 any."""
        return 0 if self.ok else 1

    @property
    def double_postings(self) -> list[Anomaly]:
        return [a for a in self.anomalies if a.kind == "double_posting"]

    @property
    def void_stands(self) -> list[ReversalLine]:
        return [r for r in self.reversals if r.void_stands]

    @property
    def totals(self) -> SwitchTotals:
        out = SwitchTotals()
        for ewarong in self.ewarongs:
            out = out + ewarong.totals
        return out

    def terminal(self, tid: str) -> TerminalReport:
        for ewarong in self.ewarongs:
            for terminal in ewarong.terminals:
                if terminal.tid == tid:
                    return terminal
        raise KeyError(tid)

    def ewarong(self, mid: str) -> EwarongReport:
        for ewarong in self.ewarongs:
            if ewarong.mid == mid:
                return ewarong
        raise KeyError(mid)


# -- reading ------------------------------------------------------------------------------

def reconciliation(db: Database, day: date, mid: str | None = None) -> Report:
    """The report of the WIB day ``day`` (for the e-warong ``mid`` only, if given), read
    in one read-only transaction; :class:`UnknownEwarong` if ``mid`` is not registered."""
    with db.read() as connection:
        if connection.dialect.name == "postgresql":  # one snapshot for every query
            connection.exec_driver_sql(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return _Reader(connection, day_window(day), mid).report()


def _approved(records: Any, code: str) -> tuple[ColumnElement[bool], ...]:
    """HOST_SPEC §4-5: an approved purchase (``code`` 000000) or void (020000)."""
    return (records.c.kind == "request", records.c.mti == "0210",
            records.c.processing_code == code, records.c.response_code == "00")


def _utc(at: datetime) -> datetime:
    """SQLite hands back naive UTC, PostgreSQL aware: aware UTC either way."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _int(value: Any) -> int:
    return int(value or 0)  # PostgreSQL's SUM(bigint) is NUMERIC: a Decimal


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for at in range(0, len(items), size):
        yield items[at:at + size]


class _Reader:
    def __init__(self, connection: Connection, window: Window, mid: str | None) -> None:
        self.c = connection
        self.window = window
        self.mid = mid
        self.report_ = Report(window, mid)

    # the scope: the day, and the e-warong when one is asked for

    def during(self, column: Any) -> tuple[ColumnElement[bool], ...]:
        return (column >= self.window.start, column < self.window.end)

    def tid_scope(self, column: Any) -> tuple[ColumnElement[bool], ...]:
        if self.mid is None:
            return ()
        tids = (select(_TERMINALS.c.tid)
                .join(_EWARONGS, _EWARONGS.c.id == _TERMINALS.c.ewarong_id)
                .where(_EWARONGS.c.mid == self.mid))
        return (column.in_(tids),)

    def payable_scope(self, transfers: Any) -> tuple[ColumnElement[bool], ...]:
        if self.mid is None:
            return ()
        payables = select(_EWARONGS.c.payable_account_id).where(_EWARONGS.c.mid == self.mid)
        return (or_(transfers.c.credit_account_id.in_(payables),
                    transfers.c.debit_account_id.in_(payables)),)

    def rows(self, statement: Select[Any]) -> Sequence[Any]:
        return self.c.execute(statement).all()

    # the report

    def report(self) -> Report:
        self._registry()
        self._purchases()
        self._voids()
        self._reversals()
        self._settlements()
        self._payables()
        self._double_postings()
        self._unposted()
        self._shared()
        self._unregistered()
        self._reused_invoices()
        self._payable_mismatches()
        self._assemble()
        return self.report_

    def _registry(self) -> None:
        query = select(_EWARONGS.c.id, _EWARONGS.c.mid, _EWARONGS.c.name,
                       _EWARONGS.c.payable_account_id).order_by(_EWARONGS.c.mid)
        if self.mid is not None:
            query = query.where(_EWARONGS.c.mid == self.mid)
        self.ewarongs = {int(r.id): EwarongReport(r.mid, r.name, int(r.payable_account_id))
                         for r in self.rows(query)}
        if self.mid is not None and not self.ewarongs:
            raise UnknownEwarong(f"no e-warong with MID {self.mid!r}")
        self.by_payable = {e.payable_account_id: e for e in self.ewarongs.values()}
        terminals = select(_TERMINALS.c.tid, _TERMINALS.c.ewarong_id).order_by(_TERMINALS.c.tid)
        self.terminals: dict[str, TerminalReport] = {}
        self.ewarong_of: dict[str, EwarongReport] = {}
        for row in self.rows(terminals):
            ewarong = self.ewarongs.get(int(row.ewarong_id))
            if ewarong is not None:
                self.ewarong_of[row.tid] = ewarong

    def terminal(self, tid: str) -> TerminalReport | None:
        """The report line of ``tid`` (``None``: not a registered terminal in scope)."""
        ewarong = self.ewarong_of.get(tid)
        if ewarong is None:
            return None
        if tid not in self.terminals:
            self.terminals[tid] = TerminalReport(tid, ewarong.mid)
        return self.terminals[tid]

    def _purchases(self) -> None:
        r = _RECORDS
        query = (select(r.c.tid, func.count(), func.sum(r.c.amount_sen))
                 .where(*_approved(r, PURCHASE_CODE), *self.during(r.c.created_at),
                        *self.tid_scope(r.c.tid))
                 .group_by(r.c.tid))
        for tid, count, total in self.rows(query):
            line = self.terminal(tid)
            if line is not None:
                line.totals.purchase_count += _int(count)
                line.totals.purchase_sen += _int(total)

    def _voids(self) -> None:
        r, t = _RECORDS, _TRANSFERS
        reversal = r.alias("reversal_record")
        query = (select(
            r.c.id, r.c.tid, r.c.stan, r.c.invoice, r.c.amount_sen, r.c.original_record_id,
            r.c.created_at,
            select(t.c.id).where(t.c.reverses_transfer_id == r.c.transfer_id)
            .exists().label("reversed"),
            select(reversal.c.id).where(reversal.c.kind == "reversal",
                                        reversal.c.original_record_id == r.c.id)
            .exists().label("reversal_sent"))
            .where(*_approved(r, VOID_CODE), *self.during(r.c.created_at),
                   *self.tid_scope(r.c.tid))
            .order_by(r.c.id))
        for row in self.rows(query):
            amount = _int(row.amount_sen)
            line = self.terminal(row.tid)
            if line is not None:
                line.totals.void_count += 1
                line.totals.void_sen += amount
            if row.reversed:
                state = "reversed: the purchase's debit reinstated"
            elif row.reversal_sent:
                state = "stands: its reversal could not reinstate the purchase"
            else:
                state = "stands"
            self.report_.voids.append(VoidLine(
                rrn_for(int(row.id)), row.tid, row.stan, row.invoice, amount,
                rrn_for(int(row.original_record_id)) if row.original_record_id else None,
                state, _utc(row.created_at)))

    def _reversals(self) -> None:
        r = _RECORDS
        original = r.alias("original")
        query = (select(
            r.c.id, r.c.tid, r.c.stan, r.c.local_date, r.c.processing_code, r.c.amount_sen,
            r.c.transfer_id, r.c.original_record_id, r.c.created_at,
            original.c.transfer_id.label("original_transfer_id"))
            .select_from(r.outerjoin(original, original.c.id == r.c.original_record_id))
            .where(r.c.kind == "reversal",
                   r.c.processing_code.in_((PURCHASE_CODE, VOID_CODE)),
                   *self.during(r.c.created_at), *self.tid_scope(r.c.tid))
            .order_by(r.c.id))
        rows = self.rows(query)
        idle = [row for row in rows if row.transfer_id is None
                and row.original_record_id is not None
                and row.original_transfer_id is not None]
        audited = self._audited_states(idle)
        for row in rows:
            code, restored = row.processing_code, _int(row.amount_sen)
            moved = row.transfer_id is not None
            line = self.terminal(row.tid)
            if moved and code == PURCHASE_CODE:
                state = "restored: the purchase's debit paid back to the wallet"
            elif moved:
                state = "void reversed: the purchase's debit reinstated"
            elif row.original_record_id is None:
                state = "unknown original: answered 00 and remembered (a later original gets 05)"
            elif row.original_transfer_id is None:
                state = "nothing to restore: the original moved no money"
            else:
                state = audited.get((row.tid, row.stan, row.local_date, code)) or (
                    VOID_STANDS if code == VOID_CODE
                    else "not restored: the void paid the purchase back")
            if line is not None:
                if moved and code == PURCHASE_CODE:
                    line.totals.purchase_reversal_count += 1
                    line.totals.purchase_reversal_sen += restored
                elif moved:
                    line.totals.void_reversal_count += 1
                    line.totals.void_reversal_sen += restored
                else:
                    line.totals.idle_reversal_count += 1
            self.report_.reversals.append(ReversalLine(
                rrn_for(int(row.id)), row.tid, row.stan, code, restored,
                rrn_for(int(row.original_record_id)) if row.original_record_id else None,
                state, _utc(row.created_at), moved))

    def _audited_states(self, idle: Sequence[Any]) -> dict[tuple[str, str, str, str], str]:
        """What the audit trail says of each reversal that moved nothing (its ``original``
        detail, e.g. :data:`VOID_STANDS`), by (TID, STAN, DE 13, DE 3)."""
        out: dict[tuple[str, str, str, str], str] = {}
        wanted = {(row.tid, row.stan) for row in idle}
        stans = sorted({stan for _, stan in wanted})
        actors = sorted({f"terminal:{tid}" for tid, _ in wanted})
        for chunk in _chunks(stans):
            query = (select(_AUDIT.c.actor, _AUDIT.c.subject, _AUDIT.c.detail, _AUDIT.c.at)
                     .where(_AUDIT.c.action == "reversal", _AUDIT.c.subject.in_(chunk))
                     .order_by(_AUDIT.c.seq))
            if len(actors) <= _IN_CHUNK:  # else the (TID, STAN) test below does it
                query = query.where(_AUDIT.c.actor.in_(actors))
            for actor, stan, detail, at in self.rows(query):
                tid = actor.removeprefix("terminal:")
                try:
                    facts = json.loads(detail)
                    when = _utc(datetime.fromisoformat(at))
                except ValueError:
                    continue
                if (tid, stan) not in wanted or not isinstance(facts, dict) or not (
                        self.window.start <= when < self.window.end):
                    continue
                key = (tid, stan, str(facts.get("local_date", "")),
                       str(facts.get("processing_code", "")))
                out[key] = str(facts.get("original", ""))
        return out

    def _settlements(self) -> None:
        s, u, d = _SETTLEMENTS, _UPLOADS, _DIFFERENCES
        in_day = (*self.during(s.c.created_at), *self.tid_scope(s.c.tid))
        day_ids = select(s.c.id).where(*in_day)
        uploads = {int(k): _int(n) for k, n in self.rows(
            select(u.c.settlement_id, func.count()).where(u.c.settlement_id.in_(day_ids))
            .group_by(u.c.settlement_id))}
        differences = self.rows(
            select(d.c.settlement_id, d.c.kind, d.c.processing_code, d.c.rrn, d.c.invoice,
                   d.c.switch_amount_sen, d.c.terminal_amount_sen, s.c.tid, s.c.batch_number)
            .join(s, s.c.id == d.c.settlement_id).where(*in_day)
            .order_by(d.c.settlement_id, d.c.id))
        counted: dict[int, int] = defaultdict(int)
        for row in differences:
            counted[int(row.settlement_id)] += 1
            self.report_.differences.append(DifferenceLine(
                rrn_for(int(row.settlement_id)), row.tid, row.batch_number, row.kind,
                row.processing_code, row.rrn, row.invoice,
                None if row.switch_amount_sen is None else int(row.switch_amount_sen),
                None if row.terminal_amount_sen is None else int(row.terminal_amount_sen)))
        for row in self.rows(select(s).where(*in_day).order_by(s.c.id)):
            line = SettlementLine(
                rrn_for(int(row.id)), row.tid, row.batch_number, row.processing_code,
                row.response_code, bool(row.closed),
                Totals(int(row.terminal_purchase_count), int(row.terminal_purchase_sen),
                       int(row.terminal_void_count), int(row.terminal_void_sen)),
                Totals(int(row.switch_purchase_count), int(row.switch_purchase_sen),
                       int(row.switch_void_count), int(row.switch_void_sen)),
                uploads.get(int(row.id), 0), counted.get(int(row.id), 0),
                _utc(row.created_at))
            self.report_.settlements.append(line)
            terminal = self.terminal(row.tid)
            if terminal is not None:
                terminal.settlements.append(line)

    def _payables(self) -> None:
        j, t, e = _ENTRIES, _TRANSFERS, _EWARONGS
        query = (select(e.c.id, t.c.kind, func.sum(j.c.amount_sen))
                 .select_from(j.join(t, t.c.id == j.c.transfer_id)
                              .join(e, e.c.payable_account_id == j.c.account_id))
                 .where(*self.during(t.c.created_at))
                 .group_by(e.c.id, t.c.kind))
        if self.mid is not None:
            query = query.where(e.c.mid == self.mid)
        for ewarong_id, kind, total in self.rows(query):
            ewarong = self.ewarongs.get(int(ewarong_id))
            if ewarong is not None:
                ewarong.payable_by_kind[kind] = _int(total)
                ewarong.payable_movement_sen += _int(total)

    # anomalies

    def anomaly(self, kind: str, detail: str, *, red: bool = True, mid: str | None = None,
                tid: str | None = None, rrn: str | None = None,
                amount_sen: int | None = None) -> None:
        self.report_.anomalies.append(Anomaly(kind, red, detail, mid, tid, rrn, amount_sen))

    def _mid_of_accounts(self, *accounts: int) -> str | None:
        for account in accounts:
            if account in self.by_payable:
                return self.by_payable[account].mid
        return None

    def _double_postings(self) -> None:
        """Money transfers of the day no approved record claims (see the module)."""
        t, r = _TRANSFERS, _RECORDS
        claim = r.alias("claim")
        claims = {
            "purchase": (claim.c.transfer_id == t.c.id, *_approved(claim, PURCHASE_CODE)),
            "void": (claim.c.transfer_id == t.c.id, *_approved(claim, VOID_CODE)),
            "reversal": (claim.c.transfer_id == t.c.id, claim.c.kind == "reversal"),
        }
        unclaimed = or_(*(and_(t.c.kind == kind, ~select(claim.c.id).where(*cond).exists())
                          for kind, cond in claims.items()))
        orphans = self.rows(
            select(t.c.id, t.c.kind, t.c.idempotency_key, t.c.amount_sen,
                   t.c.debit_account_id, t.c.credit_account_id)
            .where(unclaimed, *self.during(t.c.created_at), *self.payable_scope(t))
            .order_by(t.c.id).limit(MAX_FETCHED))
        for row in orphans:
            amount = int(row.amount_sen)
            mid = self._mid_of_accounts(int(row.credit_account_id), int(row.debit_account_id))
            key = _PURCHASE_KEY.match(row.idempotency_key) if row.kind == "purchase" else None
            if key is None:
                self.anomaly(
                    f"unrecorded_{row.kind}",
                    f"{row.kind} transfer {row.id} ({row.idempotency_key}, {rupiah(amount)}) "
                    f"moves an e-warong's money with no approved record", mid=mid,
                    amount_sen=amount)
                continue
            tid, key_date, stan = key["tid"], key["key_date"], key["stan"]
            siblings = [int(i) for i in self.c.execute(
                select(t.c.id).where(t.c.kind == "purchase", t.c.id != row.id,
                                     t.c.idempotency_key.startswith(
                                         f"pur:{tid}:{key_date}:{stan}", autoescape=True))
                .order_by(t.c.id)).scalars()]
            sale = self.c.execute(
                select(r.c.id, r.c.transfer_id).where(
                    r.c.tid == tid, r.c.key_date == key_date, r.c.stan == stan,
                    *_approved(r, PURCHASE_CODE))).first()
            rrn = rrn_for(int(sale.id)) if sale is not None else None
            if sale is not None or siblings:
                others = sorted({*siblings, *([int(sale.transfer_id)] if sale is not None
                                              and sale.transfer_id is not None else [])})
                self.anomaly(
                    "double_posting",
                    f"DOUBLE POSTING (F2): purchase transfer {row.id} ({row.idempotency_key}, "
                    f"{rupiah(amount)}) credits the e-warong again for the sale TID {tid} "
                    f"key date {key_date} STAN {stan}"
                    + (f" (approved as RRN {rrn})" if rrn else "")
                    + f", already posted as transfer {', '.join(map(str, others))}",
                    mid=mid, tid=tid, rrn=rrn, amount_sen=amount)
            else:
                self.anomaly(
                    "unrecorded_purchase",
                    f"purchase transfer {row.id} ({row.idempotency_key}, {rupiah(amount)}) "
                    f"credits the e-warong with no approved purchase record", mid=mid,
                    tid=tid, amount_sen=amount)
        dup = r.alias("dup")
        keys = self.rows(
            select(dup.c.tid, dup.c.key_date, dup.c.stan, func.count(),
                   func.sum(dup.c.amount_sen))
            .where(*_approved(dup, PURCHASE_CODE), *self.during(dup.c.created_at),
                   *self.tid_scope(dup.c.tid))
            .group_by(dup.c.tid, dup.c.key_date, dup.c.stan).having(func.count() > 1)
            .limit(MAX_FETCHED))
        for tid, key_date, stan, count, total in keys:
            line = self.ewarong_of.get(tid)
            self.anomaly(
                "double_posting",
                f"DOUBLE POSTING (F2): {count} approved purchase records for the one key "
                f"TID {tid} key date {key_date} STAN {stan} ({rupiah(_int(total))})",
                mid=line.mid if line else None, tid=tid, amount_sen=_int(total))

    def _unposted(self) -> None:
        """Approved purchases and voids of the day without their own transfer."""
        r, t = _RECORDS, _TRANSFERS
        expected = case((r.c.processing_code == VOID_CODE, "void"), else_="purchase")
        rows = self.rows(
            select(r.c.id, r.c.tid, r.c.processing_code, r.c.amount_sen,
                   t.c.id.label("transfer"), t.c.kind, t.c.amount_sen.label("posted"))
            .select_from(r.outerjoin(t, t.c.id == r.c.transfer_id))
            .where(or_(and_(*_approved(r, PURCHASE_CODE)), and_(*_approved(r, VOID_CODE))),
                   *self.during(r.c.created_at), *self.tid_scope(r.c.tid),
                   or_(t.c.id.is_(None), t.c.kind != expected,
                       t.c.amount_sen != r.c.amount_sen))
            .order_by(r.c.id).limit(MAX_FETCHED))
        for row in rows:
            what = "purchase" if row.processing_code == PURCHASE_CODE else "void"
            posted = ("no transfer" if row.transfer is None else
                      f"transfer {row.transfer} is a {row.kind} of {rupiah(int(row.posted))}")
            line = self.ewarong_of.get(row.tid)
            self.anomaly(
                f"unposted_{what}",
                f"approved {what} RRN {rrn_for(int(row.id))} of {rupiah(int(row.amount_sen))}: "
                f"{posted}", mid=line.mid if line else None, tid=row.tid,
                rrn=rrn_for(int(row.id)), amount_sen=int(row.amount_sen))

    def _shared(self) -> None:
        r, t = _RECORDS, _TRANSFERS
        day_transfers = select(t.c.id).where(*self.during(t.c.created_at),
                                             *self.payable_scope(t))
        rows = self.rows(
            select(r.c.transfer_id, func.count(), func.min(r.c.tid))
            .where(r.c.transfer_id.in_(day_transfers))
            .group_by(r.c.transfer_id).having(func.count() > 1).limit(MAX_FETCHED))
        for transfer_id, count, tid in rows:
            line = self.ewarong_of.get(tid)
            self.anomaly(
                "shared_transfer",
                f"DOUBLE POSTING (F2): transfer {transfer_id} is claimed by {count} records",
                mid=line.mid if line else None, tid=tid)

    def _unregistered(self) -> None:
        """Records of the day whose TID is no registered terminal (every e-warong only)."""
        if self.mid is not None:
            return
        r = _RECORDS
        rows = self.rows(
            select(r.c.tid, func.count())
            .where(r.c.kind.in_(("request", "reversal")), *self.during(r.c.created_at),
                   r.c.tid.not_in(select(_TERMINALS.c.tid)))
            .group_by(r.c.tid).order_by(r.c.tid).limit(MAX_FETCHED))
        for tid, count in rows:
            self.anomaly("unregistered_terminal",
                         f"{count} records of TID {tid}, which is no registered terminal: "
                         f"in no e-warong's totals", red=False, tid=tid)

    def _reused_invoices(self) -> None:
        """Two approved purchases of one terminal's batch with one invoice (DE 62 is
        unique in a batch, HOST_SPEC §3): a sale sent twice under a new STAN, maybe."""
        r = _RECORDS
        rows = self.rows(
            select(r.c.tid, r.c.invoice, func.count(), func.min(r.c.id))
            .where(*_approved(r, PURCHASE_CODE), *self.during(r.c.created_at),
                   *self.tid_scope(r.c.tid), r.c.invoice.is_not(None))
            .group_by(r.c.tid, r.c.invoice, r.c.settlement_id).having(func.count() > 1)
            .order_by(r.c.tid, r.c.invoice).limit(MAX_FETCHED))
        for tid, invoice, count, first in rows:
            line = self.ewarong_of.get(tid)
            self.anomaly(
                "reused_invoice",
                f"{count} approved purchases of TID {tid} with invoice {invoice} in one "
                f"batch (first RRN {rrn_for(int(first))}): the same sale twice?", red=False,
                mid=line.mid if line else None, tid=tid, rrn=rrn_for(int(first)))

    def _payable_mismatches(self) -> None:
        by_mid: dict[str, list[TerminalReport]] = defaultdict(list)
        for tid in sorted(self.terminals):
            by_mid[self.terminals[tid].mid].append(self.terminals[tid])
        for ewarong in self.ewarongs.values():
            ewarong.terminals = by_mid.get(ewarong.mid, [])
            if not ewarong.payable_agrees:
                net = ewarong.totals.net_sen
                self.anomaly(
                    "payable_mismatch",
                    f"PAYABLE MISMATCH: e-warong {ewarong.mid}'s payable account moved "
                    f"{rupiah(ewarong.payable_movement_sen)} but its terminals' records "
                    f"net {rupiah(net)} (difference "
                    f"{rupiah(ewarong.payable_movement_sen - net)})", mid=ewarong.mid,
                    amount_sen=ewarong.payable_movement_sen - net)

    def _assemble(self) -> None:
        """The e-warongs with something on the day (the one asked for, always)."""
        self.report_.ewarongs = [
            e for e in self.ewarongs.values()
            if self.mid is not None or e.terminals or e.payable_movement_sen
            or e.payable_by_kind]
        self.report_.anomalies.sort(key=lambda a: (not a.red, a.kind, a.mid or "",
                                                   a.tid or ""))


# -- rendering ----------------------------------------------------------------------------

def _wib(at: datetime) -> str:
    return at.astimezone(WIB).strftime("%H:%M:%S")


def _yes(flag: bool) -> str:
    return "yes" if flag else "**NO**"


def _table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return out


def _totals_cells(t: SwitchTotals) -> list[object]:
    return [t.purchase_count, rupiah(t.purchase_sen), t.void_count, rupiah(t.void_sen),
            t.purchase_reversal_count, rupiah(t.purchase_reversal_sen),
            t.void_reversal_count, rupiah(t.void_reversal_sen), rupiah(t.net_sen)]


_TOTALS_HEAD = ["purchases", "purchases Rp", "voids", "voids Rp", "purchase reversals",
                "purchase reversals Rp", "void reversals", "void reversals Rp", "net debits"]


def _de63(t: Totals) -> str:
    return (f"{t.purchase_count} / {rupiah(t.purchase_sen)}; "
            f"{t.void_count} / {rupiah(t.void_sen)}")


def render_md(report: Report) -> str:
    """The report as Markdown: the verdict, a summary per e-warong, per terminal, then the
    settlements, differences, voids, reversals (void stands), duplicates and anomalies."""
    w = report.window
    red = report.red_lines
    lines = [f"# Reconciliation {w.day.isoformat()} (WIB)", "",
             f"- Day: {w.describe()}.",
             f"- E-warong: {report.mid or 'all'}.",
             "- Net debits = purchases − voids − purchase reversals + void reversals; it must "
             "equal the e-warong payable account's movement from the day's journal entries.",
             ""]
    if red:
        lines += [f"**RED LINES: {len(red)}** (exit 1)", ""]
        lines += [f"- 🔴 {a.detail}" for a in red]
    else:
        lines.append("**No red line**: no double posting, every payable adds up.")
    lines += ["", "## E-warongs", ""]
    if report.ewarongs:
        lines += _table(
            ["MID", "name", "terminals", *_TOTALS_HEAD, "payable movement", "agrees"],
            [[e.mid, e.name, len(e.terminals), *_totals_cells(e.totals),
              rupiah(e.payable_movement_sen), _yes(e.payable_agrees)]
             for e in report.ewarongs])
    else:
        lines.append("Nothing on this day.")
    terminals = [t for e in report.ewarongs for t in e.terminals]
    lines += ["", "## Terminals", ""]
    if terminals:
        lines += _table(
            ["TID", "MID", *_TOTALS_HEAD, "idle reversals", "settlements", "settled agree"],
            [[t.tid, t.mid, *_totals_cells(t.totals), t.totals.idle_reversal_count,
              len(t.settlements),
              f"{sum(s.agree for s in t.settlements)} of {len(t.settlements)}"]
             for t in terminals])
    else:
        lines.append("No terminal was active on this day.")
    lines += ["", "## Settlements", "",
              "DE 63 as purchases count / amount; voids count / amount. The switch's totals "
              "are those of the terminal's open batch when it settled (HOST_SPEC §4).", ""]
    if report.settlements:
        lines += _table(
            ["RRN", "time WIB", "TID", "batch", "DE 3", "RC", "closed", "terminal DE 63",
             "switch", "agree", "uploads", "differences"],
            [[s.rrn, _wib(s.at), s.tid, s.batch_number, s.processing_code, s.response_code,
              "yes" if s.closed else "no", _de63(s.terminal), _de63(s.switch),
              "yes" if s.agree else "no", s.uploads, s.differences]
             for s in report.settlements])
    else:
        lines.append("No settlement on this day.")
    lines += ["", "## Batch upload differences", ""]
    if report.differences:
        lines += _table(
            ["settlement RRN", "TID", "batch", "kind", "DE 3", "RRN", "invoice", "switch",
             "terminal"],
            [[d.settlement_rrn, d.tid, d.batch_number, d.kind, d.processing_code,
              d.rrn or "", d.invoice or "",
              "" if d.switch_amount_sen is None else rupiah(d.switch_amount_sen),
              "" if d.terminal_amount_sen is None else rupiah(d.terminal_amount_sen)]
             for d in report.differences])
    else:
        lines.append("None.")
    lines += ["", "## Voids", ""]
    if report.voids:
        lines += _table(
            ["RRN", "time WIB", "TID", "STAN", "invoice", "amount", "purchase RRN", "state"],
            [[v.rrn, _wib(v.at), v.tid, v.stan, v.invoice or "", rupiah(v.amount_sen),
              v.purchase_rrn or "", v.state] for v in report.voids])
    else:
        lines.append("None.")
    lines += ["", "## Reversals", ""]
    if report.reversals:
        lines += _table(
            ["RRN", "time WIB", "TID", "STAN", "of", "restored", "original RRN", "state"],
            [[r.rrn, _wib(r.at), r.tid, r.stan, "void" if r.of_void else "purchase",
              rupiah(r.restored_sen), r.original_rrn or "", r.state]
             for r in report.reversals])
    else:
        lines.append("None.")
    lines += ["", "## Void stands", "",
              "A void's reversal answered 00 that did not reinstate the purchase: the wallet "
              "no longer covered it, so the void stands (HOST_SPEC §4).", ""]
    if report.void_stands:
        lines += _table(["reversal RRN", "TID", "STAN", "void RRN", "state"],
                        [[r.rrn, r.tid, r.stan, r.original_rrn or "", r.state]
                         for r in report.void_stands])
    else:
        lines.append("None.")
    lines += ["", "## Duplicates", ""]
    lines += _table(["what", "count"], [
        ["double postings (F2): more than one credit for one sale",
         len(report.double_postings)],
        ["replays (same key, same content)", "not recorded"],
        ["refusals 94 (same key, different content)", "not recorded"]])
    lines += ["", f"Replays and 94s: {report.not_recorded}.", "", "## Anomalies", ""]
    if report.anomalies:
        lines += _table(["", "kind", "MID", "TID", "detail"],
                        [["🔴 RED" if a.red else "note", a.kind, a.mid or "", a.tid or "",
                          a.detail] for a in report.anomalies])
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"


#: The CSV's columns: one flat table, ``section`` says what a row is.
CSV_COLUMNS = (
    "section", "mid", "tid", "rrn", "ref_rrn", "stan", "invoice", "batch", "code", "rc",
    "kind", "state", "ok", "count", "purchase_count", "purchase_sen", "void_count", "void_sen",
    "purchase_reversal_count", "purchase_reversal_sen", "void_reversal_count",
    "void_reversal_sen", "idle_reversal_count", "net_sen", "payable_sen",
    "terminal_purchase_count", "terminal_purchase_sen", "terminal_void_count",
    "terminal_void_sen", "amount_sen", "switch_amount_sen", "terminal_amount_sen", "at_utc",
    "detail")


def _totals_row(t: SwitchTotals) -> dict[str, object]:
    return {"purchase_count": t.purchase_count, "purchase_sen": t.purchase_sen,
            "void_count": t.void_count, "void_sen": t.void_sen,
            "purchase_reversal_count": t.purchase_reversal_count,
            "purchase_reversal_sen": t.purchase_reversal_sen,
            "void_reversal_count": t.void_reversal_count,
            "void_reversal_sen": t.void_reversal_sen,
            "idle_reversal_count": t.idle_reversal_count, "net_sen": t.net_sen}


def _at(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def csv_rows(report: Report) -> list[dict[str, object]]:
    """The CSV's rows as dicts (keys among :data:`CSV_COLUMNS`); money in integer sen."""
    w = report.window
    mid_of = {t.tid: t.mid for e in report.ewarongs for t in e.terminals}
    rows: list[dict[str, object]] = [
        {"section": "window", "mid": report.mid or "", "state": w.day.isoformat(),
         "ok": int(report.ok), "at_utc": _at(w.start), "detail": w.describe()}]
    for e in report.ewarongs:
        rows.append({"section": "ewarong", "mid": e.mid, "ok": int(e.payable_agrees),
                     **_totals_row(e.totals), "payable_sen": e.payable_movement_sen,
                     "detail": e.name})
    for e in report.ewarongs:
        for t in e.terminals:
            rows.append({"section": "terminal", "mid": t.mid, "tid": t.tid,
                         **_totals_row(t.totals)})
    for s in report.settlements:
        rows.append({
            "section": "settlement", "mid": mid_of.get(s.tid, ""), "tid": s.tid, "rrn": s.rrn,
            "batch": s.batch_number,
            "code": s.processing_code, "rc": s.response_code,
            "state": "closed" if s.closed else "open", "ok": int(s.agree),
            "purchase_count": s.switch.purchase_count, "purchase_sen": s.switch.purchase_sen,
            "void_count": s.switch.void_count, "void_sen": s.switch.void_sen,
            "terminal_purchase_count": s.terminal.purchase_count,
            "terminal_purchase_sen": s.terminal.purchase_sen,
            "terminal_void_count": s.terminal.void_count,
            "terminal_void_sen": s.terminal.void_sen, "at_utc": _at(s.at),
            "detail": f"{s.uploads} uploads, {s.differences} differences"})
    for d in report.differences:
        rows.append({"section": "difference", "mid": mid_of.get(d.tid, ""), "tid": d.tid,
                     "rrn": d.rrn or "",
                     "ref_rrn": d.settlement_rrn, "invoice": d.invoice or "",
                     "batch": d.batch_number, "code": d.processing_code, "kind": d.kind,
                     "switch_amount_sen": "" if d.switch_amount_sen is None
                     else d.switch_amount_sen,
                     "terminal_amount_sen": "" if d.terminal_amount_sen is None
                     else d.terminal_amount_sen})
    for v in report.voids:
        rows.append({"section": "void", "mid": mid_of.get(v.tid, ""), "tid": v.tid,
                     "rrn": v.rrn,
                     "ref_rrn": v.purchase_rrn or "", "stan": v.stan,
                     "invoice": v.invoice or "", "code": VOID_CODE, "state": v.state,
                     "amount_sen": v.amount_sen, "at_utc": _at(v.at)})
    for r in report.reversals:
        rows.append({"section": "void_stands" if r.void_stands else "reversal",
                     "mid": mid_of.get(r.tid, ""), "tid": r.tid, "rrn": r.rrn,
                     "ref_rrn": r.original_rrn or "",
                     "stan": r.stan, "code": r.processing_code,
                     "kind": "void" if r.of_void else "purchase", "state": r.state,
                     "amount_sen": r.restored_sen,
                     "at_utc": _at(r.at)})
    rows += [
        {"section": "duplicates", "kind": "double_posting", "state": "recorded",
         "ok": int(not report.double_postings), "count": len(report.double_postings),
         "detail": "more than one credit for one sale (F2): each is an anomaly row"},
        {"section": "duplicates", "kind": "replay", "state": "not recorded",
         "detail": report.not_recorded},
        {"section": "duplicates", "kind": "refusal_94", "state": "not recorded",
         "detail": report.not_recorded}]
    for a in report.anomalies:
        rows.append({"section": "anomaly", "mid": a.mid or "", "tid": a.tid or "",
                     "rrn": a.rrn or "", "kind": a.kind, "state": "red" if a.red else "note",
                     "ok": int(not a.red),
                     "amount_sen": "" if a.amount_sen is None else a.amount_sen,
                     "detail": a.detail})
    return rows


def render_csv(report: Report) -> str:
    """The report as one flat CSV table (:data:`CSV_COLUMNS`, a ``section`` per row)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(report))
    return out.getvalue()


def summary_lines(report: Report) -> list[str]:
    """A few lines for a console (the ``make run`` demo): the verdict, each e-warong's net
    against its payable, the settlements, void stands and every red line."""
    w = report.window
    total = report.totals
    lines = [
        f"reconciliation {w.day.isoformat()} WIB: "
        + ("OK, no red line" if report.ok else f"{len(report.red_lines)} RED LINE(S)"),
        f"  {total.purchase_count} purchases {rupiah(total.purchase_sen)}, "
        f"{total.void_count} voids {rupiah(total.void_sen)}, "
        f"{total.purchase_reversal_count + total.void_reversal_count} reversals, "
        f"net debits {rupiah(total.net_sen)}"]
    for e in report.ewarongs:
        lines.append(f"  {e.mid}: owed {rupiah(e.payable_movement_sen)} "
                     f"{'=' if e.payable_agrees else '!='} net debits "
                     f"{rupiah(e.totals.net_sen)} ({len(e.terminals)} terminals)")
    settled = report.settlements
    if settled:
        lines.append(f"  settlements: {len(settled)}, {sum(s.agree for s in settled)} agreed, "
                     f"{sum(s.closed for s in settled)} closed, "
                     f"{len(report.differences)} batch upload differences")
    if report.void_stands:
        lines.append(f"  void stands: {len(report.void_stands)}")
    lines += [f"  RED: {a.detail}" for a in report.red_lines]
    return lines
