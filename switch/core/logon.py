"""Logon (0800/920000): fresh working keys under the TMK (HOST_SPEC §6).  Pure.

Every logon rotates the TPK and TAK.  The keys come with the request (drawn from
the OS before the decision); the store wraps them under the KEK.  Logon is per
terminal (HOST_SPEC §4): the keys hold on every connection and transport until the
next logon; a logon repeated with the same DE 11 within 60 s (a retransmission) is
answered with the same keys.  DE 62 carries,
in hex: TPK under TMK (16) + TPK check value (3) + TAK under TMK (16) + TAK check
value (3) (:func:`switch.security.keys.logon_key_data`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from switch.core import effects
from switch.core.effects import AuditEntry, Decision, KeysChange
from switch.core.facts import BatchFacts
from switch.core.replies import build_response
from switch.core.request import Request
from switch.core.rules import check_terminal
from switch.protocol import codes
from switch.protocol.message import encode
from switch.security.keys import check_value, logon_key_data

#: HOST_SPEC §4: a logon with the same DE 11 this soon after is a retransmission.
REPEAT_WINDOW = timedelta(seconds=60)


def decide_logon(request: Request, facts: BatchFacts) -> Decision:
    message = request.message
    tid = message.text(41)
    terminal = facts.terminal(tid)
    refused = check_terminal(terminal.facts if terminal else None, message.text(42))
    if refused or terminal is None:
        reason = refused.reason if refused else "unknown terminal"
        return _refuse(request, facts, refused.rc if refused else codes.NOT_PERMITTED_TERMINAL,
                       reason)
    if terminal.tmk is None:  # none registered, or it does not unwrap under our KEK
        return _refuse(request, facts, codes.NOT_PERMITTED_TERMINAL, "no usable TMK")
    stan, current = message.text(11), terminal.facts
    if (current.tpk is not None and current.tak is not None and current.logon_stan == stan
            and current.logon_at is not None
            and abs(_utc(facts.now) - _utc(current.logon_at)) <= REPEAT_WINDOW):
        key_data = logon_key_data(terminal.tmk, current.tpk, current.tak)
        return Decision(encode(build_response(message, codes.APPROVED, key_data=key_data)),
                        effects=(effects.info("logon tid=%s stan=%s repeated: the same keys",
                                              tid, stan),))
    assert request.new_keys is not None, "a logon arrives with its new keys"
    tpk, tak = request.new_keys
    key_data = logon_key_data(terminal.tmk, tpk, tak)
    return Decision(encode(build_response(message, codes.APPROVED, key_data=key_data)), effects=(
        KeysChange(tid, tpk, tak, stan, facts.now),
        AuditEntry(facts.now, f"terminal:{tid}", "keys.rotate", tid, {
            "tpk_kcv": check_value(tpk).hex(), "tak_kcv": check_value(tak).hex()}),
        effects.info("logon tid=%s: working keys rotated", tid)))


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive UTC datetimes; PostgreSQL aware ones."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _refuse(request: Request, facts: BatchFacts, rc: str, reason: str) -> Decision:
    tid = request.message.text(41)
    return Decision(encode(build_response(request.message, rc)), effects=(
        AuditEntry(facts.now, f"terminal:{tid}", "refused.logon", tid, {"reason": reason}),
        effects.info("logon refused tid=%s: %s", tid, reason)))
