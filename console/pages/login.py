"""Login and logout.

A wrong password counts against the account (``failed_logins``); the
``max_failed_logins``-th in a row locks it for ``lockout_minutes`` (audited
``console.locked``), and while it is locked even the right password is refused.  Every
failure also counts against the client's address (:class:`console.throttle.AddressLimiter`):
too many and the address is refused (429) before any password is checked.  The
message never says whether the user exists.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from console.audit_log import record
from console.auth import password_matches, user_of
from console.csrf import checked_form, renew
from console.db import writing
from console.forms import back, field
from console.views import render
from switch.db.tables import ConsoleUser

WRONG = "wrong username or password"


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def login_form(request: Request) -> Response:
    return render(request, "login.html", None)


def _attempt(request: Request, username: str, password: str) -> tuple[int | None, str]:
    """(the user's id, "") on success, else (None, the message)."""
    state = request.app.state
    settings = state.settings
    now = state.clock.now().astimezone(UTC)
    with writing(request) as session:
        row = session.scalars(select(ConsoleUser).where(ConsoleUser.username == username)
                              ).first()
        if row is not None and row.locked_until is not None:
            locked_until = row.locked_until.replace(tzinfo=row.locked_until.tzinfo or UTC)
            if locked_until > now:
                password_matches(None, password)  # the same time as any other refusal
                return None, "this account is locked for a while after too many failures"
        if row is None or not row.active or not password_matches(row.password_hash, password):
            state.limiter.record_failure(_address(request))
            if row is not None:
                row.failed_logins += 1
                if row.failed_logins >= settings.max_failed_logins:
                    row.locked_until = now + timedelta(minutes=settings.lockout_minutes)
                    row.failed_logins = 0
                    record(session, state.keys, state.clock, user_of(session, row),
                           "console.locked", row.username,
                           {"minutes": settings.lockout_minutes,
                            "address": _address(request)})
            return None, WRONG
        row.failed_logins = 0
        row.locked_until = None
        return row.id, ""


async def login(request: Request) -> Response:
    form = await checked_form(request)
    if request.app.state.limiter.blocked(_address(request)):
        return render(request, "login.html", None, status_code=429,
                      error="too many failed logins from this address: wait a few minutes")
    username = field(form, "username", required=False, max_len=60)
    password = field(form, "password", required=False, max_len=200)
    user_id, error = await run_in_threadpool(_attempt, request, username, password)
    if user_id is None:
        return render(request, "login.html", None, status_code=401, error=error,
                      username=username)
    request.session.clear()
    request.session["uid"] = user_id
    request.session["at"] = datetime.now(UTC).isoformat()
    renew(request)
    return back("/")


async def logout(request: Request) -> Response:
    await checked_form(request)
    request.session.clear()
    return back("/login")


ROUTES: list[BaseRoute] = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
