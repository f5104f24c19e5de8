"""``bpnt-switch delivery confirm RRN`` (F10): only a standing approved purchase, once,
audited; on both engines, after real purchases through the world's EDC."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from switch.admin.delivery import confirm_delivery, record_id_of
from switch.admin.errors import InvalidInput, NotFound, Refused
from switch.core.request import rrn_for
from switch.db.tables import Delivery, RequestRecord
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from terminal_sim.edc import Edc
from tests.admin.rules_helpers import assert_audit_verifies, audit_count, audits, run_cli
from tests.host.dayend_client import DayEndClient
from tests.world import HostWorld

RICE = BasketLine("BRS005", 1, 6_500_000)


@pytest.fixture
def world(engine_world: HostWorld) -> HostWorld:
    return engine_world


def _purchase(world: HostWorld) -> tuple[Edc, str, str]:
    """An approved purchase: (the EDC, the card's PIN, its RRN as DE 37 gave it)."""
    edc, card = world.edc_with_card()
    edc.logon()
    result = edc.purchase([RICE], card.pin)
    assert result.rc == codes.APPROVED
    entry = edc.batch.find_purchase(result.invoice)
    assert entry is not None and len(entry.rrn) == 12
    return edc, card.pin, entry.rrn


def _deliveries(world: HostWorld) -> list[tuple[int, str]]:
    with world.db.transaction() as session:
        return [(int(record_id), actor) for record_id, actor in session.execute(
            select(Delivery.record_id, Delivery.actor).order_by(Delivery.record_id))]


def test_confirm_an_approved_purchase_once(world: HostWorld,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    _, _, rrn = _purchase(world)
    code, out, _ = run_cli(world, capsys, "delivery", "confirm", rrn, "--actor", "agent7")
    assert code == 0 and f"RRN {rrn}: goods handed over" in out
    assert _deliveries(world) == [(int(rrn), "admin:agent7")]
    [(actor, subject, detail)] = audits(world, "delivery.confirm")
    assert (actor, subject) == ("admin:agent7", f"rrn:{rrn}")
    assert detail["amount_sen"] == RICE.total_sen and detail["tid"] == world.terminal().tid
    written = audit_count(world)
    code, out, _ = run_cli(world, capsys, "delivery", "confirm", rrn, "--actor", "other")
    assert code == 0 and f"RRN {rrn}: confirmed already at " in out and "admin:agent7" in out
    assert _deliveries(world) == [(int(rrn), "admin:agent7")]
    assert audit_count(world) == written
    assert_audit_verifies(world)


def test_confirm_directly_takes_the_clock(world: HostWorld) -> None:
    _, _, rrn = _purchase(world)
    world.clock.advance(timedelta(hours=3))
    with world.db.transaction() as session:
        result = confirm_delivery(session, world.keys, rrn, "console:ani", world.clock)
    assert result.added and result.record_id == int(rrn)
    assert result.confirmed_at == world.clock.now()
    with world.db.transaction() as session:
        again = confirm_delivery(session, world.keys, rrn, "console:ani", world.clock)
        stored = session.get(Delivery, int(rrn))
        assert stored is not None and stored.actor == "console:ani"
    assert not again.added and again.actor == "console:ani"


def test_a_declined_purchase_is_refused(world: HostWorld,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    edc, card = world.edc_with_card()
    wrong_pin = f"{(int(card.pin) + 1) % 10**6:06d}"
    assert edc.purchase([RICE], wrong_pin).rc == codes.WRONG_PIN
    with world.db.transaction() as session:
        declined = session.scalar(select(RequestRecord.id).where(
            RequestRecord.kind == "request", RequestRecord.processing_code == "000000")
            .order_by(RequestRecord.id.desc()))
    assert declined is not None
    written = audit_count(world)
    code, out, err = run_cli(world, capsys, "delivery", "confirm", rrn_for(declined),
                             "--actor", "ops")
    assert code == 1 and "declined (response code 55)" in err and out == ""
    assert _deliveries(world) == [] and audit_count(world) == written


def test_a_voided_purchase_and_the_void_itself_are_refused(
        world: HostWorld, capsys: pytest.CaptureFixture[str]) -> None:
    edc, pin, rrn = _purchase(world)
    entry = edc.batch.find_purchase(edc.batch.entries[-1].invoice)
    assert entry is not None
    void = edc.void(entry.invoice, pin)
    assert void.rc == codes.APPROVED
    code, _, err = run_cli(world, capsys, "delivery", "confirm", rrn, "--actor", "ops")
    assert code == 1 and "was voided" in err
    with world.db.transaction() as session:
        void_id = session.scalar(select(RequestRecord.id).where(
            RequestRecord.original_record_id == int(rrn)))
    assert void_id is not None
    code, _, err = run_cli(world, capsys, "delivery", "confirm", rrn_for(void_id),
                           "--actor", "ops")
    assert code == 1 and "is not a purchase" in err
    assert _deliveries(world) == []


def test_a_reversed_purchase_is_refused(world: HostWorld,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    edc, card = world.edc_with_card()
    assert edc.ensure_logged_on()
    client = DayEndClient(world, edc, pin=card.pin)
    request, response = client.purchase([RICE], card.pin)
    assert client.reversal(request).rc == codes.APPROVED
    rrn = response.text(37)
    with world.db.transaction() as session, pytest.raises(Refused, match="reversed"):
        confirm_delivery(session, world.keys, rrn, "admin:ops", world.clock)
    code, _, err = run_cli(world, capsys, "delivery", "confirm", rrn, "--actor", "ops")
    assert code == 1 and "was reversed" in err
    assert _deliveries(world) == []


@pytest.mark.parametrize(("rrn", "message"), [
    ("12345", "is not 12 digits"), ("00000000004x", "is not 12 digits"),
    ("999999999999", "no transaction with RRN 999999999999")])
def test_a_bad_or_unknown_rrn_is_2(world: HostWorld, capsys: pytest.CaptureFixture[str],
                                   rrn: str, message: str) -> None:
    code, _, err = run_cli(world, capsys, "delivery", "confirm", rrn, "--actor", "ops")
    assert code == 2 and message in err and "Traceback" not in err


def test_record_id_of_inverts_rrn_for() -> None:
    assert record_id_of(rrn_for(42)) == 42
    with pytest.raises(InvalidInput):
        record_id_of("4" * 13)
    assert issubclass(NotFound, Exception)
