"""``/stock``: the stock rows (ewarong: its own), and the receive form
(:func:`switch.admin.stock.receive_stock`)."""

from __future__ import annotations

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from console.auth import User, require
from console.csrf import checked_form
from console.db import reading, writing
from console.forms import back, field, flash, int_field, pop_flash
from console.views import render
from switch.admin.stock import StockRow, receive_stock, stock_rows
from switch.db.tables import Ewarong, Item


def rows_for(request: Request, user: User) -> list[StockRow]:
    threshold = request.app.state.switch_settings.low_stock_units
    with reading(request) as session:
        return stock_rows(session, default_threshold=threshold,
                          mid=user.mid if user.role == "ewarong" else None)


def stock(request: Request) -> Response:
    user = require(request, "view_stock")
    rows = rows_for(request, user) if user.role != "ewarong" or user.mid else []
    with reading(request) as session:
        mids = list(session.scalars(select(Ewarong.mid).order_by(Ewarong.mid)))
        items = list(session.scalars(select(Item.code).where(Item.allowed.is_(True))
                                     .order_by(Item.code)))
    return render(request, "stock.html", user, rows=rows, mids=mids, items=items,
                  messages=pop_flash(request))


async def receive(request: Request) -> Response:
    form = await checked_form(request)
    user = require(request, "receive_stock")
    mid, item = field(form, "mid", max_len=15), field(form, "item", max_len=6)
    quantity = int_field(form, "quantity")
    reference = field(form, "reference", required=False, max_len=40) or None
    state = request.app.state
    with writing(request) as session:
        result = receive_stock(session, state.keys, mid=mid, item_code=item,
                               quantity=quantity, actor=user.actor, reference=reference,
                               clock=state.clock)
    flash(request, f"{mid} {item}: received {quantity}, now {result.quantity_after}"
          if result.added else f"{mid} {item}: reference {reference} was received already")
    return back("/stock")


ROUTES: list[BaseRoute] = [
    Route("/stock", stock),
    Route("/stock/receive", receive, methods=["POST"]),
]
