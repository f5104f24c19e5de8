"""``/settlements``: settlements (0500), batch uploads (0320) and the differences they
showed (ewarong: its own terminals'), and the day's reconciliation report."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from console.auth import require
from console.db import reading
from console.forms import page_of
from console.views import render
from switch.db.tables import BatchUpload, Settlement, SettlementDifference, Terminal
from switch.reports.reconciliation import reconciliation, render_md

LIMIT = 200


def settlements(request: Request) -> Response:
    user = require(request, "view_settlements")
    page = page_of(request)
    scope = user.ewarong_id if user.role == "ewarong" else None
    with reading(request) as session:
        query = select(Settlement).order_by(Settlement.id.desc())
        uploads = select(BatchUpload).order_by(BatchUpload.id.desc()).limit(LIMIT)
        if scope is not None:
            tids = select(Terminal.tid).where(Terminal.ewarong_id == scope)
            query = query.where(Settlement.tid.in_(tids))
            uploads = uploads.where(BatchUpload.tid.in_(tids))
        rows = list(session.scalars(query.limit(page.size).offset(page.offset)))
        ids = [s.id for s in rows]
        differences = list(session.scalars(select(SettlementDifference).where(
            SettlementDifference.settlement_id.in_(ids)).order_by(SettlementDifference.id)))
        upload_rows = list(session.scalars(uploads))
    day_text = request.query_params.get("date", "")
    report = None
    if day_text:
        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            day = None
        if day is not None:
            report = render_md(reconciliation(request.app.state.db, day, mid=user.mid
                                              if scope is not None else None))
    return render(request, "settlements.html", user, rows=rows, differences=differences,
                  uploads=upload_rows, page=page, day=day_text, report=report)


ROUTES: list[BaseRoute] = [Route("/settlements", settlements)]
