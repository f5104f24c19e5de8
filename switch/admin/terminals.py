"""Terminal status and working keys (the console's admin forms, issue 16).

A disabled terminal is refused by the host (HOST_SPEC §5); resetting its working keys
clears the TPK and TAK (and the last logon), so the EDC must log on again before it
can send a PIN or MAC the switch accepts.  Each change is audited in the caller's
transaction.  The master key (TMK) stays: it is loaded at the key ceremony.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from switch.admin.errors import InvalidInput, NotFound
from switch.clock import Clock
from switch.db import audit as chain
from switch.db.tables import Terminal
from switch.security.keyring import Keyring

TERMINAL_STATUSES = ("active", "inactive")


def _terminal(session: Session, tid: str) -> Terminal:
    terminal = session.scalars(select(Terminal).where(Terminal.tid == tid)).first()
    if terminal is None:
        raise NotFound(f"no terminal {tid}")
    return terminal


def set_terminal_status(session: Session, keys: Keyring, tid: str, status: str, *,
                        reason: str, actor: str, clock: Clock) -> Terminal:
    """Enable (``active``) or disable (``inactive``) the terminal ``tid``."""
    if status not in TERMINAL_STATUSES:
        raise InvalidInput(f"status {status!r} is not one of {', '.join(TERMINAL_STATUSES)}")
    terminal = _terminal(session, tid)
    before = terminal.status
    terminal.status = status
    chain.append(session, keys.audit_key, at=clock.now(), actor=actor,
                 action="terminal.status", subject=tid,
                 detail={"before": before, "after": status, "reason": reason})
    return terminal


def reset_terminal_keys(session: Session, keys: Keyring, tid: str, *, reason: str,
                        actor: str, clock: Clock) -> Terminal:
    """Forget the terminal's working keys: its next request needs a logon first."""
    terminal = _terminal(session, tid)
    had_keys = terminal.tpk_wrapped is not None or terminal.tak_wrapped is not None
    terminal.tpk_wrapped = None
    terminal.tak_wrapped = None
    terminal.logon_stan = None
    terminal.logon_at = None
    chain.append(session, keys.audit_key, at=clock.now(), actor=actor,
                 action="terminal.keys_reset", subject=tid,
                 detail={"had_working_keys": had_keys, "reason": reason})
    return terminal
