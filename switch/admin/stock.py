"""Goods into (and written off from) an e-warong's stock (FAILURES F15, docs/RULES.md).

A receipt and the stock row move in the caller's transaction, with an audit record.
The stock row changes with SQL-side arithmetic (``quantity = quantity + n``), so a
receipt never loses a sale the host commits meanwhile; an adjustment that would take
the shelf below zero is refused by the table's CHECK and raises :class:`StockError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from switch.clock import Clock, SystemClock
from switch.db import audit as chain
from switch.db.tables import Ewarong, Item, Stock, StockReceipt
from switch.security.keyring import Keyring


class StockError(ValueError):
    """A receipt or adjustment refused; nothing was written."""


@dataclass(frozen=True)
class Received:
    """The outcome of one receipt: ``added`` False when its reference was received
    already (nothing changed)."""

    added: bool
    quantity_after: int


def receive_stock(session: Session, keys: Keyring, *, mid: str, item_code: str,
                  quantity: int, actor: str, reference: str | None = None,
                  kind: str = "receive", reason: str | None = None,
                  clock: Clock | None = None) -> Received:
    """Add ``quantity`` units (``adjust``: may be negative) of ``item_code`` to the
    e-warong ``mid``; a ``reference`` already received for it adds nothing."""
    if kind not in ("receive", "adjust"):
        raise StockError(f"kind {kind!r} is not receive or adjust")
    if quantity == 0 or (kind == "receive" and quantity < 0):
        raise StockError("a receipt is a positive number of units (write-offs: adjust)")
    ewarong_id = session.scalar(select(Ewarong.id).where(Ewarong.mid == mid))
    if ewarong_id is None:
        raise StockError(f"no e-warong {mid}")
    if session.get(Item, item_code) is None:
        raise StockError(f"no item {item_code}")
    if reference is not None and session.scalar(select(StockReceipt.id).where(
            StockReceipt.ewarong_id == ewarong_id, StockReceipt.item_code == item_code,
            StockReceipt.reference == reference)) is not None:
        return Received(False, _quantity(session, ewarong_id, item_code))
    now = (clock or SystemClock()).now()
    with session.begin_nested():
        session.add(StockReceipt(ewarong_id=ewarong_id, item_code=item_code, kind=kind,
                                 quantity=quantity, reference=reference, actor=actor,
                                 created_at=now))
        session.flush()
        try:
            _add_units(session, ewarong_id, item_code, quantity)
        except IntegrityError as exc:  # the CHECK, if the shelf emptied meanwhile
            raise StockError(f"{mid} {item_code}: the shelf holds fewer than "
                             f"{-quantity} units") from exc
    after = _quantity(session, ewarong_id, item_code)
    chain.append(session, keys.audit_key, at=now, actor=actor, action=f"stock.{kind}",
                 subject=f"{mid}:{item_code}",
                 detail={"quantity": quantity, "after": after, "reference": reference,
                         "reason": reason})
    return Received(True, after)


def _add_units(session: Session, ewarong_id: int, item_code: str, quantity: int) -> None:
    """Units onto the shelf (a new row if none), or off it (the row's CHECK refuses
    below zero; an insert's row would be checked before its conflict, so a write-off
    is a plain UPDATE)."""
    if quantity < 0:
        changed = session.execute(update(Stock).where(
            Stock.ewarong_id == ewarong_id, Stock.item_code == item_code,
            Stock.quantity >= -quantity).values(quantity=Stock.quantity + quantity))
        if getattr(changed, "rowcount", 0) != 1:
            raise StockError(f"the shelf holds fewer than {-quantity} units of {item_code}")
        return
    dialect = session.get_bind().dialect.name
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = make(Stock).values(ewarong_id=ewarong_id, item_code=item_code,
                                   quantity=quantity)
    session.execute(statement.on_conflict_do_update(
        index_elements=[Stock.ewarong_id, Stock.item_code],
        set_={"quantity": Stock.quantity + quantity}))


def set_threshold(session: Session, keys: Keyring, *, mid: str, item_code: str,
                  units: int | None, actor: str, clock: Clock | None = None) -> None:
    """The low-stock threshold of one stock row (``None``: the setting's)."""
    if units is not None and units < 0:
        raise StockError("a threshold is 0 units or more")
    ewarong_id = session.scalar(select(Ewarong.id).where(Ewarong.mid == mid))
    if ewarong_id is None:
        raise StockError(f"no e-warong {mid}")
    if session.get(Stock, (ewarong_id, item_code)) is None:
        raise StockError(f"{mid} has never received {item_code}")
    session.execute(update(Stock).where(Stock.ewarong_id == ewarong_id,
                                        Stock.item_code == item_code)
                    .values(low_threshold=units))
    chain.append(session, keys.audit_key, at=(clock or SystemClock()).now(), actor=actor,
                 action="stock.threshold", subject=f"{mid}:{item_code}",
                 detail={"units": units})


def _quantity(session: Session, ewarong_id: int, item_code: str) -> int:
    found = session.scalar(select(Stock.quantity).where(
        Stock.ewarong_id == ewarong_id, Stock.item_code == item_code))
    return int(found or 0)
