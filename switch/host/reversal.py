"""Reversal (0400/0401), HOST_SPEC §4: restore at most once; an unknown original is
answered 00 and remembered, so the original is declined 05 if it arrives later."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from switch.host.card_request import replay
from switch.host.context import HostContext
from switch.host.records import RequestKey, find_record
from switch.host.responses import build_response, rrn_for
from switch.ledger.models import RequestRecord, Transfer
from switch.ledger.postings import reverse_transfer
from switch.protocol import codes
from switch.protocol.message import Message, encode
from switch.security.mac import PLACEHOLDER

log = logging.getLogger("bpnt.host")


def handle_reversal(ctx: HostContext, session: Session, request: Message, digest: str) -> bytes:
    key = RequestKey.of(request)
    prior = find_record(session, key, "reversal")
    if prior is not None:
        return replay(request, prior, digest)
    original = find_record(session, key, "request")
    restored = None
    if original is not None and original.transfer_id is not None:
        purchase = session.get(Transfer, original.transfer_id)
        assert purchase is not None, "record points to a missing transfer"
        restored = reverse_transfer(session, purchase, idempotency_key=key.transfer_key("rev"))
    record = RequestRecord(
        tid=key.tid, local_date=key.local_date, stan=key.stan, kind="reversal", mti="0410",
        processing_code=request.text(3), amount_sen=restored.amount_sen if restored else 0,
        request_hash=digest, response_code=codes.APPROVED, response_unit=b"",
        transfer_id=restored.id if restored else None,
    )
    session.add(record)
    session.flush()
    response = build_response(request, codes.APPROVED, rrn=rrn_for(record.id))
    record.response_unit = encode(response.with_fields(de64=PLACEHOLDER))
    state = "unknown" if original is None else ("restored" if restored else "nothing to restore")
    ctx.audit(session, actor=f"terminal:{key.tid}", action="reversal", subject=key.stan,
              local_date=key.local_date, restored_sen=record.amount_sen, original=state)
    log.info("reversal tid=%s stan=%s restored_sen=%d original=%s", key.tid, key.stan,
             record.amount_sen, state)
    return record.response_unit
