"""Idempotency keys and records (HOST_SPEC §4)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, insert, select
from sqlalchemy.orm import Session

from switch.ledger.bulk import Bulk
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


_RECORD_COLUMNS = ("id", "tid", "local_date", "stan", "kind", "mti", "processing_code",
                   "amount_sen", "request_hash", "response_code", "response_unit",
                   "transfer_id", "created_at")
_INSERT_RECORDS = Bulk.insert(RequestRecord.__table__, _RECORD_COLUMNS,
                              Prepared(insert(RequestRecord), column_keys=_RECORD_COLUMNS))


class StoredRecordRow(NamedTuple):
    """An idempotency record as the hot path reads (or has just written) it."""

    kind: str
    tid: str
    stan: str
    request_hash: str
    response_code: str
    response_unit: bytes
    transfer_id: int | None


def insert_records(connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """New request records (with their reserved ids and stored responses), in one go
    (submitted: in a pipeline block, written when the block ends)."""
    _INSERT_RECORDS.submit(connection, rows)
