"""Build response messages (HOST_SPEC §3: echo, then add 37, 39, 38, 54, 55)."""

from __future__ import annotations

import hashlib

from switch.protocol.bpnt import encode_balance
from switch.protocol.message import Message, encode
from switch.protocol.routing import response_mti

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


def request_hash(request: Message) -> str:
    """The content of a request for HOST_SPEC §4 idempotency.

    The MAC (DE 64) is left out, and a reversal repeat (0401) is the same
    content as its first transmission (0400).
    """
    mti = "0400" if request.mti == "0401" else request.mti
    canonical = Message(mti, {de: v for de, v in request.fields.items() if de != 64})
    return hashlib.sha256(encode(canonical)).hexdigest()


def rrn_for(record_id: int) -> str:
    """RRN (DE 37, an12): the idempotency record's id, unique across the host."""
    return f"{record_id:012d}"


def approval_code_for(record_id: int) -> str:
    return f"{record_id % 1_000_000:06d}"
