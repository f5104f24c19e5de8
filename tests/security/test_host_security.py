"""Issue 4 acceptance: logon, MAC, ARQC, ATC replay, key rotation, audit chain."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import text

from switch.db.audit import verify
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.protocol.message import Message, decode, encode
from switch.protocol.unit import TPDU_LEN
from switch.security import mac
from terminal_sim.edc import Edc
from tests.world import PERIOD_SEN, HostWorld

RICE = BasketLine("BRS005", 1, 6_500_000)


class Tap:
    """A link that remembers every unit it carried (both ways)."""

    def __init__(self, inner: Callable[[bytes], bytes | None]) -> None:
        self.inner = inner
        self.sent: list[bytes] = []

    def exchange(self, unit: bytes, timeout_s: float) -> bytes:
        self.sent.append(unit)
        answer = self.inner(unit)
        assert answer is not None
        return answer

    def close(self) -> None:
        pass


def _tapped_edc(world: HostWorld) -> tuple[Edc, Tap]:
    edc = world.edc()
    tap = Tap(world.host.process_unit)
    edc.link = tap
    return edc, tap


def _last_signed(tap: Tap) -> Message:
    return decode(tap.sent[-1][TPDU_LEN:])


def test_bad_or_missing_mac_is_63_even_for_a_known_request(world: HostWorld) -> None:
    """Same key as an approved purchase: without the MAC check this would replay 00."""
    edc, tap = _tapped_edc(world)
    card = world.card()
    world.insert(edc, card)
    assert edc.purchase([RICE], card.pin).rc == codes.APPROVED
    signed = _last_signed(tap)
    assert edc.resend(signed, sign=False).opt_text(39) == codes.APPROVED  # genuine duplicate
    forged = signed.with_fields(de64=b"\x01" * 8)
    assert edc.resend(forged, sign=False).opt_text(39) == codes.SECURITY_VIOLATION
    missing = signed.with_fields(de64=None)
    assert edc.resend(missing, sign=False).opt_text(39) == codes.SECURITY_VIOLATION
    assert world.balance_sen(card) == PERIOD_SEN - RICE.total_sen


def test_bad_mac_on_a_new_request_moves_no_money(world: HostWorld) -> None:
    edc, tap = _tapped_edc(world)
    card = world.card()
    world.insert(edc, card)
    assert edc.ensure_logged_on()
    edc.link = Tap(lambda unit: world.host.process_unit(unit[:-8] + bytes(8)))  # MAC zeroed
    result = edc.purchase([RICE], card.pin)
    assert (result.rc, result.display) == (codes.SECURITY_VIOLATION, "PELANGGARAN KEAMANAN")
    assert world.balance_sen(card) == PERIOD_SEN


def test_tampered_amount_with_the_original_mac_is_63(world: HostWorld) -> None:
    """Same key, doubled amount, original MAC: 63 (a MAC-less host would answer 94)."""
    edc, tap = _tapped_edc(world)
    card = world.card()
    world.insert(edc, card)
    assert edc.purchase([RICE], card.pin).rc == codes.APPROVED
    signed = _last_signed(tap)  # carries a MAC valid for this exact content
    assert signed.has(64)
    doubled = signed.with_fields(de4=f"{2 * RICE.total_sen:012d}", de48="BRS005002000006500000")
    assert edc.resend(doubled, sign=False).opt_text(39) == codes.SECURITY_VIOLATION
    assert world.balance_sen(card) == PERIOD_SEN - RICE.total_sen


def test_replayed_atc_is_63(world: HostWorld) -> None:
    edc, tap = _tapped_edc(world)
    card = world.card()
    world.insert(edc, card)
    assert edc.purchase([RICE], card.pin).rc == codes.APPROVED
    assert edc.last_request is not None
    # Same cryptogram (same ATC, amount, UN), new STAN: a cloned-transaction replay.
    replay = edc.last_request.with_fields(de11="700001")
    assert edc.resend(replay).opt_text(39) == codes.SECURITY_VIOLATION
    assert world.balance_sen(card) == PERIOD_SEN - RICE.total_sen


def test_response_carries_arpc_and_a_valid_mac(world: HostWorld) -> None:
    edc, tap = _tapped_edc(world)
    card = world.card()
    world.insert(edc, card)
    assert edc.purchase([RICE], card.pin).rc == codes.APPROVED
    request = tap.sent[-1]
    answer = world.host.process_unit(request)  # the duplicate: stored bytes, re-signed
    assert answer is not None
    response = decode(answer[TPDU_LEN:])
    assert response.binary(55)[:2] == b"\x91\x0a"
    assert response.binary(55)[-2:] == b"00"


def test_old_tak_is_refused_after_a_new_logon(world: HostWorld) -> None:
    edc, tap = _tapped_edc(world)
    card = world.card()
    world.insert(edc, card)
    assert edc.ensure_logged_on()
    old_tak = edc._tak
    assert old_tak is not None
    assert edc.logon().rc == codes.APPROVED
    assert edc._tak != old_tak
    assert edc.purchase([RICE], card.pin).rc == codes.APPROVED
    assert edc.last_request is not None
    stale = edc.last_request.with_fields(de11="800001", de64=mac.PLACEHOLDER)
    stale_bytes = mac.sign(old_tak, encode(stale))
    response = edc.resend(decode(stale_bytes), sign=False)
    assert response.opt_text(39) == codes.SECURITY_VIOLATION


def test_refusals_are_audited_and_the_chain_verifies(world: HostWorld) -> None:
    edc, _tap = _tapped_edc(world)
    card = world.card()
    world.insert(edc, card)
    edc.purchase([RICE], card.pin)
    assert edc.last_request is not None
    edc.resend(edc.last_request.with_fields(de11="900001", de64=bytes(8)), sign=False)
    with world.db.transaction() as session:
        actions = [r[0] for r in session.execute(text("SELECT action FROM audit_records"))]
        report = verify(session, world.keys.audit_key)
    assert report.ok, report.summary()
    assert {"keys.rotate", "purchase", "refused.purchase", "card.issue"} <= set(actions)


@pytest.mark.parametrize(
    ("tamper", "symptom"),
    [
        ("UPDATE audit_records SET detail = replace(detail, '\"rc\":\"00\"', '\"rc\":\"51\"')",
         "was changed"),
        ("DELETE FROM audit_records WHERE seq = 3", "missing"),
        ("DELETE FROM audit_records WHERE seq = (SELECT max(seq) FROM audit_records)",
         "deleted"),
        ("swap records 2 and 3", "does not follow"),
    ],
    ids=["changed", "deleted", "deleted-tail", "reordered"],
)
def test_audit_verify_detects_tampering(world: HostWorld, tamper: str, symptom: str) -> None:
    edc, card = world.edc_with_card()
    assert edc.purchase([RICE], card.pin).rc == codes.APPROVED
    with world.db.transaction() as session:
        assert verify(session, world.keys.audit_key).ok
        if tamper == "swap records 2 and 3":  # through a free number: seq is the primary key
            session.execute(text("UPDATE audit_records SET seq = -1 WHERE seq = 2"))
            session.execute(text("UPDATE audit_records SET seq = 2 WHERE seq = 3"))
            session.execute(text("UPDATE audit_records SET seq = 3 WHERE seq = -1"))
        else:
            session.execute(text(tamper))
    with world.db.transaction() as session:
        report = verify(session, world.keys.audit_key)
    assert not report.ok
    assert any(symptom in problem for problem in report.problems), report.problems


def test_card_block_by_admin_is_62_and_audited(world: HostWorld) -> None:
    from switch.admin.registry import Registry

    card = world.card()
    with world.db.transaction() as session:
        Registry(session, world.keys, actor="admin:dinsos-bandung").set_card_status(
            card.pan, "lost", reason="KPM reported the card lost")
    edc = world.edc()
    world.insert(edc, card)
    assert edc.purchase([RICE], card.pin).rc == codes.RESTRICTED_CARD
    with world.db.transaction() as session:
        row = session.execute(text(
            "SELECT actor, detail FROM audit_records WHERE action = 'card.status'")).one()
    assert row[0] == "admin:dinsos-bandung" and "reported the card lost" in row[1]
    assert card.pan not in row[1]


def test_edc_logs_on_again_after_a_63(world: HostWorld) -> None:
    """A logon the EDC never saw (its answer lost, or a repeated logon) rotated the keys:
    the next request is 63, and the EDC logs on again before the one after."""
    edc, card = world.edc_with_card()
    assert edc.ensure_logged_on()
    other = world.edc()  # same TID; a new DE 11 (the same within 60 s would be a repeat)
    assert other.echo().rc == codes.APPROVED
    assert other.logon().rc == codes.APPROVED  # keys rotated elsewhere
    assert edc.purchase([RICE], card.pin).rc == codes.SECURITY_VIOLATION
    assert edc.purchase([RICE], card.pin).rc == codes.APPROVED
    assert world.balance_sen(card) == PERIOD_SEN - RICE.total_sen


def test_aac_sent_online_is_refused(world: HostWorld) -> None:
    """A card's decline (AAC) must never be authorised, even if a terminal sends it.

    CID is not an input of the cryptogram, so a fresh, valid cryptogram relabelled
    AAC passes the ARQC and ATC checks: only the CID check refuses it."""
    from switch.security import emv

    edc, card = world.edc_with_card()
    assert edc.ensure_logged_on()
    fresh = decode(edc.prepare_purchase([RICE], card.pin)[TPDU_LEN:])  # never sent
    tags = emv.parse_icc_data(fresh.binary(55))
    assert tags["9F27"] == b"\x80"
    relabelled = fresh.with_fields(de55=emv.build_icc_data({**tags, "9F27": b"\x00"}))
    assert edc.resend(relabelled).opt_text(39) == codes.SECURITY_VIOLATION
    assert edc.resend(fresh.with_fields(de11="920001")).opt_text(39) == codes.APPROVED
    assert world.balance_sen(card) == PERIOD_SEN - RICE.total_sen
