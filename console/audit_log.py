"""Audit records of what is done (and refused) through the console: actor
``console:<username>``, in the caller's transaction (:func:`switch.db.audit.append`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from console.auth import User
from switch.clock import Clock
from switch.db import audit as chain
from switch.security.keyring import Keyring

DENIED = "console.denied"


def record(session: Session, keys: Keyring, clock: Clock, user: User, action: str,
           subject: str, detail: dict[str, Any] | None = None) -> None:
    chain.append(session, keys.audit_key, at=clock.now(), actor=user.actor, action=action,
                 subject=subject[:80], detail=detail)


def record_denied(session: Session, keys: Keyring, clock: Clock, user: User, *,
                  permission: str, reason: str, method: str, path: str) -> None:
    """A refused attempt: who, with which role, tried what, where."""
    record(session, keys, clock, user, DENIED, permission,
           {"user": user.username, "role": user.role, "action": permission,
            "reason": reason, "method": method, "path": path[:200]})
