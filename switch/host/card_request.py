"""Balance inquiry (0100/310000) and purchase (0200/000000), HOST_SPEC §4, decided a
**run** at a time (group commit, issue 3).

A run is a stretch of consecutive card requests of one batch.  It is read in
three statements (its terminals, its idempotency records, its cards), decided in
order in memory (each request sees what the earlier ones did: the card's balance,
PIN count, status and ATC are carried in a :class:`CardState`), and written in a
few more (card states, the purchase postings through
:func:`switch.ledger.postings.post_purchases`, the idempotency records with their
stored responses), all in the batch's transaction under the writer lock, before
the answers leave.  The decision for each request is the same as if it had run
alone after the ones before it.

Errors: a request that raises while being decided is named by its index
(:class:`UnitFailed`); a failure while writing the run cannot be pinned on one
request (:class:`RunFailed`), so the host runs that run's requests one by one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection, bindparam, select, text, update
from sqlalchemy.orm import Session

from switch.audit import chain
from switch.authorize.facts import CardFacts, Decision, PinOutcome, TerminalFacts
from switch.authorize.rules import decide
from switch.host.checks import Checks
from switch.host.context import HostContext
from switch.host.facts import (
    CardState,
    GateTerminal,
    card_in_of,
    cards_of,
    item_facts,
    keep_catalogue,
    submit_cards,
    submit_catalogue,
    submit_terminals,
    terminals_of,
)
from switch.host.gate import Refusal, admit_terminal, answer_refusal
from switch.host.records import RequestKey, StoredRecordRow, insert_records
from switch.host.responses import approval_code_for, build_response, rrn_for, same_content
from switch.host.txlog import log_after_commit
from switch.ledger.bulk import Bulk, unnest
from switch.ledger.models import Card, RequestRecord, utcnow
from switch.ledger.postings import PurchasePosting, submit_purchases
from switch.ledger.prepared import Prepared, Reservation, in_json_list, json_list, pipeline
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine, decode_basket
from switch.protocol.message import Message, encode, mask_pan
from switch.protocol.routing import TxnType, response_mti
from switch.security import emv, mac
from switch.security.mac import PLACEHOLDER

log = logging.getLogger("bpnt.host")
TAG_91 = b"\x91\x0a"
#: EMV Book 3 Table 14: cryptogram type in the top two bits of CID (9F27).
CID_TYPE_MASK = 0xC0
CID_ARQC = 0x80


@dataclass(frozen=True)
class CardJob:
    """One card request of a run (``index``: its place in the batch)."""

    index: int
    request: Message
    raw: bytes
    txn: TxnType
    digest: str


class UnitFailed(Exception):
    """Request ``index`` raised ``cause`` while being decided; nothing of the run is written."""

    def __init__(self, index: int, cause: Exception) -> None:
        super().__init__(index, cause)
        self.index = index
        self.cause = cause


class RunFailed(Exception):
    """Writing the run failed with ``cause``; no single request can be blamed."""

    def __init__(self, indices: list[int], cause: Exception) -> None:
        super().__init__(indices, cause)
        self.indices = indices
        self.cause = cause


@dataclass
class Cryptogram:
    """What the ARQC check learnt: the verified ATC and the tags (for the ARPC)."""

    atc: int | None = None
    tags: dict[str, bytes] | None = None
    psn: str = "00"


_RUN_RECORDS = Prepared(select(
    RequestRecord.local_date, RequestRecord.kind, RequestRecord.tid, RequestRecord.stan,
    RequestRecord.request_hash, RequestRecord.response_code, RequestRecord.response_unit,
    RequestRecord.transfer_id,
).where(in_json_list("keys", RequestRecord.tid, RequestRecord.local_date,
                      RequestRecord.stan)),
    # PostgreSQL: one index probe per key, whatever the planner thinks of the list
    # (OFFSET 0 keeps the lateral subquery from being flattened into a hash join)
    postgresql=text(
        "SELECT r.local_date, r.kind, r.tid, r.stan, r.request_hash, r.response_code, "
        "r.response_unit, r.transfer_id "
        "FROM jsonb_array_elements(CAST(:keys AS jsonb)) AS k CROSS JOIN LATERAL ("
        "SELECT * FROM request_records WHERE tid = k ->> 0 AND local_date = k ->> 1 "
        "AND stan = k ->> 2 OFFSET 0) AS r"))
_CARD_STATE_PARAMS = {"card_id": "id", "new_atc": "last_atc",
                      "new_wrong_pins": "wrong_pin_count", "new_status": "status",
                      "new_used_at": "last_used_at"}
_SET_CARD_STATE = Bulk(
    Prepared(update(Card).where(Card.id == bindparam("card_id")).values(
        last_atc=bindparam("new_atc"), wrong_pin_count=bindparam("new_wrong_pins"),
        status=bindparam("new_status"), last_used_at=bindparam("new_used_at"))),
    "UPDATE cards SET last_atc = v.new_atc, wrong_pin_count = v.new_wrong_pins, "
    "status = v.new_status, last_used_at = v.new_used_at FROM "
    + unnest(Card.__table__, _CARD_STATE_PARAMS)
    + " WHERE cards.id = v.card_id",
    Card.__table__, _CARD_STATE_PARAMS, arrays=True)


@dataclass
class _Run:
    ctx: HostContext
    session: Session
    checks: Checks
    terminals: dict[str, GateTerminal]
    records: dict[tuple[str, str, str], dict[str, StoredRecord]]
    cards: dict[str, CardState]  # by PAN
    record_ids: Iterator[int]
    transfer_ids: Iterator[int]
    postings: list[PurchasePosting] = field(default_factory=list)
    new_records: list[dict[str, Any]] = field(default_factory=list)


def decide_run(ctx: HostContext, session: Session, jobs: Sequence[CardJob],
               checks: Checks) -> dict[int, bytes]:
    """The encoded (signed, or for a refusal unsigned) response of each job, by index."""
    if not jobs:
        return {}
    connection = session.connection()
    run = _read(ctx, session, connection, jobs, checks)
    answers: dict[int, bytes] = {}
    for job in jobs:
        try:
            answers[job.index] = _one(run, job)
        except AssertionError:
            raise  # our bug: the whole batch rolls back, loudly
        except Exception as exc:
            raise UnitFailed(job.index, exc) from exc
    try:
        _write(run, connection)
    except AssertionError:
        raise
    except Exception as exc:
        raise RunFailed([job.index for job in jobs], exc) from exc
    return answers


def _read(ctx: HostContext, session: Session, connection: Connection, jobs: Sequence[CardJob],
          checks: Checks) -> _Run:
    """Everything the run's decisions read, in one pipeline block (PostgreSQL: one round
    trip): terminals, idempotency records, cards, new ids, and for the transaction's
    first run the catalogue and the audit chain's head."""
    keys = ctx.keys
    wanted = json_list((job.request.text(41), job.request.text(13), job.request.text(11))
                       for job in jobs)
    purchases = sum(job.txn is TxnType.PURCHASE for job in jobs)
    with pipeline(connection):
        terminals_read = submit_terminals(connection, (job.request.text(41) for job in jobs))
        records_read = _RUN_RECORDS.submit(connection, {"keys": wanted})
        cards_read = submit_cards(connection, keys, (job.request for job in jobs))
        record_ids = Reservation(connection, "request_records", len(jobs))
        transfer_ids = Reservation(connection, "transfers", purchases)
        catalogue_read = submit_catalogue(session) if purchases else None
        head_read = chain.submit_head(session)
    keep_catalogue(session, catalogue_read)
    chain.start(session, head_read)
    records: dict[tuple[str, str, str], dict[str, StoredRecord]] = {}
    for date, kind, tid, stan, digest, rc, unit, transfer in records_read.rows():
        records.setdefault((tid, date, stan), {})[kind] = StoredRecordRow(
            kind, tid, stan, digest, rc, bytes(unit), transfer)
    return _Run(ctx, session, checks, terminals_of(keys, terminals_read), records,
                cards_of(cards_read), iter(record_ids.ids()), iter(transfer_ids.ids()))


def _one(run: _Run, job: CardJob) -> bytes:
    ctx, request, txn = run.ctx, job.request, job.txn
    caller = admit_terminal(run.terminals.get(request.text(41)), request, job.raw, run.checks)
    if isinstance(caller, Refusal):
        return answer_refusal(ctx, run.session, request, txn.value, caller)
    key = RequestKey.of(request)
    card_in = card_in_of(request)
    purchase: tuple[int, list[BasketLine]] | None = None
    if txn is TxnType.PURCHASE:
        purchase = (int(request.text(4)), decode_basket(request.text(48)))
    found = run.records.setdefault((key.tid, key.local_date, key.stan), {})
    prior = found.get("request")
    if prior is not None:
        return mac.sign(caller.tak, replay(request, prior, job.digest))
    card = run.cards.get(card_in.pan)
    cryptogram = Cryptogram()
    if "reversal" in found:
        decision = Decision(codes.DO_NOT_HONOUR, reason="reversed before it arrived")
    else:
        decision = _decide(ctx, run.session, run.checks, caller.facts, request, card_in.pan,
                           card, purchase, cryptogram)
    balance_after = _balance_after(card, decision)
    if card is not None:
        _apply_card_effects(run, card, decision, cryptogram, key)
    transfer_id = None
    if decision.rc == codes.APPROVED and decision.amount_sen > 0:
        assert card is not None, "an approved purchase has a card"
        assert card.wallet.balance_sen >= decision.amount_sen, "approved beyond the balance"
        transfer_id = next(run.transfer_ids)
        card.wallet.balance_sen -= decision.amount_sen
        run.postings.append(PurchasePosting(
            transfer_id, key.transfer_key("pur"), card.row.facts.wallet_account_id,
            caller.payable_account_id, decision.amount_sen, f"{key.tid} {request.text(42)}"))
    record_id = next(run.record_ids)
    response = build_response(
        request, decision.rc, rrn=rrn_for(record_id),
        approval_code=approval_code_for(record_id) if decision.rc == codes.APPROVED else None,
        balance_sen=balance_after,
        icc_data=_issuer_authentication(ctx, card_in.pan, cryptogram, decision.rc),
    ).with_fields(de64=PLACEHOLDER)
    unit = encode(response)
    run.new_records.append({
        "id": record_id, "tid": key.tid, "local_date": key.local_date, "stan": key.stan,
        "kind": "request", "mti": response_mti(request.mti), "processing_code": request.text(3),
        "amount_sen": decision.amount_sen, "request_hash": job.digest,
        "response_code": decision.rc, "response_unit": unit, "transfer_id": transfer_id,
        "created_at": utcnow()})
    found["request"] = StoredRecordRow("request", key.tid, key.stan, job.digest, decision.rc,
                                       unit, transfer_id)
    ctx.audit(run.session, actor=f"terminal:{key.tid}", action=txn.value,
              subject=mask_pan(card_in.pan), rc=decision.rc, amount_sen=decision.amount_sen,
              stan=key.stan, local_date=key.local_date, reason=decision.reason)
    log_after_commit(run.session, log, logging.INFO, "%s tid=%s stan=%s pan=%s amount_sen=%d "
                     "rc=%s %s", txn.value, key.tid, key.stan, mask_pan(card_in.pan),
                     decision.amount_sen, decision.rc, decision.reason)
    return mac.sign(caller.tak, unit)


def _write(run: _Run, connection: Connection) -> None:
    """Card states, then the postings (transfers), then the records that point to them,
    then the audit records so far, in one pipeline block (PostgreSQL: one round trip);
    then the wallets' conditional debits are confirmed."""
    with pipeline(connection):
        _SET_CARD_STATE.submit(connection, [
            {"card_id": card.row.facts.card_id, "new_atc": card.last_atc,
             "new_wrong_pins": card.wrong_pin_count, "new_status": card.status,
             "new_used_at": card.last_used_at}
            for card in run.cards.values() if card.changed])
        purchases = submit_purchases(connection, run.postings)
        insert_records(connection, run.new_records)
        chain.flush(run.session)
    purchases.confirm()


def _apply_card_effects(run: _Run, card: CardState, decision: Decision,
                        cryptogram: Cryptogram, key: RequestKey) -> None:
    """PIN try counter (third consecutive wrong PIN blocks, HOST_SPEC §5) and ATC."""
    if cryptogram.atc is not None:
        card.last_atc, card.changed = cryptogram.atc, True
    if decision.pin is PinOutcome.CORRECT:
        card.wrong_pin_count, card.last_used_at = 0, run.ctx.clock.now()
        card.changed = True
    elif decision.pin is PinOutcome.WRONG:
        card.wrong_pin_count += 1
        card.changed = True
    elif decision.pin is PinOutcome.BLOCKED:
        card.wrong_pin_count += 1
        card.status, card.changed = "blocked", True
        run.ctx.audit(run.session, actor="switch", action="card.block",
                      subject=card.row.pan_masked, reason="PIN tries exceeded", tid=key.tid,
                      stan=key.stan)


def _balance_after(card: CardState | None, decision: Decision) -> int | None:
    """DE 54 on approvals and on RC 51 (so the EDC can show what is left)."""
    if card is None or decision.rc not in (codes.APPROVED, codes.INSUFFICIENT_BALANCE):
        return None
    return card.wallet.balance_sen - decision.amount_sen


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
    if same_content(prior.request_hash, request, digest):
        log.info("duplicate tid=%s stan=%s: replaying rc=%s", prior.tid, prior.stan,
                 prior.response_code)
        return prior.response_unit
    log.warning("duplicate tid=%s stan=%s with different content: 94", prior.tid, prior.stan)
    return encode(build_response(request, codes.DUPLICATE_DIFFERENT).with_fields(
        de64=PLACEHOLDER))


def _decide(ctx: HostContext, session: Session, checks: Checks, terminal: TerminalFacts,
            request: Message, pan: str, card: CardState | None,
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
        terminal=terminal, mid=request.text(42), card=card.facts() if card else None,
        now=ctx.clock.now(), pin_ok=pin_ok, arqc_problem=arqc_problem,
        max_pin_tries=ctx.settings.max_pin_tries, purchase=goods,
    )


def _check_arqc(checks: Checks, request: Message, pan: str, card: CardState,
                cryptogram: Cryptogram) -> str | None:
    """HOST_SPEC §7: recompute the ARQC; an ATC not above the last one seen is a replay."""
    de55 = request.binary(55)
    try:
        tags = emv.parse_icc_data(de55)
    except emv.IccDataError:
        return "DE 55 is not valid TLV"
    psn = (request.opt_text(23) or card.row.psn)[-2:]
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


