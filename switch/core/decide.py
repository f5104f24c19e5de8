"""``decide(request, facts) -> Decision``: one pure function per transaction type.

Where a new transaction type plugs in (docs/ARCHITECTURE.md): a decider here, the
facts it reads in :class:`~switch.core.facts.BatchFacts` (and their read in
:mod:`switch.host.store`), the effects it returns in :mod:`switch.core.effects` (and
their write in the store).  Void, batch upload and settlement answer 12 until they
have one.
"""

from __future__ import annotations

from collections.abc import Callable

from switch.core import effects
from switch.core.card import decide_card_request
from switch.core.effects import AuditEntry, Decision
from switch.core.facts import BatchFacts
from switch.core.gate import Caller, gated
from switch.core.logon import decide_logon
from switch.core.replies import build_response
from switch.core.request import Request
from switch.core.reversal import decide_reversal
from switch.protocol import codes
from switch.protocol.message import Message, encode
from switch.protocol.routing import TxnType, missing_des
from switch.security.mac import PLACEHOLDER

Decider = Callable[[Request, BatchFacts], Decision]


def decide_echo(request: Request, facts: BatchFacts | None) -> Decision:
    """Echo test (0800/990000): 00, nothing read, nothing changed."""
    return Decision(encode(build_response(request.message, codes.APPROVED)))


@gated
def decide_cash_out(request: Request, facts: BatchFacts, caller: Caller) -> Decision:
    """HOST_SPEC §4: a BPNT balance is for food only; cash-out (DE 3 01xxxx) is 57."""
    message = request.message
    tid, stan = message.text(41), message.text(11)
    response = build_response(message, codes.NOT_PERMITTED_KPM).with_fields(de64=PLACEHOLDER)
    return Decision(encode(response), caller.tak, (
        AuditEntry(facts.now, f"terminal:{tid}", "cash_out", stan, {
            "rc": codes.NOT_PERMITTED_KPM, "reason": "cash-out is not permitted"}),
        effects.info("cash-out refused tid=%s stan=%s", tid, stan)))


#: The deciders that read the batch's facts, by transaction type.
DECIDERS: dict[TxnType, Decider] = {
    TxnType.LOGON: decide_logon,
    TxnType.BALANCE: decide_card_request,
    TxnType.PURCHASE: decide_card_request,
    TxnType.REVERSAL: decide_reversal,
    TxnType.CASH_OUT: decide_cash_out,
}
#: Those that need no facts: decided as the batch is prepared, before the database.
WITHOUT_FACTS: dict[TxnType, Callable[[Request, BatchFacts | None], Decision]] = {
    TxnType.ECHO: decide_echo,
}


def decide(request: Request, facts: BatchFacts) -> Decision:
    """The decision on ``request`` given the batch's ``facts`` (read only)."""
    return DECIDERS[request.txn](request, facts)


def answer_at_once(message: Message, txn: TxnType) -> Decision | None:
    """The decision on a request that needs no facts (an unknown transaction: 12; a
    missing DE: 30; an echo), or ``None`` when it needs the batch's facts."""
    if txn not in DECIDERS and txn not in WITHOUT_FACTS:
        return Decision(encode(build_response(message, codes.INVALID_TRANSACTION)), effects=(
            effects.info("unsupported %s/%s from %s", message.mti, message.opt_text(3),
                         message.opt_text(41)),))
    if missing := missing_des(message, txn):
        return Decision(encode(build_response(message, codes.FORMAT_ERROR)), effects=(
            effects.info("format error: %s missing DEs %s", message.mti, missing),))
    if txn in WITHOUT_FACTS:
        return WITHOUT_FACTS[txn](Request(message, b"", txn), None)
    return None


def format_error(message: Message, problem: Exception) -> Decision:
    """RC 30 for content the decision could not use (a ``ProtocolError``), unsigned."""
    return Decision(encode(build_response(message, codes.FORMAT_ERROR)), effects=(
        effects.info("format error in %s: %s", message.mti, problem),))
