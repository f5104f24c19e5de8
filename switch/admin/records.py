"""``bpnt-switch records prune``: idempotency records past the retention window
(HOST_SPEC §4: kept at least ``idempotency_window_days``, a setting, 7 by default).

What is removed: records created before ``now - window`` that moved no money
(declines, inquiries, refused duplicates, batch uploads, settlements: the
``settlements`` table keeps what settled), and the batch uploads a settlement already
took into account.  A record that moved money (a purchase, a void, a reversal that
restored) stays: it is the proof that a terminal saw the debit approved, which the
money invariant checks for every transfer; outside the window it is never matched
again (the lookup reads only records within it).  Nothing of the ledger goes.  One
transaction, one audit record with the counts.  ``--dry-run`` counts only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, func, not_, or_, select, update

from switch.db import audit
from switch.db.engine import Database
from switch.db.tables import BatchUpload, RequestRecord

#: An approved purchase or void no settlement has closed: kept whatever its age.
_IN_OPEN_BATCH = and_(RequestRecord.kind == "request", RequestRecord.response_code == "00",
                      RequestRecord.processing_code.in_(("000000", "020000")),
                      RequestRecord.settlement_id.is_(None))
#: The record of money moved (the invariant's link from a transfer to its approval).
_MOVED_MONEY = RequestRecord.transfer_id.is_not(None)


@dataclass(frozen=True)
class PruneReport:
    cutoff: datetime
    records: int
    uploads: int
    kept: int
    dry_run: bool

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return (f"{verb} {self.records} idempotency records and {self.uploads} settled batch "
                f"uploads created before {self.cutoff.isoformat()}; kept {self.kept} older "
                "ones that moved money or are still in an open batch")


def prune_records(db: Database, *, window: timedelta, now: datetime, audit_key: bytes,
                  dry_run: bool = False) -> PruneReport:
    """Remove what is past ``window`` (see the module)."""
    assert window >= timedelta(days=1), "HOST_SPEC §4 keeps records at least a day"
    cutoff = now.astimezone(UTC) - window
    old = RequestRecord.created_at < cutoff
    prunable = and_(old, not_(_IN_OPEN_BATCH), not_(_MOVED_MONEY))
    with db.transaction() as session:
        records = session.scalar(select(func.count()).where(prunable)) or 0
        kept = session.scalar(select(func.count()).where(
            old, or_(_IN_OPEN_BATCH, _MOVED_MONEY))) or 0
        settled_uploads = and_(BatchUpload.created_at < cutoff,
                               BatchUpload.settlement_id.is_not(None))
        uploads = session.scalar(select(func.count()).where(settled_uploads)) or 0
        report = PruneReport(cutoff, records, uploads, kept, dry_run)
        if dry_run or not (records or uploads):
            return report
        doomed = select(RequestRecord.id).where(prunable).scalar_subquery()
        session.execute(update(RequestRecord).where(RequestRecord.original_record_id.in_(doomed))
                        .values(original_record_id=None)
                        .execution_options(synchronize_session=False))
        session.execute(delete(RequestRecord).where(prunable)
                        .execution_options(synchronize_session=False))
        session.execute(delete(BatchUpload).where(settled_uploads)
                        .execution_options(synchronize_session=False))
        audit.append(session, audit_key, at=now, actor="admin", action="records.prune",
                     subject=cutoff.date().isoformat(),
                     detail={"records": records, "uploads": uploads, "kept": kept})
    return report
