"""``/reports``: the day's reports (:mod:`console.reports`) as a printable page, and each
as CSV (``/reports/{name}.csv?date=YYYY-MM-DD``)."""

from __future__ import annotations

from datetime import date

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from console.auth import require
from console.reports import day_tables, report_names
from console.views import render
from switch.clock import WIB
from switch.reports.daily_model import ReportTable


def day_of(request: Request) -> date:
    text = request.query_params.get("date", "")
    if not text:
        return request.app.state.clock.now().astimezone(WIB).date()  # type: ignore[no-any-return]
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise HTTPException(400, "date is YYYY-MM-DD") from None


def reports(request: Request) -> Response:
    user = require(request, "view_reports")
    day = day_of(request)
    state = request.app.state
    tables = day_tables(state.db, day, state.switch_settings, mid=None)
    return render(request, "reports.html", user, day=day.isoformat(), tables=tables,
                  names=report_names(),
                  printable=request.query_params.get("print") == "1")


def requested_table(request: Request) -> tuple[ReportTable, date]:
    """The one report the path names, of the day the query asks (``download_reports``)."""
    require(request, "download_reports")
    name = str(request.path_params["name"])
    if name not in report_names():
        raise HTTPException(404, f"no report {name[:40]}")
    day = day_of(request)
    state = request.app.state
    [table] = day_tables(state.db, day, state.switch_settings, mid=None, names=[name])
    return table, day


def report_csv(request: Request) -> Response:
    table, day = requested_table(request)
    name = table.name
    filename = f"bpnt-{name}-{day.isoformat()}.csv"
    return Response(table.to_csv(), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{filename}"'})


ROUTES: list[BaseRoute] = [
    Route("/reports", reports),
    Route("/reports/{name}.csv", report_csv),
]
