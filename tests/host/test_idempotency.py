"""HOST_SPEC §4 idempotency: duplicates, 94, reversals once, reversal first."""

from __future__ import annotations

import socket

from sqlalchemy import update

from switch.core.replies import legacy_request_hash
from switch.db.tables import RequestRecord
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.protocol.message import Message
from switch.protocol.unit import Tpdu, Unit, decode_unit, encode_unit
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import Faults, TcpLink
from tests.world import PERIOD_SEN, HostWorld

RICE = BasketLine("BRS005", 1, 6_500_000)
TEMPE = BasketLine("TMP001", 1, 500_000)


def _unit(message: Message) -> bytes:
    return encode_unit(Unit(Tpdu("0001", "0000"), message))


def test_duplicate_gets_identical_bytes_and_moves_no_money(world: HostWorld) -> None:
    edc, card = world.edc_with_card()
    assert edc.purchase([RICE], card.pin).rc == codes.APPROVED
    assert edc.last_request is not None
    request = edc.encode_unit(edc.last_request)  # the purchase again, signed as sent
    first = world.host.process_unit(request)
    again = world.host.process_unit(request)
    assert first is not None and first == again
    assert decode_unit(first).message.text(39) == codes.APPROVED
    assert world.balance_sen(card) == PERIOD_SEN - RICE.total_sen


def test_duplicate_of_a_decline_replays_the_decline(world: HostWorld) -> None:
    edc, card = world.edc_with_card()
    wrong = f"{(int(card.pin) + 1) % 10**6:06d}"
    assert edc.purchase([RICE], wrong).rc == codes.WRONG_PIN
    assert edc.last_request is not None
    for _ in range(3):  # replays do not count as more wrong PINs
        assert edc.resend(edc.last_request).opt_text(39) == codes.WRONG_PIN
    assert edc.purchase([RICE], card.pin).rc == codes.APPROVED


def test_same_key_different_amount_is_94_and_moves_no_money(world: HostWorld) -> None:
    edc, card = world.edc_with_card()
    assert edc.purchase([RICE], card.pin).rc == codes.APPROVED
    assert edc.last_request is not None
    changed = edc.last_request.with_fields(
        de4=f"{2 * RICE.total_sen:012d}", de48="BRS005002000006500000"
    )
    response = edc.resend(changed)
    assert response.opt_text(39) == codes.DUPLICATE_DIFFERENT
    assert world.balance_sen(card) == PERIOD_SEN - RICE.total_sen


def test_reversal_restores_exactly_once_under_repetition(world: HostWorld) -> None:
    edc, card = world.edc_with_card()
    assert edc.purchase([RICE], card.pin).rc == codes.APPROVED
    assert edc.last_request is not None
    reversal = Message("0400", {k: v for k, v in edc.last_request.fields.items() if k != 52})
    answers = [edc.resend(reversal), edc.resend(reversal.with_fields(mti="0401")),
               edc.resend(reversal.with_fields(mti="0401")), edc.resend(reversal)]
    assert [a.opt_text(39) for a in answers] == ["00"] * 4
    assert {a.opt_text(37) for a in answers} == {answers[0].opt_text(37)}
    assert world.balance_sen(card) == PERIOD_SEN


def test_timeout_leaves_a_pending_reversal_that_restores_the_balance(world: HostWorld) -> None:
    faults = Faults()
    edc = world.edc(faults=faults)
    card = world.card()
    world.insert(edc, card)
    assert edc.ensure_logged_on()
    faults.drop_responses = 1
    lost = edc.purchase([RICE], card.pin)
    assert lost.timed_out and lost.display == "TIME-OUT / TRANSAKSI GAGAL"
    assert world.balance_sen(card) == PERIOD_SEN - RICE.total_sen  # the host did debit
    assert edc.pending_reversal is not None
    assert edc.balance_inquiry(card.pin).balance_sen == PERIOD_SEN  # reversal went first
    assert edc.pending_reversal is None
    assert world.balance_sen(card) == PERIOD_SEN


def test_reversal_before_original_declines_the_late_original(world: HostWorld) -> None:
    faults = Faults()
    edc = world.edc(faults=faults)
    card = world.card()
    world.insert(edc, card)
    assert edc.ensure_logged_on()
    faults.drop_requests = 1
    assert edc.purchase([RICE], card.pin).timed_out
    late = edc.last_request
    assert late is not None
    assert edc.send_pending_reversal()
    answer = edc.resend(late)
    assert answer.opt_text(39) == codes.DO_NOT_HONOUR
    assert edc.resend(late).opt_text(39) == codes.DO_NOT_HONOUR
    assert world.balance_sen(card) == PERIOD_SEN


def test_reversal_of_a_declined_purchase_moves_nothing(world: HostWorld) -> None:
    edc, card = world.edc_with_card()
    assert edc.purchase([BasketLine("BRS010", 20, 14_000_000)], card.pin).rc == "51"
    assert edc.last_request is not None
    reversal = Message("0400", {k: v for k, v in edc.last_request.fields.items() if k != 52})
    assert edc.resend(reversal).opt_text(39) == codes.APPROVED
    assert world.balance_sen(card) == PERIOD_SEN


def test_stan_wraps_to_000001(world: HostWorld) -> None:
    edc = world.edc()
    edc.stan = 999_998
    assert edc.echo().stan == "999999"
    assert edc.echo().stan == "000001"


def test_unreachable_host_shows_no_connection_and_leaves_nothing_to_reverse(
    world: HostWorld,
) -> None:
    terminal = world.terminal()
    card = world.card()
    with socket.socket() as placeholder:  # a port nobody listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    edc = Edc(EdcConfig(terminal.tid, terminal.mid, terminal.tmk), TcpLink("127.0.0.1", port),
              EmulatedReader(), clock=world.clock)
    world.insert(edc, card)
    result = edc.purchase([RICE], card.pin)
    assert result.display == "KONEKSI GAGAL / COBA LAGI"
    assert edc.pending_reversal is None
    assert world.balance_sen(card) == PERIOD_SEN


def test_a_record_stored_with_the_legacy_hash_is_still_replayed(world: HostWorld) -> None:
    """Records written before the hash was taken from the request's bytes hold the
    hash of its canonical re-encoding: a repeat of such a request still replays (not
    94), and a changed one is still 94."""
    edc, card = world.edc_with_card()
    assert edc.ensure_logged_on()
    request = edc.prepare_purchase([TEMPE], card.pin)
    first = world.host.process_unit(request)
    message = decode_unit(request).message
    with world.db.transaction() as session:
        session.execute(update(RequestRecord).where(RequestRecord.stan == message.text(11))
                        .values(request_hash=legacy_request_hash(message)))
    assert world.host.process_unit(request) == first  # same MAC key: identical bytes
    changed = message.with_fields(de4="000000600000", de48="TMP001001000000600000")
    answer = world.host.process_unit(edc.encode_unit(changed))
    assert answer is not None
    assert decode_unit(answer).message.opt_text(39) == codes.DUPLICATE_DIFFERENT
