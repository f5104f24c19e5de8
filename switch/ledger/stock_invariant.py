"""Stock conservation (docs/RULES.md, FAILURES F15), checked with the money invariant.

For every e-warong and item: the units on the shelf (``stock.quantity``) equal what
was received and adjusted (``stock_receipts``) less the units of its standing
purchases (approved, not reversed, no standing void) whose stock it took
(``request_records.stock_ewarong_id``); and no shelf holds fewer than zero units.
Read-only; baskets are streamed, not loaded at once.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from switch.db.tables import RequestRecord, Stock, StockReceipt, Transfer
from switch.protocol.bpnt import decode_basket
from switch.protocol.errors import ProtocolError

#: DE 3 of a purchase (HOST_SPEC §3).
PURCHASE_CODE = "000000"

STREAM_ROWS = 10_000


def expected_stock(session: Session,
                   problems: list[str] | None = None) -> dict[tuple[int, str], int]:
    """Units each shelf should hold: received − sold (see the module); a sale whose
    basket cannot be read is added to ``problems``."""
    expected: dict[tuple[int, str], int] = {}
    for ewarong_id, item, units in session.execute(
            select(StockReceipt.ewarong_id, StockReceipt.item_code,
                   func.sum(StockReceipt.quantity))
            .group_by(StockReceipt.ewarong_id, StockReceipt.item_code)):
        expected[(int(ewarong_id), item)] = int(units)
    reversed_ids = select(Transfer.reverses_transfer_id).where(
        Transfer.reverses_transfer_id.is_not(None))
    standing = (select(RequestRecord.stock_ewarong_id, RequestRecord.basket)
                .where(RequestRecord.stock_ewarong_id.is_not(None),
                       RequestRecord.kind == "request",
                       RequestRecord.processing_code == PURCHASE_CODE,
                       RequestRecord.response_code == "00",
                       RequestRecord.voided_by_record_id.is_(None),
                       RequestRecord.transfer_id.not_in(reversed_ids))
                .execution_options(yield_per=STREAM_ROWS))
    for taken_from, basket in session.execute(standing):
        assert taken_from is not None, "the query keeps only purchases that took stock"
        try:
            lines = decode_basket(basket or "")
        except ProtocolError:
            if problems is not None:
                problems.append(f"a purchase took stock at e-warong {taken_from} with no "
                                "readable basket")
            continue
        for line in lines:
            key = (taken_from, line.item_code)
            expected[key] = expected.get(key, 0) - line.quantity
    return expected


def check_stock(session: Session) -> list[str]:
    """Every shelf that breaks conservation or is below zero, as a sentence."""
    problems: list[str] = []
    expected = expected_stock(session, problems)
    held = {(int(e), item): int(units) for e, item, units in session.execute(
        select(Stock.ewarong_id, Stock.item_code, Stock.quantity))}
    for key in sorted(set(expected) | set(held)):
        ewarong_id, item = key
        units, should = held.get(key, 0), expected.get(key, 0)
        if units < 0:
            problems.append(f"e-warong {ewarong_id} holds {units} units of {item} (below zero)")
        if units != should:
            problems.append(f"e-warong {ewarong_id} holds {units} units of {item}; received "
                            f"less sold is {should}")
    return problems
