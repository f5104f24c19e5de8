"""The e-warong's confirmation that the goods of an approved purchase were handed over
(FAILURES F10, ``bpnt-switch delivery confirm RRN``; ``report undelivered`` lists the
debits still without one).

The RRN (DE 37) of a purchase's answer is its request record's id, 12 digits
(:func:`switch.core.request.rrn_for`).  Only a standing approved purchase can be
confirmed: not a decline, a void, an inquiry, a voided or a reversed purchase.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from switch.admin.errors import InvalidInput, NotFound, Refused
from switch.clock import Clock
from switch.core.request import rrn_for
from switch.db import audit as chain
from switch.db.tables import Delivery, RequestRecord, Transfer
from switch.security.keyring import Keyring

PURCHASE_CODE = "000000"
APPROVED = "00"
RRN_DIGITS = 12
#: ``request_records.id`` is an INTEGER: a larger RRN names no record (and PostgreSQL
#: would refuse the parameter).
MAX_RECORD_ID = 2**31 - 1


@dataclass(frozen=True)
class DeliveryResult:
    record_id: int
    rrn: str
    confirmed_at: datetime
    actor: str
    #: False: it had been confirmed already (``confirmed_at``/``actor`` are the first
    #: confirmation's) and nothing was written.
    added: bool

    def summary(self) -> str:
        if self.added:
            return f"RRN {self.rrn}: goods handed over, confirmed at " \
                   f"{self.confirmed_at.isoformat()} by {self.actor}"
        return f"RRN {self.rrn}: confirmed already at {self.confirmed_at.isoformat()} " \
               f"by {self.actor}"


def record_id_of(rrn: str) -> int:
    """The request record id an RRN names (the inverse of ``rrn_for``)."""
    if len(rrn) != RRN_DIGITS or not rrn.isdigit() or not rrn.isascii():
        raise InvalidInput(f"RRN {rrn!r} is not {RRN_DIGITS} digits (DE 37)")
    record_id = int(rrn)
    assert rrn_for(record_id) == rrn
    return record_id


def confirm_delivery(session: Session, keys: Keyring, rrn: str, actor: str,
                     clock: Clock) -> DeliveryResult:
    """Record that the goods of the purchase ``rrn`` were handed over, in the caller's
    transaction with an audit record ``delivery.confirm``; a second confirmation
    writes nothing."""
    record_id = record_id_of(rrn)
    record = session.get(RequestRecord, record_id) if record_id <= MAX_RECORD_ID else None
    if record is None:
        raise NotFound(f"no transaction with RRN {rrn}")
    if (record.kind, record.processing_code) != ("request", PURCHASE_CODE):
        raise Refused(f"refused: RRN {rrn} is not a purchase "
                      f"(kind {record.kind}, processing code {record.processing_code})")
    if record.response_code != APPROVED:
        raise Refused(f"refused: RRN {rrn} was declined (response code "
                      f"{record.response_code}): no goods to hand over")
    if record.voided_by_record_id is not None:
        raise Refused(f"refused: RRN {rrn} was voided (by RRN "
                      f"{rrn_for(record.voided_by_record_id)})")
    if record.transfer_id is None or session.scalar(select(Transfer.id).where(
            Transfer.reverses_transfer_id == record.transfer_id)) is not None:
        raise Refused(f"refused: RRN {rrn} was reversed: no money stands for it")
    existing = session.get(Delivery, record_id)
    if existing is not None:
        return DeliveryResult(record_id, rrn, existing.confirmed_at, existing.actor, False)
    now = clock.now()
    session.add(Delivery(record_id=record_id, confirmed_at=now.astimezone(UTC), actor=actor))
    session.flush()
    chain.append(session, keys.audit_key, at=now, actor=actor, action="delivery.confirm",
                 subject=f"rrn:{rrn}",
                 detail={"tid": record.tid, "amount_sen": record.amount_sen,
                         "purchased_at": record.created_at.isoformat()})
    return DeliveryResult(record_id, rrn, now, actor, True)
