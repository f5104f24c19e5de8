"""Console users for the demo world: one per role, the ewarong user bound to the first
demo e-warong (``make console`` prints their logins)."""

from __future__ import annotations

from sqlalchemy import select

from console.auth import create_user, generate_password, hash_password
from switch.clock import Clock
from switch.db import audit as chain
from switch.db.engine import Database
from switch.db.tables import ConsoleUser, Ewarong
from switch.security.keyring import Keyring

DEMO_USERS = (("admin", "admin"), ("operator", "operator"), ("auditor", "auditor"),
              ("ewarong", "ewarong"))
ACTOR = "cli:console"


def seed_demo_users(db: Database, keys: Keyring, clock: Clock) -> list[tuple[str, str, str]]:
    """(username, role, password) of each demo user; one that exists gets a new
    password (the old one is never known), audited either way."""
    logins = []
    with db.transaction() as session:
        first_mid = session.scalar(select(Ewarong.mid).where(Ewarong.status == "active")
                                   .order_by(Ewarong.mid))
        for username, role in DEMO_USERS:
            password = generate_password()
            row = session.scalars(select(ConsoleUser).where(ConsoleUser.username == username)
                                  ).first()
            if row is None:
                created = create_user(session, username=username, role=role,
                                      password=password,
                                      mid=first_mid if role == "ewarong" else None)
                action, detail = "console.user_add", {"role": role,
                                                      "ewarong_id": created.ewarong_id}
            else:
                row.password_hash = hash_password(password)
                row.failed_logins, row.locked_until, row.active = 0, None, True
                action, detail = "console.user_password", {"role": row.role}
            chain.append(session, keys.audit_key, at=clock.now(), actor=ACTOR, action=action,
                         subject=username, detail=detail)
            logins.append((username, role, password))
    return logins
