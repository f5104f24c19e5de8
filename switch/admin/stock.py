"""Goods into (and written off from) an e-warong's stock (FAILURES F15, docs/RULES.md).

A receipt and the stock row move in the caller's transaction, with an audit record.
The stock row changes with SQL-side arithmetic (``quantity = quantity + n``), so a
receipt never loses a sale the host commits meanwhile; an adjustment that would take
the shelf below zero is refused by the table's CHECK and raises :class:`StockError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from switch.admin.csv_rows import BadLine, CsvRejected, positive_int, read_rows
from switch.admin.errors import EXIT_USAGE, AdminError
from switch.clock import Clock, SystemClock
from switch.db import audit as chain
from switch.db.tables import Ewarong, Item, Stock, StockReceipt
from switch.security.keyring import Keyring


class StockError(AdminError):
    """A receipt or adjustment refused (exit 1), or naming what does not exist (exit 2);
    nothing was written."""


class _BelowZero(Exception):
    """A write-off of a stock row that does not exist (0 units)."""


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
        raise StockError(f"kind {kind!r} is not receive or adjust", exit_code=EXIT_USAGE)
    if quantity == 0 or (kind == "receive" and quantity < 0):
        raise StockError("a receipt is a positive number of units (write-offs: adjust)",
                         exit_code=EXIT_USAGE)
    ewarong_id = _ewarong_id(session, mid)
    if session.get(Item, item_code) is None:
        raise StockError(f"no item {item_code}", exit_code=EXIT_USAGE)
    if reference is not None and session.scalar(select(StockReceipt.id).where(
            StockReceipt.ewarong_id == ewarong_id, StockReceipt.item_code == item_code,
            StockReceipt.reference == reference)) is not None:
        return Received(False, _quantity(session, ewarong_id, item_code))
    now = (clock or SystemClock()).now()
    try:
        with session.begin_nested():
            session.add(StockReceipt(ewarong_id=ewarong_id, item_code=item_code, kind=kind,
                                     quantity=quantity, reference=reference, actor=actor,
                                     created_at=now.astimezone(UTC)))
            session.flush()
            if not _add_units(session, ewarong_id, item_code, quantity):
                raise _BelowZero
    except (IntegrityError, _BelowZero):  # the savepoint is rolled back: nothing written
        if quantity > 0:  # only the reference's unique key can refuse a receipt
            raise StockError(f"{mid} {item_code}: reference {reference} was received "
                             "meanwhile; nothing added") from None
        held = _quantity(session, ewarong_id, item_code)
        raise StockError(f"refused: {mid} {item_code} holds {held} units; taking "
                         f"{-quantity} would leave {held + quantity} (below zero)"
                         ) from None
    after = _quantity(session, ewarong_id, item_code)
    chain.append(session, keys.audit_key, at=now, actor=actor, action=f"stock.{kind}",
                 subject=f"{mid}:{item_code}",
                 detail={"quantity": quantity, "after": after, "reference": reference,
                         "reason": reason})
    return Received(True, after)


def _add_units(session: Session, ewarong_id: int, item_code: str, quantity: int) -> bool:
    """``quantity = quantity + n``; False when a write-off finds no stock row.  (A
    write-off is an UPDATE: an upsert's proposed row of negative units would fail the
    CHECK on both engines even when the row exists.)"""
    if quantity < 0:
        moved = session.execute(update(Stock).where(
            Stock.ewarong_id == ewarong_id, Stock.item_code == item_code)
            .values(quantity=Stock.quantity + quantity)
            .execution_options(synchronize_session=False))
        return bool(moved.rowcount)  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = make(Stock).values(ewarong_id=ewarong_id, item_code=item_code,
                                   quantity=quantity)
    session.execute(statement.on_conflict_do_update(
        index_elements=[Stock.ewarong_id, Stock.item_code],
        set_={"quantity": Stock.quantity + quantity}))
    return True


def set_threshold(session: Session, keys: Keyring, *, mid: str, item_code: str,
                  units: int | None, actor: str, clock: Clock | None = None) -> None:
    """The low-stock threshold of one stock row (``None``: the setting's)."""
    if units is not None and units < 0:
        raise StockError("a threshold is 0 units or more", exit_code=EXIT_USAGE)
    ewarong_id = _ewarong_id(session, mid)
    row = session.get(Stock, (ewarong_id, item_code))
    if row is None:
        raise StockError(f"{mid} has never received {item_code}", exit_code=EXIT_USAGE)
    before = row.low_threshold
    session.execute(update(Stock).where(Stock.ewarong_id == ewarong_id,
                                        Stock.item_code == item_code)
                    .values(low_threshold=units))
    chain.append(session, keys.audit_key, at=(clock or SystemClock()).now(), actor=actor,
                 action="stock.threshold", subject=f"{mid}:{item_code}",
                 detail={"units": units, "before": before})


def _ewarong_id(session: Session, mid: str) -> int:
    ewarong_id = session.scalar(select(Ewarong.id).where(Ewarong.mid == mid))
    if ewarong_id is None:
        raise StockError(f"no e-warong {mid}", exit_code=EXIT_USAGE)
    return int(ewarong_id)


def _quantity(session: Session, ewarong_id: int, item_code: str) -> int:
    found = session.scalar(select(Stock.quantity).where(
        Stock.ewarong_id == ewarong_id, Stock.item_code == item_code))
    return int(found or 0)


# -- the delivery file (``bpnt-switch stock import``) -----------------------------------

STOCK_COLUMNS = ("mid", "item", "units", "reference")
_REFERENCE_MAX = 40


@dataclass(frozen=True)
class StockLine:
    line: int
    mid: str
    item_code: str
    units: int
    reference: str


@dataclass(frozen=True)
class StockImportReport:
    #: (line, units after) of every row received.
    received: tuple[tuple[StockLine, int], ...]
    #: Rows whose reference the e-warong had received already for the item: not added.
    skipped: tuple[StockLine, ...]

    @property
    def units_received(self) -> int:
        return sum(line.units for line, _after in self.received)

    def summary(self) -> str:
        lines = [f"line {row.line}: {row.mid} {row.item_code} reference {row.reference}: "
                 "already received, skipped" for row in self.skipped]
        lines.append(f"received {len(self.received)} rows ({self.units_received} units), "
                     f"skipped {len(self.skipped)} already received")
        return "\n".join(lines)


def read_stock_file(session: Session, path: Path) -> list[StockLine]:
    """Every row of a delivery file, validated against the database; any bad line
    raises :class:`~switch.admin.csv_rows.CsvRejected` listing all of them."""
    rows = read_rows(path, STOCK_COLUMNS)
    mids = {row.values["mid"] for row in rows}
    known_mids = set(session.scalars(select(Ewarong.mid).where(Ewarong.mid.in_(mids))))
    known_items = set(session.scalars(select(Item.code)))
    bad: list[BadLine] = []
    good: list[StockLine] = []
    seen: dict[tuple[str, str, str], int] = {}
    for row in rows:
        mid, item, reference = (row.values[name] for name in ("mid", "item", "reference"))
        units = positive_int(row.values["units"])
        reasons = []
        if mid not in known_mids:
            reasons.append(f"unknown e-warong {mid!r}")
        if item not in known_items:
            reasons.append(f"unknown item {item!r}")
        if units is None:
            reasons.append(f"units {row.values['units']!r} is not a positive integer")
        if not reference:
            reasons.append("no reference")
        elif len(reference) > _REFERENCE_MAX:
            reasons.append(f"reference longer than {_REFERENCE_MAX} characters")
        elif (mid, item, reference) in seen:
            reasons.append(f"reference {reference!r} for {mid} {item} again "
                           f"(line {seen[mid, item, reference]})")
        else:
            seen[mid, item, reference] = row.line
        if reasons or units is None:
            bad.append(BadLine(row.line, "; ".join(reasons)))
        else:
            good.append(StockLine(row.line, mid, item, units, reference))
    if bad:
        raise CsvRejected(path, bad)
    return good


def import_stock(session: Session, keys: Keyring, lines: Sequence[StockLine], *,
                 actor: str, clock: Clock | None = None) -> StockImportReport:
    """Receive every line (read by :func:`read_stock_file`) in the caller's
    transaction; a reference already received is skipped."""
    received: list[tuple[StockLine, int]] = []
    skipped: list[StockLine] = []
    for line in lines:
        outcome = receive_stock(session, keys, mid=line.mid, item_code=line.item_code,
                                quantity=line.units, actor=actor, reference=line.reference,
                                clock=clock)
        if outcome.added:
            received.append((line, outcome.quantity_after))
        else:
            skipped.append(line)
    return StockImportReport(tuple(received), tuple(skipped))


# -- ``bpnt-switch stock show`` ---------------------------------------------------------

@dataclass(frozen=True)
class StockRow:
    mid: str
    item_code: str
    units: int
    #: The effective low-stock threshold (the row's own, else the setting).
    threshold: int
    own_threshold: bool

    @property
    def low(self) -> bool:
        return self.units < self.threshold


def stock_rows(session: Session, *, default_threshold: int,
               mid: str | None = None) -> list[StockRow]:
    """Every stock row (of one e-warong), by MID and item."""
    query = (select(Ewarong.mid, Stock.item_code, Stock.quantity, Stock.low_threshold)
             .join(Ewarong, Ewarong.id == Stock.ewarong_id)
             .order_by(Ewarong.mid, Stock.item_code))
    if mid is not None:
        query = query.where(Stock.ewarong_id == _ewarong_id(session, mid))
    return [StockRow(row_mid, item, int(units),
                     default_threshold if own is None else int(own), own is not None)
            for row_mid, item, units, own in session.execute(query)]
