"""The programme-rule reports as text: Markdown (money in rupiah) or one flat CSV table
per report (a ``section`` column says what a row is; money in integer sen, instants in
UTC).  Formatting only, on the tables and cells of the reconciliation report
(:mod:`switch.reports.recon_render`).  Cards appear as ``cards.pan_masked`` only."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from switch.clock import WIB
from switch.core.request import rrn_for
from switch.money import rupiah
from switch.reports.recon_model import Window
from switch.reports.recon_render import _at, _section, _wib
from switch.reports.rules_model import (
    AlertsReport,
    PricesReport,
    StockReport,
    UndeliveredReport,
)

__all__ = [
    "ALERT_COLUMNS", "PRICE_COLUMNS", "STOCK_COLUMNS", "SUSPECTED_BUNDLE",
    "UNDELIVERED_COLUMNS", "alerts_csv", "alerts_md", "describe_alert", "prices_csv",
    "prices_md", "rrn", "stock_csv", "stock_md", "undelivered_csv", "undelivered_md",
]

SUSPECTED_BUNDLE = "SUSPECTED BUNDLE"


def rrn(record_id: Any) -> str | None:
    """DE 37 of a record id (``None``: no record)."""
    return rrn_for(int(record_id)) if record_id is not None else None


def _money(value: Any) -> str:
    return rupiah(value) if type(value) is int else "?"


def describe_alert(rule: str, detail: str | None) -> str:
    """An alert's ``detail`` JSON in words, per rule (docs/RULES.md names the keys);
    anything unexpected is shown as it is."""
    try:
        facts = json.loads(detail or "{}")
    except ValueError:
        return detail or ""
    if not isinstance(facts, dict):
        return detail or ""

    def get(key: str) -> Any:
        return facts.get(key, "?")

    if rule == "velocity":
        return (f"{get('cards')} distinct cards in {get('window_minutes')} min "
                f"(max {get('max_cards')})")
    if rule == "off_hours":
        return f"at {get('local_time')} local time; open {get('open')}–{get('close')}"
    if rule == "zoning":
        zones = facts.get("zones")
        served = ", ".join(str(z) for z in zones) if isinstance(zones, list) else str(zones)
        return f"KPM zone {get('zone')}; the e-warong serves {served or '?'}"
    if rule == "over_price":
        return (f"{get('item')} at {_money(facts.get('unit_price_sen'))} against the "
                f"reference {_money(facts.get('reference_sen'))} "
                f"(+{get('percent_over')}%)")
    if rule == "low_stock":
        return f"{get('item')}: {get('quantity')} units left (threshold {get('threshold')})"
    return json.dumps(facts, sort_keys=True)


def _wib_full(at: datetime) -> str:
    return at.astimezone(WIB).strftime("%Y-%m-%d %H:%M:%S")


def _head(title: str, window: Window, mid: str | None, *notes: str) -> list[str]:
    return [f"# {title} {window.day.isoformat()} (WIB)", "", f"- Day: {window.describe()}.",
            f"- E-warong: {mid or 'all'}.", *(f"- {n}" for n in notes)]


def _csv(columns: tuple[str, ...], rows: Iterable[Mapping[str, object]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


# -- alerts ------------------------------------------------------------------------------

ALERT_COLUMNS = ("section", "at_utc", "time_wib", "mid", "tid", "rrn", "rule", "action",
                 "cards", "detail", "detail_json", "count")


def alerts_md(report: AlertsReport) -> str:
    lines = _head("Alerts", report.window, report.mid,
                  "Action: `decline` (the request was declined for it) or `flag` "
                  "(recorded only).")
    lines += _section(
        "Alerts", ["time WIB", "rule", "action", "TID", "MID", "RRN", "cards", "detail"],
        [[_wib(a.at), a.rule, a.action, a.tid or "", a.mid or "", a.rrn or "",
          ", ".join(a.cards), a.detail] for a in report.alerts],
        empty="No alert on this day.")
    lines += _section("Counts per e-warong", ["MID", "rule", "action", "alerts"],
                      [[c.mid or "(none)", c.rule, c.action, c.count] for c in report.counts])
    return "\n".join(lines) + "\n"


def alerts_csv(report: AlertsReport) -> str:
    rows: list[dict[str, object]] = [
        {"section": "alert", "at_utc": _at(a.at), "time_wib": _wib(a.at), "mid": a.mid or "",
         "tid": a.tid or "", "rrn": a.rrn or "", "rule": a.rule, "action": a.action,
         "cards": " ".join(a.cards), "detail": a.detail, "detail_json": a.detail_json}
        for a in report.alerts]
    rows += [{"section": "count", "mid": c.mid or "", "rule": c.rule, "action": c.action,
              "count": c.count} for c in report.counts]
    return _csv(ALERT_COLUMNS, rows)


# -- prices ------------------------------------------------------------------------------

PRICE_COLUMNS = (
    "section", "mid", "tid", "rrn", "at_utc", "rc", "item", "quantity", "unit_price_sen",
    "reference_sen", "reference_region", "percent_over", "over_cap", "lines", "units",
    "min_sen", "avg_sen", "max_sen", "composition", "kpm", "total_kpm", "share", "verdict")


def _verdict(suspected: bool) -> str:
    return SUSPECTED_BUNDLE if suspected else "ok"


def _region(region: str) -> str:
    return region or "national"


def prices_md(report: PricesReport) -> str:
    lines = _head(
        "Prices", report.window, report.mid,
        "Reference: the row of `reference_prices` for the item and the longest prefix "
        "(6, 4, 2 digits, then national) of the e-warong's region; an item with none is "
        "not checked.",
        f"Cap: {report.cap_percent}% over the reference (`BPNT_PRICE_CAP_PERCENT`).",
        f"Bundle: the most common basket composition covering at least "
        f"{report.bundle_share:.0%} of the e-warong's KPM, and at least "
        f"{report.bundle_min_kpm} KPM, is a {SUSPECTED_BUNDLE}.", "")
    suspected = [b for b in report.bundles if b.suspected]
    lines += [f"**{SUSPECTED_BUNDLE}** at {b.mid}: {b.composition} bought by {b.kpm} of "
              f"{b.total_kpm} KPM ({b.share:.0%})" for b in suspected] or [
        "No suspected bundle."]
    lines += _section(
        "Above the reference price",
        ["MID", "time WIB", "TID", "RRN", "RC", "item", "qty", "unit price", "reference",
         "region", "% over", "over cap"],
        [[o.mid, _wib(o.at), o.tid, o.rrn, o.response_code, o.item, o.quantity,
          rupiah(o.unit_price_sen), rupiah(o.reference_sen), _region(o.reference_region),
          f"{o.percent_over:.2f}", "yes" if o.over_cap else "no"] for o in report.over],
        intro="Every basket line of the day's purchase requests (approved 00 or declined, "
              "e.g. 13 by the cap) priced above its reference.")
    lines += _section(
        "Items sold", ["MID", "item", "lines", "units", "min", "avg", "max", "reference"],
        [[i.mid, i.item, i.lines, i.units, rupiah(i.min_sen), rupiah(i.avg_sen),
          rupiah(i.max_sen), rupiah(i.reference_sen) if i.reference_sen else "(none)"]
         for i in report.items],
        intro="Standing approved purchases (not voided, not reversed); avg = Σ line totals "
              "/ Σ units.")
    lines += _section(
        "Basket compositions", ["MID", "most common composition", "KPM", "of KPM", "share",
                                "verdict"],
        [[b.mid, b.composition, b.kpm, b.total_kpm, f"{b.share:.0%}", _verdict(b.suspected)]
         for b in report.bundles])
    notes = []
    if report.unreadable_baskets:
        notes.append(f"- {report.unreadable_baskets} purchase request(s) with an unreadable "
                     "DE 48 basket: not checked.")
    if report.without_card:
        notes.append(f"- {report.without_card} standing purchase(s) with no card recorded: "
                     "left out of the bundle check.")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def prices_csv(report: PricesReport) -> str:
    rows: list[dict[str, object]] = [
        {"section": "over_price", "mid": o.mid, "tid": o.tid, "rrn": o.rrn,
         "at_utc": _at(o.at), "rc": o.response_code, "item": o.item, "quantity": o.quantity,
         "unit_price_sen": o.unit_price_sen, "reference_sen": o.reference_sen,
         "reference_region": o.reference_region, "percent_over": f"{o.percent_over:.2f}",
         "over_cap": int(o.over_cap)} for o in report.over]
    rows += [{"section": "item", "mid": i.mid, "item": i.item, "lines": i.lines,
              "units": i.units, "min_sen": i.min_sen, "avg_sen": i.avg_sen,
              "max_sen": i.max_sen,
              "reference_sen": "" if i.reference_sen is None else i.reference_sen}
             for i in report.items]
    rows += [{"section": "bundle", "mid": b.mid, "composition": b.composition, "kpm": b.kpm,
              "total_kpm": b.total_kpm, "share": f"{b.share:.4f}",
              "verdict": _verdict(b.suspected)} for b in report.bundles]
    return _csv(PRICE_COLUMNS, rows)


# -- undelivered -------------------------------------------------------------------------

UNDELIVERED_COLUMNS = (
    "section", "mid", "tid", "rrn", "at_utc", "amount_sen", "age_hours", "pan_masked",
    "purchases", "confirmed", "not_yet_due", "undelivered", "undelivered_sen")


def undelivered_md(report: UndeliveredReport) -> str:
    lines = _head(
        "Undelivered", report.window, report.mid,
        f"As of {_wib_full(report.as_of)} WIB; listed: standing approved purchases of the "
        f"day with no hand-over confirmation {report.hours} hours or more old.")
    lines += _section(
        "Purchases without a hand-over confirmation",
        ["RRN", "time WIB", "TID", "MID", "amount", "age h", "card"],
        [[u.rrn, _wib_full(u.at), u.tid, u.mid, rupiah(u.amount_sen), f"{u.age_hours:.1f}",
          u.pan_masked] for u in report.lines])
    lines += _section(
        "Per e-warong", ["MID", "purchases", "confirmed", "not yet due", "undelivered",
                         "undelivered Rp"],
        [[t.mid, t.purchases, t.confirmed, t.not_yet_due, t.undelivered,
          rupiah(t.undelivered_sen)] for t in report.totals],
        empty="No standing purchase on this day.")
    return "\n".join(lines) + "\n"


def undelivered_csv(report: UndeliveredReport) -> str:
    rows: list[dict[str, object]] = [
        {"section": "undelivered", "mid": u.mid, "tid": u.tid, "rrn": u.rrn,
         "at_utc": _at(u.at), "amount_sen": u.amount_sen, "age_hours": f"{u.age_hours:.1f}",
         "pan_masked": u.pan_masked} for u in report.lines]
    rows += [{"section": "total", "mid": t.mid, "purchases": t.purchases,
              "confirmed": t.confirmed, "not_yet_due": t.not_yet_due,
              "undelivered": t.undelivered, "undelivered_sen": t.undelivered_sen}
             for t in report.totals]
    return _csv(UNDELIVERED_COLUMNS, rows)


# -- stock -------------------------------------------------------------------------------

STOCK_COLUMNS = (
    "section", "mid", "item", "units_now", "threshold", "low", "received_day",
    "adjusted_day", "sold_day", "receipts_total", "sold_total", "expected", "conserved",
    "low_alerts")


def stock_md(report: StockReport) -> str:
    lines = _head(
        "Stock", report.window, report.mid,
        "Conservation: units now = Σ receipts (all time, receive + adjust) − Σ units of "
        "the standing purchases (all time) that took this e-warong's stock.", "")
    red = report.red_lines
    if red:
        lines += [f"**RED LINES: {len(red)}** (exit 1)", ""]
        lines += [f"- 🔴 {s.mid} {s.item}: {s.units_now} units on the shelf, expected "
                  f"{s.expected} ({s.receipts_total} received − {s.sold_total} sold)"
                  for s in red]
    else:
        lines.append("**No red line**: every shelf agrees with its receipts and sales.")
    lines += _section(
        "Shelves", ["", "MID", "item", "units now", "threshold", "low", "received",
                    "adjusted", "sold", "receipts total", "sold total", "expected"],
        [["🔴" if not s.conserved else "", s.mid, s.item, s.units_now, s.threshold,
          "LOW" if s.low else "", s.received_day, s.adjusted_day, s.sold_day,
          s.receipts_total, s.sold_total, s.expected] for s in report.lines],
        intro="received, adjusted, sold: on the day; the totals: all time.",
        empty="No stock.")
    lines += _section("Low-stock alerts", ["MID", "alerts"],
                      sorted(report.low_alerts.items()), empty="None on this day.")
    if report.unreadable_baskets:
        lines += ["", f"- {report.unreadable_baskets} standing purchase(s) took stock with "
                      "an unreadable basket: their units are not counted."]
    return "\n".join(lines) + "\n"


def stock_csv(report: StockReport) -> str:
    rows: list[dict[str, object]] = [
        {"section": "stock", "mid": s.mid, "item": s.item, "units_now": s.units_now,
         "threshold": s.threshold, "low": int(s.low), "received_day": s.received_day,
         "adjusted_day": s.adjusted_day, "sold_day": s.sold_day,
         "receipts_total": s.receipts_total, "sold_total": s.sold_total,
         "expected": s.expected, "conserved": int(s.conserved)} for s in report.lines]
    rows += [{"section": "low_alerts", "mid": m, "low_alerts": n}
             for m, n in sorted(report.low_alerts.items())]
    return _csv(STOCK_COLUMNS, rows)
