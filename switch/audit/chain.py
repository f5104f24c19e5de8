"""Append to and verify the audit chain.

Each record's MAC is an HMAC-SHA256, under a key from settings, of the previous
record's MAC and this record's canonical JSON.  Sequence numbers are contiguous
from 1 and the head row holds the last (seq, mac), so:

- a changed record no longer matches its MAC;
- a deleted record leaves a gap in ``seq`` (or, at the tail, disagrees with the head);
- reordered records break the ``prev_mac`` links.

Someone who can write the database but does not hold the key cannot forge a
consistent chain.  Appends take the head row ``FOR UPDATE`` (PostgreSQL) or run
under SQLite's ``BEGIN IMMEDIATE``, so concurrent switch processes chain in order.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from switch.audit.models import AuditHead, AuditRecord

GENESIS_MAC = "0" * 64
HEAD_ID = 1
MAX_PROBLEMS = 50


def _canonical(seq: int, at: str, actor: str, action: str, subject: str, detail: str) -> bytes:
    return json.dumps([seq, at, actor, action, subject, detail], separators=(",", ":")).encode()


def _mac(key: bytes, prev_mac: str, payload: bytes) -> str:
    return hmac.new(key, prev_mac.encode() + payload, hashlib.sha256).hexdigest()


def append(
    session: Session,
    key: bytes,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    detail: dict[str, Any] | None = None,
) -> AuditRecord:
    """Add one record at the end of the chain, in the caller's transaction."""
    head = session.scalars(
        select(AuditHead).where(AuditHead.id == HEAD_ID).with_for_update()
    ).first()
    if head is None:
        head = AuditHead(id=HEAD_ID, seq=0, mac=GENESIS_MAC)
        session.add(head)
    seq = head.seq + 1
    text = json.dumps(detail or {}, sort_keys=True, separators=(",", ":"))
    stamp = at.isoformat()
    mac = _mac(key, head.mac, _canonical(seq, stamp, actor, action, subject, text))
    record = AuditRecord(seq=seq, at=stamp, actor=actor, action=action, subject=subject,
                         detail=text, prev_mac=head.mac, mac=mac)
    session.add(record)
    head.seq, head.mac = seq, mac
    return record


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
