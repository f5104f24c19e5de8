"""``decide(request, facts) -> Decision``: one pure function per transaction type.

Where a new transaction type plugs in (docs/ARCHITECTURE.md): a decider here, the
facts it reads in :class:`~switch.core.facts.BatchFacts` (and their read in
:mod:`switch.host.store`), the effects it returns in :mod:`switch.core.effects` (and
their write in the store).

HOST_SPEC §6: every response to 0100, 0200, 0320, 0400, 0401 and 0500 is signed but
58 to an unknown terminal, 63, and a 91 whose terminal's keys the switch cannot read
(:func:`decide_unavailable`), and carries DE 37 (§3); so an unknown transaction
(12) or a missing DE (30) on those MTIs is decided with the facts too (by
:func:`decide_invalid`, behind the gate).  Only what cannot be told apart (no DE 41,
an MTI no terminal signs) is answered at once, unsigned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from switch.core import effects
from switch.core.card import decide_card_request
from switch.core.effects import AuditEntry, Decision, RrnIssued
from switch.core.facts import BatchFacts
from switch.core.gate import Caller, gated
from switch.core.logon import decide_logon
from switch.core.replies import build_response
from switch.core.request import Request, rrn_for, unrecorded_rrn
from switch.core.reversal import decide_reversal
from switch.core.settlement import decide_batch_upload, decide_settlement
from switch.core.verify import Checks
from switch.protocol import codes
from switch.protocol.message import Message, encode
from switch.protocol.routing import TxnType, missing_des
from switch.security import mac
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
    record_id = facts.next_record_id()
    response = build_response(message, codes.NOT_PERMITTED_KPM, rrn=rrn_for(record_id))
    return Decision(encode(response.with_fields(de64=PLACEHOLDER)), caller.tak, (
        RrnIssued(record_id),
        AuditEntry(facts.now, f"terminal:{tid}", "cash_out", stan, {
            "rc": codes.NOT_PERMITTED_KPM, "reason": "cash-out is not permitted"}),
        effects.info("cash-out refused tid=%s stan=%s", tid, stan)))


@gated
def decide_invalid(request: Request, facts: BatchFacts, caller: Caller) -> Decision:
    """12 for a transaction this host does not do, 30 for a missing DE (HOST_SPEC §4),
    from an admitted terminal: signed, with an RRN."""
    message = request.message
    rc = codes.FORMAT_ERROR if request.missing else codes.INVALID_TRANSACTION
    record_id = facts.next_record_id()
    response = build_response(message, rc, rrn=rrn_for(record_id)).with_fields(
        de64=PLACEHOLDER)
    what = (f"missing DEs {list(request.missing)}" if request.missing
            else f"unsupported {message.mti}/{message.opt_text(3)}")
    return Decision(encode(response), caller.tak, (
        RrnIssued(record_id),
        effects.info("%s from %s stan=%s: rc=%s", what, message.opt_text(41),
                     message.opt_text(11), rc)))


#: The deciders that read the batch's facts, by transaction type.
DECIDERS: dict[TxnType, Decider] = {
    TxnType.LOGON: decide_logon,
    TxnType.BALANCE: decide_card_request,
    TxnType.PURCHASE: decide_card_request,
    TxnType.VOID: decide_card_request,
    TxnType.REVERSAL: decide_reversal,
    TxnType.BATCH_UPLOAD: decide_batch_upload,
    TxnType.SETTLEMENT: decide_settlement,
    TxnType.CASH_OUT: decide_cash_out,
    TxnType.UNSUPPORTED: decide_invalid,
}
#: Those that need no facts: decided as the batch is prepared, before the database.
WITHOUT_FACTS: dict[TxnType, Callable[[Request, BatchFacts | None], Decision]] = {
    TxnType.ECHO: decide_echo,
}


def decide(request: Request, facts: BatchFacts) -> Decision:
    """The decision on ``request`` given the batch's ``facts`` (read only)."""
    if request.missing:
        return decide_invalid(request, facts)
    return DECIDERS[request.txn](request, facts)


def signed_class(message: Message) -> bool:
    """Is the answer to ``message`` one the terminal expects signed and with an RRN, so
    decided with the facts even when it is 12 or 30 (HOST_SPEC §3, §6)?"""
    return message.mti in mac.MAC_REQUESTS and all(message.has(de) for de in (11, 41))


def answer_at_once(message: Message, txn: TxnType,
                   missing: Sequence[int] | None = None) -> Decision | None:
    """The decision on a request that needs no facts (an echo; 12 or 30 on a message
    that is not of a signed class), or ``None`` when it needs the batch's facts.
    ``missing``: its missing DEs, when the caller has them (:func:`missing_des`)."""
    if missing is None:
        missing = missing_des(message, txn)
    if txn in WITHOUT_FACTS and not missing:
        return WITHOUT_FACTS[txn](Request(message, b"", txn), None)
    if signed_class(message) and txn is not TxnType.LOGON:
        return None
    if txn not in DECIDERS or txn is TxnType.UNSUPPORTED:
        return Decision(encode(build_response(message, codes.INVALID_TRANSACTION)), effects=(
            effects.info("unsupported %s/%s from %s", message.mti, message.opt_text(3),
                         message.opt_text(41)),))
    if missing:
        return Decision(encode(build_response(message, codes.FORMAT_ERROR)), effects=(
            effects.info("format error: %s missing DEs %s", message.mti, missing),))
    return None


def decide_unavailable(request: Request, known_tak: bytes | None, checks: Checks,
                       draw: int) -> Decision:
    """HOST_SPEC §5: RC 91, for a request of a batch whose transaction failed before its
    commit (nothing of it was committed), decided without the facts.

    A request of a signed class (§3, §6) gets DE 37 (:func:`unrecorded_rrn` of ``draw``:
    no record id can be reserved) and is signed with ``known_tak``, the terminal's TAK
    as the host last knew it, when its own MAC verifies under that key.  Unsigned only
    when the switch cannot read the terminal's keys: none known, or the request's MAC
    fails under them (the key went stale: a logon through another switch process; or
    the request is not the terminal's), so the host is never a MAC oracle.  A terminal
    takes an unsigned 91 as no answer and keeps its reversal pending (§6).  A logon's
    0810 is never signed and takes no RRN."""
    message = request.message
    if not signed_class(message) or request.txn is TxnType.LOGON:
        return Decision(encode(build_response(message, codes.HOST_UNAVAILABLE)))
    response = build_response(message, codes.HOST_UNAVAILABLE, rrn=unrecorded_rrn(draw))
    if known_tak is None or not message.has(64) or not checks.mac_ok(known_tak, request.raw):
        return Decision(encode(response))
    return Decision(encode(response.with_fields(de64=PLACEHOLDER)), known_tak)


def format_error(request: Request, facts: BatchFacts, problem: Exception) -> Decision:
    """RC 30 for content the decision could not use (a ``ProtocolError``, raised before
    any effect): behind the gate, so an admitted terminal gets it signed with an RRN
    (HOST_SPEC §3, §6); a refused one gets the refusal."""
    message = request.message

    @gated
    def thirty(request: Request, facts: BatchFacts, caller: Caller) -> Decision:
        record_id = facts.next_record_id()
        response = build_response(message, codes.FORMAT_ERROR, rrn=rrn_for(record_id))
        return Decision(encode(response.with_fields(de64=PLACEHOLDER)), caller.tak, (
            RrnIssued(record_id),
            effects.info("format error in %s from %s stan=%s: %s", message.mti,
                         message.opt_text(41), message.opt_text(11), problem)))

    if not signed_class(message):
        return Decision(encode(build_response(message, codes.FORMAT_ERROR)), effects=(
            effects.info("format error in %s: %s", message.mti, problem),))
    return thirty(request, facts)
