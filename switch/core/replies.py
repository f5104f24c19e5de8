"""Response messages (HOST_SPEC §3: echo, then add 37, 39, 38, 54, 55), the §4 content
hash of a request, and the replay of a stored response.  Pure."""

from __future__ import annotations

import hashlib
from datetime import datetime

from switch.core import effects
from switch.core.effects import AuditEntry, Decision, RrnIssued
from switch.core.facts import StoredRecord
from switch.core.request import Request, approval_code_for, rrn_for

__all__ = ["approval_code_for", "build_response", "replay", "request_hash", "rrn_for"]
from switch.protocol import codes
from switch.protocol.bpnt import encode_balance
from switch.protocol.message import Message, encode
from switch.protocol.routing import response_mti
from switch.security.mac import MAC_LEN, PLACEHOLDER

#: HOST_SPEC §3: the response echoes these request DEs.
ECHOED_DES = (3, 4, 11, 12, 13, 24, 41, 42)


def build_response(
    request: Message,
    rc: str,
    *,
    rrn: str | None = None,
    approval_code: str | None = None,
    balance_sen: int | None = None,
    key_data: str | None = None,
    icc_data: bytes | None = None,
) -> Message:
    fields: dict[int, str | bytes] = {
        de: request.fields[de] for de in ECHOED_DES if de in request.fields
    }
    fields[39] = rc
    if rrn is not None:
        fields[37] = rrn
    if approval_code is not None:
        fields[38] = approval_code
    if balance_sen is not None:
        fields[54] = encode_balance(balance_sen)
    if key_data is not None:
        fields[62] = key_data
    if icc_data is not None:
        fields[55] = icc_data
    return Message(response_mti(request.mti), fields)


def request_hash(request: Message, raw: bytes) -> str:
    """The content of a request for HOST_SPEC §4 idempotency, from its own bytes.

    ``raw`` is the request as received (MTI onwards, no TPDU).  The MAC (DE 64, the
    last 8 bytes when present) is left out, and a reversal repeat (0401) is the
    same content as its first transmission (0400): the MTI is normalized.  An EDC
    repeating a request sends the same bytes, so this equals the first one's hash
    without encoding the message again.
    """
    mti = b"\x04\x00" if request.mti == "0401" else raw[:2]
    body = raw[2:-MAC_LEN] if request.has(64) else raw[2:]
    return hashlib.sha256(b"bpnt-request-v2" + mti + body).hexdigest()


def legacy_request_hash(request: Message) -> str:
    """The hash records written before 2026-12 hold: the canonical re-encoding of the
    decoded request without DE 64 (0401 as 0400).  Compared only when the current
    hash does not match (see :func:`same_content`)."""
    mti = "0400" if request.mti == "0401" else request.mti
    canonical = Message(mti, {de: v for de, v in request.fields.items() if de != 64})
    return hashlib.sha256(encode(canonical)).hexdigest()


def same_content(stored_hash: str, request: Message, digest: str) -> bool:
    """HOST_SPEC §4: is ``request`` (hash ``digest``) the request stored with
    ``stored_hash``?  Either hash form of it matches."""
    return stored_hash == digest or stored_hash == legacy_request_hash(request)


def replay(request: Request, prior: StoredRecord, tak: bytes, record_id: int,
           now: datetime) -> Decision:
    """HOST_SPEC §4: same key, same content → the same bytes (signed afresh); different
    content → 94, whose RRN is the reserved ``record_id`` (the answer is not the stored
    one's; the id is used up either way).  Either is audited (``duplicate.replay`` /
    ``duplicate.refused``) for the reconciliation report's duplicates (FAILURES F2)."""
    message, rrn = request.message, rrn_for(record_id)
    detail = {"class": prior.kind, "local_date": message.opt_text(13) or "",
              "original_rrn": rrn_for(prior.record_id), "original_rc": prior.response_code}
    if same_content(prior.request_hash, message, request.digest):
        return Decision(prior.response_unit, tak, (
            RrnIssued(record_id),
            AuditEntry(now, f"terminal:{prior.tid}", "duplicate.replay", prior.stan, detail),
            effects.info("duplicate tid=%s stan=%s: replaying rc=%s", prior.tid, prior.stan,
                         prior.response_code)))
    answer = build_response(message, codes.DUPLICATE_DIFFERENT, rrn=rrn)
    return Decision(encode(answer.with_fields(de64=PLACEHOLDER)), tak, (
        RrnIssued(record_id),
        AuditEntry(now, f"terminal:{prior.tid}", "duplicate.refused", prior.stan,
                   {**detail, "rrn": rrn, "rc": codes.DUPLICATE_DIFFERENT}),
        effects.warning("duplicate tid=%s stan=%s with different content: 94", prior.tid,
                        prior.stan)))
