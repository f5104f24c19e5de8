"""What every handler needs besides the request: keys, settings, clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from switch.audit import chain
from switch.clock import Clock
from switch.host.keyring import Keyring
from switch.settings import Settings


@dataclass(frozen=True)
class HostContext:
    keys: Keyring
    settings: Settings
    clock: Clock

    def audit(self, session: Session, *, actor: str, action: str, subject: str,
              **detail: Any) -> None:
        """Record a decision or change in the tamper-evident chain (same transaction)."""
        chain.append(session, self.keys.audit_key, at=self.clock.now(), actor=actor,
                     action=action, subject=subject, detail=detail)
