"""HostService: one request unit in, one response unit out (HOST_SPEC §1-7).

Every request that can move money runs in one database transaction holding the
gate (terminal, logon, MAC), the idempotency record, the stored response, any
transfer and the audit record together (DESIGN.md: one writer of money).  Stored
responses are replayed verbatim, re-signed with the terminal's current TAK
(HOST_SPEC §4: byte-identical except for the MAC).
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from switch.clock import Clock, SystemClock
from switch.host import logon
from switch.host.card_request import handle_card_request
from switch.host.context import HostContext
from switch.host.gate import Refusal, admit
from switch.host.keyring import Keyring
from switch.host.responses import build_response
from switch.host.reversal import handle_reversal
from switch.ledger.database import Database
from switch.protocol import codes
from switch.protocol.errors import FramingError, ProtocolError
from switch.protocol.message import Message, encode
from switch.protocol.routing import TxnType, classify, missing_des, response_mti
from switch.protocol.unit import TPDU_LEN, Tpdu, decode_unit
from switch.security import mac
from switch.settings import Settings

log = logging.getLogger("bpnt.host")

_NOT_YET_SUPPORTED = frozenset({TxnType.VOID, TxnType.BATCH_UPLOAD, TxnType.SETTLEMENT})
_GATED = frozenset({TxnType.BALANCE, TxnType.PURCHASE, TxnType.REVERSAL, TxnType.CASH_OUT})


class HostService:
    """Decides and posts; called from one writer thread (DESIGN.md)."""

    def __init__(self, db: Database, settings: Settings, clock: Clock | None = None) -> None:
        self.db = db
        self.settings = settings
        self.keys = Keyring.from_settings(settings)
        self.clock = clock or SystemClock()
        self.ctx = HostContext(self.keys, settings, self.clock)

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
        reply = unit.tpdu.reply().to_bytes()
        return reply + self.process_message(unit.message, data[TPDU_LEN:])

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

    def process_message(self, request: Message, raw: bytes) -> bytes:
        """The encoded response message for a request (``raw``: its bytes, for the MAC)."""
        txn = classify(request)
        if txn is TxnType.UNSUPPORTED or txn in _NOT_YET_SUPPORTED:
            log.info("unsupported %s/%s from %s", request.mti, request.opt_text(3),
                     request.opt_text(41))
            return encode(build_response(request, codes.INVALID_TRANSACTION))
        if missing := missing_des(request, txn):
            log.info("format error: %s missing DEs %s", request.mti, missing)
            return encode(build_response(request, codes.FORMAT_ERROR))
        try:
            return self._dispatch_retrying_a_lost_race(request, raw, txn)
        except ProtocolError as exc:
            log.info("format error in %s: %s", request.mti, exc)
            return encode(build_response(request, codes.FORMAT_ERROR))
        except OperationalError as exc:
            # The transaction rolled back whole: nothing moved.  HOST_SPEC §5: RC 91.
            log.error("ledger unavailable for %s: %s", request.mti, type(exc).__name__)
            return encode(build_response(request, codes.HOST_UNAVAILABLE))

    def _dispatch_retrying_a_lost_race(self, request: Message, raw: bytes,
                                       txn: TxnType) -> bytes:
        """``_dispatch``, run once more if its transaction lost a race with another
        switch process on the same database (HOST_SPEC §4).

        Two processes given the same request both find no idempotency record, and
        the second to write it hits the unique key on ``request_records`` (or on
        ``transfers.idempotency_key``); PostgreSQL may instead report a
        serialization failure or deadlock.  The whole transaction has rolled back,
        so nothing moved: the retry finds the winner's stored record and replays it.
        Once only (a bound, TIGER_STYLE): a second loss propagates.
        """
        try:
            return self._dispatch(request, raw, txn)
        except (IntegrityError, OperationalError) as exc:
            if not _lost_a_race(exc):
                raise
            log.info("%s tid=%s stan=%s lost a race with another writer (%s): retrying once",
                     request.mti, request.opt_text(41), request.opt_text(11),
                     type(exc.orig).__name__)
            return self._dispatch(request, raw, txn)

    def _dispatch(self, request: Message, raw: bytes, txn: TxnType) -> bytes:
        if txn is TxnType.ECHO:
            return encode(build_response(request, codes.APPROVED))
        if txn is TxnType.LOGON:
            with self.db.transaction() as session:
                return encode(logon.handle_logon(self.ctx, session, request))
        assert txn in _GATED, f"no handler for {txn}"
        with self.db.transaction() as session:
            caller = admit(session, self.keys, request, raw)
            if isinstance(caller, Refusal):
                self.ctx.audit(session, actor=f"terminal:{request.text(41)}",
                               action=f"refused.{txn.value}", subject=request.text(11),
                               rc=caller.rc, reason=caller.reason)
                log.warning("%s refused tid=%s stan=%s rc=%s: %s", txn.value,
                            request.text(41), request.text(11), caller.rc, caller.reason)
                return encode(build_response(request, caller.rc))
            if txn is TxnType.CASH_OUT:
                unsigned = self._refuse_cash_out(session, request)
            elif txn is TxnType.REVERSAL:
                unsigned = handle_reversal(self.ctx, session, request)
            else:
                unsigned = handle_card_request(self.ctx, session, caller, request, txn)
            return mac.sign(caller.tak, unsigned)

    def _refuse_cash_out(self, session: Session, request: Message) -> bytes:
        """HOST_SPEC §4: a BPNT balance is for food only; cash-out (DE 3 01xxxx) is 57."""
        self.ctx.audit(session, actor=f"terminal:{request.text(41)}", action="cash_out",
                       subject=request.text(11), rc=codes.NOT_PERMITTED_KPM,
                       reason="cash-out is not permitted")
        log.info("cash-out refused tid=%s stan=%s", request.text(41), request.text(11))
        response = build_response(request, codes.NOT_PERMITTED_KPM)
        return encode(response.with_fields(de64=mac.PLACEHOLDER))


#: PostgreSQL SQLSTATEs of a lost race: unique_violation, serialization_failure,
#: deadlock_detected.
_RACE_SQLSTATES = frozenset({"23505", "40001", "40P01"})
#: SQLite's names for a unique key hit (only reachable without BEGIN IMMEDIATE).
_RACE_SQLITE_ERRORS = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})


def _lost_a_race(exc: DBAPIError) -> bool:
    return (getattr(exc.orig, "sqlstate", None) in _RACE_SQLSTATES
            or getattr(exc.orig, "sqlite_errorname", None) in _RACE_SQLITE_ERRORS)
