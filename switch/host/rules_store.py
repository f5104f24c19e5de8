"""The store's reads and writes for the programme rules and stock (docs/RULES.md).

Reads, submitted in the batch's read pipeline (:meth:`StoreBatch.read`), each only
when the batch needs it:

* for the (terminal, item) pairs its purchases' baskets name, in one statement: the
  e-warong's shelf and the reference price of the longest prefix of its region; and
  every shelf of the e-warongs of terminals reversing (a reversed void takes stock);
* the velocity window: each card-requesting terminal's most recent cards within it
  (``terminal_cards``), as many as the rule's limit + 1, and when it last saw each
  card of the batch (so a card it saw earlier in the window is not a new one, however
  many cards came since).

Writes, in the batch's write pipeline: the stock taken (one conditional UPDATE for
all rows, refused below zero: :meth:`SubmittedStock.confirm` raises
:class:`StockShortfall`, so the batch rolls back and is decided again request by
request), the stock given back, the alerts, and the cards each terminal saw.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from switch.core.effects import AlertRaise, ByKind, RecordWrite, StockMove
from switch.core.facts import StockLevel, utc
from switch.core.policy import OFF, Policy
from switch.core.request import Request
from switch.core.stock import units_needed
from switch.db.bulk import Bulk, Written, recordset, unnest
from switch.db.sql import Prepared, Submitted, in_json_list, json_list
from switch.db.tables import Alert, Stock, TerminalCard
from switch.db.tables import Terminal as TerminalRow
from switch.ledger.postings import LedgerError
from switch.protocol.errors import ProtocolError
from switch.protocol.routing import TxnType

#: Card requests the hours and velocity rules see (a void is never refused by them).
RULED = frozenset({TxnType.BALANCE, TxnType.PURCHASE})


class StockShortfall(LedgerError):
    """A batch's stock UPDATE found fewer units than the decisions took (another writer
    took them meanwhile): the batch rolls back and is decided again."""


_REGION_PREFIXES = ("r.region IN ('', substr(coalesce(e.region, ''), 1, 2), "
                    "substr(coalesce(e.region, ''), 1, 4), substr(coalesce(e.region, ''), 1, 6))")
#: For each (terminal, item) pair the batch's purchases name: the e-warong's shelf of
#: the item (primary-key probe; NULL: none) and the reference price of the longest
#: prefix of its region that has one (``region:price``; NULL: none), in one statement.
_SHELVES = Prepared(
    text("SELECT t.ewarong_id, json_extract(p.value, '$[1]'), s.quantity, s.low_threshold, "
         "(SELECT r.region || ':' || r.unit_price_sen FROM reference_prices r "
         "WHERE r.item_code = json_extract(p.value, '$[1]') AND " + _REGION_PREFIXES
         + " ORDER BY length(r.region) DESC LIMIT 1) "
         "FROM json_each(:pairs) AS p "
         "JOIN terminals t ON t.tid = json_extract(p.value, '$[0]') "
         "JOIN ewarongs e ON e.id = t.ewarong_id "
         "LEFT JOIN stock s ON s.ewarong_id = t.ewarong_id "
         "AND s.item_code = json_extract(p.value, '$[1]')"),
    # PostgreSQL: an index probe per pair (lateral, OFFSET 0 so it is not flattened):
    # joined plainly, the planner guessed 100 pairs and hashed whole tables
    postgresql=text(
        "SELECT e.ewarong_id, p ->> 1, s.quantity, s.low_threshold, "
        "(SELECT r.region || ':' || r.unit_price_sen FROM reference_prices r "
        "WHERE r.item_code = p ->> 1 AND " + _REGION_PREFIXES
        + " ORDER BY length(r.region) DESC LIMIT 1) "
        "FROM jsonb_array_elements(CAST(:pairs AS jsonb)) AS p "
        "CROSS JOIN LATERAL (SELECT t.ewarong_id, w.region FROM terminals t "
        "JOIN ewarongs w ON w.id = t.ewarong_id WHERE t.tid = p ->> 0 OFFSET 0) AS e "
        "LEFT JOIN LATERAL (SELECT quantity, low_threshold FROM stock "
        "WHERE stock.ewarong_id = e.ewarong_id AND stock.item_code = p ->> 1 OFFSET 0) AS s "
        "ON true"))
#: ... and every shelf of the e-warongs of terminals reversing (a reversed void takes
#: stock again).
_EWARONG_STOCK = Prepared(
    select(Stock.ewarong_id, Stock.item_code, Stock.quantity, Stock.low_threshold)
    .join(TerminalRow, TerminalRow.ewarong_id == Stock.ewarong_id)
    .where(in_json_list("tids", TerminalRow.tid)))
#: A terminal's most recent cards within the window, at most ``cap`` of them: a backward
#: range of the (tid, last_at) index that stops after ``cap`` rows, so the read costs
#: the rule's limit, not the window's traffic.  SQLite: once per terminal (a statement
#: there costs microseconds, not a round trip); PostgreSQL: one lateral statement.
_WINDOW = Prepared(
    select(TerminalCard.tid, TerminalCard.card_id, TerminalCard.last_at)
    .where(TerminalCard.tid == bindparam("tid"), TerminalCard.last_at >= bindparam("since"))
    .order_by(TerminalCard.last_at.desc()).limit(bindparam("cap")))
_WINDOWS = Prepared(
    text("SELECT w.tid, w.card_id, w.last_at "
         "FROM jsonb_array_elements_text(CAST(:tids AS jsonb)) AS k(tid) "
         "CROSS JOIN LATERAL (SELECT tid, card_id, last_at FROM terminal_cards "
         "WHERE tid = k.tid AND last_at >= :since ORDER BY last_at DESC LIMIT :cap) AS w"))
#: When each terminal of the batch last saw each card of the batch (by PAN token;
#: primary-key probes).  Whether that is within the window is decided with the moments
#: as datetimes (``velocity_hit``), not by comparing SQLite's text in SQL.
_SEEN = Prepared(
    text("SELECT tc.tid, tc.card_id, tc.last_at FROM json_each(:pairs) AS p "
         "JOIN cards c ON c.pan_token = json_extract(p.value, '$[1]') "
         "JOIN terminal_cards tc ON tc.tid = json_extract(p.value, '$[0]') "
         "AND tc.card_id = c.id"),
    # PostgreSQL: primary-key probes per pair, lateral (OFFSET 0: not flattened); as a
    # plain join the generic plan hashed the whole of cards and terminal_cards for
    # every batch (measured: 1.2 ms of server time per batch on 10,000 cards, the
    # batch's costliest statement; a scan that grows with the card count)
    postgresql=text(
        "SELECT tc.tid, tc.card_id, tc.last_at "
        "FROM jsonb_array_elements(CAST(:pairs AS jsonb)) AS p "
        "CROSS JOIN LATERAL (SELECT id FROM cards WHERE pan_token = p ->> 1 OFFSET 0) AS c "
        "CROSS JOIN LATERAL (SELECT tid, card_id, last_at FROM terminal_cards "
        "WHERE tid = p ->> 0 AND card_id = c.id OFFSET 0) AS tc"))
_SEE_COLUMNS = ("tid", "card_id", "last_at")
_SEE_CARDS = Bulk(
    Prepared(sqlite_insert(TerminalCard).on_conflict_do_update(
        index_elements=[TerminalCard.tid, TerminalCard.card_id],
        set_={"last_at": sqlite_insert(TerminalCard).excluded.last_at}),
        column_keys=_SEE_COLUMNS),
    "INSERT INTO terminal_cards (tid, card_id, last_at) SELECT tid, card_id, last_at FROM "
    + recordset(TerminalCard.__table__, {c: c for c in _SEE_COLUMNS})
    + " ON CONFLICT (tid, card_id) DO UPDATE SET last_at = excluded.last_at",
    TerminalCard.__table__, {c: c for c in _SEE_COLUMNS}, arrays=False)

_TAKE_PARAMS = {"stock_ewarong": "ewarong_id", "stock_item": "item_code",
                "take_units": "quantity"}
_TAKE_STOCK = Bulk(
    Prepared(update(Stock).where(Stock.ewarong_id == bindparam("stock_ewarong"),
                                 Stock.item_code == bindparam("stock_item"),
                                 Stock.quantity >= bindparam("take_units"))
             .values(quantity=Stock.quantity - bindparam("take_units"))),
    "UPDATE stock SET quantity = stock.quantity - v.take_units FROM "
    + unnest(Stock.__table__, _TAKE_PARAMS)
    + " WHERE stock.ewarong_id = v.stock_ewarong AND stock.item_code = v.stock_item"
    " AND stock.quantity >= v.take_units",
    Stock.__table__, _TAKE_PARAMS, arrays=True)
_ALERT_COLUMNS = ("created_at", "rule", "action", "tid", "ewarong_id", "record_id",
                  "card_ids", "detail")
_INSERT_ALERTS = Bulk.insert(Alert.__table__, _ALERT_COLUMNS,
                             Prepared(insert(Alert), column_keys=_ALERT_COLUMNS))


@dataclass
class RuleReads:
    """The rule reads of one batch, submitted; their rows once the block has ended."""

    shelves: Submitted | None = None
    ewarong_stock: Submitted | None = None
    window: list[Submitted] = field(default_factory=list)
    window_tids: tuple[str, ...] = ()
    seen: Submitted | None = None

    def shelves_and_prices(self) -> tuple[dict[tuple[int, str], StockLevel],
                                          dict[tuple[str, str], int]]:
        """The shelves the batch may move and the reference prices its baskets need
        (keyed by the region prefix that has one: ``reference_price`` finds it)."""
        levels: dict[tuple[int, str], StockLevel] = {}
        prices: dict[tuple[str, str], int] = {}
        for ewarong, item, units, threshold, reference in (
                self.shelves.rows() if self.shelves else ()):
            if units is not None:
                levels[(int(ewarong), item)] = StockLevel(int(units), threshold)
            if reference is not None:
                region, _, price = str(reference).rpartition(":")
                prices[(item, region)] = int(price)
        for ewarong, item, units, threshold in (
                self.ewarong_stock.rows() if self.ewarong_stock else ()):
            levels[(int(ewarong), item)] = StockLevel(int(units), threshold)
        return levels, prices

    def recent_cards(self) -> tuple[dict[str, dict[int, datetime]], dict[str, int]]:
        """The cards each terminal saw, oldest first: its most recent ones within the
        window, and the batch's own cards whenever it last saw them (the rule compares
        that moment with the window's start); and how many distinct cards the window
        holds, counted up to the rule's limit + 1 (enough to know a new card is over
        it; a batch card seen within the window is in that count or older than it)."""
        cards_at: dict[str, list[tuple[datetime, int]]] = {}
        for read in self.window:
            for tid, card_id, at in read.rows():
                cards_at.setdefault(tid, []).append((_moment(at), int(card_id)))
        counts = {tid: len(cards_at.get(tid, ())) for tid in self.window_tids}
        for tid, card_id, at in (self.seen.rows() if self.seen else ()):
            cards_at.setdefault(tid, []).append((_moment(at), int(card_id)))
        seen = {tid: {card_id: at for at, card_id in sorted(cards)}  # oldest first
                for tid, cards in cards_at.items()}
        return seen, counts


def submit_rule_reads(connection: Connection, requests: Sequence[Request], policy: Policy,
                      now: datetime, pan_tokens: Mapping[str, str]) -> RuleReads:
    """Send the reads the batch's requests need (see the module); ``pan_tokens``: the
    batch's PAN tokens by PAN."""
    seen_pairs: dict[tuple[str, str], None] = {}
    sold: dict[tuple[str, str], None] = {}
    reversing: dict[str, None] = {}
    ruled: dict[str, None] = {}
    for request in requests:
        if request.missing:
            continue
        tid = request.message.text(41)
        if request.txn in RULED:
            ruled[tid] = None
            token = _token(request, pan_tokens)
            if token is not None:
                seen_pairs[(tid, token)] = None
        if request.txn is TxnType.REVERSAL:
            reversing[tid] = None
        if request.txn is TxnType.PURCHASE:
            for item in _items(request):
                sold[(tid, item)] = None
    reads = RuleReads()
    if sold:
        reads.shelves = _SHELVES.submit(connection, {"pairs": json_list(
            [list(pair) for pair in sold])})
    if policy.inventory and reversing:
        reads.ewarong_stock = _EWARONG_STOCK.submit(connection,
                                                    {"tids": json_list(reversing)})
    if policy.velocity != OFF and ruled:
        reads.window_tids = tuple(ruled)
        window = {"cap": policy.velocity_max_cards + 1, "since": now.astimezone(UTC)
                  - timedelta(minutes=policy.velocity_window_minutes)}
        if connection.dialect.name == "postgresql":
            reads.window = [_WINDOWS.submit(connection, {"tids": json_list(ruled), **window})]
        else:
            reads.window = [_WINDOW.submit(connection, {"tid": tid, **window}) for tid in ruled]
        if seen_pairs:
            reads.seen = _SEEN.submit(connection, {"pairs": json_list(
                [list(pair) for pair in seen_pairs])})
    return reads


def _token(request: Request, pan_tokens: Mapping[str, str]) -> str | None:
    try:
        return pan_tokens.get(request.pan)
    except ProtocolError:
        return None  # its decision answers it (30)


def _moment(value: Any) -> datetime:
    """A timestamp as read (SQLite's raw text statements give strings), in UTC."""
    return utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


def _items(request: Request) -> Iterable[str]:
    try:
        return units_needed(request.basket).keys()
    except ProtocolError:
        return ()  # its decision answers it (30)


@dataclass
class SubmittedStock:
    """The batch's stock UPDATE; :meth:`confirm` after its pipeline block."""

    taken: Written
    expected: int

    def confirm(self) -> None:
        if self.taken.rowcount != self.expected:
            raise StockShortfall("a stock row in the batch holds fewer units than its sales")


def submit_rule_writes(connection: Connection, effects: ByKind,
                       deltas: dict[tuple[int, str], int], created_at: datetime,
                       policy: Policy) -> SubmittedStock:
    """The stock taken (``deltas`` < 0: one statement, net per row), the alerts, and
    (velocity on) the cards each terminal saw.  On PostgreSQL the rows go as one JSON
    parameter (:class:`~switch.db.bulk.Bulk`): the moment is formatted once for the
    batch, and an alert's card list and figures are nested in it as they are
    (``json_to_recordset`` gives a ``TEXT`` field a nested value's JSON text), not
    encoded once more per row."""
    postgresql = connection.dialect.name == "postgresql"
    moment: datetime | str = created_at.isoformat() if postgresql else created_at
    nested: Callable[[Any], Any] = _as_is if postgresql else _compact_json
    if policy.velocity != OFF:
        _SEE_CARDS.submit(connection, [
            {"tid": tid, "card_id": card_id, "last_at": moment}
            for tid, card_id in dict.fromkeys(
                (e.key.tid, e.card_id) for e in effects.of(RecordWrite)
                if e.card_id is not None and e.joins_window)])
    takes = [{"stock_ewarong": ewarong, "stock_item": item, "take_units": -delta}
             for (ewarong, item), delta in sorted(deltas.items()) if delta < 0]
    taken = _TAKE_STOCK.submit(connection, takes)
    _INSERT_ALERTS.submit(connection, [
        {"created_at": moment, "rule": e.rule, "action": e.action, "tid": e.tid,
         "ewarong_id": e.ewarong_id, "record_id": e.record_id,
         "card_ids": nested(list(e.card_ids)), "detail": nested(e.detail)}
        for e in effects.of(AlertRaise)])
    return SubmittedStock(taken, len(takes))


def _as_is(value: Any) -> Any:
    return value


#: As PostgreSQL stores a nested value (both engines hold the same text); one encoder
#: for every row (``json.dumps`` with separators builds a new one per call).
_compact_json: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":")).encode


def give_back_stock(connection: Connection, deltas: dict[tuple[int, str], int]) -> None:
    """The units voids and reversals put back (``deltas`` > 0, net per row; rare: an
    upsert each)."""
    rows: list[dict[str, Any]] = [
        {"ewarong_id": ewarong, "item_code": item, "quantity": delta}
        for (ewarong, item), delta in sorted(deltas.items()) if delta > 0]
    if not rows:
        return
    make = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    statement = make(Stock)
    connection.execute(statement.on_conflict_do_update(
        index_elements=[Stock.ewarong_id, Stock.item_code],
        set_={"quantity": Stock.quantity + statement.excluded.quantity}), rows)


def net_units(moves: Iterable[StockMove]) -> dict[tuple[int, str], int]:
    """A batch's stock moves summed per (e-warong, item)."""
    deltas: dict[tuple[int, str], int] = {}
    for move in moves:
        key = (move.ewarong_id, move.item_code)
        deltas[key] = deltas.get(key, 0) + move.delta_units
    return deltas
