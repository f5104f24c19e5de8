"""The daily reports (issue 16, docs/CONSOLE.md "Daily reports") on both engines: a day
of real traffic through the switch (purchases, a decline, voids, a reversal, replays
and a 94, a price above the reference, a delivery, a purchase the day before) at two
e-warongs; every table's figures asserted, the one-e-warong restriction, the files
``report daily`` writes, and no full PAN anywhere."""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from switch.admin.delivery import confirm_delivery
from switch.admin.nik import mask_nik
from switch.admin.registry import Registry
from switch.admin.stock import receive_stock
from switch.cli import main
from switch.clock import WIB
from switch.db.tables import Card, Ewarong, Kpm, Transfer
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.protocol.message import Message, mask_pan
from switch.reports.daily import DAILY_REPORTS, ReportTable, daily_reports, write_daily
from switch.reports.recon_model import UnknownEwarong
from switch.security.keys import pan_token
from switch.settings import Settings
from tests.admin.rules_helpers import url_of
from tests.host.dayend_client import DayEndClient
from tests.test_cli_output import Terminal
from tests.world import HostWorld

RICE = BasketLine("BRS005", 1, 6_500_000)
EGGS = BasketLine("TLR010", 1, 2_800_000)
DEAR_EGGS = BasketLine("TLR010", 2, 3_000_000)  # 7.14% above the national 2,800,000
DAY = date(2026, 11, 25)
MID_A, MID_B, TID_B = "EWARONG00000001", "EWARONG00000009", "EDC00009"
AS_OF = datetime(2026, 11, 26, 12, 0, tzinfo=WIB)


@pytest.fixture
def world(engine_world: HostWorld) -> HostWorld:
    return engine_world


def _at(world: HostWorld, hh: int, mm: int = 0, ss: int = 0, day: date = DAY) -> None:
    world.clock.current = datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=WIB)


def _kpm(world: HostWorld, index: int) -> tuple[int, str]:
    """(KPM id, NIK) of the ``ok`` card ``index``."""
    with world.db.transaction() as session:
        row = session.execute(select(Kpm.id, Kpm.nik).join(Card, Card.kpm_id == Kpm.id).where(
            Card.pan_token == pan_token(world.keys.pan_token_key,
                                        world.card(index=index).pan))).one()
    return int(row.id), str(row.nik)


@dataclass
class Day:
    rrn: dict[str, str]


def _client(world: HostWorld, tid_index: int | None, card: int,
            terminal: object | None = None) -> DayEndClient:
    edc = world.edc(terminal or world.terminal(index=tid_index or 0))  # type: ignore[arg-type]
    world.insert(edc, world.card(index=card))
    assert edc.ensure_logged_on()
    return DayEndClient(world, edc)


def _build_day(world: HostWorld) -> Day:
    """A (EDC00001, cards 0, 2, 3) and B (EDC00009, region of card 3's KPM, card 1).

    The day before: P0 (card 2, A).  The day: P1 rice (card 0) stands, delivered; P2
    eggs voided by V2; P3 rice reversed; a wrong PIN (55); P5 eggs (card 3) voided by
    V5; at B, P4 two eggs at 3,000,000 (above the reference) stands, and a 94 (P4's key,
    another amount).  Each purchase is sent twice (the client's replay)."""
    from switch.admin.demo import DemoTerminal

    _, nik3 = _kpm(world, 3)
    tmk = world.terminal().tmk
    with world.db.transaction() as session:
        registry = Registry(session, world.keys, actor="admin:test", clock=world.clock)
        ewarong = registry.register_ewarong(mid=MID_B, name="e-Warong Sembilan")
        ewarong.region = nik3[:4]
        registry.register_terminal(tid=TID_B, ewarong=ewarong, tmk=tmk)
        receive_stock(session, world.keys, mid=MID_B, item_code="TLR010", quantity=10,
                      actor="admin:test", reference="DN-9", clock=world.clock)
    pins = {i: world.card(index=i).pin for i in range(4)}
    rrn: dict[str, str] = {}

    _at(world, 23, 59, 59, DAY - timedelta(days=1))
    a = _client(world, 0, 2)  # one EDC per terminal (its STANs), the cards swapped
    rrn["P0"] = a.purchase([EGGS], pins[2])[1].text(37)

    _at(world, 8)
    world.insert(a.edc, world.card(index=0))
    p1 = a.purchase([RICE], pins[0])
    _at(world, 9)
    p2 = a.purchase([EGGS], pins[0])
    _, v2 = a.void(p2[0])
    assert v2.rc == codes.APPROVED
    _at(world, 10)
    p3 = a.purchase([RICE], pins[0])
    assert a.reversal(p3[0]).rc == codes.APPROVED
    _at(world, 10, 30)
    wrong = f"{(int(pins[0]) + 1) % 10**6:06d}"
    assert a.edc.purchase([RICE], wrong).rc == codes.WRONG_PIN
    _at(world, 10, 45)
    world.insert(a.edc, world.card(index=3))
    p5 = a.purchase([EGGS], pins[3])
    _, v5 = a.void(p5[0])
    assert v5.rc == codes.APPROVED

    _at(world, 11)
    b = _client(world, None, 1, DemoTerminal(TID_B, MID_B, tmk))
    p4 = b.purchase([DEAR_EGGS], pins[1])
    changed = Message(p4[0].mti, {**{k: v for k, v in p4[0].fields.items() if k != 64},
                                  4: f"{DEAR_EGGS.total_sen + 100:012d}"})
    assert b.send(changed).message.text(39) == codes.DUPLICATE_DIFFERENT

    rrn.update(P1=p1[1].text(37), P2=p2[1].text(37), V2=v2.message.text(37),
               P3=p3[1].text(37), P5=p5[1].text(37), V5=v5.message.text(37),
               P4=p4[1].text(37))
    _at(world, 12)
    with world.db.transaction() as session:
        confirm_delivery(session, world.keys, rrn["P1"], "admin:agent", world.clock)
    return Day(rrn)


def _tables(world: HostWorld, mid: str | None = None) -> dict[str, ReportTable]:
    tables = daily_reports(world.db, DAY, Settings(database_url=url_of(world)), mid=mid,
                           as_of=AS_OF)
    assert [t.name for t in tables] == list(DAILY_REPORTS)
    return {t.name: t for t in tables}


def _col(table: ReportTable, *columns: str) -> list[tuple[str | int, ...]]:
    return [tuple(row[c] for c in columns) for row in table.as_dicts()]


def _allocated(world: HostWorld) -> int:
    with world.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(Transfer).where(
            Transfer.kind == "allocation")) or 0)


def test_the_day_per_ewarong_region_and_the_existing_reports(world: HostWorld) -> None:
    day = _build_day(world)
    r = day.rrn
    t = _tables(world)

    assert _col(t["ewarong"], "mid", "requests", "purchases", "purchases_sen", "declined",
                "declines_by_rc", "voids", "voids_sen", "purchase_reversals",
                "purchase_reversals_sen", "void_reversals", "net_sen") == [
        (MID_A, 5, 4, 18_600_000, 1, "55:1", 2, 5_600_000, 1, 6_500_000, 0, 6_500_000),
        (MID_B, 1, 1, 6_000_000, 0, "", 0, 0, 0, 0, 0, 6_000_000)]

    # per region: each card's KPM regency, added up by hand
    expected: dict[str, list[int]] = {}
    for card, (requests, declined, purchases, purchases_sen, voids, voids_sen, rev_sen) in {
            0: (4, 1, 3, 15_800_000, 1, 2_800_000, 6_500_000),
            3: (1, 0, 1, 2_800_000, 1, 2_800_000, 0),
            1: (1, 0, 1, 6_000_000, 0, 0, 0)}.items():
        code = _kpm(world, card)[1][:4]
        for level_code in (code[:2], code):
            got = expected.setdefault(level_code, [0] * 8)
            for i, v in enumerate((requests, declined, purchases, purchases_sen, voids,
                                   voids_sen, 1 if rev_sen else 0, rev_sen)):
                got[i] += v
    regions = {row[1]: row for row in _col(
        t["region"], "level", "code", "requests", "declined", "purchases", "purchases_sen",
        "voids", "voids_sen", "purchase_reversals", "purchase_reversals_sen", "net_sen",
        "decline_rate", "rc_91_96")}
    assert set(regions) == set(expected)
    for code, (requests, declined, purchases, p_sen, voids, v_sen, revs, rev_sen) in \
            expected.items():
        assert regions[code] == ("province" if len(code) == 2 else "regency", code,
                                 requests, declined, purchases, p_sen, voids, v_sen, revs,
                                 rev_sen, p_sen - v_sen - rev_sen,
                                 f"{declined * 100 / requests:.2f}%", 0)
    provinces = [row for row in regions.values() if row[0] == "province"]
    assert sum(int(row[10]) for row in provinces) == 12_500_000  # = the e-warongs' net

    assert _col(t["reconciliation"], "mid", "terminals", "purchases", "voids", "reversals",
                "net_sen", "payable_sen", "payable_agrees", "red_lines") == [
        (MID_A, 1, 4, 2, 1, 6_500_000, 6_500_000, "yes", 0),
        (MID_B, 1, 1, 0, 0, 6_000_000, 6_000_000, "yes", 0)]
    assert t["reconciliation"].notes[0].startswith("No red line")

    assert _col(t["duplicates"], "kind", "tid", "mid", "sent_again", "rrn",
                "original_rrn", "original_rc") == [
        ("replay", "EDC00001", MID_A, "request", "", r[p], "00") for p in ("P1", "P2", "P3")
    ] + [("replay", "EDC00001", MID_A, "request", "", r["P5"], "00"),
         ("replay", TID_B, MID_B, "request", "", r["P4"], "00"),
         ("refusal_94", TID_B, MID_B, "request", _col(t["duplicates"], "rrn")[-1][0],
          r["P4"], "00")]
    assert _col(t["duplicates"], "rrn")[-1][0] not in ("", r["P4"])
    assert "5 replays" in t["duplicates"].notes[0] and "1 refusals 94" in t["duplicates"].notes[0]

    assert _col(t["prices"], "mid", "item", "sold_lines", "units", "min_sen", "avg_sen",
                "max_sen", "reference_sen", "over_reference", "over_cap") == [
        (MID_A, "BRS005", 1, 1, 6_500_000, 6_500_000, 6_500_000, 6_500_000, 0, 0),
        (MID_B, "TLR010", 1, 2, 3_000_000, 3_000_000, 3_000_000, 2_800_000, 1, 0)]

    masked1 = mask_pan(world.card(index=1).pan)
    assert _col(t["undelivered"], "rrn", "time_wib", "tid", "mid", "amount_sen", "age_hours",
                "pan_masked") == [(r["P4"], "11:00:00", TID_B, MID_B, 6_000_000, "25.0",
                                   masked1)]
    assert f"{MID_A}: 1 purchases, 1 confirmed, 0 not yet due, 0 undelivered (0 sen)" in \
        t["undelivered"].notes

    allocated = _allocated(world)
    idle = [row[0] for row in _col(t["not-shopped"], "kpm_nik_masked")]
    assert len(idle) == allocated - 3  # cards 0 (P1), 1 (P4), 2 (P0, the day before)
    assert mask_nik(_kpm(world, 3)[1]) in idle  # P5 was voided: not shopped
    assert t["not-shopped"].notes[0].startswith(
        f"{allocated - 3} of {allocated} KPM allocated in 2026-11 (every KPM)")
    assert all(row[2] == 20_000_000 for row in _col(t["not-shopped"], "kpm_nik_masked",
                                                      "zone", "balance_sen")
               if row[0] == mask_nik(_kpm(world, 3)[1]))


def test_one_ewarong_sees_only_its_own(world: HostWorld) -> None:
    day = _build_day(world)
    t = _tables(world, MID_B)
    assert _col(t["ewarong"], "mid", "requests", "net_sen") == [(MID_B, 1, 6_000_000)]
    code1 = _kpm(world, 1)[1][:4]
    assert _col(t["region"], "code", "requests", "net_sen") == [
        (code1[:2], 1, 6_000_000), (code1, 1, 6_000_000)]
    assert _col(t["reconciliation"], "mid") == [(MID_B,)]
    assert [row[0] for row in _col(t["duplicates"], "kind")] == ["replay", "refusal_94"]
    assert _col(t["prices"], "mid") == [(MID_B,)]
    assert _col(t["undelivered"], "rrn") == [(day.rrn["P4"],)]
    # not shopped: the KPM of B's region (card 3's regency) that did not buy
    region = _kpm(world, 3)[1][:4]
    with world.db.transaction() as session:
        ids = {int(i) for i in session.scalars(select(Kpm.id).join(
            Transfer, Transfer.credit_account_id == Kpm.wallet_account_id).where(
            Transfer.kind == "allocation", Kpm.zone.startswith(region)))}
    shopped = {_kpm(world, i)[0] for i in (0, 1, 2)}
    idle = _col(t["not-shopped"], "kpm_nik_masked", "zone")
    assert idle and all(str(zone).startswith(region) for _, zone in idle)
    assert len(idle) == len(ids - shopped) and mask_nik(_kpm(world, 3)[1]) in {
        nik for nik, _ in idle}
    with pytest.raises(UnknownEwarong):
        _tables(world, "NOSUCHMID")


def test_report_daily_writes_the_files_and_no_pan(
        world: HostWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _build_day(world)
    out = tmp_path / "reports" / DAY.isoformat()
    paths = write_daily(world.db, DAY, Settings(database_url=url_of(world)), out,
                        as_of=AS_OF)
    names = [p.name for p in paths]
    assert names == [f"{n}.csv" for n in DAILY_REPORTS] + [
        f"daily-{DAY.isoformat()}.md", f"daily-{DAY.isoformat()}.html"]
    pans = [c.pan for c in world.demo.cards]
    for path in paths:
        text = path.read_text(encoding="utf-8")
        assert not any(pan in text for pan in pans), path
    ewarong = list(csv.DictReader(io.StringIO((out / "ewarong.csv").read_text())))
    assert [(r["mid"], r["purchases_sen"], r["net_sen"]) for r in ewarong] == [
        (MID_A, "18600000", "6500000"), (MID_B, "6000000", "6000000")]
    html = (out / f"daily-{DAY.isoformat()}.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "@media print" in html
    assert "<script" not in html and "http" not in html.replace(
        'charset="utf-8"', "") and "Rp 65.000" in html
    md = (out / f"daily-{DAY.isoformat()}.md").read_text()
    assert "## Per e-warong" in md and "| EWARONG00000001 |" in md

    capsys.readouterr()
    cli_out = tmp_path / "cli"
    code = main(["report", "daily", "--date", DAY.isoformat(), "--out", str(cli_out),
                 "--mid", MID_B, "--as-of", "2026-11-26T12:00:00", "--db", url_of(world)])
    printed, err = capsys.readouterr()
    assert code == 0 and err == ""  # stderr is no terminal: no progress bar
    assert printed.splitlines() == [f"wrote {cli_out / n}" for n in names]
    tty, tty_out = Terminal(), tmp_path / "tty"
    monkeypatch.setattr(sys, "stderr", tty)
    assert main(["report", "daily", "--date", DAY.isoformat(), "--out", str(tty_out),
                 "--db", url_of(world)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {tty_out / n}" for n in names]
    assert f"daily reports {DAY.isoformat()}" in tty.getvalue() and "7/7" in tty.getvalue()
    monkeypatch.undo()
    assert list(csv.DictReader(io.StringIO((cli_out / "ewarong.csv").read_text())))[0][
        "mid"] == MID_B
    code = main(["report", "daily", "--date", DAY.isoformat(), "--out", str(cli_out),
                 "--json", "--db", url_of(world)])
    document = json.loads(capsys.readouterr().out)
    assert code == 0 and document["reports"] == list(DAILY_REPORTS)
    assert document["written"] == [str(cli_out / n) for n in names]

    code = main(["report", "daily", "--date", DAY.isoformat(), "--out", str(tmp_path / "x"),
                 "--mid", "NOSUCHMID", "--db", url_of(world)])
    printed, err = capsys.readouterr()
    assert code == 2 and "error: no e-warong with MID 'NOSUCHMID'" in err
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit) as bad:
        main(["report", "daily", "--date", "25-11-2026", "--out", str(tmp_path / "y"),
              "--db", url_of(world)])
    assert bad.value.code == 2 and "not a YYYY-MM-DD date" in capsys.readouterr().err
    with world.db.transaction() as session:
        assert session.scalar(select(Ewarong.region).where(Ewarong.mid == MID_B))


def test_a_long_table_is_cut_in_the_documents_not_in_its_csv() -> None:
    from switch.reports.daily_render import MAX_PRINTED_ROWS, render_html, render_markdown

    rows = tuple((f"3201********{n:04d}", "320101", n) for n in range(MAX_PRINTED_ROWS + 5))
    table = ReportTable("not-shopped", "KPM", ("kpm_nik_masked", "zone", "balance_sen"), rows)
    assert len(table.to_csv().splitlines()) == MAX_PRINTED_ROWS + 6
    for text in (render_markdown([table], DAY, None), render_html([table], DAY, None)):
        assert "... and 5 more rows: every row is in not-shopped.csv." in text
        assert f"3201********{MAX_PRINTED_ROWS - 1:04d}" in text
        assert f"3201********{MAX_PRINTED_ROWS:04d}" not in text
    assert "Rp 10" in table.to_markdown() and "| 3201********0010 | 320101 | Rp 0,10 |" in \
        table.to_markdown()
