"""CSRF: one random token per session, in every form, checked on every POST.

A POST whose ``csrf`` field is missing or differs from the session's is refused (403)
before anything is read or written (:class:`CsrfRefused`).  The session cookie is
``SameSite=Strict`` as well; the token is the check that does not depend on the
browser.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.datastructures import FormData
from starlette.requests import Request

FIELD = "csrf"


class CsrfRefused(Exception):
    """A POST without the session's CSRF token."""


def csrf_token(request: Request) -> str:
    """The session's token (made on first use)."""
    token = request.session.get(FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[FIELD] = token
    return token


def renew(request: Request) -> None:
    """A fresh token (at login: a token seen before it is worth nothing after)."""
    request.session[FIELD] = secrets.token_urlsafe(32)


async def checked_form(request: Request) -> FormData:
    """The POST's form, once its CSRF token matches the session's."""
    form = await request.form()
    sent = form.get(FIELD)
    expected = request.session.get(FIELD)
    if not (isinstance(sent, str) and isinstance(expected, str)
            and hmac.compare_digest(sent.encode(), expected.encode())):
        raise CsrfRefused
    return form
