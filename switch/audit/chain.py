"""The audit chain, pure: linking records and verifying a chain (no database here;
:mod:`switch.db.audit` reads and writes the rows).

Each record's MAC is an HMAC-SHA256, under a key from settings, of the previous
record's MAC and this record's canonical JSON.  There are several chains (issue 17:
switch processes append to different chains at once), each its own sequence of
records; in each, sequence numbers are contiguous from 1 and the chain's head row
holds the last (seq, mac), so:

- a changed record no longer matches its MAC;
- a deleted record leaves a gap in ``seq`` (or, at the tail, disagrees with the head);
- reordered records break the ``prev_mac`` links.

Someone who can write the database but does not hold the key cannot forge a
consistent chain.

>>> key = b"k" * 16
>>> rows, head = link(key, Head(0, GENESIS_MAC, exists=False),
...                   [Entry(datetime(2026, 12, 1), "t", "one", "a", {})])
>>> head.seq, verify_rows(key, [Row(**r) for r in rows], head).ok
(1, True)
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

GENESIS_MAC = "0" * 64
MAX_PROBLEMS = 50


def _canonical(seq: int, at: str, actor: str, action: str, subject: str, detail: str) -> bytes:
    return json.dumps([seq, at, actor, action, subject, detail], separators=(",", ":")).encode()


def _mac(key: bytes, prev_mac: str, payload: bytes) -> str:
    return hmac.new(key, prev_mac.encode() + payload, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Head:
    """A chain's last link (``exists``: the head row is in the database)."""

    seq: int
    mac: str
    exists: bool = True
    chain: int = 1


@dataclass(frozen=True)
class Entry:
    """One record to append (the decision core's ``AuditEntry``)."""

    at: datetime
    actor: str
    action: str
    subject: str
    detail: Mapping[str, Any] = field(default_factory=dict)


def link(key: bytes, head: Head, entries: Iterable[Entry]) -> tuple[list[dict[str, Any]], Head]:
    """The rows of ``entries`` chained after ``head`` (``audit_records`` columns), and
    the new head."""
    rows: list[dict[str, Any]] = []
    seq, prev = head.seq, head.mac
    for entry in entries:
        seq += 1
        text = json.dumps(dict(entry.detail), sort_keys=True, separators=(",", ":"))
        stamp = entry.at.isoformat()
        mac = _mac(key, prev, _canonical(seq, stamp, entry.actor, entry.action, entry.subject,
                                         text))
        rows.append({"chain": head.chain, "seq": seq, "at": stamp, "actor": entry.actor,
                     "action": entry.action, "subject": entry.subject, "detail": text,
                     "prev_mac": prev, "mac": mac})
        prev = mac
    return rows, Head(seq, prev, head.exists, head.chain)


@dataclass(frozen=True)
class Row:
    """A stored record, as :func:`verify_rows` reads it (the ORM's ``AuditRecord`` has
    the same attributes)."""

    seq: int
    at: str
    actor: str
    action: str
    subject: str
    detail: str
    prev_mac: str
    mac: str
    chain: int = 1


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


def verify_rows(key: bytes, rows: Iterable[Any], head: Head,
                report: VerifyReport | None = None) -> VerifyReport:
    """Walk one chain's ``rows`` (in ``seq`` order; anything with :class:`Row`'s
    attributes) and report every break, the head included (into ``report`` if given)."""
    report = report if report is not None else VerifyReport()
    named = f"chain {head.chain} " if head.chain != 1 else ""
    expected_seq, prev_mac = 1, GENESIS_MAC
    for rec in rows:
        report.records += 1
        if rec.seq != expected_seq:
            report.problems.append(
                f"{named}records {expected_seq}..{rec.seq - 1} are missing")
        if rec.prev_mac != prev_mac:
            report.problems.append(f"{named}record {rec.seq} does not follow its predecessor "
                                   "(deleted or reordered)")
        payload = _canonical(rec.seq, rec.at, rec.actor, rec.action, rec.subject, rec.detail)
        if not hmac.compare_digest(rec.mac, _mac(key, rec.prev_mac, payload)):
            report.problems.append(
                f"{named}record {rec.seq} was changed ({rec.action} {rec.subject})")
        expected_seq, prev_mac = rec.seq + 1, rec.mac
    if (head.seq, head.mac) != (expected_seq - 1, prev_mac):
        report.problems.append(
            f"{named or 'chain '}ends at record {expected_seq - 1} but the head says "
            f"{head.seq}: records at the end were deleted or the head was altered")
    return report

