"""Rendering pages: the common context (user, CSRF token, the nav the role may see),
and the filters the templates use (rupiah from sen, WIB times)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import Environment, FileSystemLoader
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from console.auth import User
from console.csrf import csrf_token
from console.permissions import allowed
from switch.clock import WIB

#: (path, label, permission): the nav shows an entry only to the roles that hold it.
NAV: tuple[tuple[str, str, str], ...] = (
    ("/", "Dashboard", "view_dashboard"),
    ("/transactions", "Transactions", "view_transactions"),
    ("/kpm", "KPM & cards", "view_kpm"),
    ("/ewarongs", "E-warongs", "view_ewarongs"),
    ("/stock", "Stock", "view_stock"),
    ("/settlements", "Settlements", "view_settlements"),
    ("/complaints", "Complaints", "view_complaints"),
    ("/reports", "Reports", "view_reports"),
    ("/audit", "Audit trail", "view_audit"),
    ("/users", "Users", "manage_users"),
    ("/tokens", "API tokens", "manage_api_tokens"),
)


def rupiah(amount_sen: int | None) -> str:
    """``Rp 65.000,00`` from sen (Indonesian grouping)."""
    if amount_sen is None:
        return ""
    sign = "-" if amount_sen < 0 else ""
    whole, sen = divmod(abs(int(amount_sen)), 100)
    return f"{sign}Rp {whole:,}".replace(",", ".") + f",{sen:02d}"


def wib(at: datetime | None) -> str:
    if at is None:
        return ""
    return at.astimezone(WIB).strftime("%Y-%m-%d %H:%M:%S WIB")


def make_templates(directory: str) -> Jinja2Templates:
    environment = Environment(loader=FileSystemLoader(directory), autoescape=True)
    templates = Jinja2Templates(env=environment)
    templates.env.filters["rupiah"] = rupiah
    templates.env.filters["wib"] = wib
    return templates


def render(request: Request, template: str, user: User | None, *, status_code: int = 200,
           **context: Any) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    nav = [(path, label) for path, label, permission in NAV
           if user is not None and allowed(user.role, permission)]

    def can(permission: str) -> bool:
        return user is not None and allowed(user.role, permission)

    return templates.TemplateResponse(
        request, template,
        {"user": user, "csrf": csrf_token(request), "nav": nav, "can": can, **context},
        status_code=status_code)
