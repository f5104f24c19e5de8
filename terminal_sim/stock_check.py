"""Stock conservation for the demo's verdict line (docs/RULES.md): the switch's own
check (:func:`switch.ledger.stock_invariant.check_stock`) and how many shelves it saw."""

from __future__ import annotations

from sqlalchemy import func, select

from switch.db.engine import Database
from switch.db.tables import Stock
from switch.ledger.stock_invariant import check_stock


def stock_problems(db: Database) -> tuple[int, list[str]]:
    """(stock rows checked, one line per row that does not conserve)."""
    with db.transaction(exclusive=False) as session:
        shelves = int(session.scalar(select(func.count()).select_from(Stock)) or 0)
        return shelves, check_stock(session)
