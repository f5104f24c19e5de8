"""Idempotency keys and records (HOST_SPEC §4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.orm import Session

from switch.ledger.models import RequestRecord
from switch.ledger.prepared import Prepared
from switch.protocol.message import Message


@dataclass(frozen=True)
class RequestKey:
    """HOST_SPEC §4: the idempotency key (TID, DE 13, DE 11)."""

    tid: str
    local_date: str
    stan: str

    @classmethod
    def of(cls, request: Message) -> RequestKey:
        return cls(request.text(41), request.text(13), request.text(11))

    def transfer_key(self, prefix: str) -> str:
        return f"{prefix}:{self.tid}:{self.local_date}:{self.stan}"


def find_record(session: Session, key: RequestKey, kind: str) -> RequestRecord | None:
    return session.scalars(
        select(RequestRecord).where(
            RequestRecord.tid == key.tid,
            RequestRecord.local_date == key.local_date,
            RequestRecord.stan == key.stan,
            RequestRecord.kind == kind,
        )
    ).first()


_RECORDS_OF_KEY = Prepared(select(
    RequestRecord.kind, RequestRecord.tid, RequestRecord.stan, RequestRecord.request_hash,
    RequestRecord.response_code, RequestRecord.response_unit, RequestRecord.transfer_id,
).where(RequestRecord.tid == bindparam("tid"), RequestRecord.local_date == bindparam("date"),
        RequestRecord.stan == bindparam("stan")))
_RECORD_COLUMNS = ("tid", "local_date", "stan", "kind", "mti", "processing_code", "amount_sen",
                   "request_hash", "response_code", "response_unit", "transfer_id",
                   "created_at")
_INSERT_RECORD = Prepared(insert(RequestRecord).returning(RequestRecord.id),
                          column_keys=_RECORD_COLUMNS)
_SET_RESPONSE = Prepared(update(RequestRecord).where(RequestRecord.id == bindparam("record_id"))
                         .values(response_unit=bindparam("unit")))


class StoredRecord(NamedTuple):
    """An idempotency record as the hot path reads it."""

    kind: str
    tid: str
    stan: str
    request_hash: str
    response_code: str
    response_unit: bytes
    transfer_id: int | None


def find_records(connection: Connection, key: RequestKey) -> dict[str, StoredRecord]:
    """Both records of ``key`` (``"request"``, ``"reversal"``) that exist: one statement."""
    rows = _RECORDS_OF_KEY.execute(connection, {
        "tid": key.tid, "date": key.local_date, "stan": key.stan}).fetchall()
    records = (StoredRecord(kind, tid, stan, digest, rc, bytes(unit), transfer)
               for kind, tid, stan, digest, rc, unit, transfer in rows)
    return {record.kind: record for record in records}


def insert_record(connection: Connection, key: RequestKey, **columns: Any) -> int:
    """A new request record (the response comes with :func:`set_response`); its id."""
    row = _INSERT_RECORD.execute(connection, {
        "tid": key.tid, "local_date": key.local_date, "stan": key.stan, **columns}).fetchone()
    assert row is not None and isinstance(row[0], int), "an inserted record has an id"
    return row[0]


def set_response(connection: Connection, record_id: int, unit: bytes) -> None:
    _SET_RESPONSE.execute(connection, {"record_id": record_id, "unit": unit})
