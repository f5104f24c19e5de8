"""Console users, sessions and the one permission check (:func:`require`).

Passwords are argon2id hashes (argon2-cffi's defaults: RFC 9106's second recommended
profile, t=3, m=64 MiB, p=4); a clear password is never stored or logged.  A session
cookie (Starlette's ``SessionMiddleware``, signed with ``secret_hex``) holds only the
user's id and the CSRF token; the user is read again on every request, so a
deactivated user is out at once.  The JSON API (``/api/``) takes a bearer token
instead (:mod:`console.tokens`), with the same roles.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request

from console.permissions import PERMISSIONS, ROLES
from switch.admin.errors import InvalidInput
from switch.db.tables import ConsoleUser, Ewarong

HASHER = PasswordHasher()
#: A hash of nothing anybody knows: verified against when the user does not exist, so
#: an unknown name takes as long as a wrong password.
_DUMMY_HASH = HASHER.hash(secrets.token_hex(16))
API_PREFIX = "/api/"


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str
    #: The e-warong of an ``ewarong`` user (None for the other roles).
    ewarong_id: int | None
    mid: str | None

    @property
    def actor(self) -> str:
        """The audit trail's name for what this user does."""
        return f"console:{self.username}"


class NotAuthenticated(Exception):
    """No session (HTML: to the login page) or no valid token (API: 401)."""


class Forbidden(Exception):
    """The user may not do this: a 403 and a ``console.denied`` audit record."""

    def __init__(self, user: User, permission: str, reason: str) -> None:
        super().__init__(f"{user.username} ({user.role}) may not {permission}: {reason}")
        self.user = user
        self.permission = permission
        self.reason = reason


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def password_matches(password_hash: str | None, password: str) -> bool:
    try:
        return HASHER.verify(password_hash or _DUMMY_HASH, password) and \
            password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def create_user(session: Session, *, username: str, role: str, password: str,
                mid: str | None = None) -> ConsoleUser:
    """A new console user (the caller audits it); ``ewarong`` users need ``mid``."""
    username = username.strip()
    if not username or len(username) > 60 or not username.replace("-", "").replace(
            "_", "").replace(".", "").isalnum():
        raise InvalidInput("a username is 1-60 letters, digits, '-', '_' or '.'")
    if role not in ROLES:
        raise InvalidInput(f"role {role!r} is not one of {', '.join(ROLES)}")
    if len(password) < 10:
        raise InvalidInput("a password has at least 10 characters")
    ewarong_id = None
    if role == "ewarong":
        if not mid:
            raise InvalidInput("an ewarong user needs the MID of its e-warong")
        ewarong_id = session.scalar(select(Ewarong.id).where(Ewarong.mid == mid))
        if ewarong_id is None:
            raise InvalidInput(f"no e-warong {mid}")
    elif mid:
        raise InvalidInput("only ewarong users are bound to an e-warong")
    if session.scalar(select(ConsoleUser.id).where(ConsoleUser.username == username)):
        raise InvalidInput(f"user {username} exists already")
    user = ConsoleUser(username=username, role=role, password_hash=hash_password(password),
                       ewarong_id=ewarong_id)
    session.add(user)
    session.flush()
    return user


def user_of(session: Session, row: ConsoleUser) -> User:
    mid = session.scalar(select(Ewarong.mid).where(Ewarong.id == row.ewarong_id)) \
        if row.ewarong_id is not None else None
    return User(row.id, row.username, row.role, row.ewarong_id, mid)


def load_user(session: Session, user_id: int) -> User | None:
    row = session.get(ConsoleUser, user_id)
    if row is None or not row.active:
        return None
    return user_of(session, row)


def current_user(request: Request) -> User | None:
    """The logged-in user (session), or for ``/api/`` the bearer token's; cached on the
    request."""
    if hasattr(request.state, "user"):
        cached: User | None = request.state.user
        return cached
    from console.db import reading
    from console.tokens import user_of_token

    user: User | None = None
    with reading(request) as session:
        if request.url.path.startswith(API_PREFIX):
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                user = user_of_token(session, token.strip())
        else:
            user_id = request.session.get("uid")
            if isinstance(user_id, int):
                user = load_user(session, user_id)
    request.state.user = user
    return user


def require(request: Request, permission: str, *, ewarong_id: int | None = None) -> User:
    """The current user if their role holds ``permission`` (and, for an ``ewarong``
    user, ``ewarong_id`` is theirs when given); else :class:`Forbidden`."""
    assert permission in PERMISSIONS, permission
    user = current_user(request)
    if user is None:
        raise NotAuthenticated
    if user.role not in PERMISSIONS[permission]:
        raise Forbidden(user, permission, f"role {user.role}")
    if user.role == "ewarong" and ewarong_id is not None and ewarong_id != user.ewarong_id:
        raise Forbidden(user, permission, "another e-warong's data")
    return user


def scope_of(user: User) -> int | None:
    """The e-warong a user's lists are limited to (None: all)."""
    return user.ewarong_id if user.role == "ewarong" else None
