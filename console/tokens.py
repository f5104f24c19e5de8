"""Bearer tokens for the JSON API: shown once at creation, only their SHA-256 kept."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from console.auth import User, user_of
from switch.admin.errors import InvalidInput
from switch.db.tables import ConsoleApiToken, ConsoleUser

TOKEN_PREFIX = "bpnt_"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, *, user_id: int, label: str) -> tuple[ConsoleApiToken, str]:
    """A new token for the user: the row and the clear token (never stored)."""
    label = label.strip()
    if not label or len(label) > 60:
        raise InvalidInput("a token needs a label of 1-60 characters")
    if session.get(ConsoleUser, user_id) is None:
        raise InvalidInput(f"no user {user_id}")
    clear = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ConsoleApiToken(user_id=user_id, token_sha256=token_digest(clear), label=label)
    session.add(row)
    session.flush()
    return row, clear


def revoke_token(session: Session, token_id: int, now: datetime) -> ConsoleApiToken:
    row = session.get(ConsoleApiToken, token_id)
    if row is None:
        raise InvalidInput(f"no token {token_id}")
    if row.revoked_at is None:
        row.revoked_at = now.astimezone(UTC)
    return row


def user_of_token(session: Session, token: str) -> User | None:
    """The active user of an unrevoked token, or None."""
    row = session.execute(
        select(ConsoleUser).join(ConsoleApiToken, ConsoleApiToken.user_id == ConsoleUser.id)
        .where(ConsoleApiToken.token_sha256 == token_digest(token),
               ConsoleApiToken.revoked_at.is_(None), ConsoleUser.active.is_(True))
    ).scalar_one_or_none()
    return user_of(session, row) if row is not None else None
