"""The audit chain's rows (:mod:`switch.audit.chain` links and verifies them).

The host's batch reads (and locks) the head with its other reads and writes the
batch's records and the new head with its other writes (:mod:`switch.host.store`):
one head read and one head write per batch, however many records.  Administrative
changes append one record at a time with :func:`append`, in the caller's
transaction.  The head row stays locked (PostgreSQL ``FOR UPDATE``; SQLite ``BEGIN
IMMEDIATE``) from the read to the commit, so concurrent switch processes chain
strictly in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.orm import Session

from switch.audit.chain import GENESIS_MAC, Entry, Head, VerifyReport, link, verify_rows
from switch.db.bulk import Bulk
from switch.db.sql import Prepared, Submitted
from switch.db.tables import AuditHead, AuditRecord

HEAD_ID = 1
_HEAD_FOR_UPDATE = Prepared(select(AuditHead.seq, AuditHead.mac)
                            .where(AuditHead.id == HEAD_ID).with_for_update())
_RECORD_COLUMNS = ("seq", "at", "actor", "action", "subject", "detail", "prev_mac", "mac")
_INSERT_RECORDS = Bulk.insert(AuditRecord.__table__, _RECORD_COLUMNS,
                              Prepared(insert(AuditRecord), column_keys=_RECORD_COLUMNS))
_INSERT_HEAD = Prepared(insert(AuditHead), column_keys=("id", "seq", "mac"))
_UPDATE_HEAD = Prepared(update(AuditHead).where(AuditHead.id == HEAD_ID)
                        .values(seq=bindparam("head_seq"), mac=bindparam("head_mac")))


def submit_head(connection: Connection) -> Submitted:
    """Read (and lock) the head, possibly in a pipeline block; :func:`head_of` after it."""
    return _HEAD_FOR_UPDATE.submit(connection)


def head_of(read: Submitted) -> Head:
    rows = read.rows()
    if not rows:
        return Head(0, GENESIS_MAC, exists=False)
    return Head(int(rows[0][0]), str(rows[0][1]))


def submit_rows(connection: Connection, rows: Sequence[dict[str, Any]], head: Head) -> None:
    """Write linked ``rows`` and the new ``head`` (possibly in a pipeline block)."""
    if not rows:
        return
    _INSERT_RECORDS.submit(connection, rows)
    if head.exists:
        _UPDATE_HEAD.submit(connection, {"head_seq": head.seq, "head_mac": head.mac})
    else:
        _INSERT_HEAD.submit(connection, {"id": HEAD_ID, "seq": head.seq, "mac": head.mac})


def append(session: Session, key: bytes, *, at: datetime, actor: str, action: str,
           subject: str, detail: dict[str, Any] | None = None) -> Head:
    """Add one record at the end of the chain, in the caller's transaction (written now)."""
    connection = session.connection()
    rows, head = link(key, head_of(submit_head(connection)),
                      [Entry(at, actor, action, subject, detail or {})])
    submit_rows(connection, rows, head)
    return head


def verify(session: Session, key: bytes) -> VerifyReport:
    """Walk the stored chain in ``seq`` order and report every break."""
    records = session.scalars(select(AuditRecord).order_by(AuditRecord.seq))
    stored = session.get(AuditHead, HEAD_ID)
    head = Head(stored.seq, stored.mac) if stored else Head(0, GENESIS_MAC, exists=False)
    return verify_rows(key, records, head)
