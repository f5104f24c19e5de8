"""Stock conservation, as docs/RULES.md defines it, computed by the demo (until
``switch.ledger.invariants`` checks it): for every e-warong and item, ``stock.quantity``
= Σ ``stock_receipts.quantity`` − Σ the units of its standing purchases (approved
``000000`` requests, no standing void, not reversed) whose ``stock_ewarong_id`` is the
e-warong; and no quantity below zero.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import exists, func, select
from sqlalchemy.orm import aliased

from switch.db.engine import Database
from switch.db.tables import RequestRecord, Stock, StockReceipt, Transfer
from switch.protocol.bpnt import decode_basket


def stock_problems(db: Database) -> tuple[int, list[str]]:
    """(stock rows checked, one line per row that does not conserve)."""
    reversal = aliased(Transfer)
    with db.transaction(exclusive=False) as session:
        shelves = {(int(e), str(i)): int(q) for e, i, q in session.execute(
            select(Stock.ewarong_id, Stock.item_code, Stock.quantity))}
        received = {(int(e), str(i)): int(q) for e, i, q in session.execute(
            select(StockReceipt.ewarong_id, StockReceipt.item_code,
                   func.sum(StockReceipt.quantity))
            .group_by(StockReceipt.ewarong_id, StockReceipt.item_code))}
        standing = session.execute(
            select(RequestRecord.stock_ewarong_id, RequestRecord.basket)
            .where(RequestRecord.kind == "request", RequestRecord.processing_code == "000000",
                   RequestRecord.response_code == "00",
                   RequestRecord.voided_by_record_id.is_(None),
                   RequestRecord.stock_ewarong_id.is_not(None),
                   ~exists().where(reversal.reverses_transfer_id == RequestRecord.transfer_id)))
        sold: Counter[tuple[int, str]] = Counter()
        for ewarong_id, basket in standing:
            if ewarong_id is None:  # (the query keeps none)
                continue
            for line in decode_basket(basket or ""):
                sold[(int(ewarong_id), line.item_code)] += line.quantity
    problems = []
    for key in sorted(set(shelves) | set(received) | set(sold)):
        expected = received.get(key, 0) - sold.get(key, 0)
        held = shelves.get(key, 0)
        if held != expected or held < 0:
            problems.append(f"e-warong {key[0]} {key[1]}: stock {held}, receipts "
                            f"{received.get(key, 0)} - sold {sold.get(key, 0)} = {expected}")
    return len(shelves), problems
