"""The operations console: a Starlette application over the switch's database.

``create_app`` opens the database (never migrating it: the switch owns the schema),
decodes the keys, and collects the routes of every page module in
:mod:`console.pages` (each exposes ``ROUTES``).  Refusals are handled here, once: a
:class:`~console.auth.Forbidden` writes a ``console.denied`` audit record and answers
403 (the 403 page, or JSON under ``/api/``); a missing or wrong CSRF token is a 403
with nothing read or written.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import console.pages
from console.audit_log import record_denied
from console.auth import API_PREFIX, Forbidden, NotAuthenticated, current_user
from console.csrf import CsrfRefused
from console.db import writing
from console.metrics import ConsoleMetrics, MetricsMiddleware, metrics_endpoint
from console.pages.dashboard import live_lifespan
from console.settings import ConsoleSettings
from console.throttle import AddressLimiter
from console.views import make_templates, render
from switch.admin.errors import AdminError, NotFound
from switch.clock import Clock, SystemClock
from switch.db.schema import open_database
from switch.security.keyring import Keyring
from switch.settings import Settings

HERE = Path(__file__).parent
log = logging.getLogger("bpnt.console")

#: Sent with every answer: no framing, scripts and styles from this origin only, and
#: nothing cached (pages hold masked but still personal data).
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, sending if scope["type"] == "http" else send)


def page_routes() -> list[BaseRoute]:
    """``ROUTES`` of every module in :mod:`console.pages`, in name order."""
    routes: list[BaseRoute] = []
    for module in sorted(pkgutil.iter_modules(console.pages.__path__), key=lambda m: m.name):
        loaded = importlib.import_module(f"console.pages.{module.name}")
        routes.extend(getattr(loaded, "ROUTES", []))
    return routes


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX)


def _not_authenticated(request: Request, _exc: Exception) -> Response:
    if _is_api(request):
        return JSONResponse({"error": "unauthorized"}, status_code=401,
                            headers={"www-authenticate": "Bearer"})
    return RedirectResponse("/login", status_code=303)


def _forbidden(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Forbidden)
    state = request.app.state
    with writing(request) as session:
        record_denied(session, state.keys, state.clock, exc.user, permission=exc.permission,
                      reason=exc.reason, method=request.method, path=request.url.path)
    log.warning("denied: %s", exc)
    if _is_api(request):
        return JSONResponse({"error": "forbidden", "action": exc.permission}, status_code=403)
    return render(request, "403.html", exc.user, status_code=403, action=exc.permission,
                  reason=exc.reason)


def _csrf_refused(request: Request, _exc: Exception) -> Response:
    user = current_user(request)
    if user is not None:
        state = request.app.state
        with writing(request) as session:
            record_denied(session, state.keys, state.clock, user, permission="csrf",
                          reason="missing or wrong CSRF token", method=request.method,
                          path=request.url.path)
    return render(request, "403.html", user, status_code=403, action="csrf",
                  reason="the form's CSRF token is missing or wrong (reload the page)")


def _admin_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AdminError)
    status = 404 if isinstance(exc, NotFound) else 400
    if _is_api(request):
        return JSONResponse({"error": str(exc)}, status_code=status)
    return render(request, "error.html", current_user(request), status_code=status,
                  message=str(exc))


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if _is_api(request):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    return render(request, "error.html", current_user(request), status_code=exc.status_code,
                  message=str(exc.detail))


def create_app(settings: ConsoleSettings, switch_settings: Settings, *,
               clock: Clock | None = None) -> Starlette:
    metrics = ConsoleMetrics()
    routes: list[BaseRoute] = [
        Route("/metrics", metrics_endpoint),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        *page_routes(),
    ]
    app = Starlette(
        routes=routes,
        lifespan=live_lifespan,  # the live dashboard's poller
        middleware=[
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(SecurityHeaders),
            Middleware(SessionMiddleware, secret_key=settings.secret_hex,
                       session_cookie="bpnt_console", max_age=settings.session_max_age_s,
                       same_site="strict", https_only=False),
        ],
        exception_handlers={
            NotAuthenticated: _not_authenticated,
            Forbidden: _forbidden,
            CsrfRefused: _csrf_refused,
            AdminError: _admin_error,
            HTTPException: _http_error,
        },
    )
    app.state.settings = settings
    app.state.switch_settings = switch_settings
    app.state.db = open_database(switch_settings.database_url, create=False)
    app.state.keys = Keyring.from_settings(switch_settings)
    app.state.templates = make_templates(str(HERE / "templates"))
    app.state.metrics = metrics
    app.state.clock = clock or SystemClock()
    app.state.limiter = AddressLimiter(settings.address_max_failures,
                                       settings.address_window_s)
    return app
