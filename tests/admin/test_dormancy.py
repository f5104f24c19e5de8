"""``bpnt-switch dormancy run|reactivate`` (F5) and ``card-status`` reactivation, on
both engines, with the world's clock moved forward."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from switch.admin.dormancy import reactivate_card, run_dormancy
from switch.admin.errors import NotFound, Refused
from switch.admin.registry import Registry
from switch.db.tables import Card
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.protocol.message import mask_pan
from tests.admin.rules_helpers import assert_audit_verifies, audit_count, audits, run_cli
from tests.world import HostWorld

RICE = BasketLine("BRS005", 1, 6_500_000)


@pytest.fixture
def world(engine_world: HostWorld) -> HostWorld:
    return engine_world


def _statuses(world: HostWorld) -> dict[str, str]:
    with world.db.transaction() as session:
        rows = session.execute(select(Card.pan_masked, Card.status))
        return {pan: status for pan, status in rows}


def _active(world: HostWorld) -> set[str]:
    return {pan for pan, status in _statuses(world).items() if status == "active"}


def _dormancy(world: HostWorld, days: int = 90, chunk_cards: int = 1000) -> int:
    return run_dormancy(world.db, world.keys, days=days, actor="admin:ops",
                        clock=world.clock, chunk_cards=chunk_cards).dormant


@pytest.mark.parametrize("chunk_cards", [1000, 3])
def test_cards_unused_90_days_become_dormant_once(world: HostWorld, chunk_cards: int) -> None:
    active = _active(world)
    assert len(active) >= 12
    world.clock.advance(timedelta(days=89, hours=23))
    assert _dormancy(world, chunk_cards=chunk_cards) == 0
    world.clock.advance(timedelta(hours=1))  # exactly 90 days after issue
    assert _dormancy(world, chunk_cards=chunk_cards) == len(active)
    assert not _active(world)
    assert {pan for pan, status in _statuses(world).items() if status == "dormant"} >= active
    records = audits(world, "card.dormant")
    assert sorted(subject for _, subject, _ in records) == sorted(active)
    assert all(actor == "admin:ops" for actor, _, _ in records)
    assert all(detail == {"last_activity": "2026-11-23", "days": 90, "dormancy_days": 90}
               for _, _, detail in records)
    written = audit_count(world)
    assert _dormancy(world, chunk_cards=chunk_cards) == 0  # idempotent
    assert audit_count(world) == written
    assert_audit_verifies(world)


def test_a_card_used_meanwhile_counts_from_its_last_use(world: HostWorld) -> None:
    used = world.card()
    active = _active(world)
    world.clock.advance(timedelta(days=60))
    edc = world.edc()
    world.insert(edc, used)
    assert edc.purchase([RICE], used.pin).rc == codes.APPROVED
    world.clock.advance(timedelta(days=30))
    assert _dormancy(world) == len(active) - 1
    assert _active(world) == {mask_pan(used.pan)}
    world.clock.advance(timedelta(days=59))
    assert _dormancy(world) == 0
    world.clock.advance(timedelta(days=1))
    assert _dormancy(world) == 1 and _statuses(world)[mask_pan(used.pan)] == "dormant"
    [(_, _, detail)] = [r for r in audits(world, "card.dormant") if r[1] == mask_pan(used.pan)]
    assert detail["days"] == 90 and detail["last_activity"] == "2027-01-22"


def test_reactivate_a_dormant_card(world: HostWorld, capsys: pytest.CaptureFixture[str]) -> None:
    card = world.card("dormant")
    masked = mask_pan(card.pan)
    with world.db.transaction() as session:
        row = session.scalars(select(Card).where(Card.pan_masked == masked)).one()
        row.wrong_pin_count = 2
    code, out, err = run_cli(world, capsys, "dormancy", "reactivate", "--pan", card.pan,
                             "--reason", "KPM came to the office", "--actor", "ops")
    assert code == 0 and f"card {masked} is active again" in out
    assert card.pan not in out + err
    with world.db.transaction() as session:
        row = session.scalars(select(Card).where(Card.pan_masked == masked)).one()
        assert (row.status, row.wrong_pin_count) == ("active", 0)
        assert row.reactivated_at is not None
    assert audits(world, "card.reactivate") == [
        ("admin:ops", masked, {"before": "dormant", "reason": "KPM came to the office"})]
    written = audit_count(world)
    code, _, err = run_cli(world, capsys, "dormancy", "reactivate", "--pan", card.pan,
                           "--reason", "again", "--actor", "ops")
    assert code == 1 and "is active, not dormant" in err and audit_count(world) == written
    blocked = world.card("blocked")
    with world.db.transaction() as session, pytest.raises(Refused, match="blocked"):
        reactivate_card(session, world.keys, pan=blocked.pan, reason="x", actor="a",
                        clock=world.clock)
    unknown = world.card("unknown")
    code, _, err = run_cli(world, capsys, "dormancy", "reactivate", "--pan", unknown.pan,
                           "--reason", "x", "--actor", "ops")
    assert code == 2 and mask_pan(unknown.pan) in err and unknown.pan not in err
    assert_audit_verifies(world)


def test_a_reactivated_card_counts_from_its_reactivation(world: HostWorld) -> None:
    dormant = world.card("dormant")
    world.clock.advance(timedelta(days=50))
    with world.db.transaction() as session:
        done = reactivate_card(session, world.keys, pan=dormant.pan, reason="x",
                               actor="admin:ops", clock=world.clock)
    assert done.reactivated_at == world.clock.now()
    world.clock.advance(timedelta(days=45))  # 95 days after issue, 45 after reactivation
    _dormancy(world)
    assert _statuses(world)[mask_pan(dormant.pan)] == "active"
    world.clock.advance(timedelta(days=45))
    assert _dormancy(world) == 1
    assert _statuses(world)[mask_pan(dormant.pan)] == "dormant"


def test_card_status_active_stamps_the_reactivation(world: HostWorld) -> None:
    card = world.card("dormant")
    world.clock.advance(timedelta(days=100))
    with world.db.transaction() as session:
        Registry(session, world.keys, actor="admin:ops", clock=world.clock).set_card_status(
            card.pan, "active", reason="back")
    with world.db.transaction() as session:
        reactivated = session.scalar(select(Card.reactivated_at).where(
            Card.pan_masked == mask_pan(card.pan)))
    assert reactivated is not None
    assert _dormancy(world) >= 12  # the others, issued 100 days ago
    assert _statuses(world)[mask_pan(card.pan)] == "active"  # not dormant again at once
    blocked = world.card("blocked")  # blocked -> active is not a reactivation
    with world.db.transaction() as session:
        Registry(session, world.keys, actor="admin:ops", clock=world.clock).set_card_status(
            blocked.pan, "active", reason="unblocked")
        stamped = session.scalar(select(Card.reactivated_at).where(
            Card.pan_masked == mask_pan(blocked.pan)))
    assert stamped is None


def test_the_cli_run_uses_the_days_and_is_idempotent(
        world: HostWorld, capsys: pytest.CaptureFixture[str]) -> None:
    """The command runs on the wall clock: the world's cards were issued on 2026-11-23."""
    active = _active(world)
    code, out, _ = run_cli(world, capsys, "dormancy", "run", "--days", "3650", "--actor", "ops")
    assert code == 0 and out.startswith("0 cards made dormant")
    assert datetime.now().year < 2036
    code, out, _ = run_cli(world, capsys, "dormancy", "run", "--days", "1", "--actor", "ops")
    assert code == 0 and out.startswith(f"{len(active)} cards made dormant (unused 1 days")
    assert not _active(world)
    code, out, _ = run_cli(world, capsys, "dormancy", "run", "--days", "1", "--actor", "ops")
    assert code == 0 and out.startswith("0 cards")
    code, _, err = run_cli(world, capsys, "dormancy", "run", "--days", "0", "--actor", "ops")
    assert code == 2 and "at least 1" in err
    assert_audit_verifies(world)


def test_not_found_is_an_admin_error(world: HostWorld) -> None:
    with world.db.transaction() as session, pytest.raises(NotFound):
        reactivate_card(session, world.keys, pan="6032989999999999", reason="x", actor="a",
                        clock=world.clock)
