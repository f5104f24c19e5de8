"""``/ewarongs``: e-warongs and their terminals (status, logon, presence); admin forms
to enable or disable a terminal and to reset its working keys
(:mod:`switch.admin.terminals`).  Key material is never shown: only whether the
terminal holds working keys."""

from __future__ import annotations

from sqlalchemy import func, select
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from console.auth import require
from console.csrf import checked_form
from console.db import reading, writing
from console.forms import back, field, flash, pop_flash
from console.views import render
from switch.admin.terminals import TERMINAL_STATUSES, reset_terminal_keys, set_terminal_status
from switch.db.tables import Ewarong, Terminal, TerminalPresence


def ewarong_list(request: Request) -> Response:
    user = require(request, "view_ewarongs")
    with reading(request) as session:
        counts = dict(session.execute(select(Terminal.ewarong_id, func.count())
                                      .group_by(Terminal.ewarong_id)).all())
        rows = [(e.mid, e.name, e.status, e.region, counts.get(e.id, 0))
                for e in session.scalars(select(Ewarong).order_by(Ewarong.mid))]
    return render(request, "ewarongs.html", user, rows=rows)


def ewarong_detail(request: Request) -> Response:
    user = require(request, "view_ewarongs")
    mid = str(request.path_params["mid"])[:15]
    with reading(request) as session:
        ewarong = session.scalars(select(Ewarong).where(Ewarong.mid == mid)).first()
        if ewarong is None:
            raise HTTPException(404, f"no e-warong {mid}")
        presence = {p.tid: p for p in session.scalars(select(TerminalPresence))}
        terminals = [{"tid": t.tid, "status": t.status, "batch": t.batch_number,
                      "logon_at": t.logon_at,
                      "has_keys": t.tpk_wrapped is not None and t.tak_wrapped is not None,
                      "presence": presence[t.tid].status if t.tid in presence else "unknown",
                      "last_seen": presence[t.tid].last_seen_at if t.tid in presence else None}
                     for t in session.scalars(select(Terminal).where(
                         Terminal.ewarong_id == ewarong.id).order_by(Terminal.tid))]
        view = {"mid": ewarong.mid, "name": ewarong.name, "status": ewarong.status,
                "region": ewarong.region, "hours": (ewarong.open_hhmm, ewarong.close_hhmm)}
    return render(request, "ewarong.html", user, ewarong=view, terminals=terminals,
                  statuses=TERMINAL_STATUSES, messages=pop_flash(request))


async def _terminal_change(request: Request, permission: str) -> Response:
    form = await checked_form(request)
    user = require(request, permission)
    tid = str(request.path_params["tid"])[:8]
    reason = field(form, "reason", max_len=200)
    state = request.app.state
    with writing(request) as session:
        if permission == "change_terminal_status":
            terminal = set_terminal_status(session, state.keys, tid,
                                           field(form, "status", max_len=12), reason=reason,
                                           actor=user.actor, clock=state.clock)
            flash(request, f"terminal {tid}: {terminal.status}")
        else:
            terminal = reset_terminal_keys(session, state.keys, tid, reason=reason,
                                           actor=user.actor, clock=state.clock)
            flash(request, f"terminal {tid}: working keys cleared, it must log on again")
        mid = session.scalar(select(Ewarong.mid).where(Ewarong.id == terminal.ewarong_id))
    return back(f"/ewarongs/{mid}")


async def terminal_status(request: Request) -> Response:
    return await _terminal_change(request, "change_terminal_status")


async def terminal_keys(request: Request) -> Response:
    return await _terminal_change(request, "reset_terminal_keys")


ROUTES: list[BaseRoute] = [
    Route("/ewarongs", ewarong_list),
    Route("/ewarongs/{mid}", ewarong_detail),
    Route("/terminals/{tid}/status", terminal_status, methods=["POST"]),
    Route("/terminals/{tid}/reset-keys", terminal_keys, methods=["POST"]),
]
