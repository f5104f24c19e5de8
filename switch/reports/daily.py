"""The daily reports (issue 16; docs/CONSOLE.md "Daily reports"): per e-warong and per
region, reconciliation, duplicates and 94s, prices against reference, undelivered
goods, KPM who have not shopped this period.  ``bpnt-switch report daily`` writes them
for a cron job; the console shows them.

Each report is a :class:`~switch.reports.daily_model.ReportTable` built from the
existing reports (:func:`switch.reports.reconciliation.reconciliation`,
:func:`switch.reports.rules.prices`, :func:`switch.reports.rules.undelivered`) and the
few reads of :mod:`switch.reports.daily_queries`.  Each of those reads one read-only
snapshot (so two tables may see a sale committed between them); nothing writes.

``mid`` restricts every table to one e-warong (the console's ``ewarong`` role): its
terminals' records; the not-shopped list to the KPM of the zones it serves (its
``ewarong_zones``, else its region; an e-warong serving every zone with no region gets
no list).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

from switch.admin.nik import mask_nik
from switch.clock import WIB
from switch.db.engine import Database
from switch.reports import rules
from switch.reports.daily_model import DAILY_REPORTS, DayTotals, ReportTable, percent
from switch.reports.daily_queries import DailyReader, period_of, period_start
from switch.reports.daily_render import render_html, render_markdown
from switch.reports.recon_model import Report, day_window
from switch.reports.reconciliation import reconciliation
from switch.reports.rules_model import PricesReport, UndeliveredReport
from switch.reports.rules_queries import snapshot
from switch.settings import Settings

__all__ = ["DAILY_REPORTS", "ReportTable", "daily_reports", "write_daily"]

#: ``progress(done, total)``: reports built so far (``bpnt-switch report daily``).
Progress = Callable[[int, int], None]
_UNKNOWN = "unknown"
#: Per e-warong id, per region code, the MIDs and the names.
_Traffic = tuple[dict[int, DayTotals], dict[str, DayTotals], dict[int, str], dict[int, str]]


def _wib(at: datetime) -> str:
    return at.astimezone(WIB).strftime("%H:%M:%S")


def _record_id(rrn: str | None) -> int | None:
    return int(rrn) if rrn else None


class _Day:
    """What the reports of one day and scope share: the reconciliation report and the
    daily reads, each read once, when first needed."""

    def __init__(self, db: Database, day: date, settings: Settings, mid: str | None,
                 as_of: datetime) -> None:
        self.db, self.day, self.settings, self.mid, self.as_of = db, day, settings, mid, as_of
        self._recon: Report | None = None
        self._traffic: _Traffic | None = None

    @property
    def recon(self) -> Report:
        if self._recon is None:
            self._recon = reconciliation(self.db, self.day, self.mid)
        return self._recon

    # -- per e-warong and per region ----------------------------------------------------

    def traffic(self) -> _Traffic:
        """The day's card traffic per e-warong (requests and declines; the money comes
        from the reconciliation report) and per region code (4 digits), with the
        e-warongs' MIDs and names."""
        if self._traffic is None:
            self._traffic = self._read_traffic()
        return self._traffic

    def _read_traffic(self) -> _Traffic:
        recon = self.recon
        with snapshot(self.db) as connection:
            reader = DailyReader(connection, day_window(self.day), self.mid)
            requests = [r for r in reader.purchase_requests()
                        if reader.ewarong_id_of(r.tid) is not None]
            voids = [v for v in recon.voids if reader.ewarong_id_of(v.tid) is not None]
            reversals = [r for r in recon.reversals
                         if r.moved_money and reader.ewarong_id_of(r.tid) is not None]
            wanted = [i for i in ([_record_id(v.rrn) for v in voids]
                                  + [_record_id(v.purchase_rrn) for v in voids]
                                  + [_record_id(r.original_rrn) for r in reversals])
                      if i is not None]
            card_of = reader.record_cards(wanted)
            card_of.update({int(r.id): int(r.card_id) for r in requests
                            if r.card_id is not None})
            region_of_card = reader.card_regions(list(card_of.values()))
            names = reader.ewarong_names()
            mids, ewarong_regions = reader.mids, reader.regions

        def region(tid: str, *record_ids: int | None) -> str:
            for record_id in record_ids:
                card = card_of.get(record_id) if record_id is not None else None
                if card is not None and card in region_of_card:
                    return region_of_card[card]
            ewarong_id = reader.ewarong_id_of(tid)
            code = ewarong_regions.get(ewarong_id) if ewarong_id is not None else None
            return code[:4] if code else _UNKNOWN

        by_ewarong: dict[int, DayTotals] = defaultdict(DayTotals)
        by_region: dict[str, DayTotals] = defaultdict(DayTotals)
        for row in requests:
            ewarong_id = reader.ewarong_id_of(row.tid)
            assert ewarong_id is not None
            place = by_region[region(row.tid, int(row.id))]
            for totals in (by_ewarong[ewarong_id], place):
                totals.requests += 1
                if row.response_code != "00":
                    totals.declines[row.response_code] = (
                        totals.declines.get(row.response_code, 0) + 1)
            if row.response_code == "00" and row.transfer_id is not None:
                place.purchases += 1
                place.purchases_sen += int(row.amount_sen)
        for void in voids:
            place = by_region[region(void.tid, _record_id(void.rrn),
                                     _record_id(void.purchase_rrn))]
            place.voids += 1
            place.voids_sen += void.amount_sen
        for rev in reversals:
            place = by_region[region(rev.tid, _record_id(rev.original_rrn))]
            if rev.of_void:
                place.void_reversals += 1
                place.void_reversals_sen += rev.restored_sen
            else:
                place.purchase_reversals += 1
                place.purchase_reversals_sen += rev.restored_sen
        id_of = {m: i for i, m in mids.items()}
        for e in recon.ewarongs:  # the money as the reconciliation report counts it
            totals, t = by_ewarong[id_of[e.mid]], e.totals
            totals.purchases, totals.purchases_sen = t.purchase_count, t.purchase_sen
            totals.voids, totals.voids_sen = t.void_count, t.void_sen
            totals.purchase_reversals = t.purchase_reversal_count
            totals.purchase_reversals_sen = t.purchase_reversal_sen
            totals.void_reversals = t.void_reversal_count
            totals.void_reversals_sen = t.void_reversal_sen
        return dict(by_ewarong), dict(by_region), mids, names


_MONEY_COLUMNS = ("purchases", "purchases_sen", "voids", "voids_sen", "purchase_reversals",
                  "purchase_reversals_sen", "void_reversals", "void_reversals_sen", "net_sen")


def _money_cells(t: DayTotals) -> tuple[int, ...]:
    return (t.purchases, t.purchases_sen, t.voids, t.voids_sen, t.purchase_reversals,
            t.purchase_reversals_sen, t.void_reversals, t.void_reversals_sen, t.net_sen)


def _ewarong_table(day: _Day) -> ReportTable:
    by_ewarong, _, mids, names = day.traffic()
    order = sorted(by_ewarong, key=lambda i: mids[i])
    rows: list[tuple[str | int, ...]] = []
    for i in order:
        t = by_ewarong[i]
        money = _money_cells(t)
        rows.append((mids[i], names.get(i, ""), t.requests, *money[:2], t.declined,
                     t.declines_text(), *money[2:]))
    total = sum(by_ewarong[i].net_sen for i in order)
    return ReportTable(
        "ewarong", "Per e-warong", ("mid", "name", "requests", "purchases", "purchases_sen",
                                    "declined", "declines_by_rc", *_MONEY_COLUMNS[2:]),
        tuple(rows), (f"{len(rows)} e-warongs with card traffic; net debits {total} sen "
               "(purchases − voids − purchase reversals + void reversals, as the "
               "reconciliation report)",
               "requests: purchase requests answered (any RC); declines_by_rc RC:count"))


def _region_table(day: _Day) -> ReportTable:
    _, by_region, _, _ = day.traffic()
    provinces: dict[str, DayTotals] = defaultdict(DayTotals)
    for code, t in by_region.items():
        p = provinces[code[:2] if code != _UNKNOWN else _UNKNOWN]
        p.requests += t.requests
        for rc, n in t.declines.items():
            p.declines[rc] = p.declines.get(rc, 0) + n
        for name in _MONEY_COLUMNS[:-1]:
            setattr(p, name, getattr(p, name) + getattr(t, name))

    def row(level: str, code: str, t: DayTotals) -> tuple[str | int, ...]:
        return (level, code, t.requests, t.declined, percent(t.declined, t.requests),
                t.switch_failures, percent(t.switch_failures, t.requests), *_money_cells(t))

    rows: list[tuple[str | int, ...]] = []
    for province in sorted(provinces):
        rows.append(row("province", province, provinces[province]))
        rows += [row("regency", code, by_region[code]) for code in sorted(by_region)
                 if code != _UNKNOWN and code[:2] == province]
    return ReportTable(
        "region", "Per region (province, regency)",
        ("level", "code", "requests", "declined", "decline_rate", "rc_91_96",
         "rc_91_96_rate", *_MONEY_COLUMNS), tuple(rows),
        ("A transaction's region is its KPM's (the NIK's first 2 and 4 digits); without "
         "a card, its e-warong's region; else unknown.",
         "decline_rate: declined / requests; rc_91_96: answers 91 (switch or issuer "
         "inoperative) and 96 (system malfunction)"))


def _reconciliation_table(day: _Day) -> ReportTable:
    recon = day.recon
    rows = []
    for e in recon.ewarongs:
        tids = {t.tid for t in e.terminals}
        settlements = [s for t in e.terminals for s in t.settlements]
        t = e.totals
        rows.append((e.mid, e.name, len(e.terminals), t.purchase_count, t.purchase_sen,
                     t.void_count, t.void_sen,
                     t.purchase_reversal_count + t.void_reversal_count, t.net_sen,
                     e.payable_movement_sen, "yes" if e.payable_agrees else "NO",
                     len(settlements), sum(s.agree for s in settlements),
                     sum(d.tid in tids for d in recon.differences),
                     sum(a.red for a in recon.anomalies if a.mid == e.mid)))
    red = recon.red_lines
    notes = [f"RED LINES: {len(red)}" if red else "No red line: no double posting, every "
             "payable adds up.", *(f"RED: {a.detail}" for a in red),
             *(f"note: {a.detail}" for a in recon.anomalies if not a.red)]
    return ReportTable(
        "reconciliation", "Reconciliation",
        ("mid", "name", "terminals", "purchases", "purchases_sen", "voids", "voids_sen",
         "reversals", "net_sen", "payable_sen", "payable_agrees", "settlements",
         "settlements_agree", "differences", "red_lines"), tuple(rows), tuple(notes))


def _duplicates_table(day: _Day) -> ReportTable:
    recon = day.recon
    mid_of = {t.tid: t.mid for e in recon.ewarongs for t in e.terminals}
    rows: list[tuple[str | int, ...]] = [
        (d.kind, _wib(d.at), d.tid, mid_of.get(d.tid, "(unregistered)"), d.stan,
         d.local_date, d.message_class, d.rrn or "", d.original_rrn, d.original_rc,
         "")
        for d in recon.duplicates]
    rows += [("double_posting", "", a.tid or "", a.mid or "", "", "", "", a.rrn or "", "",
              "", a.detail) for a in recon.double_postings]
    return ReportTable(
        "duplicates", "Duplicates and 94s",
        ("kind", "time_wib", "tid", "mid", "stan", "local_date", "sent_again", "rrn",
         "original_rrn", "original_rc", "detail"), tuple(rows),
        (f"{len(recon.replays)} replays (same key, same content: the stored answer again), "
         f"{len(recon.refusals)} refusals 94 (same key, different content), "
         f"{len(recon.double_postings)} double postings (red lines)",))


def _prices_table(day: _Day) -> ReportTable:
    report: PricesReport = rules.prices(day.db, day.day, day.mid,
                                        cap_percent=day.settings.price_cap_percent)
    over: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for line in report.over:
        counts = over[(line.mid, line.item)]
        counts[0] += 1
        counts[1] += line.over_cap
    items = {(i.mid, i.item): i for i in report.items}
    rows = []
    for key in sorted({*items, *over}):
        i = items.get(key)
        o = over.get(key, [0, 0])
        rows.append((key[0], key[1], i.lines if i else 0, i.units if i else 0,
                     i.min_sen if i else 0, i.avg_sen if i else 0, i.max_sen if i else 0,
                     "" if i is None or i.reference_sen is None else i.reference_sen,
                     o[0], o[1]))
    notes = [f"SUSPECTED BUNDLE at {b.mid}: {b.composition} bought by {b.kpm} of "
             f"{b.total_kpm} KPM" for b in report.bundles if b.suspected]
    notes.append(f"over_reference: basket lines of the day's purchase requests (any RC) "
                 f"above the reference; over_cap: more than {report.cap_percent}% above")
    if report.unreadable_baskets:
        notes.append(f"{report.unreadable_baskets} purchase requests with an unreadable "
                     "basket (DE 48) were not checked")
    return ReportTable(
        "prices", "Prices against the reference",
        ("mid", "item", "sold_lines", "units", "min_sen", "avg_sen", "max_sen",
         "reference_sen", "over_reference", "over_cap"), tuple(rows), tuple(notes))


def _undelivered_table(day: _Day) -> ReportTable:
    report: UndeliveredReport = rules.undelivered(
        day.db, day.day, day.mid, as_of=day.as_of, hours=day.settings.delivery_hours)
    rows = tuple((u.rrn, _wib(u.at), u.tid, u.mid, u.amount_sen, f"{u.age_hours:.1f}",
                  u.pan_masked) for u in report.lines)
    notes = [f"standing purchases of the day with no hand-over confirmation "
             f"{report.hours} hours or more old at "
             f"{report.as_of.astimezone(WIB).strftime('%Y-%m-%d %H:%M')} WIB"]
    notes += [f"{t.mid}: {t.purchases} purchases, {t.confirmed} confirmed, "
              f"{t.not_yet_due} not yet due, {t.undelivered} undelivered "
              f"({t.undelivered_sen} sen)" for t in report.totals]
    return ReportTable("undelivered", "Undelivered goods",
                       ("rrn", "time_wib", "tid", "mid", "amount_sen", "age_hours",
                        "pan_masked"), rows, tuple(notes))


def _not_shopped_table(day: _Day) -> ReportTable:
    period = period_of(day.day)
    start = period_start(day.day)
    with snapshot(day.db) as connection:
        reader = DailyReader(connection, day_window(day.day), day.mid)
        zones: list[str] | None = None
        scope = "every KPM"
        if day.mid is not None:
            ewarong_id = next(iter(reader.mids))
            region = reader.regions.get(ewarong_id)
            zones = reader.ewarong_zones(ewarong_id) or ([region] if region else [])
            scope = (f"the KPM of {day.mid}'s zones {', '.join(zones)}" if zones else
                     f"{day.mid} serves every zone and has no region: no list")
        allocated = reader.allocated(period, zones)
        shopped = reader.shoppers(start)
    idle = [k for k in allocated if k.kpm_id not in shopped]
    return ReportTable(
        "not-shopped", f"KPM who have not shopped in {period}",
        ("kpm_nik_masked", "zone", "balance_sen"),
        tuple((mask_nik(k.nik), k.zone, k.balance_sen) for k in idle),
        (f"{len(idle)} of {len(allocated)} KPM allocated in {period} ({scope}) have no "
         f"standing purchase from {start.date().isoformat()} to "
         f"{day.day.isoformat()} (WIB); balance_sen: their wallet now",))


_BUILDERS: dict[str, Callable[[_Day], ReportTable]] = {
    "ewarong": _ewarong_table, "region": _region_table,
    "reconciliation": _reconciliation_table, "duplicates": _duplicates_table,
    "prices": _prices_table, "undelivered": _undelivered_table,
    "not-shopped": _not_shopped_table,
}
assert tuple(_BUILDERS) == DAILY_REPORTS


def daily_reports(db: Database, day: date, settings: Settings, *, mid: str | None = None,
                  names: Sequence[str] | None = None, as_of: datetime | None = None,
                  progress: Progress | None = None) -> list[ReportTable]:
    """The reports ``names`` (default: all of :data:`DAILY_REPORTS`, in that order) of
    the WIB day ``day``, of the e-warong ``mid`` only if given
    (:class:`~switch.reports.recon_model.UnknownEwarong` if it is not registered);
    undelivered goods are aged at ``as_of`` (default now)."""
    wanted = list(DAILY_REPORTS if names is None else names)
    unknown = [n for n in wanted if n not in _BUILDERS]
    if unknown:
        raise ValueError(f"no daily report {', '.join(unknown)} (the reports: "
                         f"{', '.join(DAILY_REPORTS)})")
    shared = _Day(db, day, settings, mid, as_of or datetime.now(UTC))
    tables = []
    for done, name in enumerate(wanted):
        if progress:
            progress(done, len(wanted))
        tables.append(_BUILDERS[name](shared))
    if progress:
        progress(len(wanted), len(wanted))
    return tables


def write_daily(db: Database, day: date, settings: Settings, out_dir: Path, *,
                mid: str | None = None, as_of: datetime | None = None,
                progress: Progress | None = None) -> list[Path]:
    """Every daily report into ``out_dir`` (created if missing): ``<name>.csv`` each,
    ``daily-<date>.md`` and a printable, self-contained ``daily-<date>.html``; the
    paths written, in that order."""
    tables = daily_reports(db, day, settings, mid=mid, as_of=as_of, progress=progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for table in tables:
        path = out_dir / f"{table.name}.csv"
        path.write_text(table.to_csv(), encoding="utf-8")
        paths.append(path)
    for suffix, text in (("md", render_markdown(tables, day, mid)),
                         ("html", render_html(tables, day, mid))):
        path = out_dir / f"daily-{day.isoformat()}.{suffix}"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
