"""``/complaints``: list, detail and forms over :mod:`switch.admin.complaints`.

An ``ewarong`` user sees and opens complaints about its own e-warong only: a complaint
it opens is always about its MID (naming another is refused), and another e-warong's
complaint by URL is refused like any other forbidden act.
"""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from console.auth import User, require, scope_of
from console.csrf import checked_form
from console.db import reading, writing
from console.forms import back, field, flash, pop_flash
from console.views import render
from switch.admin.complaints import (
    SOURCES,
    STATUSES,
    ComplaintView,
    assign_complaint,
    comment_complaint,
    get_complaint,
    list_complaints,
    move_complaint,
    open_complaint,
)
from switch.db.tables import Complaint


def complaints(request: Request) -> Response:
    user = require(request, "view_complaints")
    status = request.query_params.get("status") or None
    if status not in (None, *STATUSES):
        status = None
    with reading(request) as session:
        rows = list_complaints(session, status=status, ewarong_id=scope_of(user)) \
            if user.role != "ewarong" or user.ewarong_id else []
    return render(request, "complaints.html", user, rows=rows, status=status,
                  statuses=STATUSES, sources=SOURCES, messages=pop_flash(request))


def _complaint_id(request: Request) -> int:
    raw = str(request.path_params["complaint_id"])
    if not raw.isdigit() or len(raw) > 9:
        raise HTTPException(404, "no such complaint")
    return int(raw)


def _scoped(request: Request, permission: str, complaint_id: int) -> User:
    require(request, permission)
    with reading(request) as session:
        row = session.get(Complaint, complaint_id)
        owner = row.ewarong_id if row is not None else None
    return require(request, permission, ewarong_id=owner if owner is not None else -1)


def complaint(request: Request) -> Response:
    complaint_id = _complaint_id(request)
    user = _scoped(request, "view_complaints", complaint_id)
    with reading(request) as session:
        view: ComplaintView = get_complaint(session, complaint_id)
    return render(request, "complaint.html", user, complaint=view, statuses=STATUSES,
                  messages=pop_flash(request))


def _optional(form: FormData, name: str, max_len: int, user: User) -> str | None:
    """A card or KPM the complaint is about (operators only: an e-warong names an RRN)."""
    if user.role == "ewarong":
        return None
    return field(form, name, required=False, max_len=max_len) or None


async def open_new(request: Request) -> Response:
    form = await checked_form(request)
    user = require(request, "open_complaint")
    mid = field(form, "mid", required=False, max_len=15) or None
    if user.role == "ewarong":
        if mid not in (None, user.mid):
            require(request, "open_complaint", ewarong_id=-1)  # another e-warong: refused
        mid = user.mid
    rrn = field(form, "rrn", required=False, max_len=12) or None
    if user.role == "ewarong" and rrn is not None:
        from console.transactions import ewarong_of_record

        owner = None
        if rrn.isdigit():
            with reading(request) as session:
                owner = ewarong_of_record(session, int(rrn))
        require(request, "open_complaint", ewarong_id=owner if owner is not None else -1)
    state = request.app.state
    source = "ewarong" if user.role == "ewarong" else field(form, "source", max_len=16)
    with writing(request) as session:
        view = open_complaint(session, state.keys, actor=user.actor, source=source,
                              subject=field(form, "subject", max_len=120),
                              description=field(form, "description", required=False,
                                                max_len=4000),
                              nik=_optional(form, "nik", 16, user),
                              pan=_optional(form, "pan", 19, user),
                              rrn=rrn, mid=mid, clock=state.clock)
    flash(request, f"complaint {view.id} opened")
    return back(f"/complaints/{view.id}")


async def handle(request: Request) -> Response:
    form = await checked_form(request)
    complaint_id = _complaint_id(request)
    user = _scoped(request, "handle_complaint", complaint_id)
    step = field(form, "step", max_len=10)
    state = request.app.state
    with writing(request) as session:
        if step == "assign":
            assign_complaint(session, state.keys, complaint_id,
                             assignee=field(form, "assignee", max_len=60), actor=user.actor,
                             clock=state.clock)
        elif step == "move":
            move_complaint(session, state.keys, complaint_id,
                           to_status=field(form, "status", max_len=16),
                           note=field(form, "note", required=False, max_len=4000),
                           actor=user.actor, clock=state.clock)
        elif step == "comment":
            comment_complaint(session, state.keys, complaint_id,
                              note=field(form, "note", max_len=4000), actor=user.actor,
                              clock=state.clock)
        else:
            raise HTTPException(400, f"unknown step {step[:10]!r}")
    flash(request, f"complaint {complaint_id}: {step} done")
    return back(f"/complaints/{complaint_id}")


ROUTES: list[BaseRoute] = [
    Route("/complaints", complaints),
    Route("/complaints/new", open_new, methods=["POST"]),
    Route("/complaints/{complaint_id}", complaint),
    Route("/complaints/{complaint_id}/handle", handle, methods=["POST"]),
]
