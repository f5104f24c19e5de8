"""The store's day-end writes (HOST_SPEC §4): a void's mark on its purchase, batch
uploads, settlements with their differences, and the closing of a batch.  Rare next to
purchases, so one row-wise statement each (``executemany``), sent in the batch's write
pipeline after the request records they may name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, update

from switch.core.effects import ByKind, SettlementWrite, UploadWrite, VoidMark
from switch.db.sql import Prepared
from switch.db.tables import (
    BatchUpload,
    RequestRecord,
    Settlement,
    SettlementDifference,
    Terminal,
)

_MARK_VOID = Prepared(update(RequestRecord).where(RequestRecord.id == bindparam("record_id"))
                      .values(voided_by_record_id=bindparam("voided_by")))
_INSERT_UPLOAD = Prepared(insert(BatchUpload), column_keys=(
    "id", "tid", "batch_number", "stan", "processing_code", "amount_sen", "local_time",
    "local_date", "rrn", "approval_code", "invoice", "created_at"))
_SETTLEMENT_COLUMNS = (
    "id", "tid", "batch_number", "processing_code", "stan", "local_date", "response_code",
    "closed", "terminal_purchase_count", "terminal_purchase_sen", "terminal_void_count",
    "terminal_void_sen", "switch_purchase_count", "switch_purchase_sen", "switch_void_count",
    "switch_void_sen", "created_at")
_INSERT_SETTLEMENT = Prepared(insert(Settlement), column_keys=_SETTLEMENT_COLUMNS)
_INSERT_DIFFERENCE = Prepared(insert(SettlementDifference), column_keys=(
    "settlement_id", "kind", "rrn", "invoice", "processing_code", "switch_amount_sen",
    "terminal_amount_sen"))
_CLOSE_RECORD = Prepared(update(RequestRecord).where(RequestRecord.id == bindparam("record_id"))
                         .values(settlement_id=bindparam("closed_by")))
_CLOSE_UPLOAD = Prepared(update(BatchUpload).where(BatchUpload.id == bindparam("upload_id"))
                         .values(settlement_id=bindparam("closed_by")))
_NEXT_BATCH = Prepared(update(Terminal).where(Terminal.tid == bindparam("batch_tid"))
                       .values(batch_number=bindparam("next_number")))


def write_day_end(connection: Connection, effects: ByKind, created_at: datetime) -> None:
    """The day-end effects of a batch (after its request records are inserted)."""
    marks = [{"record_id": e.record_id, "voided_by": e.voided_by_record_id}
             for e in effects.of(VoidMark)]
    uploads = [_upload_row(e, created_at) for e in effects.of(UploadWrite)]
    settlements = effects.of(SettlementWrite)
    if not (marks or uploads or settlements):
        return
    _MARK_VOID.executemany(connection, marks)
    _INSERT_UPLOAD.executemany(connection, uploads)
    _INSERT_SETTLEMENT.executemany(connection, [_settlement_row(e, created_at)
                                                for e in settlements])
    _INSERT_DIFFERENCE.executemany(connection, [
        {"settlement_id": s.settlement_id, "kind": d.kind, "rrn": d.rrn, "invoice": d.invoice,
         "processing_code": d.processing_code, "switch_amount_sen": d.switch_amount_sen,
         "terminal_amount_sen": d.terminal_amount_sen}
        for s in settlements for d in s.differences])
    closed = [s for s in settlements if s.closed]
    _CLOSE_RECORD.executemany(connection, [
        {"record_id": record_id, "closed_by": s.settlement_id}
        for s in closed for record_id in s.closed_record_ids])
    _CLOSE_UPLOAD.executemany(connection, [
        {"upload_id": upload_id, "closed_by": s.settlement_id}
        for s in closed for upload_id in s.closed_upload_ids])
    _NEXT_BATCH.executemany(connection, [
        {"batch_tid": s.tid, "next_number": s.next_batch_number} for s in closed])


def _upload_row(write: UploadWrite, created_at: datetime) -> dict[str, Any]:
    upload = write.upload
    return {"id": upload.record_id, "tid": upload.tid, "batch_number": upload.batch_number,
            "stan": write.stan, "processing_code": upload.processing_code,
            "amount_sen": upload.amount_sen, "local_time": write.local_time,
            "local_date": write.local_date, "rrn": upload.rrn,
            "approval_code": upload.approval_code, "invoice": upload.invoice,
            "created_at": created_at}


def _settlement_row(write: SettlementWrite, created_at: datetime) -> dict[str, Any]:
    terminal, switch = write.terminal_totals, write.switch_totals
    return {"id": write.settlement_id, "tid": write.tid, "batch_number": write.batch_number,
            "processing_code": write.processing_code, "stan": write.stan,
            "local_date": write.local_date, "response_code": write.response_code,
            "closed": write.closed,
            "terminal_purchase_count": terminal.purchase_count,
            "terminal_purchase_sen": terminal.purchase_sen,
            "terminal_void_count": terminal.void_count, "terminal_void_sen": terminal.void_sen,
            "switch_purchase_count": switch.purchase_count,
            "switch_purchase_sen": switch.purchase_sen,
            "switch_void_count": switch.void_count, "switch_void_sen": switch.void_sen,
            "created_at": created_at}
