"""``/kpm``: KPM (masked NIK) and their cards (masked PAN); status changes through the
audited registry (:class:`switch.admin.registry.Registry`), with a reason.  A KPM is
addressed by its id, so no NIK appears in a URL."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from console.auth import require
from console.csrf import checked_form
from console.db import reading, writing
from console.forms import back, field, flash, page_of, pop_flash
from console.views import render
from switch.admin.complaints import mask_nik
from switch.admin.errors import InvalidInput
from switch.admin.registry import CARD_STATUSES, PARTY_STATUSES, RegistrationError, Registry
from switch.db.tables import Account, Card, Kpm


def kpm_list(request: Request) -> Response:
    user = require(request, "view_kpm")
    page = page_of(request)
    query = request.query_params.get("q", "").strip()[:80]
    with reading(request) as session:
        select_kpm = select(Kpm.id, Kpm.nik, Kpm.name, Kpm.status, Kpm.zone)
        if query:
            select_kpm = select_kpm.where(or_(Kpm.nik == query, Kpm.name.ilike(f"%{query}%")))
        total = session.scalar(select(func.count()).select_from(select_kpm.subquery())) or 0
        rows = [(kpm_id, mask_nik(nik), name, status, zone) for kpm_id, nik, name, status, zone
                in session.execute(select_kpm.order_by(Kpm.id).limit(page.size)
                                   .offset(page.offset))]
    return render(request, "kpm_list.html", user, rows=rows, total=total, page=page,
                  query="" if query.isdigit() else query)


def _kpm_id(request: Request) -> int:
    raw = str(request.path_params["kpm_id"])
    if not raw.isdigit() or len(raw) > 9:
        raise HTTPException(404, "no such KPM")
    return int(raw)


def kpm_detail(request: Request) -> Response:
    user = require(request, "view_kpm")
    with reading(request) as session:
        kpm = session.get(Kpm, _kpm_id(request))
        if kpm is None:
            raise HTTPException(404, "no such KPM")
        balance = session.scalar(select(Account.balance_sen).where(
            Account.id == kpm.wallet_account_id))
        cards = session.scalars(select(Card).where(Card.kpm_id == kpm.id).order_by(Card.id)
                                ).all()
        view = {"id": kpm.id, "nik": mask_nik(kpm.nik), "name": kpm.name,
                "status": kpm.status, "zone": kpm.zone, "balance_sen": balance}
        card_views = [{"id": c.id, "pan_masked": c.pan_masked, "status": c.status,
                       "expiry": c.expiry_yymm, "wrong_pin_count": c.wrong_pin_count,
                       "last_used_at": c.last_used_at} for c in cards]
    return render(request, "kpm_detail.html", user, kpm=view, cards=card_views,
                  card_statuses=sorted(CARD_STATUSES), kpm_statuses=sorted(PARTY_STATUSES),
                  messages=pop_flash(request))


async def change_kpm_status(request: Request) -> Response:
    form = await checked_form(request)
    user = require(request, "change_kpm_status")
    kpm_id = _kpm_id(request)
    status, reason = field(form, "status", max_len=12), field(form, "reason", max_len=200)
    state = request.app.state
    with writing(request) as session:
        kpm = session.get(Kpm, kpm_id)
        if kpm is None:
            raise HTTPException(404, "no such KPM")
        try:
            Registry(session, state.keys, actor=user.actor, clock=state.clock).set_kpm_status(
                kpm.nik, status, reason=reason)
        except RegistrationError as exc:
            raise InvalidInput(str(exc)) from None
    flash(request, f"KPM {kpm_id}: status {status}")
    return back(f"/kpm/{kpm_id}")


async def change_card_status(request: Request) -> Response:
    form = await checked_form(request)
    user = require(request, "change_card_status")
    raw = str(request.path_params["card_id"])
    if not raw.isdigit() or len(raw) > 9:
        raise HTTPException(404, "no such card")
    status, reason = field(form, "status", max_len=12), field(form, "reason", max_len=200)
    state = request.app.state
    with writing(request) as session:
        try:
            card = Registry(session, state.keys, actor=user.actor, clock=state.clock
                            ).set_card_status_by_id(int(raw), status, reason=reason)
        except RegistrationError as exc:
            raise InvalidInput(str(exc)) from None
        kpm_id, masked = card.kpm_id, card.pan_masked
    flash(request, f"card {masked}: status {status}")
    return back(f"/kpm/{kpm_id}")


ROUTES: list[BaseRoute] = [
    Route("/kpm", kpm_list),
    Route("/kpm/{kpm_id}", kpm_detail),
    Route("/kpm/{kpm_id}/status", change_kpm_status, methods=["POST"]),
    Route("/cards/{card_id}/status", change_card_status, methods=["POST"]),
]
