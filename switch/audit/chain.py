"""Append to and verify the audit chain.

Each record's MAC is an HMAC-SHA256, under a key from settings, of the previous
record's MAC and this record's canonical JSON.  Sequence numbers are contiguous
from 1 and the head row holds the last (seq, mac), so:

- a changed record no longer matches its MAC;
- a deleted record leaves a gap in ``seq`` (or, at the tail, disagrees with the head);
- reordered records break the ``prev_mac`` links.

Someone who can write the database but does not hold the key cannot forge a
consistent chain.  Appends take the head row ``FOR UPDATE`` (PostgreSQL) or run
under SQLite's ``BEGIN IMMEDIATE``, so concurrent switch processes chain in order;
a transaction reads the head once and writes its records and the head once, at
commit (group commit appends a whole batch that way).  The host reads the head in
the same pipeline block as a run's other reads (:func:`submit_head`) and writes
the records with the run's writes (:func:`flush`), so on PostgreSQL the
chain costs no round trip of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, event, insert, select, update
from sqlalchemy.orm import Session

from switch.audit.models import AuditHead, AuditRecord
from switch.ledger.bulk import Bulk
from switch.ledger.prepared import Prepared, Submitted

GENESIS_MAC = "0" * 64
HEAD_ID = 1
MAX_PROBLEMS = 50


def _canonical(seq: int, at: str, actor: str, action: str, subject: str, detail: str) -> bytes:
    return json.dumps([seq, at, actor, action, subject, detail], separators=(",", ":")).encode()


def _mac(key: bytes, prev_mac: str, payload: bytes) -> str:
    return hmac.new(key, prev_mac.encode() + payload, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Appended:
    """Where a record went in the chain."""

    seq: int
    mac: str


#: ``Session.info`` key of the transaction's :class:`_Appender`.
_APPENDER = "bpnt.audit.appender"
_HEAD_FOR_UPDATE = Prepared(select(AuditHead.seq, AuditHead.mac)
                            .where(AuditHead.id == HEAD_ID).with_for_update())
_RECORD_COLUMNS = ("seq", "at", "actor", "action", "subject", "detail", "prev_mac", "mac")
_INSERT_RECORDS = Bulk.insert(AuditRecord.__table__, _RECORD_COLUMNS,
                              Prepared(insert(AuditRecord), column_keys=_RECORD_COLUMNS))
_INSERT_HEAD = Prepared(insert(AuditHead), column_keys=("id", "seq", "mac"))
_UPDATE_HEAD = Prepared(update(AuditHead).where(AuditHead.id == HEAD_ID)
                        .values(seq=bindparam("head_seq"), mac=bindparam("head_mac")))


class _Appender:
    """The chain's head for one transaction: read (and locked) at the first append,
    records buffered and written with the head just before the commit.

    One head read and one head write per transaction however many records it
    appends (group commit: a whole batch).  The head row stays locked (PostgreSQL
    ``FOR UPDATE``; SQLite ``BEGIN IMMEDIATE``) from the first append to the commit,
    so concurrent switch processes still chain strictly in order.
    """

    def __init__(self, head: Submitted) -> None:
        rows = head.rows()
        self.head_exists = bool(rows)
        self.seq, self.mac = (int(rows[0][0]), str(rows[0][1])) if rows else (0, GENESIS_MAC)
        self.pending: list[dict[str, Any]] = []

    def add(self, key: bytes, *, at: datetime, actor: str, action: str, subject: str,
            detail: dict[str, Any] | None) -> Appended:
        seq = self.seq + 1
        text = json.dumps(detail or {}, sort_keys=True, separators=(",", ":"))
        stamp = at.isoformat()
        mac = _mac(key, self.mac, _canonical(seq, stamp, actor, action, subject, text))
        self.pending.append({"seq": seq, "at": stamp, "actor": actor, "action": action,
                             "subject": subject, "detail": text, "prev_mac": self.mac,
                             "mac": mac})
        self.seq, self.mac = seq, mac
        return Appended(seq, mac)

    def write(self, connection: Connection) -> None:
        """Submit the buffered records and the new head (in the caller's pipeline block,
        if any: a failure then comes when the block ends, and rolls back the whole
        transaction, head included)."""
        if not self.pending:
            return
        _INSERT_RECORDS.submit(connection, self.pending)
        if self.head_exists:
            _UPDATE_HEAD.submit(connection, {"head_seq": self.seq, "head_mac": self.mac})
        else:
            _INSERT_HEAD.submit(connection, {"id": HEAD_ID, "seq": self.seq, "mac": self.mac})
            self.head_exists = True
        self.pending = []


def _appender(session: Session) -> _Appender:
    start(session, submit_head(session))
    appender: _Appender = session.info[_APPENDER]
    return appender


def submit_head(session: Session) -> Submitted | None:
    """Read (and lock) the chain's head with the caller's other reads (a pipeline
    block), unless this transaction has it already; pass the result to
    :func:`start` after the block."""
    if _APPENDER in session.info:
        return None
    return _HEAD_FOR_UPDATE.submit(session.connection())


def start(session: Session, head: Submitted | None) -> None:
    """This transaction's appends follow ``head`` (from :func:`submit_head`)."""
    if head is not None and _APPENDER not in session.info:
        session.info[_APPENDER] = _Appender(head)


@event.listens_for(Session, "before_commit")
def _write_before_commit(session: Session) -> None:
    flush(session)


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    """A new transaction on the same session reads the head afresh."""
    session.info.pop(_APPENDER, None)


def append(
    session: Session,
    key: bytes,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    detail: dict[str, Any] | None = None,
) -> Appended:
    """Add one record at the end of the chain, in the caller's transaction (written
    with the commit; :func:`flush` writes what is buffered now)."""
    return _appender(session).add(key, at=at, actor=actor, action=action, subject=subject,
                                  detail=detail)


def flush(session: Session) -> None:
    """Write the records appended in this transaction so far (and the head); in a
    pipeline block they go with the caller's other writes, and the commit then has
    nothing left to write."""
    appender: _Appender | None = session.info.get(_APPENDER)
    if appender is not None:
        appender.write(session.connection())


@dataclass
class VerifyReport:
    records: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.records} records"
        shown = "\n  - ".join(self.problems[:MAX_PROBLEMS])
        return f"audit chain BROKEN ({len(self.problems)} problems in {self.records} records):" \
               f"\n  - {shown}"


def verify(session: Session, key: bytes) -> VerifyReport:
    """Walk the chain in ``seq`` order and report every break."""
    flush(session)
    report = VerifyReport()
    expected_seq, prev_mac = 1, GENESIS_MAC
    for rec in session.scalars(select(AuditRecord).order_by(AuditRecord.seq)):
        report.records += 1
        if rec.seq != expected_seq:
            report.problems.append(f"records {expected_seq}..{rec.seq - 1} are missing")
        if rec.prev_mac != prev_mac:
            report.problems.append(f"record {rec.seq} does not follow its predecessor "
                                   "(deleted or reordered)")
        payload = _canonical(rec.seq, rec.at, rec.actor, rec.action, rec.subject, rec.detail)
        if not hmac.compare_digest(rec.mac, _mac(key, rec.prev_mac, payload)):
            report.problems.append(f"record {rec.seq} was changed ({rec.action} {rec.subject})")
        expected_seq, prev_mac = rec.seq + 1, rec.mac
    head = session.get(AuditHead, HEAD_ID)
    head_seq, head_mac = (head.seq, head.mac) if head else (0, GENESIS_MAC)
    if (head_seq, head_mac) != (expected_seq - 1, prev_mac):
        report.problems.append(
            f"chain ends at record {expected_seq - 1} but the head says {head_seq}: "
            "records at the end were deleted or the head was altered")
    return report
