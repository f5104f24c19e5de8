"""Balance inquiry (0100/310000) and purchase (0200/000000), HOST_SPEC §4.

In the batch's database transaction: idempotency lookup, decision, PIN counter,
ATC, transfer, idempotency record with the stored response, audit record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import BindParameter, bindparam, update
from sqlalchemy.orm import Session

from switch.authorize.facts import CardFacts, Decision, PinOutcome, TerminalFacts
from switch.authorize.rules import decide
from switch.host.checks import Checks
from switch.host.context import HostContext
from switch.host.facts import CardRow, card_row, item_facts
from switch.host.gate import Caller
from switch.host.records import RequestKey, find_records, insert_record, set_response
from switch.host.responses import approval_code_for, build_response, rrn_for
from switch.ledger.models import Card, utcnow
from switch.ledger.postings import post_purchase
from switch.ledger.prepared import Prepared
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine, card_data, decode_basket
from switch.protocol.message import Message, encode, mask_pan
from switch.protocol.routing import TxnType, response_mti
from switch.security import emv
from switch.security.mac import PLACEHOLDER

log = logging.getLogger("bpnt.host")
TAG_91 = b"\x91\x0a"
#: EMV Book 3 Table 14: cryptogram type in the top two bits of CID (9F27).
CID_TYPE_MASK = 0xC0
CID_ARQC = 0x80


@dataclass
class Cryptogram:
    """What the ARQC check learnt: the verified ATC and the tags (for the ARPC)."""

    atc: int | None = None
    tags: dict[str, bytes] | None = None
    psn: str = "00"


def handle_card_request(ctx: HostContext, session: Session, caller: Caller, request: Message,
                        txn: TxnType, digest: str, checks: Checks) -> bytes:
    """The encoded response (DE 64 a placeholder, signed by the caller).

    The hot path of the switch: prebuilt Core statements on the transaction's
    connection (records, card, items, card update, the purchase posting, the new
    record and its response): about ten statements, no ORM unit of work.
    """
    connection = session.connection()
    key = RequestKey.of(request)
    card_in = card_data(request.opt_text(2), request.opt_text(14), request.opt_text(35))
    purchase: tuple[int, list[BasketLine]] | None = None
    if txn is TxnType.PURCHASE:
        purchase = (int(request.text(4)), decode_basket(request.text(48)))
    records = find_records(connection, key)
    prior = records.get("request")
    if prior is not None:
        return replay(request, prior, digest)
    card = card_row(connection, ctx.keys, card_in.pan)
    cryptogram = Cryptogram()
    if "reversal" in records:
        decision = Decision(codes.DO_NOT_HONOUR, reason="reversed before it arrived")
    else:
        decision = _decide(ctx, session, checks, caller.facts, request, card_in.pan, card,
                           purchase, cryptogram)
    if card is not None:
        _apply_card_effects(ctx, session, card, decision, cryptogram, key)
    transfer_id = None
    if decision.rc == codes.APPROVED and decision.amount_sen > 0:
        assert card is not None, "an approved purchase has a card"
        transfer_id = post_purchase(
            connection, idempotency_key=key.transfer_key("pur"),
            wallet_account_id=card.facts.wallet_account_id,
            payable_account_id=caller.payable_account_id, amount_sen=decision.amount_sen,
            memo=f"{key.tid} {request.text(42)}")
    record_id = insert_record(
        connection, key, kind="request", mti=response_mti(request.mti),
        processing_code=request.text(3), amount_sen=decision.amount_sen, request_hash=digest,
        response_code=decision.rc, response_unit=b"", transfer_id=transfer_id,
        created_at=utcnow())
    response = build_response(
        request, decision.rc, rrn=rrn_for(record_id),
        approval_code=approval_code_for(record_id) if decision.rc == codes.APPROVED else None,
        balance_sen=_balance_after(card, decision),
        icc_data=_issuer_authentication(ctx, card_in.pan, cryptogram, decision.rc),
    ).with_fields(de64=PLACEHOLDER)
    unit = encode(response)
    set_response(connection, record_id, unit)
    ctx.audit(session, actor=f"terminal:{key.tid}", action=txn.value,
              subject=mask_pan(card_in.pan), rc=decision.rc, amount_sen=decision.amount_sen,
              stan=key.stan, local_date=key.local_date, reason=decision.reason)
    log.info("%s tid=%s stan=%s pan=%s amount_sen=%d rc=%s %s", txn.value, key.tid, key.stan,
             mask_pan(card_in.pan), decision.amount_sen, decision.rc, decision.reason)
    return unit


class StoredRecord(Protocol):
    """What a replay needs of an idempotency record (an ORM object or a Core row)."""

    @property
    def tid(self) -> str: ...
    @property
    def stan(self) -> str: ...
    @property
    def request_hash(self) -> str: ...
    @property
    def response_code(self) -> str: ...
    @property
    def response_unit(self) -> bytes: ...


def replay(request: Message, prior: StoredRecord, digest: str) -> bytes:
    """HOST_SPEC §4: same key, same content → same bytes; different content → 94."""
    if prior.request_hash == digest:
        log.info("duplicate tid=%s stan=%s: replaying rc=%s", prior.tid, prior.stan,
                 prior.response_code)
        return prior.response_unit
    log.warning("duplicate tid=%s stan=%s with different content: 94", prior.tid, prior.stan)
    return encode(build_response(request, codes.DUPLICATE_DIFFERENT).with_fields(
        de64=PLACEHOLDER))


def _decide(ctx: HostContext, session: Session, checks: Checks, terminal: TerminalFacts,
            request: Message, pan: str, card: CardRow | None,
            purchase: tuple[int, list[BasketLine]] | None, cryptogram: Cryptogram) -> Decision:
    pin_block = request.binary(52)

    def pin_ok(term: TerminalFacts, card: CardFacts) -> bool:
        assert term.tpk is not None
        return checks.pin_ok(term.tpk, pin_block, pan, card.pin_offset)

    def arqc_problem(_facts: CardFacts) -> str | None:
        if not request.has(55):
            return None  # magstripe (DE 22 021/801): no cryptogram to check
        assert card is not None
        return _check_arqc(checks, request, pan, card, cryptogram)

    goods = None
    if purchase is not None:
        amount_sen, basket = purchase
        goods = (amount_sen, basket, item_facts(session, (line.item_code for line in basket)))
    return decide(
        terminal=terminal, mid=request.text(42), card=card.facts if card else None,
        now=ctx.clock.now(), pin_ok=pin_ok, arqc_problem=arqc_problem,
        max_pin_tries=ctx.settings.max_pin_tries, purchase=goods,
    )


def _check_arqc(checks: Checks, request: Message, pan: str, card: CardRow,
                cryptogram: Cryptogram) -> str | None:
    """HOST_SPEC §7: recompute the ARQC; an ATC not above the last one seen is a replay."""
    de55 = request.binary(55)
    try:
        tags = emv.parse_icc_data(de55)
    except emv.IccDataError:
        return "DE 55 is not valid TLV"
    psn = (request.opt_text(23) or card.psn)[-2:]
    if not checks.arqc_ok(pan, psn, de55, tags):
        return "ARQC does not verify"
    cid = tags.get("9F27", b"")
    if len(cid) != 1 or cid[0] & CID_TYPE_MASK != CID_ARQC:
        # An AAC (card declined) or TC sent online: never authorise on it (EMV Book 3 §10.8).
        return f"cryptogram type {cid.hex() or 'missing'} is not an ARQC"
    atc = int.from_bytes(tags["9F36"], "big")
    if card.last_atc is not None and atc <= card.last_atc:
        return f"ATC {atc} replayed (last seen {card.last_atc})"
    cryptogram.atc, cryptogram.tags, cryptogram.psn = atc, tags, psn
    return None


def _issuer_authentication(ctx: HostContext, pan: str, cryptogram: Cryptogram,
                           rc: str) -> bytes | None:
    """DE 55 tag 91: ARPC (method 1) + ARC, for a cryptogram that verified."""
    if cryptogram.tags is None:
        return None
    arc = rc.encode()
    arpc = emv.compute_arpc(ctx.keys.imk_ac, pan, cryptogram.psn, cryptogram.tags, arc)
    return TAG_91 + emv.build_tag_91(arpc, arc)


_CARD_ID: BindParameter[int] = bindparam("card_id")
_CARD_UPDATES: dict[tuple[bool, PinOutcome], Prepared] = {}


def _card_update(atc: bool, pin: PinOutcome) -> Prepared | None:
    """The prebuilt UPDATE of a card's chip and PIN state (one per combination)."""
    if not atc and pin is PinOutcome.NOT_CHECKED:
        return None
    statement = _CARD_UPDATES.get((atc, pin))
    if statement is None:
        values: dict[str, Any] = {}
        if atc:
            values["last_atc"] = bindparam("new_atc")
        if pin is PinOutcome.CORRECT:
            values.update(wrong_pin_count=0, last_used_at=bindparam("now"))
        elif pin is PinOutcome.WRONG:
            values["wrong_pin_count"] = Card.wrong_pin_count + 1
        elif pin is PinOutcome.BLOCKED:
            values.update(wrong_pin_count=Card.wrong_pin_count + 1, status="blocked")
        statement = _CARD_UPDATES[(atc, pin)] = Prepared(
            update(Card).where(Card.id == _CARD_ID).values(values))
    return statement


def _apply_card_effects(ctx: HostContext, session: Session, card: CardRow, decision: Decision,
                        cryptogram: Cryptogram, key: RequestKey) -> None:
    """PIN try counter (third consecutive wrong PIN blocks, HOST_SPEC §5) and ATC."""
    statement = _card_update(cryptogram.atc is not None, decision.pin)
    if statement is None:
        return
    params: dict[str, Any] = {"card_id": card.facts.card_id}
    if cryptogram.atc is not None:
        params["new_atc"] = cryptogram.atc
    if decision.pin is PinOutcome.CORRECT:
        params["now"] = ctx.clock.now()
    statement.execute(session.connection(), params)
    if decision.pin is PinOutcome.BLOCKED:
        ctx.audit(session, actor="switch", action="card.block", subject=card.pan_masked,
                  reason="PIN tries exceeded", tid=key.tid, stan=key.stan)


def _balance_after(card: CardRow | None, decision: Decision) -> int | None:
    """DE 54 on approvals and on RC 51 (so the EDC can show what is left)."""
    if card is None or decision.rc not in (codes.APPROVED, codes.INSUFFICIENT_BALANCE):
        return None
    return card.facts.balance_sen - decision.amount_sen
