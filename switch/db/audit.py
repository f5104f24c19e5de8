"""The audit chains' rows (:mod:`switch.audit.chain` links and verifies them).

There are :data:`CHAINS` chains (issue 17), each with its own head row.  A host batch
reads (and locks) one head with its other reads, the first that no other transaction
holds (PostgreSQL ``FOR UPDATE SKIP LOCKED``), and writes the batch's records and
that chain's new head with its other writes: one head read and one head write per
batch, however many records, and switch processes append at once, each to a chain
of its own for the length of its transaction.  Should every chain be held, the batch
waits for one (:func:`head_of`).  SQLite has one writer at a time: its batches all
append to chain 1.  Administrative changes append one record at a time with
:func:`append`, in the caller's transaction, the same way.  :func:`verify` walks every
chain and checks every head, so a chain deleted whole (records and head) shows too.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, literal_column, select, update
from sqlalchemy.orm import Session

from switch.audit.chain import GENESIS_MAC, Entry, Head, VerifyReport, link, verify_rows
from switch.db.bulk import Bulk
from switch.db.sql import Prepared, Submitted
from switch.db.tables import AuditHead, AuditRecord

#: The number of chains (their heads' ids are 1..CHAINS; migration 0005 creates them).
#: More chains than writer transactions at once means no batch waits for a chain.
CHAINS = 16
_FREE_HEAD = Prepared(select(AuditHead.id, AuditHead.seq, AuditHead.mac)
                      .order_by(AuditHead.id).limit(1)
                      .with_for_update(skip_locked=True),
                      # LIMIT 1 as a literal: with a parameter there PostgreSQL planned
                      # the statement again for every batch (pg_stat_statements)
                      postgresql=select(AuditHead.id, AuditHead.seq, AuditHead.mac)
                      .order_by(AuditHead.id).limit(literal_column("1"))
                      .with_for_update(skip_locked=True))
_HEAD_FOR_UPDATE = Prepared(select(AuditHead.id, AuditHead.seq, AuditHead.mac)
                            .where(AuditHead.id == bindparam("chain")).with_for_update())
_RECORD_COLUMNS = ("chain", "seq", "at", "actor", "action", "subject", "detail",
                   "prev_mac", "mac")
_INSERT_RECORDS = Bulk.insert(AuditRecord.__table__, _RECORD_COLUMNS,
                              Prepared(insert(AuditRecord), column_keys=_RECORD_COLUMNS))
_INSERT_HEAD = Prepared(insert(AuditHead), column_keys=("id", "seq", "mac"))
_UPDATE_HEAD = Prepared(update(AuditHead).where(AuditHead.id == bindparam("chain"))
                        .values(seq=bindparam("head_seq"), mac=bindparam("head_mac")))


def submit_head(connection: Connection) -> Submitted:
    """Read (and lock) a free chain's head, possibly in a pipeline block; then
    :func:`head_of` (after the block)."""
    return _FREE_HEAD.submit(connection)


def head_of(read: Submitted, connection: Connection) -> Head:
    """The head :func:`submit_head` locked; if every chain was held, wait for one of
    them, chosen at random (outside a pipeline block).  A database without any head
    (older than the migrations' seed) starts chain 1."""
    rows = read.rows()
    if not rows:
        rows = _HEAD_FOR_UPDATE.rows(connection, {"chain": random.randint(1, CHAINS)})
    if not rows:
        return Head(0, GENESIS_MAC, exists=False, chain=1)
    chain, seq, mac = rows[0]
    return Head(int(seq), str(mac), chain=int(chain))


def submit_rows(connection: Connection, rows: Sequence[dict[str, Any]], head: Head) -> None:
    """Write linked ``rows`` and the new ``head`` (possibly in a pipeline block)."""
    if not rows:
        return
    _INSERT_RECORDS.submit(connection, rows)
    if head.exists:
        _UPDATE_HEAD.submit(connection, {"chain": head.chain, "head_seq": head.seq,
                                         "head_mac": head.mac})
    else:
        _INSERT_HEAD.submit(connection, {"id": head.chain, "seq": head.seq,
                                         "mac": head.mac})


def append(session: Session, key: bytes, *, at: datetime, actor: str, action: str,
           subject: str, detail: dict[str, Any] | None = None) -> Head:
    """Add one record at the end of a chain, in the caller's transaction (written now)."""
    connection = session.connection()
    rows, head = link(key, head_of(submit_head(connection), connection),
                      [Entry(at, actor, action, subject, detail or {})])
    submit_rows(connection, rows, head)
    return head


def verify(session: Session, key: bytes) -> VerifyReport:
    """Walk every stored chain in ``seq`` order and report every break: a changed,
    missing or reordered record, a head that disagrees with its chain's end, a missing
    head."""
    heads = {head.id: Head(head.seq, head.mac, chain=head.id)
             for head in session.scalars(select(AuditHead))}
    chains = set(session.scalars(select(AuditRecord.chain).distinct()))
    report = VerifyReport()
    for chain in sorted(chains | set(heads) | set(range(1, CHAINS + 1))):
        head = heads.get(chain)
        if head is None:
            if chain in chains or chain == 1:
                head = Head(0, GENESIS_MAC, exists=False, chain=chain)
            else:
                report.problems.append(f"chain {chain} has no head: it was deleted")
                continue
        records = session.scalars(select(AuditRecord).where(AuditRecord.chain == chain)
                                  .order_by(AuditRecord.seq))
        verify_rows(key, records, head, report)
    return report
