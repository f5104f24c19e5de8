"""The programme-rule reports of a WIB day (issue 14, docs/RULES.md "Reports";
FAILURES F10, F11, F15): :func:`alerts`, :func:`prices`, :func:`undelivered` and
:func:`stock`.  Each reads in one read-only snapshot
(:func:`~switch.reports.rules_queries.snapshot`) and returns plain data
(:mod:`~switch.reports.rules_model`) that :mod:`~switch.reports.rules_render` formats.

**The day** is the reconciliation report's (:func:`~switch.reports.recon_model.day_window`):
``[D-1 17:00 UTC, D 17:00 UTC)`` by ``created_at``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select

from switch.core.rules import region_prefixes
from switch.db.engine import Database
from switch.protocol.bpnt import BasketLine
from switch.reports.recon_model import day_window
from switch.reports.recon_queries import RECORDS, as_int
from switch.reports.rules_model import (
    AlertCount,
    AlertLine,
    AlertsReport,
    BundleLine,
    ItemPriceLine,
    OverPriceLine,
    PricesReport,
    StockLine,
    StockReport,
    UndeliveredLine,
    UndeliveredReport,
    UndeliveredTotals,
)
from switch.reports.rules_queries import (
    ALERTS,
    RECEIPTS,
    STOCK,
    RulesReader,
    basket_of,
    card_ids_of,
    snapshot,
    utc,
)
from switch.reports.rules_render import describe_alert, rrn

__all__ = ["alerts", "composition_of", "prices", "stock", "undelivered"]


# -- alerts ------------------------------------------------------------------------------

def alerts(db: Database, day: date, mid: str | None = None) -> AlertsReport:
    """Every alert of the day (of ``mid``'s e-warong), then the counts per e-warong,
    rule and action."""
    with snapshot(db) as connection:
        reader = RulesReader(connection, day_window(day), mid)
        found = reader.alerts()
        pans = reader.masked_pans([i for row, _ in found for i in card_ids_of(row.card_ids)])
    report = AlertsReport(reader.window, mid)
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for row, ewarong_id in found:
        ewarong_mid = reader.all_mids.get(ewarong_id) if ewarong_id is not None else None
        cards = tuple(pans.get(i, f"card {i} (not registered)")
                      for i in card_ids_of(row.card_ids))
        report.alerts.append(AlertLine(
            utc(row.created_at), row.rule, row.action, row.tid, ewarong_mid,
            rrn(row.record_id), cards, describe_alert(row.rule, row.detail),
            row.detail or "{}"))
        counts[(ewarong_mid or "", row.rule, row.action)] += 1
    report.counts = [AlertCount(m or None, rule, action, n)
                     for (m, rule, action), n in sorted(counts.items())]
    return report


# -- prices ------------------------------------------------------------------------------

def composition_of(lines: list[BasketLine]) -> str:
    """A basket's composition: item × total quantity, by item code; prices ignored.

    >>> composition_of([BasketLine("TLR010", 1, 1), BasketLine("BRS005", 2, 9),
    ...                 BasketLine("TLR010", 1, 5)])
    'BRS005×2 + TLR010×2'
    """
    units: dict[str, int] = defaultdict(int)
    for line in lines:
        units[line.item_code] += line.quantity
    return " + ".join(f"{item}×{units[item]}" for item in sorted(units))


@dataclass
class _ItemSales:
    lines: int = 0
    units: int = 0
    total_sen: int = 0
    min_sen: int | None = None
    max_sen: int | None = None

    def add(self, line: BasketLine) -> None:
        self.lines += 1
        self.units += line.quantity
        self.total_sen += line.total_sen
        price = line.unit_price_sen
        self.min_sen = price if self.min_sen is None else min(self.min_sen, price)
        self.max_sen = price if self.max_sen is None else max(self.max_sen, price)

    @property
    def avg_sen(self) -> int:
        if not self.units:
            return 0
        return (2 * self.total_sen + self.units) // (2 * self.units)  # half up


def prices(db: Database, day: date, mid: str | None = None, *, bundle_share: float = 0.5,
           bundle_min_kpm: int = 5, cap_percent: int = 10) -> PricesReport:
    """(a) every basket line of the day's purchase requests above its reference price,
    (b) per e-warong and item the standing purchases' prices, (c) per e-warong the most
    common basket composition among its KPM, a suspected forced bundle when it covers
    ``bundle_share`` of them and at least ``bundle_min_kpm``."""
    with snapshot(db) as connection:
        reader = RulesReader(connection, day_window(day), mid)
        references = reader.reference_prices()
        requests = reader.purchase_requests()
        standing = {int(i) for (i,) in reader.rows(
            select(RECORDS.c.id).where(*reader.standing(),
                                       *reader.during(RECORDS.c.created_at)))}
        kpm_of = reader.kpm_of_cards([int(r.card_id) for r in requests
                                      if r.card_id is not None and int(r.id) in standing])
    report = PricesReport(reader.window, mid, bundle_share, bundle_min_kpm, cap_percent)

    def reference(ewarong_id: int, item: str) -> tuple[int, str] | None:
        for region in region_prefixes(reader.regions.get(ewarong_id)):
            price = references.get((item, region))
            if price is not None:
                return price, region
        return None

    sales: dict[tuple[int, str], _ItemSales] = defaultdict(_ItemSales)
    buyers: dict[int, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for row in requests:
        ewarong_id = reader.ewarong_id_of(row.tid)
        if ewarong_id is None:
            continue
        lines = basket_of(row.basket)
        if lines is None:
            report.unreadable_baskets += row.basket is not None
            continue
        ewarong_mid = reader.mids[ewarong_id]
        for line in lines:
            found = reference(ewarong_id, line.item_code)
            if found is not None and line.unit_price_sen > found[0]:
                ref, region = found
                over = line.unit_price_sen - ref
                report.over.append(OverPriceLine(
                    ewarong_mid, row.tid, rrn(row.id) or "", utc(row.created_at),
                    row.response_code, line.item_code, line.quantity, line.unit_price_sen,
                    ref, region, round(over * 100 / ref, 2),
                    line.unit_price_sen * 100 > ref * (100 + cap_percent)))
        if int(row.id) not in standing:
            continue
        for line in lines:
            sales[(ewarong_id, line.item_code)].add(line)
        kpm = kpm_of.get(int(row.card_id)) if row.card_id is not None else None
        if kpm is None:
            report.without_card += 1
        else:
            buyers[ewarong_id][composition_of(lines)].add(kpm)
    for (ewarong_id, item), s in sorted(sales.items(),
                                        key=lambda kv: (reader.mids[kv[0][0]], kv[0][1])):
        found = reference(ewarong_id, item)
        report.items.append(ItemPriceLine(
            reader.mids[ewarong_id], item, s.lines, s.units, s.min_sen or 0, s.avg_sen,
            s.max_sen or 0, found[0] if found else None))
    for ewarong_id in sorted(buyers, key=lambda e: reader.mids[e]):
        by_composition = buyers[ewarong_id]
        total = len(set().union(*by_composition.values()))
        top, kpm = min(((c, len(k)) for c, k in by_composition.items()),
                       key=lambda ck: (-ck[1], ck[0]))
        share = kpm / total
        report.bundles.append(BundleLine(
            reader.mids[ewarong_id], top, kpm, total, round(share, 4),
            share >= bundle_share and kpm >= bundle_min_kpm))
    return report


# -- undelivered -------------------------------------------------------------------------

def undelivered(db: Database, day: date, mid: str | None = None, *, as_of: datetime,
                hours: int = 24) -> UndeliveredReport:
    """The day's standing purchases with no hand-over confirmation (``deliveries``)
    ``hours`` or more old at ``as_of``; the totals per e-warong."""
    r = RECORDS
    with snapshot(db) as connection:
        reader = RulesReader(connection, day_window(day), mid)
        rows = reader.rows(
            select(r.c.id, r.c.tid, r.c.created_at, r.c.amount_sen, r.c.card_id)
            .where(*reader.standing(), *reader.during(r.c.created_at)).order_by(r.c.id))
        rows = [row for row in rows if reader.ewarong_id_of(row.tid) is not None]
        confirmed = reader.delivered([int(row.id) for row in rows])
        pans = reader.masked_pans([int(row.card_id) for row in rows
                                   if row.card_id is not None])
    report = UndeliveredReport(reader.window, mid, as_of, hours)
    totals: dict[int, UndeliveredTotals] = {}
    for row in rows:
        ewarong_id = reader.ewarong_id_of(row.tid)
        assert ewarong_id is not None
        total = totals.setdefault(ewarong_id, UndeliveredTotals(reader.mids[ewarong_id]))
        total.purchases += 1
        if int(row.id) in confirmed:
            total.confirmed += 1
            continue
        at = utc(row.created_at)
        age = (as_of - at).total_seconds() / 3600
        if age < hours:
            total.not_yet_due += 1
            continue
        total.undelivered += 1
        total.undelivered_sen += int(row.amount_sen)
        report.lines.append(UndeliveredLine(
            rrn(row.id) or "", at, row.tid, total.mid, int(row.amount_sen), round(age, 1),
            pans.get(int(row.card_id), "") if row.card_id is not None else ""))
    report.totals = sorted(totals.values(), key=lambda t: t.mid)
    return report


# -- stock -------------------------------------------------------------------------------

def stock(db: Database, day: date, mid: str | None = None, *,
          low_stock_units: int = 10) -> StockReport:
    """Each e-warong's items: units now, threshold, the day's receipts, adjustments and
    sales, and conservation (units now = Σ receipts − Σ units of standing purchases)."""
    s, rc = STOCK, RECEIPTS
    with snapshot(db) as connection:
        reader = RulesReader(connection, day_window(day), mid)
        window = reader.window
        shelf = {(int(row.ewarong_id), row.item_code): (int(row.quantity), row.low_threshold)
                 for row in reader.rows(select(s.c.ewarong_id, s.c.item_code, s.c.quantity,
                                               s.c.low_threshold))}
        received_all = {(int(e), item): as_int(n) for e, item, n in reader.rows(
            select(rc.c.ewarong_id, rc.c.item_code, func.sum(rc.c.quantity))
            .group_by(rc.c.ewarong_id, rc.c.item_code))}
        received_day = {(int(e), item, kind): as_int(n) for e, item, kind, n in reader.rows(
            select(rc.c.ewarong_id, rc.c.item_code, rc.c.kind, func.sum(rc.c.quantity))
            .where(*reader.during(rc.c.created_at))
            .group_by(rc.c.ewarong_id, rc.c.item_code, rc.c.kind))}
        sold_all: dict[tuple[int, str], int] = defaultdict(int)
        sold_day: dict[tuple[int, str], int] = defaultdict(int)
        unreadable = 0
        for ewarong_id, at, basket in reader.stock_sales():
            lines = basket_of(basket)
            if lines is None:
                unreadable += 1
                continue
            for line in lines:
                sold_all[(ewarong_id, line.item_code)] += line.quantity
                if at in window:
                    sold_day[(ewarong_id, line.item_code)] += line.quantity
        low_alerts = reader.alerts(ALERTS.c.rule == "low_stock")
    report = StockReport(window, mid, unreadable_baskets=unreadable)
    for _row, ewarong_id in low_alerts:
        if ewarong_id in reader.mids:
            m = reader.mids[ewarong_id]
            report.low_alerts[m] = report.low_alerts.get(m, 0) + 1
    keys = {k for k in (*shelf, *received_all, *sold_all) if reader.in_scope(k[0])}
    for ewarong_id, item in sorted(keys, key=lambda k: (reader.mids[k[0]], k[1])):
        key = (ewarong_id, item)
        quantity, threshold = shelf.get(key, (0, None))
        report.lines.append(StockLine(
            reader.mids[ewarong_id], item, quantity,
            low_stock_units if threshold is None else int(threshold),
            received_day.get((ewarong_id, item, "receive"), 0),
            received_day.get((ewarong_id, item, "adjust"), 0),
            sold_day.get(key, 0), received_all.get(key, 0), sold_all.get(key, 0)))
    return report
