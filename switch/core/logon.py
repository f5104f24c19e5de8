"""Logon (0800/920000): fresh working keys under the TMK (HOST_SPEC §6).  Pure.

Every logon rotates the TPK and TAK.  The keys come with the request (drawn from
the OS before the decision); the store wraps them under the KEK.  DE 62 carries,
in hex: TPK under TMK (16) + TPK check value (3) + TAK under TMK (16) + TAK check
value (3) (:func:`switch.security.keys.logon_key_data`).
"""

from __future__ import annotations

from switch.core import effects
from switch.core.effects import AuditEntry, Decision, KeysChange
from switch.core.facts import BatchFacts
from switch.core.replies import build_response
from switch.core.request import Request
from switch.core.rules import check_terminal
from switch.protocol import codes
from switch.protocol.message import encode
from switch.security.keys import check_value, logon_key_data


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
    assert request.new_keys is not None, "a logon arrives with its new keys"
    tpk, tak = request.new_keys
    key_data = logon_key_data(terminal.tmk, tpk, tak)
    return Decision(encode(build_response(message, codes.APPROVED, key_data=key_data)), effects=(
        KeysChange(tid, tpk, tak),
        AuditEntry(facts.now, f"terminal:{tid}", "keys.rotate", tid, {
            "tpk_kcv": check_value(tpk).hex(), "tak_kcv": check_value(tak).hex()}),
        effects.info("logon tid=%s: working keys rotated", tid)))


def _refuse(request: Request, facts: BatchFacts, rc: str, reason: str) -> Decision:
    tid = request.message.text(41)
    return Decision(encode(build_response(request.message, rc)), effects=(
        AuditEntry(facts.now, f"terminal:{tid}", "refused.logon", tid, {"reason": reason}),
        effects.info("logon refused tid=%s: %s", tid, reason)))
