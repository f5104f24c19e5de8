"""``bpnt-switch report reconciliation`` (HOST_SPEC 1.1 §4, FAILURES F2) on both engines:
a day built through the real switch (purchases, voids, reversals, a settlement that
matched, one that went 95 → batch upload → 960000 with differences), its numbers
asserted exactly; replays and 94s of every class (request, reversal, upload,
settlement) driven through the switch and counted from the audit trail, at the edges
of the WIB day; and a double posting inserted by hand, which is a red line (exit 1)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, select, update

from switch.cli import main
from switch.clock import WIB, FixedClock
from switch.core.batch import Totals
from switch.db import audit
from switch.db.tables import Account, JournalEntry, RequestRecord, Transfer
from switch.host.service import HostService
from switch.ledger.invariants import check_invariants
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.protocol.message import Message, mask_pan
from switch.reports.reconciliation import (
    VOID_STANDS,
    Report,
    SwitchTotals,
    UnknownEwarong,
    day_window,
    reconciliation,
    render_csv,
    render_md,
    summary_lines,
)
from switch.settings import Settings
from tests.host.dayend_client import DayEndClient
from tests.postgres.world import seed
from tests.world import HostWorld

RICE = BasketLine("BRS005", 1, 6_500_000)
EGGS = BasketLine("TLR010", 1, 2_800_000)
SPEND = BasketLine("BRS005", 2, 5_000_000)  # 10,000,000 sen: more than the void gave back
DAY = date(2026, 11, 23)
MID = "EWARONG00000001"  # both "ok" terminals of the test world belong to it


@pytest.fixture
def world(any_url: str) -> Iterator[HostWorld]:
    """The seeded test world on ``any_url``, its switch on a clock the test moves."""
    seeded = seed(any_url)
    clock = FixedClock(datetime(2026, 11, 22, 23, 59, 59, tzinfo=WIB))
    yield HostWorld(seeded.db, HostService(seeded.db, Settings(database_url=any_url), clock),
                    seeded.demo, clock, seeded.keys, {})
    seeded.db.dispose()


def _client(world: HostWorld, index: int) -> DayEndClient:
    edc = world.edc(world.terminal(index=index))
    world.insert(edc, world.card("ok", index))
    assert edc.ensure_logged_on()
    return DayEndClient(world, edc)


def _at(world: HostWorld, hh: int, mm: int, ss: int = 0, day: date = DAY) -> None:
    world.clock.current = datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=WIB)


def _rrn(answer: Message) -> str:
    return answer.text(37)


@dataclass
class Day:
    a: DayEndClient
    b: DayEndClient
    rrn: dict[str, str]


def _build_day(world: HostWorld) -> Day:
    """Terminal A (EDC00001) and B (EDC00002) of one e-warong, through the real switch.

    A: P1 06:30 WIB (23:30 UTC the day before), P2, P3; V1 voids P1; P1's reversal
       moves nothing (voided); P3 reversed; P8
       voided by V3 and V3 reversed (the debit reinstated); settles 920000, totals
       agree → 00; P_late at 23:59:59 WIB; P9 at 00:00:00 WIB the next day.
    B: P0 at 23:59:59 WIB the day before; P4, P5, P6; V2 voids P4; P7 spends what V2
       gave back, so V2's reversal cannot reinstate P4: the void stands; settles without
       P6 → 95, uploads (P5 for 100 sen more), 960000 → 00 with two differences.
    """
    pin_a, pin_b = world.card("ok", 0).pin, world.card("ok", 1).pin
    _at(world, 23, 59, 59, date(2026, 11, 22))
    a, b = _client(world, 0), _client(world, 1)
    rrn: dict[str, str] = {}
    p0 = b.purchase([EGGS], pin_b)
    rrn["P0"] = _rrn(p0[1])

    _at(world, 6, 30)
    p1 = a.purchase([RICE], pin_a)
    _at(world, 10, 0)
    p2 = a.purchase([EGGS], pin_a)
    p3 = a.purchase([EGGS, EGGS], pin_a)
    v1, v1_answer = a.void(p1[0])
    assert v1_answer.rc == codes.APPROVED
    rp1 = a.reversal(p1[0])  # of a voided purchase: 00, nothing moves (V1 paid it back)
    assert rp1.rc == codes.APPROVED
    r3 = a.reversal(p3[0])
    assert r3.rc == codes.APPROVED
    p8 = a.purchase([EGGS], pin_a)
    v3, v3_answer = a.void(p8[0])
    assert v3_answer.rc == codes.APPROVED
    rv3 = a.reversal(v3)
    assert rv3.rc == codes.APPROVED
    assert a.reversal(v3, "0401").rc == codes.APPROVED  # repeated: a replay, no money
    rrn.update(P1=_rrn(p1[1]), P2=_rrn(p2[1]), P3=_rrn(p3[1]), V1=_rrn(v1_answer.message),
               RP1=_rrn(rp1.message), R3=_rrn(r3.message), P8=_rrn(p8[1]),
               V3=_rrn(v3_answer.message), RV3=_rrn(rv3.message))
    _at(world, 10, 30)
    _, settled = a.settle(Totals(3, RICE.total_sen + 2 * EGGS.total_sen, 1, RICE.total_sen))
    assert settled.rc == codes.APPROVED
    rrn["SA"] = _rrn(settled.message)

    _at(world, 11, 0)
    p4 = b.purchase([RICE], pin_b)
    p5 = b.purchase([EGGS], pin_b)
    p6 = b.purchase([EGGS], pin_b)
    v2, v2_answer = b.void(p4[0])
    assert v2_answer.rc == codes.APPROVED
    p7 = b.purchase([SPEND], pin_b)
    rv2 = b.reversal(v2)
    assert rv2.rc == codes.APPROVED  # answered 00; the void stands
    rrn.update(P4=_rrn(p4[1]), P5=_rrn(p5[1]), P6=_rrn(p6[1]), V2=_rrn(v2_answer.message),
               P7=_rrn(p7[1]), RV2=_rrn(rv2.message))
    _at(world, 12, 0)
    held = Totals(4, 2 * EGGS.total_sen + RICE.total_sen + SPEND.total_sen + 100, 1,
                  RICE.total_sen)  # without P6, P5 100 sen more
    _, mismatch = b.settle(held)
    assert mismatch.rc == codes.SETTLEMENT_MISMATCH
    uploads = [b.upload(*p0), b.upload(*p4), b.upload(*p5, amount_sen=EGGS.total_sen + 100),
               b.upload(*p7), b.upload(v2, v2_answer.message)]
    assert [u.rc for u in uploads] == ["00"] * 5
    _, closed = b.settle(held, code="960000")
    assert closed.rc == codes.APPROVED
    rrn.update(SB1=_rrn(mismatch.message), SB2=_rrn(closed.message))

    _at(world, 23, 59, 59)
    rrn["P_late"] = _rrn(a.purchase([EGGS], pin_a)[1])
    _at(world, 0, 0, 0, date(2026, 11, 24))
    rrn["P9"] = _rrn(a.purchase([EGGS], pin_a)[1])
    return Day(a, b, rrn)


def _run(url: str, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["report", "reconciliation", "--db", url, *args])
    return code, capsys.readouterr().out


def test_the_day_adds_up(world: HostWorld, any_url: str,
                         capsys: pytest.CaptureFixture[str]) -> None:
    day = _build_day(world)
    rrn = day.rrn
    report = reconciliation(world.db, DAY)

    assert report.window.start == datetime(2026, 11, 22, 17, tzinfo=UTC)
    assert report.window.end == datetime(2026, 11, 23, 17, tzinfo=UTC)
    assert [e.mid for e in report.ewarongs] == [MID]
    a, b = report.terminal("EDC00001"), report.terminal("EDC00002")
    # A: P1 (06:30 WIB), P2, P3, P8, P_late (23:59:59 WIB); not P9 (00:00 WIB next day)
    assert a.totals == SwitchTotals(
        purchase_count=5, purchase_sen=RICE.total_sen + 5 * EGGS.total_sen,
        void_count=2, void_sen=RICE.total_sen + EGGS.total_sen,
        purchase_reversal_count=1, purchase_reversal_sen=2 * EGGS.total_sen,
        void_reversal_count=1, void_reversal_sen=EGGS.total_sen, idle_reversal_count=1)
    assert a.totals.net_sen == 8_400_000  # P2 + P8 + P_late stand
    # B: P4, P5, P6, P7 (not P0, the day before); V2; its reversal moved nothing
    assert b.totals == SwitchTotals(
        purchase_count=4, purchase_sen=RICE.total_sen + 2 * EGGS.total_sen + SPEND.total_sen,
        void_count=1, void_sen=RICE.total_sen, idle_reversal_count=1)
    assert b.totals.net_sen == 15_600_000
    ewarong = report.ewarong(MID)
    assert ewarong.payable_movement_sen == ewarong.totals.net_sen == 24_000_000
    assert ewarong.payable_by_kind == {
        "purchase": 42_600_000, "void": -15_800_000, "reversal": -2_800_000}
    assert ewarong.payable_agrees

    # settlements: A matched; B 95, then 960000 closed with the uploads' differences
    lines = {s.rrn: s for s in report.settlements}
    assert list(lines) == [rrn["SA"], rrn["SB1"], rrn["SB2"]]
    sa, sb1, sb2 = lines[rrn["SA"]], lines[rrn["SB1"]], lines[rrn["SB2"]]
    assert (sa.tid, sa.processing_code, sa.response_code, sa.closed, sa.agree) == (
        "EDC00001", "920000", "00", True, True)
    assert sa.switch == Totals(3, 12_100_000, 1, 6_500_000)
    switch_b = Totals(5, 24_900_000, 1, 6_500_000)  # P0 of the day before is in the batch
    terminal_b = Totals(4, 22_100_100, 1, 6_500_000)
    assert (sb1.processing_code, sb1.response_code, sb1.closed, sb1.agree, sb1.terminal,
            sb1.switch, sb1.uploads) == ("920000", "95", False, False, terminal_b, switch_b, 0)
    assert (sb2.processing_code, sb2.response_code, sb2.closed, sb2.agree, sb2.terminal,
            sb2.switch, sb2.uploads, sb2.differences) == (
        "960000", "00", True, False, terminal_b, switch_b, 5, 2)
    assert [s.rrn for s in a.settlements] == [rrn["SA"]]
    assert [(d.settlement_rrn, d.kind, d.processing_code, d.rrn, d.switch_amount_sen,
             d.terminal_amount_sen) for d in report.differences] == [
        (rrn["SB2"], "amount", "000000", rrn["P5"], EGGS.total_sen, EGGS.total_sen + 100),
        (rrn["SB2"], "switch_only", "000000", rrn["P6"], EGGS.total_sen, None)]

    # voids and reversals, the void that stands
    assert [(v.rrn, v.tid, v.purchase_rrn, v.amount_sen, v.state.split(":")[0])
            for v in report.voids] == [
        (rrn["V1"], "EDC00001", rrn["P1"], RICE.total_sen, "stands"),
        (rrn["V3"], "EDC00001", rrn["P8"], EGGS.total_sen, "reversed"),
        (rrn["V2"], "EDC00002", rrn["P4"], RICE.total_sen, "stands")]
    assert [(r.rrn, r.original_rrn, r.processing_code, r.restored_sen, r.moved_money)
            for r in report.reversals] == [
        (rrn["RP1"], rrn["P1"], "000000", 0, False),
        (rrn["R3"], rrn["P3"], "000000", 2 * EGGS.total_sen, True),
        (rrn["RV3"], rrn["V3"], "020000", EGGS.total_sen, True),
        (rrn["RV2"], rrn["V2"], "020000", 0, False)]
    assert report.reversals[0].state == "voided: the void paid it back"  # the audit's words
    assert [(r.rrn, r.original_rrn, r.state) for r in report.void_stands] == [
        (rrn["RV2"], rrn["V2"], VOID_STANDS)]  # as the audit trail has it
    assert report.anomalies == [] and report.double_postings == []
    assert report.ok and report.exit_code == 0

    # the rendered forms, and the command
    md = render_md(report)
    assert "2026-11-22 17:00:00 UTC" in md and "2026-11-23 17:00:00 UTC" in md
    assert "**No red line**" in md and "Rp 240.000" in md and VOID_STANDS in md
    # the duplicates: each purchase sent again by DayEndClient, and V3's reversal 0401
    assert [(d.tid, d.message_class, d.kind, d.original_rrn) for d in report.duplicates] == [
        ("EDC00001", "request", "replay", rrn[p]) for p in ("P1", "P2", "P3", "P8")] + [
        ("EDC00001", "reversal", "replay", rrn["RV3"])] + [
        ("EDC00002", "request", "replay", rrn[p]) for p in ("P4", "P5", "P6", "P7")] + [
        ("EDC00001", "request", "replay", rrn["P_late"])]
    assert (len(report.replays), len(report.refusals)) == (10, 0)
    assert (a.replays, a.refusals, b.replays, b.refusals) == (6, 0, 4, 0)
    assert (ewarong.replays, ewarong.refusals) == (10, 0)
    assert "| replays (same key, same content: the stored answer again) | 10 |" in md
    code, out = _run(any_url, "--date", "2026-11-23", capsys=capsys)
    assert (code, out) == (0, md)
    code, out = _run(any_url, "--date", "2026-11-23", "--format", "csv", capsys=capsys)
    assert code == 0 and out == render_csv(report)
    rows = list(csv.DictReader(io.StringIO(out)))
    summary = [r for r in rows if r["section"] == "ewarong"]
    assert [(r["mid"], r["net_sen"], r["payable_sen"], r["ok"]) for r in summary] == [
        (MID, "24000000", "24000000", "1")]
    assert [r["rrn"] for r in rows if r["section"] == "void_stands"] == [rrn["RV2"]]
    assert [r["rrn"] for r in rows if r["section"] == "difference"] == [rrn["P5"], rrn["P6"]]
    assert {r["section"] for r in rows} == {
        "window", "ewarong", "terminal", "settlement", "difference", "void", "reversal",
        "void_stands", "duplicates", "duplicate"}
    assert [(r["kind"], r["count"]) for r in rows if r["section"] == "duplicates"] == [
        ("double_posting", "0"), ("replay", "10"), ("refusal_94", "0")]
    assert len([r for r in rows if r["section"] == "duplicate"]) == 10
    assert summary_lines(report)[0] == "reconciliation 2026-11-23 WIB: OK, no red line"

    # the neighbouring days hold what the window left out
    before, after = reconciliation(world.db, date(2026, 11, 22)), reconciliation(
        world.db, date(2026, 11, 24), MID)
    assert before.terminal("EDC00002").totals == SwitchTotals(1, EGGS.total_sen)
    assert before.ok and before.ewarong(MID).payable_movement_sen == EGGS.total_sen
    assert [(d.tid, d.original_rrn) for d in before.duplicates] == [("EDC00002", rrn["P0"])]
    assert [t.tid for t in after.ewarongs[0].terminals] == ["EDC00001"]
    assert after.terminal("EDC00001").totals == SwitchTotals(1, EGGS.total_sen)
    assert [(d.tid, d.original_rrn) for d in after.duplicates] == [("EDC00001", rrn["P9"])]
    assert check_invariants(world.db).ok


def _changed(message: Message, de: int, value: str) -> Message:
    """``message`` with DE ``de`` changed, to be signed again: same key, other content."""
    return Message(message.mti, {**{k: v for k, v in message.fields.items() if k != 64},
                                 de: value})


def _same_stan(client: DayEndClient) -> DayEndClient:
    """The client's next message under its last STAN again (the same key)."""
    client.stan -= 1
    return client


def test_duplicates_are_counted(world: HostWorld, any_url: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """Replays and 94s of every class driven through the switch, by the audit stamp's
    instant: the first and last second of the WIB day (under a UTC clock too), a replay
    of the day before's sale, and one stamped -05:00 of a TID that is no terminal."""
    pin_a, pin_b = world.card("ok", 0).pin, world.card("ok", 1).pin
    a, b = _client(world, 0), _client(world, 1)  # 23:59:59 WIB the day before
    p0 = a.purchase([EGGS], pin_a)  # its repeat: a replay of 2026-11-22
    _at(world, 0, 0, 0)
    assert a.send(p0[0]).message == p0[1]  # the same signed unit: the stored answer

    _at(world, 10, 0)
    p1 = a.purchase([RICE], pin_a)  # and its repeat
    assert a.send(p1[0]).message == p1[1]
    refused = a.send(_changed(p1[0], 4, f"{RICE.total_sen + 100:012d}")).message
    assert refused.text(39) == codes.DUPLICATE_DIFFERENT
    reversal = a.reversal(p1[0])
    assert reversal.rc == codes.APPROVED
    assert a.reversal(p1[0], "0401").message.text(37) == _rrn(reversal.message)
    refused_reversal = a.reversal(_changed(p1[0], 4, f"{RICE.total_sen - 100:012d}"))
    assert refused_reversal.rc == codes.DUPLICATE_DIFFERENT

    _at(world, 11, 0)
    p2 = b.purchase([EGGS], pin_b)  # and its repeat
    _, mismatch = b.settle(Totals(0, 0, 0, 0))
    assert mismatch.rc == codes.SETTLEMENT_MISMATCH
    upload = b.upload(*p2)
    assert upload.rc == codes.APPROVED
    assert _same_stan(b).upload(*p2).message == upload.message
    refused_upload = _same_stan(b).upload(*p2, amount_sen=EGGS.total_sen + 100)
    assert refused_upload.rc == codes.DUPLICATE_DIFFERENT
    stan = b.next_stan()
    _, closed = b.settle(Totals(0, 0, 0, 0), code="960000", stan=stan)
    assert closed.rc == codes.APPROVED
    assert b.settle(Totals(0, 0, 0, 0), code="960000", stan=stan)[1].message == closed.message
    refused_settle = b.settle(Totals(1, EGGS.total_sen, 0, 0), code="960000", stan=stan)[1]
    assert refused_settle.rc == codes.DUPLICATE_DIFFERENT

    world.clock.current = datetime(2026, 11, 23, 16, 59, 59, tzinfo=UTC)  # 23:59:59 WIB
    assert a.send(p1[0]).message == p1[1]
    world.clock.current = datetime(2026, 11, 23, 17, tzinfo=UTC)  # 00:00 WIB, the 24th
    assert a.send(p1[0]).message == p1[1]
    with world.db.transaction() as session:  # 17:00 UTC: the day's first second
        audit.append(session, world.keys.audit_key,
                     at=datetime(2026, 11, 22, 12, tzinfo=timezone(timedelta(hours=-5))),
                     actor="terminal:EDC09999", action="duplicate.replay", subject="000123",
                     detail={"class": "request", "local_date": "1123",
                             "original_rrn": "000000000001", "original_rc": "00"})

    report = reconciliation(world.db, DAY)
    r = {"P0": _rrn(p0[1]), "P1": _rrn(p1[1]), "RP1": _rrn(reversal.message),
         "U": _rrn(upload.message), "S": _rrn(closed.message), "P2": _rrn(p2[1])}
    assert [(d.tid, d.message_class, d.kind, d.original_rrn, d.rrn)
            for d in report.duplicates] == [
        ("EDC00001", "request", "replay", r["P0"], None),
        ("EDC00001", "request", "replay", r["P1"], None),
        ("EDC00001", "request", "replay", r["P1"], None),
        ("EDC00001", "request", "refusal_94", r["P1"], _rrn(refused)),
        ("EDC00001", "reversal", "replay", r["RP1"], None),
        ("EDC00001", "reversal", "refusal_94", r["RP1"], _rrn(refused_reversal.message)),
        ("EDC00002", "request", "replay", r["P2"], None),
        ("EDC00002", "upload", "replay", r["U"], None),
        ("EDC00002", "upload", "refusal_94", r["U"], _rrn(refused_upload.message)),
        ("EDC00002", "settlement", "replay", r["S"], None),
        ("EDC00002", "settlement", "refusal_94", r["S"], _rrn(refused_settle.message)),
        ("EDC00001", "request", "replay", r["P1"], None),
        ("EDC09999", "request", "replay", "000000000001", None)]  # chain order: appended
    first, last, stamped = (report.duplicates[i].at for i in (0, -2, -1))
    assert (first, last, stamped) == (  # 00:00:00 WIB, 23:59:59 WIB, 12:00:00 -05:00
        datetime(2026, 11, 22, 17, tzinfo=UTC), datetime(2026, 11, 23, 16, 59, 59, tzinfo=UTC),
        datetime(2026, 11, 22, 17, tzinfo=UTC))
    assert {d.local_date for d in report.duplicates if d.message_class == "settlement"} == {""}
    assert (len(report.replays), len(report.refusals)) == (9, 4)
    ta, tb = report.terminal("EDC00001"), report.terminal("EDC00002")
    assert (ta.replays, ta.refusals, tb.replays, tb.refusals) == (5, 2, 3, 2)
    assert (report.ewarong(MID).replays, report.ewarong(MID).refusals) == (8, 4)
    assert report.ok  # neither is a red line

    md = render_md(report)
    assert "| refusals 94 (same key, different content) | 4 |" in md
    assert "| EWARONG00000001 | e-Warong 001 | 8 | 4 |" in md
    assert "| EDC00001 | EWARONG00000001 | 5 | 2 |" in md
    assert "| EDC00002 | EWARONG00000001 | 3 | 2 |" in md
    assert f"| 10:00:00 | EDC00001 | EWARONG00000001 | {p1[0].text(11)} | " \
           f"{p1[0].text(13)} | request | 94 | {_rrn(refused)} | {r['P1']} | 00 |" in md
    assert "| 00:00:00 | EDC09999 | (unregistered) | 000123 |" in md
    code, out = _run(any_url, "--date", "2026-11-23", "--format", "csv", capsys=capsys)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["kind"], r["count"]) for r in rows if r["section"] == "duplicates"] == [
        ("double_posting", "0"), ("replay", "9"), ("refusal_94", "4")]
    assert [(r["section"], r["tid"], r["replay_count"], r["refusal_count"]) for r in rows
            if r["section"] in ("ewarong", "terminal")] == [
        ("ewarong", "", "8", "4"), ("terminal", "EDC00001", "5", "2"),
        ("terminal", "EDC00002", "3", "2")]
    listed = [r for r in rows if r["section"] == "duplicate"]
    assert [(r["tid"], r["state"], r["kind"], r["rc"]) for r in listed] == [
        (d.tid, d.message_class, d.kind, "94" if d.refused else d.original_rc)
        for d in report.duplicates]
    assert listed[3]["rrn"] == _rrn(refused) and listed[3]["ref_rrn"] == r["P1"]
    assert listed[0]["at_utc"] == listed[-1]["at_utc"] == "2026-11-22T17:00:00Z"
    assert summary_lines(report)[-1] == "  duplicates: 9 replays, 4 refusals 94"

    # the e-warong alone: not the unregistered TID; another e-warong: none
    mine = reconciliation(world.db, DAY, MID)
    assert mine.duplicates == report.duplicates[:-1]
    assert reconciliation(world.db, DAY, "EWARONG00000099").duplicates == []
    # the neighbouring days: P0's repeat on the 22nd, P1's at 00:00 WIB on the 24th
    assert [(d.tid, d.original_rrn) for d in reconciliation(
        world.db, date(2026, 11, 22)).duplicates] == [("EDC00001", r["P0"])]
    assert [(d.tid, d.original_rrn, d.at) for d in reconciliation(
        world.db, date(2026, 11, 24)).duplicates] == [
        ("EDC00001", r["P1"], datetime(2026, 11, 23, 17, tzinfo=UTC))]
    assert check_invariants(world.db).ok


def _double_post(world: HostWorld, rrn: str) -> int:
    """A second purchase transfer for the sale ``rrn`` (as a retry on another switch
    instance would post it), its journal entries and balances: the sum still balances."""
    with world.db.transaction() as session:
        record = session.scalars(select(RequestRecord).where(
            RequestRecord.id == int(rrn))).one()
        first = session.get(Transfer, record.transfer_id)
        assert first is not None
        transfer_id = 900_001
        session.execute(insert(Transfer).values(
            id=transfer_id, idempotency_key=f"{first.idempotency_key}#retry", kind="purchase",
            debit_account_id=first.debit_account_id, credit_account_id=first.credit_account_id,
            amount_sen=first.amount_sen, memo=first.memo, created_at=first.created_at))
        session.execute(insert(JournalEntry), [
            {"transfer_id": transfer_id, "account_id": first.debit_account_id,
             "amount_sen": -first.amount_sen},
            {"transfer_id": transfer_id, "account_id": first.credit_account_id,
             "amount_sen": first.amount_sen}])
        for account, delta in ((first.debit_account_id, -first.amount_sen),
                               (first.credit_account_id, first.amount_sen)):
            session.execute(update(Account).where(Account.id == account).values(
                balance_sen=Account.balance_sen + delta))
        return int(first.amount_sen)


def test_a_double_posting_is_a_red_line(world: HostWorld, any_url: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    _at(world, 10, 0)
    client = _client(world, 0)
    pin = world.card("ok", 0).pin
    client.purchase([RICE], pin)
    _, second = client.purchase([EGGS], pin)
    assert reconciliation(world.db, DAY).ok
    amount = _double_post(world, second.text(37))

    report = reconciliation(world.db, DAY)
    assert not report.ok and report.exit_code == 1
    assert [(a.kind, a.rrn, a.amount_sen) for a in report.double_postings] == [
        ("double_posting", second.text(37), amount)]
    assert "credits the e-warong again" in report.double_postings[0].detail
    ewarong = report.ewarong(MID)
    assert ewarong.payable_movement_sen == ewarong.totals.net_sen + amount
    assert [(a.kind, a.amount_sen) for a in report.red_lines] == [
        ("double_posting", amount), ("payable_mismatch", amount)]
    md = render_md(report)
    assert "**RED LINES: 2** (exit 1)" in md and "DOUBLE POSTING (F2)" in md
    assert "PAYABLE MISMATCH" in md
    assert any("RED: DOUBLE POSTING" in line for line in summary_lines(report))
    code, out = _run(any_url, "--date", "2026-11-23", "--ewarong", MID, capsys=capsys)
    assert code == 1 and "DOUBLE POSTING (F2)" in out
    code, out = _run(any_url, "--date", "2026-11-23", "--format", "csv", capsys=capsys)
    red = [r for r in csv.DictReader(io.StringIO(out))
           if r["section"] == "anomaly" and r["state"] == "red"]
    assert code == 1 and [r["kind"] for r in red] == ["double_posting", "payable_mismatch"]
    # the money invariant sees it too; the day before and after do not
    assert not check_invariants(world.db).ok
    assert reconciliation(world.db, date(2026, 11, 24)).ok


def test_a_purchase_credit_without_a_sale_is_a_red_line(world: HostWorld) -> None:
    _at(world, 10, 0)
    client = _client(world, 0)
    _, answer = client.purchase([RICE], world.card("ok", 0).pin)
    with world.db.transaction() as session:
        first = session.get(Transfer, session.scalar(select(RequestRecord.transfer_id).where(
            RequestRecord.id == int(answer.text(37)))))
        assert first is not None
        session.execute(insert(Transfer).values(
            id=900_002, idempotency_key="pur:EDC00001:20261123:999999", kind="purchase",
            debit_account_id=first.debit_account_id, credit_account_id=first.credit_account_id,
            amount_sen=100, created_at=first.created_at))
        session.execute(insert(JournalEntry), [
            {"transfer_id": 900_002, "account_id": first.debit_account_id, "amount_sen": -100},
            {"transfer_id": 900_002, "account_id": first.credit_account_id, "amount_sen": 100}])
    report = reconciliation(world.db, DAY)
    assert [(a.kind, a.amount_sen) for a in report.red_lines] == [
        ("payable_mismatch", 100), ("unrecorded_purchase", 100)]
    assert report.double_postings == []


def test_bad_arguments_are_exit_2(world: HostWorld, any_url: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UnknownEwarong):
        reconciliation(world.db, DAY, "EWARONG99999998")
    assert main(["report", "reconciliation", "--db", any_url, "--date", "2026-11-23",
                 "--ewarong", "EWARONG99999998"]) == 2
    assert "no e-warong with MID 'EWARONG99999998'" in capsys.readouterr().err
    for bad in ("2026-13-01", "23-11-2026", "yesterday"):
        with pytest.raises(SystemExit) as exited:
            main(["report", "reconciliation", "--db", any_url, "--date", bad])
        assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        main(["report", "reconciliation", "--db", any_url, "--date", "2026-11-23",
              "--format", "xlsx"])
    assert exited.value.code == 2
    capsys.readouterr()
    # a quiet day for an e-warong that exists is a report, not an error
    code, out = _run(any_url, "--date", "2026-11-23", "--ewarong", MID, capsys=capsys)
    assert code == 0 and "No terminal was active on this day." in out


def test_the_window_is_the_wib_day() -> None:
    window = day_window(date(2027, 1, 1))
    assert window.start == datetime(2026, 12, 31, 17, tzinfo=UTC)
    assert window.end == datetime(2027, 1, 1, 17, tzinfo=UTC)
    assert "2027-01-01 00:00:00 WIB inclusive" in window.describe()
    assert "2027-01-02 00:00:00 WIB exclusive" in window.describe()
    report = Report(window, None)
    assert report.ok and "Nothing on this day." in render_md(report)


def test_no_pan_in_the_report(world: HostWorld) -> None:
    _at(world, 10, 0)
    client = _client(world, 0)
    card = world.card("ok", 0)
    client.purchase([RICE], card.pin)
    report = reconciliation(world.db, DAY)
    assert report.terminal("EDC00001").totals.purchase_count == 1
    for text in (render_md(report), render_csv(report), "\n".join(summary_lines(report))):
        assert card.pan not in text and mask_pan(card.pan) not in text
