"""Who may ask: terminal and e-warong registered and active (RC 58), logged on and with
a good MAC (RC 63).  HOST_SPEC §5-6.  Runs before any idempotency lookup, so a forged
duplicate cannot even read a stored response.  Pure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from switch.core import effects
from switch.core.effects import AuditEntry, Decision, RrnIssued
from switch.core.facts import BatchFacts, Terminal
from switch.core.replies import build_response
from switch.core.request import Request, rrn_for
from switch.core.rules import check_terminal
from switch.core.verify import Checks
from switch.protocol import codes
from switch.protocol.message import encode
from switch.security import mac


@dataclass(frozen=True)
class Caller:
    """An admitted terminal (logged on, MAC verified) and the TAK its answer is signed
    with; its sales are credited to ``terminal.payable_account_id``."""

    terminal: Terminal
    tak: bytes


@dataclass(frozen=True)
class Refusal:
    """A refused request; ``sign_with`` is the terminal's TAK when its answer can be
    signed (HOST_SPEC §6: all but 58 to an unknown terminal and 63)."""

    rc: str
    reason: str
    sign_with: bytes | None = None


def admit(terminal: Terminal | None, request: Request, checks: Checks) -> Caller | Refusal:
    """The gate, given the terminal as the batch knows it (``None``: unknown)."""
    message = request.message
    facts = terminal.facts if terminal else None
    refused = check_terminal(facts, message.opt_text(42) or "")
    if refused is not None or terminal is None or facts is None:
        return Refusal(codes.NOT_PERMITTED_TERMINAL, refused.reason if refused else "unknown",
                       facts.tak if facts else None)
    if facts.tpk is None or facts.tak is None:
        return Refusal(codes.SECURITY_VIOLATION, "terminal has not logged on")
    if mac.requires_mac(message.mti):
        if not message.has(64):
            return Refusal(codes.SECURITY_VIOLATION, "MAC missing")
        if not checks.mac_ok(facts.tak, request.raw):
            return Refusal(codes.SECURITY_VIOLATION, "MAC does not verify")
    return Caller(terminal, facts.tak)


def refuse(request: Request, facts: BatchFacts, refusal: Refusal) -> Decision:
    """A refused request: audited and logged, with an RRN of its own (HOST_SPEC §3); signed
    when the terminal's TAK is known and its MAC is not what failed (§6)."""
    message, action = request.message, request.txn.value
    tid, stan = message.text(41), message.opt_text(11) or ""
    record_id = facts.next_record_id()
    response = build_response(message, refusal.rc, rrn=rrn_for(record_id))
    if refusal.sign_with is not None:
        response = response.with_fields(de64=mac.PLACEHOLDER)
    return Decision(encode(response), refusal.sign_with, effects=(
        RrnIssued(record_id),
        AuditEntry(facts.now, f"terminal:{tid}", f"refused.{action}", stan,
                   {"rc": refusal.rc, "reason": refusal.reason, "rrn": rrn_for(record_id)}),
        effects.warning("%s refused tid=%s stan=%s rc=%s: %s", action, tid, stan,
                        refusal.rc, refusal.reason)))


GatedDecider = Callable[[Request, BatchFacts, Caller], Decision]


def gated(decider: GatedDecider) -> Callable[[Request, BatchFacts], Decision]:
    """``decider`` behind the gate: it runs only for an admitted caller (and is given
    it); a refusal is answered by :func:`refuse`."""
    def decide(request: Request, facts: BatchFacts) -> Decision:
        caller = admit(facts.terminal(request.message.text(41)), request, facts.checks)
        if isinstance(caller, Refusal):
            return refuse(request, facts, caller)
        return decider(request, facts, caller)

    try:
        decide.__name__ = decide.__qualname__ = decider.__name__
        decide.__doc__ = decider.__doc__
    except AttributeError:  # compiled (switch/native.py), a closure's name is fixed
        pass
    return decide
