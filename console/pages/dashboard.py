"""The dashboard: a placeholder (the live dashboard replaces this module)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from console.auth import require
from console.views import render


def dashboard(request: Request) -> Response:
    user = require(request, "view_dashboard")
    return render(request, "dashboard.html", user)


ROUTES: list[BaseRoute] = [Route("/", dashboard)]
