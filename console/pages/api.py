"""The JSON API (``/api/v1/``): bearer tokens (``Authorization: Bearer ...``), the same
permissions and the same e-warong scope as the pages.  Read-only."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from console.auth import require, scope_of
from console.db import reading
from console.forms import page_of
from console.pages.reports import requested_table
from console.transactions import parse_search, search_transactions
from switch.admin.complaints import list_complaints
from switch.admin.stock import stock_rows


def transactions(request: Request) -> Response:
    user = require(request, "view_transactions")
    search = parse_search(dict(request.query_params), request.app.state.keys)
    page = page_of(request)
    with reading(request) as session:
        rows, total = search_transactions(session, search, ewarong_id=scope_of(user),
                                          limit=page.size, offset=page.offset)
    return JSONResponse({"total": total, "page": page.number, "page_size": page.size,
                         "transactions": [row.as_json() for row in rows]})


def report(request: Request) -> Response:
    table, day = requested_table(request)
    return JSONResponse({"name": table.name, "title": table.title, "date": day.isoformat(),
                         "columns": list(table.columns), "notes": list(table.notes),
                         "rows": [list(row) for row in table.rows]})


def complaints(request: Request) -> Response:
    user = require(request, "view_complaints")
    with reading(request) as session:
        views = list_complaints(session, ewarong_id=scope_of(user)) \
            if user.role != "ewarong" or user.ewarong_id else []
    return JSONResponse({"complaints": [
        {"id": v.id, "status": v.status, "source": v.source, "subject": v.subject,
         "card_masked": v.card_masked, "kpm_nik_masked": v.kpm_nik_masked, "rrn": v.rrn,
         "mid": v.mid, "assignee": v.assignee, "opened_by": v.opened_by,
         "opened_at": v.opened_at.isoformat(), "updated_at": v.updated_at.isoformat()}
        for v in views]})


def stock(request: Request) -> Response:
    user = require(request, "view_stock")
    threshold = request.app.state.switch_settings.low_stock_units
    with reading(request) as session:
        rows = [] if user.role == "ewarong" and not user.mid else stock_rows(
            session, default_threshold=threshold,
            mid=user.mid if user.role == "ewarong" else None)
    return JSONResponse({"stock": [{"mid": r.mid, "item": r.item_code, "units": r.units,
                                    "threshold": r.threshold, "low": r.low} for r in rows]})


ROUTES: list[BaseRoute] = [
    Route("/api/v1/transactions", transactions),
    Route("/api/v1/reports/{name}", report),
    Route("/api/v1/complaints", complaints),
    Route("/api/v1/stock", stock),
]
