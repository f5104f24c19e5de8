"""Complaints (issue 16, docs/CONSOLE.md "Complaints") on both engines: the workflow
after a real purchase through the world's EDC, every refused transition, the audit
records and the chain, no PAN stored or printed, and the CLI (text and ``--json``)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from itertools import product

import pytest
from sqlalchemy import select, text

from switch.admin.complaints import (
    STATUSES,
    TRANSITIONS,
    ComplaintError,
    ComplaintView,
    assign_complaint,
    comment_complaint,
    get_complaint,
    list_complaints,
    mask_nik,
    move_complaint,
    open_complaint,
)
from switch.admin.errors import InvalidInput, NotFound, Refused
from switch.admin.registry import Registry
from switch.db.tables import Base, Card, Ewarong, Kpm
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.protocol.message import mask_pan
from switch.security.keys import pan_token
from tests.admin.rules_helpers import assert_audit_verifies, audit_count, audits, run_cli
from tests.world import HostWorld

RICE = BasketLine("BRS005", 1, 6_500_000)
MID2 = "EWARONG00000002"


@pytest.fixture
def world(engine_world: HostWorld) -> HostWorld:
    return engine_world


def _purchase(world: HostWorld, index: int = 0) -> str:
    """An approved purchase through the EDC: its RRN (DE 37)."""
    edc, card = world.edc_with_card(index=index)
    edc.logon()
    result = edc.purchase([RICE], card.pin)
    assert result.rc == codes.APPROVED
    entry = edc.batch.find_purchase(result.invoice)
    assert entry is not None
    return entry.rrn


def _nik(world: HostWorld, index: int = 0) -> str:
    with world.db.transaction() as session:
        nik = session.scalar(select(Kpm.nik).join(Card, Card.kpm_id == Kpm.id).where(
            Card.pan_token == pan_token(world.keys.pan_token_key, world.card(index=index).pan)))
    assert nik is not None
    return str(nik)


def _open(world: HostWorld, **about: str) -> ComplaintView:
    with world.db.transaction() as session:
        return open_complaint(session, world.keys, actor="console:ani", source="kpm",
                              subject="paid, no rice", clock=world.clock, **about)


def _everything_stored(world: HostWorld, *tables: str) -> str:
    """Every column of ``tables`` (default: every table), as text."""
    with world.db.transaction() as session:
        rows = [str(tuple(row)) for table in (tables or sorted(Base.metadata.tables))
                for row in session.execute(text(f"SELECT * FROM {table}"))]
    return "\n".join(rows)


def test_the_workflow_by_rrn_gets_the_ewarong_card_and_kpm(
        world: HostWorld, capsys: pytest.CaptureFixture[str]) -> None:
    rrn = _purchase(world)
    pan, nik, mid = world.card().pan, _nik(world), world.terminal().mid
    opened = _open(world, rrn=rrn)
    assert (opened.status, opened.rrn, opened.mid) == ("open", rrn, mid)
    assert opened.card_masked == mask_pan(pan)
    assert opened.kpm_nik_masked == mask_nik(nik) == nik[:4] + "*" * 8 + nik[-4:]
    assert opened.opened_by == "console:ani" and opened.assignee is None
    assert opened.opened_at == world.clock.now()
    assert [(e.kind, e.to_status) for e in opened.events] == [("opened", "open")]

    world.clock.advance(timedelta(minutes=5))
    keys, clock, cid = world.keys, world.clock, opened.id
    with world.db.transaction() as session:
        assign_complaint(session, keys, cid, assignee="budi", actor="console:ani", clock=clock)
        move_complaint(session, keys, cid, to_status="investigating", note="",
                       actor="console:budi", clock=clock)
        comment_complaint(session, keys, cid, note="agent called", actor="console:budi",
                          clock=clock)
    world.clock.advance(timedelta(hours=1))
    with world.db.transaction() as session:
        done = move_complaint(session, keys, cid, to_status="resolved",
                              note="rice handed over", actor="console:budi", clock=clock)
    assert (done.status, done.assignee, done.allowed) == ("resolved", "budi", ())
    assert done.updated_at == world.clock.now() and done.opened_at == opened.opened_at
    assert [(e.actor, e.kind, e.from_status, e.to_status, e.note) for e in done.events] == [
        ("console:ani", "opened", None, "open", ""),
        ("console:ani", "assigned", None, None, "budi"),
        ("console:budi", "status", "open", "investigating", ""),
        ("console:budi", "comment", None, None, "agent called"),
        ("console:budi", "status", "investigating", "resolved", "rice handed over")]

    subject = f"complaint:{cid}"
    [(actor, subj, detail)] = audits(world, "complaint.open")
    assert (actor, subj) == ("console:ani", subject)
    assert detail["rrn"] == rrn and detail["mid"] == mid and detail["card"] == mask_pan(pan)
    assert [(a, d["assignee"]) for a, _, d in audits(world, "complaint.assign")] == [
        ("console:ani", "budi")]
    assert [(a, s, d["from"], d["to"]) for a, s, d in audits(world, "complaint.status")] == [
        ("console:budi", subject, "open", "investigating"),
        ("console:budi", subject, "investigating", "resolved")]
    assert [d["note"] for _, _, d in audits(world, "complaint.comment")] == ["agent called"]
    assert_audit_verifies(world)
    code, out, _ = run_cli(world, capsys, "audit", "verify")
    assert code == 0

    assert pan not in _everything_stored(world)  # the NIK is the KPM's, kept in kpm.nik
    assert nik not in _everything_stored(world, "complaints", "complaint_events",
                                         "audit_records")
    code, out, err = run_cli(world, capsys, "complaint", "show", str(cid))
    assert code == 0 and pan not in out + err and nik not in out
    assert f"complaint {cid}: resolved (kpm) paid, no rice" in out
    assert f"card {mask_pan(pan)}" in out and f"RRN {rrn}" in out and f"e-warong {mid}" in out
    code, out, _ = run_cli(world, capsys, "complaint", "show", str(cid), "--json")
    shown = json.loads(out)
    assert shown["status"] == "resolved" and shown["mid"] == mid and len(shown["events"]) == 5
    assert shown["events"][-1]["note"] == "rice handed over" and pan not in out


def test_every_transition_not_listed_is_refused_naming_the_allowed(world: HostWorld) -> None:
    keys, clock = world.keys, world.clock
    path = {"open": [], "investigating": ["investigating"],
            "resolved": ["investigating", "resolved"], "rejected": ["rejected"]}
    refused = [(a, b) for a, b in product(STATUSES, STATUSES) if b not in TRANSITIONS[a]]
    assert len(refused) == 12
    for start, target in refused:
        cid = _open(world, mid=world.terminal().mid).id
        with world.db.transaction() as session:
            for step in path[start]:
                move_complaint(session, keys, cid, to_status=step, note="why", actor="ops",
                               clock=clock)
        written = audit_count(world)
        with pytest.raises(Refused) as refusal, world.db.transaction() as session:
            move_complaint(session, keys, cid, to_status=target, note="why", actor="ops",
                           clock=clock)
        allowed = TRANSITIONS[start]
        assert f"is {start}; it can move to " in str(refusal.value)
        assert str(refusal.value).endswith(", ".join(allowed) if allowed
                                           else "nothing (it is closed)")
        with world.db.transaction() as session:
            assert get_complaint(session, cid).status == start
        assert audit_count(world) == written
    assert_audit_verifies(world)


def test_resolving_or_rejecting_needs_a_note_and_closed_is_not_assigned(
        world: HostWorld) -> None:
    keys, clock = world.keys, world.clock
    cid = _open(world, mid=world.terminal().mid).id
    for target in ("rejected", "resolved"):
        with pytest.raises(InvalidInput, match="a note"), world.db.transaction() as session:
            if target == "resolved":
                move_complaint(session, keys, cid, to_status="investigating", note="",
                               actor="ops", clock=clock)
            move_complaint(session, keys, cid, to_status=target, note="  ", actor="ops",
                           clock=clock)
    with world.db.transaction() as session:
        assert get_complaint(session, cid).status == "open"  # the first move rolled back
        move_complaint(session, keys, cid, to_status="rejected", note="a duplicate",
                       actor="ops", clock=clock)
    with pytest.raises(Refused, match="closed"), world.db.transaction() as session:
        assign_complaint(session, keys, cid, assignee="budi", actor="ops", clock=clock)
    with world.db.transaction() as session:  # a comment on a closed one is history
        assert comment_complaint(session, keys, cid, note="told the KPM", actor="ops",
                                 clock=clock).events[-1].note == "told the KPM"
        with pytest.raises(NotFound, match="no complaint 9999"):
            comment_complaint(session, keys, 9999, note="x", actor="ops", clock=clock)


def test_what_a_complaint_names_must_exist_and_agree(world: HostWorld) -> None:
    rrn = _purchase(world)
    unknown = world.card("unknown").pan
    cases: list[tuple[dict[str, str], type[Exception], str]] = [
        ({}, InvalidInput, "none given"),
        ({"pan": unknown}, NotFound, f"no card {mask_pan(unknown)}"),
        ({"nik": "3201014507900001"}, NotFound, "no KPM with NIK 3201********0001"),
        ({"rrn": "999999999999"}, NotFound, "no transaction with RRN 999999999999"),
        ({"rrn": "12x"}, InvalidInput, "is not 12 digits"),
        ({"mid": "NOSUCHMID000000"}, NotFound, "no e-warong NOSUCHMID000000"),
        ({"rrn": rrn, "mid": MID2}, Refused,
         f"RRN {rrn} is a transaction of e-warong {world.terminal().mid}, not {MID2}"),
        ({"rrn": rrn, "pan": world.card(index=1).pan}, Refused, "was made with card"),
        ({"pan": world.card().pan, "nik": _nik(world, 1)}, Refused, "belongs to KPM"),
    ]
    with world.db.transaction() as session:
        Registry(session, world.keys, actor="admin:test").register_ewarong(mid=MID2,
                                                                           name="second")
    for about, error, message in cases:
        written = audit_count(world)
        with pytest.raises(error, match=re.escape(message)) as raised:
            _open(world, **about)
        assert isinstance(raised.value, ComplaintError)
        assert audit_count(world) == written and unknown not in str(raised.value)
    with pytest.raises(InvalidInput, match="source"), world.db.transaction() as session:
        open_complaint(session, world.keys, actor="ops", source="police", subject="x",
                       mid=MID2, clock=world.clock)
    agreeing = _open(world, rrn=rrn, mid=world.terminal().mid, pan=world.card().pan,
                     nik=_nik(world))
    assert agreeing.card_masked == mask_pan(world.card().pan)


def test_list_by_status_and_ewarong_and_the_cli(world: HostWorld,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    mid, pan = world.terminal().mid, world.card().pan
    first = _open(world, mid=mid)
    world.clock.advance(timedelta(minutes=1))
    code, out, err = run_cli(world, capsys, "complaint", "open", "--actor", "ops",
                             "--source", "operator", "--subject", "card swallowed",
                             "--pan", pan, "--json")
    assert code == 0 and pan not in out + err
    second = json.loads(out)
    assert second["card_masked"] == mask_pan(pan) and second["mid"] is None
    assert second["opened_by"] == "admin:ops" and second["events"][0]["kind"] == "opened"
    code, out, _ = run_cli(world, capsys, "complaint", "move", str(first.id), "--to",
                           "investigating", "--actor", "ops")
    assert code == 0 and f"complaint {first.id}: investigating" in out
    code, _, err = run_cli(world, capsys, "complaint", "move", str(first.id), "--to", "open",
                           "--actor", "ops")
    assert code == 1 and "it can move to resolved, rejected" in err
    code, _, err = run_cli(world, capsys, "complaint", "move", str(first.id), "--to",
                           "resolved", "--actor", "ops")
    assert code == 2 and "with a note" in err
    code, _, err = run_cli(world, capsys, "complaint", "assign", "77", "--assignee", "x",
                           "--actor", "ops")
    assert code == 2 and "no complaint 77" in err

    with world.db.transaction() as session:
        ewarong_id = session.scalar(select(Ewarong.id).where(Ewarong.mid == mid))
        assert [v.id for v in list_complaints(session)] == [second["id"], first.id]
        assert [v.id for v in list_complaints(session, status="open")] == [second["id"]]
        assert [v.id for v in list_complaints(session, ewarong_id=ewarong_id)] == [first.id]
        assert [v.id for v in list_complaints(session, limit=1)] == [second["id"]]
        with pytest.raises(InvalidInput):
            list_complaints(session, status="closed")

    code, out, _ = run_cli(world, capsys, "complaint", "list", "--json")
    listed = json.loads(out)
    assert listed["count"] == 2 and [c["status"] for c in listed["complaints"]] == [
        "open", "investigating"]
    code, out, _ = run_cli(world, capsys, "complaint", "list", "--ewarong", mid)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["id", "status", "source", "opened_wib", "mid",
                                              "card", "rrn", "assignee", "subject"]
    assert len(lines) == 2 and lines[1].split()[:3] == [str(first.id), "investigating", "kpm"]
    assert "\x1b" not in out and "─" not in out  # not a TTY: plain text, no rich
    code, _, err = run_cli(world, capsys, "complaint", "list", "--ewarong", "NOSUCH")
    assert code == 2 and "no e-warong NOSUCH" in err
    assert pan not in _everything_stored(world)
    assert_audit_verifies(world)
