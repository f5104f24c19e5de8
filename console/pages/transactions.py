"""``/transactions``: search (RRN, TID, masked PAN, WIB day), and one transaction with
its basket, stock, delivery and void/reversal links; the goods hand-over form
(:func:`switch.admin.delivery.confirm_delivery`)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from console.auth import User, require, scope_of
from console.csrf import checked_form
from console.db import reading, writing
from console.forms import back, flash, page_of, pop_flash
from console.transactions import (
    ewarong_of_record,
    parse_search,
    search_transactions,
    transaction_detail,
)
from console.views import render
from switch.admin.delivery import confirm_delivery, record_id_of


def transactions(request: Request) -> Response:
    user = require(request, "view_transactions")
    search = parse_search(dict(request.query_params), request.app.state.keys)
    page = page_of(request)
    with reading(request) as session:
        rows, total = search_transactions(session, search, ewarong_id=scope_of(user),
                                          limit=page.size, offset=page.offset)
    return render(request, "transactions.html", user, rows=rows, total=total, page=page,
                  search=search)


def _record_id(request: Request) -> int:
    rrn = str(request.path_params["rrn"])
    if not (rrn.isdigit() and len(rrn) == 12):
        raise HTTPException(404, f"no transaction {rrn[:12]}")
    return record_id_of(rrn)


def _scoped(request: Request, permission: str, record_id: int) -> User:
    """The user, if they may ``permission`` on this record (ewarong: its own)."""
    require(request, permission)  # the role first: a refusal names no other data
    with reading(request) as session:
        owner = ewarong_of_record(session, record_id)
    return require(request, permission, ewarong_id=owner if owner is not None else -1)


def transaction(request: Request) -> Response:
    record_id = _record_id(request)
    user = _scoped(request, "view_transactions", record_id)
    with reading(request) as session:
        detail = transaction_detail(session, record_id)
    if detail is None:
        raise HTTPException(404, "no such transaction")
    return render(request, "transaction.html", user, detail=detail,
                  messages=pop_flash(request))


async def deliver(request: Request) -> Response:
    await checked_form(request)
    record_id = _record_id(request)
    user = _scoped(request, "confirm_delivery", record_id)
    state = request.app.state
    with writing(request) as session:
        result = confirm_delivery(session, state.keys, str(request.path_params["rrn"]),
                                  user.actor, state.clock)
    flash(request, result.summary())
    return back(f"/transactions/{result.rrn}")


ROUTES: list[BaseRoute] = [
    Route("/transactions", transactions),
    Route("/transactions/{rrn}", transaction),
    Route("/transactions/{rrn}/deliver", deliver, methods=["POST"]),
]
