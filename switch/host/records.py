"""Idempotency keys and records (HOST_SPEC §4)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from switch.ledger.models import RequestRecord
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
