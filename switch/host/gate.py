"""Who may ask: terminal and e-warong registered and active (RC 58), logged on
and with a good MAC (RC 63).  HOST_SPEC §5-6.  Runs before any idempotency
lookup, so a forged duplicate cannot even read a stored response.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from switch.authorize.facts import TerminalFacts
from switch.authorize.rules import check_terminal
from switch.host.checks import Checks
from switch.host.context import HostContext
from switch.host.facts import GateTerminal, gate_terminal
from switch.host.keyring import Keyring
from switch.host.responses import build_response
from switch.protocol import codes
from switch.protocol.message import Message, encode
from switch.security import mac

log = logging.getLogger("bpnt.host")


@dataclass(frozen=True)
class Caller:
    """An admitted terminal, with its clear working keys for this request only."""

    facts: TerminalFacts
    tak: bytes
    #: The e-warong's payable account: where its purchases are credited.
    payable_account_id: int


@dataclass(frozen=True)
class Refusal:
    rc: str
    reason: str


def admit(session: Session, keys: Keyring, request: Message, raw: bytes,
          checks: Checks) -> Caller | Refusal:
    """The gate, reading the terminal now."""
    return admit_terminal(gate_terminal(session.connection(), keys, request.text(41)),
                          request, raw, checks)


def admit_terminal(row: GateTerminal | None, request: Message, raw: bytes,
                   checks: Checks) -> Caller | Refusal:
    """The gate, given the terminal as read in this transaction (``None``: unknown)."""
    facts = row.facts if row else None
    refused = check_terminal(facts, request.text(42))
    if refused is not None or row is None or facts is None:
        return Refusal(codes.NOT_PERMITTED_TERMINAL, refused.reason if refused else "unknown")
    if facts.tpk is None or facts.tak is None:
        return Refusal(codes.SECURITY_VIOLATION, "terminal has not logged on")
    if mac.requires_mac(request.mti):
        if not request.has(64):
            return Refusal(codes.SECURITY_VIOLATION, "MAC missing")
        if not checks.mac_ok(facts.tak, raw):
            return Refusal(codes.SECURITY_VIOLATION, "MAC does not verify")
    return Caller(facts, facts.tak, row.payable_account_id)


def answer_refusal(ctx: HostContext, session: Session, request: Message, action: str,
                   refusal: Refusal) -> bytes:
    """Audit and log a refused request; its (unsigned: the caller is not trusted) answer."""
    ctx.audit(session, actor=f"terminal:{request.text(41)}", action=f"refused.{action}",
              subject=request.text(11), rc=refusal.rc, reason=refusal.reason)
    log.warning("%s refused tid=%s stan=%s rc=%s: %s", action, request.text(41),
                request.text(11), refusal.rc, refusal.reason)
    return encode(build_response(request, refusal.rc))
