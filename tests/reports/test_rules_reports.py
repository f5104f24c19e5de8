"""``bpnt-switch report alerts|prices|undelivered|stock`` (issue 14, docs/RULES.md
"Reports"; FAILURES F10, F11, F15) on both engines.  The rows are written straight
into the tables (:mod:`tests.reports.rules_rows`: money through the ledger, stock with
it); every figure of the CSV is asserted, at the edges of the WIB day."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import insert, update

from switch.cli import main
from switch.clock import WIB
from switch.db.tables import ReferencePrice, Stock
from switch.protocol.bpnt import BasketLine
from switch.reports import rules
from switch.reports.recon_model import UnknownEwarong
from switch.reports.rules_render import SUSPECTED_BUNDLE
from tests.reports.rules_rows import Rows
from tests.world import HostWorld

DAY = date(2026, 11, 25)  # the demo seed's receipts are on 2026-11-23
NEXT = DAY + timedelta(days=1)
PREV = DAY - timedelta(days=1)
MID2, TID2 = "EWARONG00000002", "EDC09002"


def wib(hh: int, mm: int = 0, ss: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=WIB)


def url(world: HostWorld) -> str:
    return world.db.engine.url.render_as_string(hide_password=False)


def run(world: HostWorld, capsys: pytest.CaptureFixture[str], *args: str,
        fmt: str = "csv") -> tuple[int, str]:
    capsys.readouterr()
    code = main(["report", *args, "--date", DAY.isoformat(), "--format", fmt,
                 "--db", url(world)])
    out = capsys.readouterr().out
    for card in world.demo.cards:  # never a full PAN
        assert card.pan not in out
    return code, out


def table(out: str, section: str, *columns: str) -> list[tuple[str, ...]]:
    return [tuple(row[c] for c in columns) for row in csv.DictReader(io.StringIO(out))
            if row["section"] == section]


def line(item: str, quantity: int, unit: int) -> BasketLine:
    return BasketLine(item, quantity, unit)


# -- alerts ------------------------------------------------------------------------------

def test_alerts_lists_the_day_in_wib_and_counts_per_rule_and_action(
        engine_world: HostWorld, capsys: pytest.CaptureFixture[str]) -> None:
    rows = Rows(engine_world)
    tid, mid = rows.tid(), rows.mid()
    rows.alert(wib(23, 59, 59, PREV), "velocity", "flag", {"cards": 9})  # the day before
    rows.alert(wib(0), "velocity", "flag",
               {"cards": 21, "window_minutes": 10, "max_cards": 20}, cards=(0, 1))
    rows.alert(wib(6, 30), "off_hours", "decline",
               {"local_time": "06:30", "open": "0700", "close": "2100"}, cards=(2,),
               record_id=41)
    rows.alert(wib(9), "zoning", "flag", {"zone": "327301", "zones": ["32", "3301"]},
               cards=(3,), ewarong=False)  # its e-warong by its terminal
    rows.alert(wib(12), "over_price", "flag",
               {"item": "BRS005", "unit_price_sen": 7_500_000, "reference_sen": 6_500_000,
                "percent_over": 15.38}, cards=(3,))
    rows.alert(wib(23, 59, 59), "low_stock", "flag",
               {"item": "TLR010", "quantity": 9, "threshold": 10})
    rows.alert(wib(0, day=NEXT), "low_stock", "flag", {"item": "X"})  # the day after
    rows.alert(wib(13), "velocity", "flag", {"cards": 22, "window_minutes": 10,
                                              "max_cards": 20}, cards=(4,))

    code, out = run(engine_world, capsys, "alerts")
    assert code == 0
    assert table(out, "alert", "time_wib", "rule", "action", "tid", "mid", "rrn", "cards",
                 "detail") == [
        ("00:00:00", "velocity", "flag", tid, mid, "",
         f"{rows.masked(0)} {rows.masked(1)}", "21 distinct cards in 10 min (max 20)"),
        ("06:30:00", "off_hours", "decline", tid, mid, "000000000041", rows.masked(2),
         "at 06:30 local time; open 0700–2100"),
        ("09:00:00", "zoning", "flag", tid, mid, "", rows.masked(3),
         "KPM zone 327301; the e-warong serves 32, 3301"),
        ("12:00:00", "over_price", "flag", tid, mid, "", rows.masked(3),
         "BRS005 at Rp 75.000 against the reference Rp 65.000 (+15.38%)"),
        ("13:00:00", "velocity", "flag", tid, mid, "", rows.masked(4),
         "22 distinct cards in 10 min (max 20)"),
        ("23:59:59", "low_stock", "flag", tid, mid, "", "",
         "TLR010: 9 units left (threshold 10)")]
    assert table(out, "alert", "at_utc")[0] == ("2026-11-24T17:00:00Z",)
    assert table(out, "count", "mid", "rule", "action", "count") == [
        (mid, "low_stock", "flag", "1"), (mid, "off_hours", "decline", "1"),
        (mid, "over_price", "flag", "1"), (mid, "velocity", "flag", "2"),
        (mid, "zoning", "flag", "1")]

    code, md = run(engine_world, capsys, "alerts", fmt="md")
    assert code == 0 and "| velocity | flag | 2 |" in md and rows.masked(0) in md

    rows.add_ewarong(MID2, TID2)
    code, out = run(engine_world, capsys, "alerts", "--ewarong", MID2)
    assert code == 0 and table(out, "alert", "rule") == [] and table(out, "count", "rule") == []
    assert main(["report", "alerts", "--date", DAY.isoformat(), "--ewarong", "NOSUCHMID",
                 "--db", url(engine_world)]) == 2


# -- prices ------------------------------------------------------------------------------

def test_prices_above_a_regional_reference_with_a_national_fallback(
        engine_world: HostWorld, capsys: pytest.CaptureFixture[str]) -> None:
    rows = Rows(engine_world)
    tid, mid = rows.tid(), rows.mid()
    rows.set_region(mid, "327301")
    with engine_world.db.transaction() as s:  # regional rice; eggs: only the national row
        s.execute(insert(ReferencePrice).values(item_code="BRS005", region="3273",
                                                unit_price_sen=7_000_000))
    rows.purchase(wib(23, 59, 59, PREV), [line("BRS005", 1, 9_000_000)], card=4)  # day before
    p1 = rows.purchase(wib(9), [line("BRS005", 1, 7_200_000), line("TLR010", 2, 3_000_000)])
    rows.purchase(wib(10), [line("BRS005", 1, 6_800_000), line("TLR010", 1, 2_800_000)],
                  card=1)  # above the national rice price, below the regional one
    p3 = rows.purchase(wib(11), [line("BRS005", 1, 8_000_000)], card=2, rc="13")
    reversed_ = rows.purchase(wib(12), [line("BRS005", 1, 6_500_000)], card=3)
    rows.reverse(reversed_, wib(12, 1))

    code, out = run(engine_world, capsys, "prices")
    assert code == 0
    assert table(out, "over_price", "mid", "tid", "rrn", "rc", "item", "quantity",
                 "unit_price_sen", "reference_sen", "reference_region", "percent_over",
                 "over_cap", "at_utc") == [
        (mid, tid, p1.rrn, "00", "BRS005", "1", "7200000", "7000000", "3273", "2.86", "0",
         "2026-11-25T02:00:00Z"),
        (mid, tid, p1.rrn, "00", "TLR010", "2", "3000000", "2800000", "", "7.14", "0",
         "2026-11-25T02:00:00Z"),
        (mid, tid, p3.rrn, "13", "BRS005", "1", "8000000", "7000000", "3273", "14.29", "1",
         "2026-11-25T04:00:00Z")]
    assert table(out, "item", "mid", "item", "lines", "units", "min_sen", "avg_sen",
                 "max_sen", "reference_sen") == [
        (mid, "BRS005", "2", "2", "6800000", "7000000", "7200000", "7000000"),
        (mid, "TLR010", "2", "3", "2800000", "2933333", "3000000", "2800000")]
    code, md = run(engine_world, capsys, "prices", fmt="md")
    assert code == 0 and "| 3273 | 2.86 | no |" in md and "| national | 7.14 | no |" in md


def test_prices_flags_a_forced_bundle_not_a_mixed_set(
        engine_world: HostWorld, capsys: pytest.CaptureFixture[str]) -> None:
    rows = Rows(engine_world)
    mid = rows.mid()
    rows.add_ewarong(MID2, TID2)
    bundle = [line("TLR010", 2, 2_800_000), line("TMP001", 1, 500_000)]
    for card in range(6):  # six KPM, one composition (prices differ: ignored)
        rows.purchase(wib(8, card), [line("TMP001", 1, 500_000 + card),
                                     line("TLR010", 2, 2_800_000)], card=card)
    rows.purchase(wib(9), bundle, card=0)  # the same KPM again counts once
    a, b = bundle, [line("BRS005", 1, 6_500_000)]
    for n, card in enumerate(range(6, 12)):  # six KPM, two compositions of three each
        rows.purchase(wib(10, n), a if n % 2 else b, card=card, tid=TID2, take_stock=False)

    code, out = run(engine_world, capsys, "prices")
    assert code == 0
    assert table(out, "bundle", "mid", "composition", "kpm", "total_kpm", "share",
                 "verdict") == [
        (mid, "TLR010×2 + TMP001×1", "6", "6", "1.0000", SUSPECTED_BUNDLE),
        (MID2, "BRS005×1", "3", "6", "0.5000", "ok")]
    code, md = run(engine_world, capsys, "prices", fmt="md")
    assert code == 0
    assert f"**{SUSPECTED_BUNDLE}** at {mid}: TLR010×2 + TMP001×1 bought by 6 of 6 KPM" in md
    assert f"at {MID2}" not in md.split("## ")[0]

    code, out = run(engine_world, capsys, "prices", "--ewarong", MID2, "--bundle-min-kpm", "3")
    assert table(out, "bundle", "mid", "verdict") == [(MID2, SUSPECTED_BUNDLE)]
    code, out = run(engine_world, capsys, "prices", "--ewarong", MID2, "--bundle-min-kpm", "3",
                    "--bundle-share", "0.6")
    assert code == 0 and table(out, "bundle", "mid", "verdict") == [(MID2, "ok")]


# -- undelivered -------------------------------------------------------------------------

def test_undelivered_lists_the_unconfirmed_old_standing_purchases(
        engine_world: HostWorld, capsys: pytest.CaptureFixture[str]) -> None:
    rows = Rows(engine_world)
    tid, mid = rows.tid(), rows.mid()
    rice = [line("BRS005", 1, 6_500_000)]
    rows.purchase(wib(23, 59, 59, PREV), rice, card=0)  # the day before: not listed
    first = rows.purchase(wib(0), rice, card=1)  # 00:00:00 WIB: the day's first instant
    confirmed = rows.purchase(wib(8), rice, card=2)
    rows.deliver(confirmed, wib(9))
    late = rows.purchase(wib(9), [line("TLR010", 3, 2_800_000)], card=3)
    rows.purchase(wib(20), rice, card=4)  # 14 hours old at the as-of: not yet due
    rows.void(rows.purchase(wib(10), rice, card=5), wib(10, 5))
    rows.reverse(rows.purchase(wib(11), rice, card=6), wib(11, 1))
    rows.purchase(wib(12), rice, card=7, rc="51")

    code, out = run(engine_world, capsys, "undelivered", "--as-of", "2026-11-26T10:00:00")
    assert code == 0
    assert table(out, "undelivered", "rrn", "tid", "mid", "amount_sen", "age_hours",
                 "pan_masked", "at_utc") == [
        (first.rrn, tid, mid, "6500000", "34.0", rows.masked(1), "2026-11-24T17:00:00Z"),
        (late.rrn, tid, mid, "8400000", "25.0", rows.masked(3), "2026-11-25T02:00:00Z")]
    assert table(out, "total", "mid", "purchases", "confirmed", "not_yet_due", "undelivered",
                 "undelivered_sen") == [(mid, "4", "1", "1", "2", "14900000")]

    code, md = run(engine_world, capsys, "undelivered", "--as-of", "2026-11-26T03:00:00Z",
                   fmt="md")  # the same instant, given in UTC
    assert code == 0
    assert f"| {late.rrn} | 2026-11-25 09:00:00 | {tid} | {mid} | Rp 84.000 | 25.0 |" in md
    assert "| Rp 149.000 |" in md

    shorter = rules.undelivered(engine_world.db, DAY, mid, hours=12,
                                as_of=wib(10, day=NEXT))
    assert [u.age_hours for u in shorter.lines] == [34.0, 25.0, 14.0]
    with pytest.raises(UnknownEwarong):
        rules.undelivered(engine_world.db, DAY, "NOSUCHMID", as_of=wib(10, day=NEXT))


# -- stock -------------------------------------------------------------------------------

def test_stock_movements_and_conservation_red_line(
        engine_world: HostWorld, capsys: pytest.CaptureFixture[str]) -> None:
    rows = Rows(engine_world)
    mid = rows.mid()
    rows.receive(mid, "BRS005", 50, wib(0), "DN-1")  # 00:00:00 WIB: the day's
    rows.receive(mid, "TLR010", -5, wib(7, 30), "broken eggs", kind="adjust")
    rows.receive(mid, "SYR001", 20, wib(23, 59, 59, PREV), "DN-0")  # the day before
    with engine_world.db.transaction() as s:
        s.execute(update(Stock).where(Stock.item_code == "IKN005")
                  .values(low_threshold=100_001))
    rows.purchase(wib(23, 59, 59, PREV), [line("BRS005", 2, 6_500_000)], card=0)
    rows.purchase(wib(9), [line("BRS005", 3, 5_000_000), line("TLR010", 1, 2_800_000)],
                  card=1)
    rows.reverse(rows.purchase(wib(10), [line("BRS005", 1, 6_500_000)], card=2), wib(10, 1))
    rows.void(rows.purchase(wib(11), [line("TLR010", 4, 2_800_000)], card=3), wib(11, 1))
    rows.alert(wib(12), "low_stock", "flag", {"item": "IKN005", "quantity": 100_000,
                                              "threshold": 100_001})
    columns = ("mid", "item", "units_now", "threshold", "low", "received_day",
               "adjusted_day", "sold_day", "receipts_total", "sold_total", "expected",
               "conserved")

    code, out = run(engine_world, capsys, "stock")
    assert code == 0
    shelves = {r[1]: r for r in table(out, "stock", *columns)}
    assert len(shelves) == 11  # every allowed item of the demo seed
    assert shelves["BRS005"] == (mid, "BRS005", "100045", "10", "0", "50", "0", "3",
                                 "100050", "5", "100045", "1")
    assert shelves["TLR010"] == (mid, "TLR010", "99994", "10", "0", "0", "-5", "1",
                                 "99995", "1", "99994", "1")
    assert shelves["SYR001"] == (mid, "SYR001", "100020", "10", "0", "0", "0", "0",
                                 "100020", "0", "100020", "1")
    assert shelves["IKN005"] == (mid, "IKN005", "100000", "100001", "1", "0", "0", "0",
                                 "100000", "0", "100000", "1")
    assert table(out, "low_alerts", "mid", "low_alerts") == [(mid, "1")]

    # a purchase that took stock without decrementing it breaks conservation
    rows.purchase(wib(13), [line("BRS005", 7, 1_000_000)], card=4, decrement=False)
    code, out = run(engine_world, capsys, "stock")
    assert code == 1
    broken = [r for r in table(out, "stock", *columns) if r[-1] == "0"]
    assert broken == [(mid, "BRS005", "100045", "10", "0", "50", "0", "10", "100050", "12",
                       "100038", "0")]
    code, md = run(engine_world, capsys, "stock", fmt="md")
    assert code == 1 and "**RED LINES: 1** (exit 1)" in md
    assert f"🔴 {mid} BRS005: 100045 units on the shelf, expected 100038" in md

    rows.add_ewarong(MID2, TID2)
    code, out = run(engine_world, capsys, "stock", "--ewarong", MID2)
    assert code == 0 and table(out, "stock", "mid") == []
    _take_the_missing_units(engine_world, "BRS005", 7)  # the world's teardown checks stock too


def _take_the_missing_units(world: HostWorld, item: str, units: int) -> None:
    from sqlalchemy import update

    from switch.db.tables import Stock

    with world.db.transaction() as session:
        session.execute(update(Stock).where(Stock.item_code == item)
                        .values(quantity=Stock.quantity - units))
