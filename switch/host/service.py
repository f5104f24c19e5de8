"""HostService: one request unit in, one response unit out (HOST_SPEC §1-7).

Every financial request runs in one database transaction that holds the
idempotency record, the stored response and any transfer together (DESIGN.md:
one writer of money).  The stored response bytes are replayed verbatim on a
duplicate (HOST_SPEC §4).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from switch.authorize.facts import CardFacts, Decision, PinOutcome, TerminalFacts
from switch.authorize.rules import check_terminal, decide
from switch.clock import Clock, SystemClock
from switch.host import logon
from switch.host.facts import load_card, load_items, load_terminal, terminal_facts
from switch.host.keyring import Keyring
from switch.host.responses import (
    approval_code_for,
    build_response,
    request_hash,
    rrn_for,
)
from switch.ledger.database import Database
from switch.ledger.models import Card, RequestRecord, Transfer
from switch.ledger.postings import get_or_create_account, post_transfer, reverse_transfer
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine, card_data, decode_basket
from switch.protocol.errors import FramingError, ProtocolError
from switch.protocol.message import Message, encode, mask_pan
from switch.protocol.routing import TxnType, classify, missing_des, response_mti
from switch.protocol.unit import TPDU_LEN, Tpdu, decode_unit
from switch.security import emv
from switch.security.pin import verify_pin_block
from switch.settings import Settings

log = logging.getLogger("bpnt.host")

_NOT_YET_SUPPORTED = frozenset({TxnType.VOID, TxnType.BATCH_UPLOAD, TxnType.SETTLEMENT})


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


class HostService:
    """Decides and posts; called from one writer thread (DESIGN.md)."""

    def __init__(self, db: Database, settings: Settings, clock: Clock | None = None) -> None:
        self.db = db
        self.settings = settings
        self.keys = Keyring.from_settings(settings)
        self.clock = clock or SystemClock()

    # -- units ------------------------------------------------------------------

    def process_unit(self, data: bytes) -> bytes | None:
        """A response unit, or ``None`` when the connection must be closed."""
        try:
            unit = decode_unit(data)
        except FramingError as exc:
            log.warning("closing: unusable unit: %s", exc)
            return None
        except ProtocolError as exc:
            return self._format_error(data, exc)
        return unit.tpdu.reply().to_bytes() + self.process_message(unit.message)

    def _format_error(self, data: bytes, exc: ProtocolError) -> bytes | None:
        """RC 30 when the MTI can be read, else close (HOST_SPEC §1; DESIGN.md errors)."""
        mti = data[TPDU_LEN : TPDU_LEN + 2].hex()
        if len(mti) != 4 or not mti.isdigit() or mti[2] == "9":
            log.warning("closing: undecodable request: %s", exc)
            return None
        log.info("format error in %s: %s", mti, exc)
        tpdu = Tpdu.from_bytes(data).reply()
        return tpdu.to_bytes() + encode(Message(response_mti(mti), {39: codes.FORMAT_ERROR}))

    # -- messages ---------------------------------------------------------------

    def process_message(self, request: Message) -> bytes:
        """The encoded response message for a decoded request."""
        txn = classify(request)
        if txn is TxnType.UNSUPPORTED or txn in _NOT_YET_SUPPORTED:
            log.info("unsupported %s/%s from %s", request.mti, request.opt_text(3),
                     request.opt_text(41))
            return encode(build_response(request, codes.INVALID_TRANSACTION))
        if missing := missing_des(request, txn):
            log.info("format error: %s missing DEs %s", request.mti, missing)
            return encode(build_response(request, codes.FORMAT_ERROR))
        try:
            return self._dispatch(request, txn)
        except ProtocolError as exc:
            log.info("format error in %s: %s", request.mti, exc)
            return encode(build_response(request, codes.FORMAT_ERROR))
        except OperationalError as exc:
            # The transaction rolled back whole: nothing moved.  HOST_SPEC §5: RC 91.
            log.error("ledger unavailable for %s: %s", request.mti, type(exc).__name__)
            return encode(build_response(request, codes.HOST_UNAVAILABLE))

    def _dispatch(self, request: Message, txn: TxnType) -> bytes:
        if txn is TxnType.ECHO:
            return encode(build_response(request, codes.APPROVED))
        if txn is TxnType.CASH_OUT:
            return encode(build_response(request, codes.NOT_PERMITTED_KPM))
        if txn is TxnType.LOGON:
            with self.db.transaction() as session:
                return encode(logon.handle_logon(session, self.keys, request))
        if txn is TxnType.REVERSAL:
            return self._reversal(request)
        return self._card_request(request, txn)

    # -- balance inquiry and purchase ---------------------------------------------

    def _card_request(self, request: Message, txn: TxnType) -> bytes:
        key = RequestKey.of(request)
        digest = request_hash(request)
        card_in = card_data(request.opt_text(2), request.opt_text(14), request.opt_text(35))
        purchase: tuple[int, list[BasketLine]] | None = None
        if txn is TxnType.PURCHASE:
            purchase = (int(request.text(4)), decode_basket(request.text(48)))
        with self.db.transaction() as session:
            prior = _find_record(session, key, "request")
            if prior is not None:
                return self._replay(request, prior, digest)
            card_row = load_card(session, self.keys, card_in.pan)
            if _find_record(session, key, "reversal") is not None:
                decision = Decision(codes.DO_NOT_HONOUR, reason="reversed before it arrived")
            else:
                decision = self._decide(session, request, card_in.pan, card_row, purchase)
            card = card_row[0] if card_row else None
            if card is not None:
                _apply_pin_outcome(card, decision.pin)
            transfer = None
            if decision.rc == codes.APPROVED and decision.amount_sen > 0:
                transfer = self._post_purchase(session, request, key, card_row, decision)
            record = RequestRecord(
                tid=key.tid, local_date=key.local_date, stan=key.stan, kind="request",
                mti=response_mti(request.mti), processing_code=request.text(3),
                amount_sen=decision.amount_sen, request_hash=digest,
                response_code=decision.rc, response_unit=b"",
                transfer_id=transfer.id if transfer else None,
            )
            session.add(record)
            session.flush()
            balance = _balance_after(card_row, decision)
            response = build_response(
                request, decision.rc, rrn=rrn_for(record.id),
                approval_code=approval_code_for(record.id) if decision.rc == codes.APPROVED
                else None,
                balance_sen=balance,
            )
            record.response_unit = encode(response)
            log.info(
                "%s tid=%s stan=%s pan=%s amount_sen=%d rc=%s %s", txn.value, key.tid,
                key.stan, mask_pan(card_in.pan), decision.amount_sen, decision.rc,
                decision.reason,
            )
            return record.response_unit

    def _decide(
        self,
        session: Session,
        request: Message,
        pan: str,
        card_row: tuple[Card, CardFacts] | None,
        purchase: tuple[int, list[BasketLine]] | None,
    ) -> Decision:
        terminal_row = load_terminal(session, self.keys, request.text(41))
        terminal = terminal_facts(self.keys, *terminal_row) if terminal_row else None
        pin_block = request.binary(52)
        psn = request.opt_text(23)

        def pin_ok(term: TerminalFacts, card: CardFacts) -> bool:
            assert term.tpk is not None
            return verify_pin_block(term.tpk, self.keys.pvk, pin_block, pan, card.pin_offset)

        def arqc_ok(card: CardFacts) -> bool:
            if not request.has(55):
                return True  # magstripe (DE 22 021/801): no cryptogram to check
            assert card_row is not None
            try:
                tags = emv.parse_icc_data(request.binary(55))
            except emv.IccDataError:
                return False
            card_psn = (psn or card_row[0].psn)[-2:]
            return emv.verify_arqc(self.keys.imk_ac, pan, card_psn, tags)

        goods = None
        if purchase is not None:
            amount_sen, basket = purchase
            items = load_items(session, (line.item_code for line in basket))
            goods = (amount_sen, basket, items)
        return decide(
            terminal=terminal, mid=request.text(42), card=card_row[1] if card_row else None,
            now=self.clock.now(), pin_ok=pin_ok, arqc_ok=arqc_ok,
            max_pin_tries=self.settings.max_pin_tries, purchase=goods,
        )

    def _post_purchase(
        self,
        session: Session,
        request: Message,
        key: RequestKey,
        card_row: tuple[Card, CardFacts] | None,
        decision: Decision,
    ) -> Transfer:
        assert card_row is not None, "an approved purchase has a card"
        payable = get_or_create_account(session, "ewarong_payable", request.text(42))
        return post_transfer(
            session,
            idempotency_key=key.transfer_key("pur"),
            kind="purchase",
            debit_account_id=card_row[1].wallet_account_id,
            credit_account_id=payable.id,
            amount_sen=decision.amount_sen,
            memo=f"{key.tid} {request.text(42)}",
        )

    def _replay(self, request: Message, prior: RequestRecord, digest: str) -> bytes:
        """HOST_SPEC §4: same key, same content → same bytes; different content → 94."""
        if prior.request_hash == digest:
            log.info("duplicate tid=%s stan=%s: replaying rc=%s", prior.tid, prior.stan,
                     prior.response_code)
            return prior.response_unit
        log.warning("duplicate tid=%s stan=%s with different content: 94", prior.tid, prior.stan)
        return encode(build_response(request, codes.DUPLICATE_DIFFERENT))

    # -- reversal -------------------------------------------------------------------

    def _reversal(self, request: Message) -> bytes:
        """HOST_SPEC §4: restore at most once; an unknown original is remembered."""
        key = RequestKey.of(request)
        digest = request_hash(request)
        with self.db.transaction() as session:
            row = load_terminal(session, self.keys, key.tid)
            refused = check_terminal(terminal_facts(self.keys, *row) if row else None,
                                     request.text(42))
            if refused:
                return encode(build_response(request, refused.rc))
            prior = _find_record(session, key, "reversal")
            if prior is not None:
                return self._replay(request, prior, digest)
            original = _find_record(session, key, "request")
            restored = None
            if original is not None and original.transfer_id is not None:
                purchase = session.get(Transfer, original.transfer_id)
                assert purchase is not None, "record points to a missing transfer"
                restored = reverse_transfer(
                    session, purchase, idempotency_key=key.transfer_key("rev")
                )
            record = RequestRecord(
                tid=key.tid, local_date=key.local_date, stan=key.stan, kind="reversal",
                mti="0410", processing_code=request.text(3),
                amount_sen=restored.amount_sen if restored else 0, request_hash=digest,
                response_code=codes.APPROVED, response_unit=b"",
                transfer_id=restored.id if restored else None,
            )
            session.add(record)
            session.flush()
            record.response_unit = encode(
                build_response(request, codes.APPROVED, rrn=rrn_for(record.id))
            )
            log.info("reversal tid=%s stan=%s restored_sen=%d original=%s", key.tid, key.stan,
                     record.amount_sen, "known" if original else "unknown")
            return record.response_unit


def _find_record(session: Session, key: RequestKey, kind: str) -> RequestRecord | None:
    return session.scalars(
        select(RequestRecord).where(
            RequestRecord.tid == key.tid,
            RequestRecord.local_date == key.local_date,
            RequestRecord.stan == key.stan,
            RequestRecord.kind == kind,
        )
    ).first()


def _apply_pin_outcome(card: Card, outcome: PinOutcome) -> None:
    """PIN try counter (HOST_SPEC §5: the third consecutive wrong PIN blocks the card)."""
    if outcome is PinOutcome.CORRECT:
        card.wrong_pin_count = 0
    elif outcome is PinOutcome.WRONG:
        card.wrong_pin_count += 1
    elif outcome is PinOutcome.BLOCKED:
        card.wrong_pin_count += 1
        card.status = "blocked"


def _balance_after(card_row: tuple[Card, CardFacts] | None, decision: Decision) -> int | None:
    """DE 54 on approvals and on RC 51 (so the EDC can show what is left)."""
    if card_row is None or decision.rc not in (codes.APPROVED, codes.INSUFFICIENT_BALANCE):
        return None
    return card_row[1].balance_sen - decision.amount_sen


