"""``/users`` and ``/tokens`` (admin): console users and JSON API tokens.  A new
user's password and a new token are shown once, on the page that made them; only the
argon2id hash and the token's SHA-256 are kept.  Each change is audited."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from console.audit_log import record
from console.auth import create_user, generate_password, require
from console.csrf import checked_form
from console.db import reading, writing
from console.forms import back, field, flash, int_field, pop_flash
from console.permissions import ROLES
from console.tokens import create_token, revoke_token
from console.views import render
from switch.db.tables import ConsoleApiToken, ConsoleUser, Ewarong


def _users(request: Request) -> list[dict[str, Any]]:
    with reading(request) as session:
        mids = dict(session.execute(select(Ewarong.id, Ewarong.mid)).all())
        return [{"id": u.id, "username": u.username, "role": u.role,
                 "mid": mids.get(u.ewarong_id) if u.ewarong_id else None, "active": u.active,
                 "locked_until": u.locked_until, "created_at": u.created_at}
                for u in session.scalars(select(ConsoleUser).order_by(ConsoleUser.username))]


def users(request: Request) -> Response:
    user = require(request, "manage_users")
    return render(request, "users.html", user, users=_users(request), roles=ROLES,
                  messages=pop_flash(request), new_password=None)


async def add_user(request: Request) -> Response:
    form = await checked_form(request)
    user = require(request, "manage_users")
    state = request.app.state
    password = generate_password()
    with writing(request) as session:
        created = create_user(session, username=field(form, "username", max_len=60),
                              role=field(form, "role", max_len=12), password=password,
                              mid=field(form, "mid", required=False, max_len=15) or None)
        record(session, state.keys, state.clock, user, "console.user_add", created.username,
               {"role": created.role, "ewarong_id": created.ewarong_id})
        name = created.username
    return render(request, "users.html", user, users=_users(request), roles=ROLES,
                  messages=[f"user {name} created"], new_password=(name, password))


async def set_active(request: Request) -> Response:
    form = await checked_form(request)
    user = require(request, "manage_users")
    user_id = int_field(form, "user_id")
    active = field(form, "active", max_len=5) == "yes"
    state = request.app.state
    with writing(request) as session:
        row = session.get(ConsoleUser, user_id)
        if row is None:
            raise HTTPException(404, "no such user")
        if row.id == user.id and not active:
            raise HTTPException(400, "an admin does not deactivate themself")
        row.active = active
        if active:
            row.failed_logins, row.locked_until = 0, None
        record(session, state.keys, state.clock, user, "console.user_active", row.username,
               {"active": active})
        flash(request, f"user {row.username}: {'active' if active else 'deactivated'}")
    return back("/users")


def _tokens(request: Request) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    with reading(request) as session:
        names = dict(session.execute(select(ConsoleUser.id, ConsoleUser.username)).all())
        rows = [{"id": t.id, "username": names.get(t.user_id, "?"), "label": t.label,
                 "created_at": t.created_at, "revoked_at": t.revoked_at}
                for t in session.scalars(select(ConsoleApiToken).order_by(ConsoleApiToken.id))]
    return rows, sorted(names.items(), key=lambda item: item[1])


def tokens(request: Request) -> Response:
    user = require(request, "manage_api_tokens")
    rows, users_ = _tokens(request)
    return render(request, "tokens.html", user, tokens=rows, users=users_,
                  messages=pop_flash(request), new_token=None)


async def add_token(request: Request) -> Response:
    form = await checked_form(request)
    user = require(request, "manage_api_tokens")
    state = request.app.state
    with writing(request) as session:
        row, clear = create_token(session, user_id=int_field(form, "user_id"),
                                  label=field(form, "label", max_len=60))
        record(session, state.keys, state.clock, user, "console.token_add", row.label,
               {"token_id": row.id, "user_id": row.user_id})
    rows, users_ = _tokens(request)
    return render(request, "tokens.html", user, tokens=rows, users=users_,
                  messages=["token created: copy it now, it is not shown again"],
                  new_token=clear)


async def revoke(request: Request) -> Response:
    form = await checked_form(request)
    user = require(request, "manage_api_tokens")
    state = request.app.state
    with writing(request) as session:
        row = revoke_token(session, int_field(form, "token_id"), state.clock.now())
        record(session, state.keys, state.clock, user, "console.token_revoke", row.label,
               {"token_id": row.id})
    flash(request, "token revoked")
    return back("/tokens")


ROUTES: list[BaseRoute] = [
    Route("/users", users),
    Route("/users/add", add_user, methods=["POST"]),
    Route("/users/active", set_active, methods=["POST"]),
    Route("/tokens", tokens),
    Route("/tokens/add", add_token, methods=["POST"]),
    Route("/tokens/revoke", revoke, methods=["POST"]),
]
