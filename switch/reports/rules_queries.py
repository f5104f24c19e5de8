"""The programme-rule reports' reads (SQLAlchemy Core, in one read-only snapshot:
:func:`snapshot`): the registry in scope, the day's alerts, purchase requests and their
baskets, deliveries, stock, receipts and the standing purchases that took stock.

**Standing purchase**: an approved purchase record (0210, DE 3 000000, RC 00) with no
standing void (``voided_by_record_id IS NULL``) and no reversal of its debit (no
transfer whose ``reverses_transfer_id`` is the record's ``transfer_id``): the goods it
paid for stayed sold.  An e-warong's record belongs to it by its terminal (DE 41 →
``terminals.ewarong_id``), as in the reconciliation report; stock moves by
``request_records.stock_ewarong_id``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, select
from sqlalchemy.sql import ColumnElement

from switch.core.batch import PURCHASE_CODE
from switch.db.engine import Database
from switch.db.tables import (
    Alert,
    Card,
    Delivery,
    Ewarong,
    ReferencePrice,
    Stock,
    StockReceipt,
)
from switch.protocol.bpnt import BasketLine, decode_basket
from switch.protocol.errors import ProtocolError
from switch.reports.recon_model import UnknownEwarong, Window
from switch.reports.recon_queries import RECORDS, TERMINALS, TRANSFERS, _utc, approved

__all__ = [
    "ALERTS", "CARDS", "DELIVERIES", "RECEIPTS", "STOCK", "RulesReader", "basket_of",
    "snapshot", "utc",
]

ALERTS = cast(Table, Alert.__table__)
CARDS = cast(Table, Card.__table__)
DELIVERIES = cast(Table, Delivery.__table__)
RECEIPTS = cast(Table, StockReceipt.__table__)
STOCK = cast(Table, Stock.__table__)
_EWARONGS = cast(Table, Ewarong.__table__)
_PRICES = cast(Table, ReferencePrice.__table__)

utc = _utc


@contextmanager
def snapshot(db: Database) -> Iterator[Connection]:
    """One read-only transaction, one snapshot for every query (PostgreSQL REPEATABLE
    READ; SQLite a deferred ``BEGIN`` in WAL mode); it never writes."""
    with db.read() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield connection


def basket_of(text: str | None) -> list[BasketLine] | None:
    """DE 48 decoded; ``None`` when absent or malformed."""
    if not text:
        return None
    try:
        return decode_basket(text)
    except ProtocolError:
        return None


class RulesReader:
    """The scope of a report (the WIB day ``window``; the e-warong ``mid`` if asked for:
    :class:`UnknownEwarong` if it is not registered) and its reads."""

    def __init__(self, connection: Connection, window: Window, mid: str | None) -> None:
        self.c = connection
        self.window = window
        self.mid = mid
        every = self.rows(select(_EWARONGS.c.id, _EWARONGS.c.mid, _EWARONGS.c.region)
                          .order_by(_EWARONGS.c.mid))
        #: every e-warong's MID (an alert may name one out of scope)
        self.all_mids: dict[int, str] = {int(r.id): r.mid for r in every}
        rows = [r for r in every if mid is None or r.mid == mid]
        if mid is not None and not rows:
            raise UnknownEwarong(f"no e-warong with MID {mid!r}")
        #: e-warong id → MID, and its region, for the e-warongs in scope
        self.mids: dict[int, str] = {int(r.id): r.mid for r in rows}
        self.regions: dict[int, str | None] = {int(r.id): r.region for r in rows}
        self.ewarong_of_tid: dict[str, int] = {
            row.tid: int(row.ewarong_id)
            for row in self.rows(select(TERMINALS.c.tid, TERMINALS.c.ewarong_id))}

    def rows(self, statement: Any) -> Sequence[Any]:
        return self.c.execute(statement).all()

    def during(self, column: Any) -> tuple[ColumnElement[bool], ...]:
        return (column >= self.window.start, column < self.window.end)

    def in_scope(self, ewarong_id: int | None) -> bool:
        return ewarong_id is not None and ewarong_id in self.mids

    def ewarong_id_of(self, tid: str | None) -> int | None:
        """The e-warong (in scope) of terminal ``tid``; ``None``: none in scope."""
        ewarong_id = self.ewarong_of_tid.get(tid or "")
        return ewarong_id if self.in_scope(ewarong_id) else None

    # -- the registry ----------------------------------------------------------------

    def masked_pans(self, card_ids: Sequence[int]) -> dict[int, str]:
        """``cards.pan_masked`` of each card id (never the PAN: it is not stored)."""
        ids = sorted(set(card_ids))
        if not ids:
            return {}
        return {int(r.id): r.pan_masked for r in self.rows(
            select(CARDS.c.id, CARDS.c.pan_masked).where(CARDS.c.id.in_(ids)))}

    def kpm_of_cards(self, card_ids: Sequence[int]) -> dict[int, int]:
        ids = sorted(set(card_ids))
        if not ids:
            return {}
        return {int(r.id): int(r.kpm_id) for r in self.rows(
            select(CARDS.c.id, CARDS.c.kpm_id).where(CARDS.c.id.in_(ids)))}

    def reference_prices(self) -> dict[tuple[str, str], int]:
        """(item code, region) → reference unit price in sen."""
        return {(r.item_code, r.region): int(r.unit_price_sen) for r in self.rows(
            select(_PRICES.c.item_code, _PRICES.c.region, _PRICES.c.unit_price_sen))}

    # -- the records ----------------------------------------------------------------

    def standing(self) -> tuple[ColumnElement[bool], ...]:
        """An approved purchase neither voided (a standing void) nor reversed."""
        r, t = RECORDS, TRANSFERS
        reversed_ = select(t.c.id).where(t.c.reverses_transfer_id == r.c.transfer_id).exists()
        return (*approved(r, PURCHASE_CODE), r.c.voided_by_record_id.is_(None), ~reversed_)

    def purchase_requests(self, *where: ColumnElement[bool]) -> Sequence[Any]:
        """The day's purchase requests (any RC) of ``where``, in record order."""
        r = RECORDS
        return self.rows(
            select(r.c.id, r.c.tid, r.c.created_at, r.c.amount_sen, r.c.response_code,
                   r.c.card_id, r.c.basket, r.c.transfer_id)
            .where(r.c.kind == "request", r.c.processing_code == PURCHASE_CODE,
                   *self.during(r.c.created_at), *where)
            .order_by(r.c.id))

    def delivered(self, record_ids: Sequence[int]) -> set[int]:
        ids = sorted(set(record_ids))
        out: set[int] = set()
        for at in range(0, len(ids), 500):
            chunk = ids[at:at + 500]
            out |= {int(i) for (i,) in self.rows(
                select(DELIVERIES.c.record_id).where(DELIVERIES.c.record_id.in_(chunk)))}
        return out

    def stock_sales(self, *where: ColumnElement[bool]) -> Iterator[tuple[int, datetime,
                                                                         str | None]]:
        """(stock e-warong id, created_at, basket) of the standing purchases that took
        stock of an e-warong in scope (all time, narrowed by ``where``)."""
        r = RECORDS
        query = (select(r.c.stock_ewarong_id, r.c.created_at, r.c.basket)
                 .where(*self.standing(), r.c.stock_ewarong_id.is_not(None), *where))
        if self.mid is not None:
            query = query.where(r.c.stock_ewarong_id.in_(list(self.mids)))
        for row in self.c.execute(query):
            yield int(row.stock_ewarong_id), utc(row.created_at), row.basket

    # -- alerts ---------------------------------------------------------------------

    def alerts(self, *where: ColumnElement[bool]) -> list[Any]:
        """The day's alerts of ``where`` in scope (an alert with no e-warong belongs to
        its terminal's), in order, each with ``ewarong`` (an id or ``None``)."""
        a = ALERTS
        out = []
        for row in self.rows(select(a).where(*self.during(a.c.created_at), *where)
                             .order_by(a.c.created_at, a.c.id)):
            ewarong_id = (int(row.ewarong_id) if row.ewarong_id is not None
                          else self.ewarong_of_tid.get(row.tid or ""))
            if self.mid is not None and not self.in_scope(ewarong_id):
                continue
            out.append((row, ewarong_id))
        return out


def card_ids_of(text: str | None) -> list[int]:
    """``alerts.card_ids`` (a JSON list of ids); anything else: none."""
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    if not isinstance(value, list):
        return []
    return [int(v) for v in value if isinstance(v, int) and not isinstance(v, bool)]
