"""``/audit``: the audit trail, newest first, and a button that verifies the chain
(``verify_audit``: it writes nothing, but it is a deliberate act, so a POST)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from console.auth import require
from console.csrf import checked_form
from console.db import reading
from console.forms import page_of
from console.views import render
from switch.db import audit as chain
from switch.db.tables import AuditRecord


def _trail(request: Request) -> dict[str, Any]:
    page = page_of(request)
    actor = request.query_params.get("actor", "").strip()[:60]
    action = request.query_params.get("action", "").strip()[:40]
    with reading(request) as session:
        query = select(AuditRecord)
        if actor:
            query = query.where(AuditRecord.actor == actor)
        if action:
            query = query.where(AuditRecord.action == action)
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        newest_first = (AuditRecord.at.desc(), AuditRecord.chain.desc(), AuditRecord.seq.desc())
        rows = list(session.scalars(query.order_by(*newest_first)
                                    .limit(page.size).offset(page.offset)))
    return {"rows": rows, "total": total, "page": page, "actor": actor, "action": action}


def audit(request: Request) -> Response:
    user = require(request, "view_audit")
    return render(request, "audit.html", user, verified=None, **_trail(request))


async def verify(request: Request) -> Response:
    await checked_form(request)
    user = require(request, "verify_audit")
    with reading(request) as session:
        report = chain.verify(session, request.app.state.keys.audit_key)
    return render(request, "audit.html", user, verified=report, **_trail(request))


ROUTES: list[BaseRoute] = [
    Route("/audit", audit),
    Route("/audit/verify", verify, methods=["POST"]),
]
