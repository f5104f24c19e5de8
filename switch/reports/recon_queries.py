"""The reconciliation report's reads of the day's events (SQLAlchemy Core, in the
caller's read-only transaction): the registry in scope, the approved purchases and
voids, the reversals, the settlements and their batch upload differences, each
e-warong's payable movement, and the duplicates the audit trail holds.  The checks
that draw red lines read through the same :class:`DayReader`
(:mod:`switch.reports.recon_checks`).

**Audit stamps.**  ``audit_records.at`` is text: the switch clock's instant in ISO 8601
with its offset (:func:`switch.audit.chain.link`; WIB in production, so
``2026-11-23T00:00:00+07:00``), and ``detail`` canonical JSON.  Text order is not time
order across offsets (``...22T23:59:59+07:00`` sorts after ``...22T17:00:00+00:00``
yet is a second before it), so the database only narrows the records to those stamped
with a local date from the day before to the day after (every real offset, -12:00 to
+14:00, puts an instant of the day there) and each stamp is parsed and tested against
the UTC window here, a stamp without an offset taken as UTC.  ``audit_records`` has no
index but ``seq``: each of these reads scans the chain (an index on ``(action, at)``
would be the one to add when that grows slow).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import Connection, Table, func, or_, select
from sqlalchemy.sql import ColumnElement, Select

from switch.core.batch import PURCHASE_CODE, VOID_CODE, Totals
from switch.core.request import rrn_for
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
from switch.reports.recon_model import (
    DifferenceLine,
    DuplicateLine,
    EwarongReport,
    Report,
    ReversalLine,
    SettlementLine,
    TerminalReport,
    UnknownEwarong,
    VoidLine,
    Window,
)

__all__ = [
    "DUPLICATE_ACTIONS", "RECORDS", "TERMINALS", "TRANSFERS", "VOID_STANDS", "AuditFact",
    "DayReader", "approved", "as_int",
]

RECORDS = cast(Table, RequestRecord.__table__)
TRANSFERS = cast(Table, Transfer.__table__)
TERMINALS = cast(Table, Terminal.__table__)
_ENTRIES = cast(Table, JournalEntry.__table__)
_EWARONGS = cast(Table, Ewarong.__table__)
_SETTLEMENTS = cast(Table, Settlement.__table__)
_UPLOADS = cast(Table, BatchUpload.__table__)
_DIFFERENCES = cast(Table, SettlementDifference.__table__)
_AUDIT = cast(Table, AuditRecord.__table__)

#: switch.core.reversal's audit detail when a void's reversal could not reinstate it.
VOID_STANDS = "void stands: the wallet no longer covers the purchase"
#: switch.core.replies.replay's audit actions: a replay, a refusal 94.
REPLAY, REFUSED = "duplicate.replay", "duplicate.refused"
DUPLICATE_ACTIONS = (REPLAY, REFUSED)
_TERMINAL_ACTOR = "terminal:"
_IN_CHUNK = 500


def approved(records: Any, code: str) -> tuple[ColumnElement[bool], ...]:
    """HOST_SPEC §4-5: an approved purchase (``code`` 000000) or void (020000)."""
    return (records.c.kind == "request", records.c.mti == "0210",
            records.c.processing_code == code, records.c.response_code == "00")


def as_int(value: Any) -> int:
    return int(value or 0)  # PostgreSQL's SUM(bigint) is NUMERIC: a Decimal


def _utc(at: datetime) -> datetime:
    """SQLite hands back naive UTC, PostgreSQL aware: aware UTC either way."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _rrn(record_id: Any) -> str | None:
    return rrn_for(int(record_id)) if record_id else None


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for at in range(0, len(items), size):
        yield items[at:at + size]


def _totals(row: Any, side: str) -> Totals:
    """A settlement row's ``terminal_*`` or ``switch_*`` DE 63 totals."""
    return Totals(*(int(getattr(row, f"{side}_{name}")) for name in (
        "purchase_count", "purchase_sen", "void_count", "void_sen")))


class AuditFact(NamedTuple):
    """An audit record of a terminal's, its ``at`` parsed and its detail a JSON object."""

    action: str
    tid: str
    subject: str
    at: datetime
    detail: dict[str, Any]

    def text(self, key: str) -> str:
        return str(self.detail.get(key, ""))


class DayReader:
    """The scope of one report (the WIB day ``window``, and the e-warong ``mid`` when
    one is asked for; :class:`UnknownEwarong` if it is not registered) and its reads,
    each adding to :attr:`report`."""

    def __init__(self, connection: Connection, window: Window, mid: str | None) -> None:
        self.c = connection
        self.window = window
        self.mid = mid
        self.report = Report(window, mid)
        self.terminals: dict[str, TerminalReport] = {}
        self._registry()

    # the scope

    def during(self, column: Any) -> tuple[ColumnElement[bool], ...]:
        return (column >= self.window.start, column < self.window.end)

    def tid_scope(self, column: Any) -> tuple[ColumnElement[bool], ...]:
        if self.mid is None:
            return ()
        tids = (select(TERMINALS.c.tid)
                .join(_EWARONGS, _EWARONGS.c.id == TERMINALS.c.ewarong_id)
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
        self.ewarong_of: dict[str, EwarongReport] = {}
        for row in self.rows(select(TERMINALS.c.tid, TERMINALS.c.ewarong_id)):
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

    def mid_of(self, tid: str) -> str | None:
        """The e-warong of ``tid`` in scope (``None``: none)."""
        ewarong = self.ewarong_of.get(tid)
        return ewarong.mid if ewarong else None

    def audited(self, actions: Sequence[str], *where: ColumnElement[bool]
                ) -> Iterator[AuditFact]:
        """The terminals' audit records of ``actions`` (and ``where``) stamped within the
        day, in chain order, chain by chain (see the module for how ``at`` is compared)."""
        near = (self.window.day - timedelta(days=1)).isoformat(), (
            self.window.day + timedelta(days=2)).isoformat()
        a = _AUDIT
        query = (select(a.c.action, a.c.actor, a.c.subject, a.c.at, a.c.detail)
                 .where(a.c.action.in_(actions), a.c.actor.startswith(_TERMINAL_ACTOR),
                        a.c.at >= near[0], a.c.at < near[1], *where)
                 .order_by(a.c.chain, a.c.seq))
        for action, actor, subject, at, detail in self.rows(query):
            try:
                when = _utc(datetime.fromisoformat(at))
                facts = json.loads(detail)
            except ValueError:
                continue
            if when in self.window and isinstance(facts, dict):
                yield AuditFact(action, actor.removeprefix(_TERMINAL_ACTOR), subject, when,
                                facts)

    # the day's events

    def read_day(self) -> Report:
        """Every event of the day into :attr:`report`, the terminals under their
        e-warongs; the e-warongs with something on the day (the one asked for, always)."""
        self._purchases()
        self._voids()
        self._reversals()
        self._settlements()
        self._payables()
        self._duplicates()
        by_mid: dict[str, list[TerminalReport]] = defaultdict(list)
        for tid in sorted(self.terminals):
            by_mid[self.terminals[tid].mid].append(self.terminals[tid])
        for ewarong in self.ewarongs.values():
            ewarong.terminals = by_mid.get(ewarong.mid, [])
        self.report.ewarongs = [
            e for e in self.ewarongs.values()
            if self.mid is not None or e.terminals or e.payable_movement_sen
            or e.payable_by_kind]
        return self.report

    def _purchases(self) -> None:
        r = RECORDS
        query = (select(r.c.tid, func.count(), func.sum(r.c.amount_sen))
                 .where(*approved(r, PURCHASE_CODE), *self.during(r.c.created_at),
                        *self.tid_scope(r.c.tid))
                 .group_by(r.c.tid))
        for tid, count, total in self.rows(query):
            line = self.terminal(tid)
            if line is not None:
                line.totals.purchase_count += as_int(count)
                line.totals.purchase_sen += as_int(total)

    def _voids(self) -> None:
        r, t = RECORDS, TRANSFERS
        reversal = r.alias("reversal_record")
        query = (select(
            r.c.id, r.c.tid, r.c.stan, r.c.invoice, r.c.amount_sen, r.c.original_record_id,
            r.c.created_at,
            select(t.c.id).where(t.c.reverses_transfer_id == r.c.transfer_id)
            .exists().label("reversed"),
            select(reversal.c.id).where(reversal.c.kind == "reversal",
                                        reversal.c.original_record_id == r.c.id)
            .exists().label("reversal_sent"))
            .where(*approved(r, VOID_CODE), *self.during(r.c.created_at),
                   *self.tid_scope(r.c.tid))
            .order_by(r.c.id))
        for row in self.rows(query):
            amount = as_int(row.amount_sen)
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
            self.report.voids.append(VoidLine(
                rrn_for(int(row.id)), row.tid, row.stan, row.invoice, amount,
                _rrn(row.original_record_id), state, _utc(row.created_at)))

    def _reversals(self) -> None:
        r = RECORDS
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
            code, restored = row.processing_code, as_int(row.amount_sen)
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
            self.report.reversals.append(ReversalLine(
                rrn_for(int(row.id)), row.tid, row.stan, code, restored,
                _rrn(row.original_record_id), state, _utc(row.created_at), moved))

    def _audited_states(self, idle: Sequence[Any]) -> dict[tuple[str, str, str, str], str]:
        """What the audit trail says of each reversal that moved nothing (its ``original``
        detail, e.g. :data:`VOID_STANDS`), by (TID, STAN, DE 13, DE 3)."""
        out: dict[tuple[str, str, str, str], str] = {}
        wanted = {(row.tid, row.stan) for row in idle}
        stans = sorted({stan for _, stan in wanted})
        actors = sorted({f"{_TERMINAL_ACTOR}{tid}" for tid, _ in wanted})
        for chunk in _chunks(stans):
            where = [_AUDIT.c.subject.in_(chunk)]
            if len(actors) <= _IN_CHUNK:  # else the (TID, STAN) test below does it
                where.append(_AUDIT.c.actor.in_(actors))
            for fact in self.audited(("reversal",), *where):
                if (fact.tid, fact.subject) in wanted:
                    key = (fact.tid, fact.subject, fact.text("local_date"),
                           fact.text("processing_code"))
                    out[key] = fact.text("original")
        return out

    def _settlements(self) -> None:
        s, u, d = _SETTLEMENTS, _UPLOADS, _DIFFERENCES
        in_day = (*self.during(s.c.created_at), *self.tid_scope(s.c.tid))
        day_ids = select(s.c.id).where(*in_day)
        uploads = {int(k): as_int(n) for k, n in self.rows(
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
            self.report.differences.append(DifferenceLine(
                rrn_for(int(row.settlement_id)), row.tid, row.batch_number, row.kind,
                row.processing_code, row.rrn, row.invoice,
                None if row.switch_amount_sen is None else int(row.switch_amount_sen),
                None if row.terminal_amount_sen is None else int(row.terminal_amount_sen)))
        for row in self.rows(select(s).where(*in_day).order_by(s.c.id)):
            line = SettlementLine(
                rrn_for(int(row.id)), row.tid, row.batch_number, row.processing_code,
                row.response_code, bool(row.closed), _totals(row, "terminal"),
                _totals(row, "switch"), uploads.get(int(row.id), 0),
                counted.get(int(row.id), 0), _utc(row.created_at))
            self.report.settlements.append(line)
            terminal = self.terminal(row.tid)
            if terminal is not None:
                terminal.settlements.append(line)

    def _payables(self) -> None:
        j, t, e = _ENTRIES, TRANSFERS, _EWARONGS
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
                ewarong.payable_by_kind[kind] = as_int(total)
                ewarong.payable_movement_sen += as_int(total)

    def _duplicates(self) -> None:
        """HOST_SPEC §4 duplicates answered on the day, by their audit records
        (:func:`switch.core.replies.replay`): of a terminal in scope, or of any TID when
        every e-warong is asked for."""
        for fact in self.audited(DUPLICATE_ACTIONS):
            line = self.terminal(fact.tid)
            if line is None and self.mid is not None:
                continue
            refused = fact.action == REFUSED
            self.report.duplicates.append(DuplicateLine(
                fact.at, fact.tid, fact.subject, fact.text("local_date"), fact.text("class"),
                refused, fact.text("original_rrn"), fact.text("original_rc"),
                fact.text("rrn") if refused else None))
            if line is not None and refused:
                line.refusals += 1
            elif line is not None:
                line.replays += 1
