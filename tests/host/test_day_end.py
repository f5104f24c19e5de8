"""HOST_SPEC 1.1 §4, the day's end: void, the terminal's batch, settlement and batch
upload, each test asserting the money that moved or did not (every account's balance
before and after)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from switch.core.batch import Totals
from switch.db.tables import BatchUpload, RequestRecord, Settlement, SettlementDifference
from switch.db.tables import Terminal as TerminalRow
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.protocol.message import Message
from tests.host.dayend_client import (  # noqa: F401 (the fixtures)
    DayEndClient,
    balances,
    both_engines_world,
    logged_on_client,
    moved,
)
from tests.world import PERIOD_SEN, HostWorld

RICE = BasketLine("BRS005", 1, 6_500_000)
EGGS = BasketLine("TLR010", 1, 2_800_000)


def _pin(world: HostWorld) -> str:
    return world.card().pin


# -- void -------------------------------------------------------------------------------

def test_a_void_returns_the_purchase_to_the_wallet_exactly_once(
        world: HostWorld, client: DayEndClient) -> None:
    purchase, _ = client.purchase([RICE], _pin(world))
    before = balances(world)
    request, answer = client.void(purchase)
    assert answer.rc == codes.APPROVED and answer.signed and answer.message.has(37)
    assert answer.message.has(38) and answer.message.text(3) == "020000"
    assert world.balance_sen(world.card()) == PERIOD_SEN  # all of it back
    back = moved(before, balances(world))
    assert sorted(back.values()) == [-RICE.total_sen, RICE.total_sen]  # payable -> wallet
    again = client.send(request)  # the same void again: the same answer, no money
    assert again.message.fields == answer.message.fields
    assert moved(before, balances(world)) == back


def test_a_second_void_of_a_voided_purchase_is_12_and_moves_nothing(
        world: HostWorld, client: DayEndClient) -> None:
    purchase, _ = client.purchase([RICE], _pin(world))
    assert client.void(purchase)[1].rc == codes.APPROVED
    before = balances(world)
    _, answer = client.void(purchase)
    assert answer.rc == codes.INVALID_TRANSACTION and answer.signed and answer.message.has(37)
    assert balances(world) == before


def test_a_void_of_an_invoice_the_batch_does_not_hold_is_25(
        world: HostWorld, client: DayEndClient) -> None:
    purchase, _ = client.purchase([RICE], _pin(world))
    before = balances(world)
    _, answer = client.void(purchase, invoice="999999")
    assert answer.rc == codes.ORIGINAL_NOT_FOUND and answer.signed and answer.message.has(37)
    assert balances(world) == before


def test_a_void_of_a_reversed_purchase_is_25(world: HostWorld, client: DayEndClient) -> None:
    purchase, _ = client.purchase([RICE], _pin(world))
    assert client.reversal(purchase).rc == codes.APPROVED
    before = balances(world)
    assert client.void(purchase)[1].rc == codes.ORIGINAL_NOT_FOUND
    assert balances(world) == before
    assert world.balance_sen(world.card()) == PERIOD_SEN


def test_a_void_of_another_terminals_purchase_is_25(world: HostWorld,
                                                   client: DayEndClient) -> None:
    purchase, _ = client.purchase([RICE], _pin(world))
    other_edc = world.edc(world.terminal(index=1))
    world.insert(other_edc, world.card())
    assert other_edc.ensure_logged_on()
    other = DayEndClient(world, other_edc, pin=_pin(world))
    before = balances(world)
    fields = dict(purchase.fields)
    fields[41], fields[42] = other_edc.config.tid, other_edc.config.mid
    _, answer = other.void(type(purchase)("0200", fields))
    assert answer.rc == codes.ORIGINAL_NOT_FOUND
    assert balances(world) == before


def test_a_void_of_a_settled_purchase_is_25(world: HostWorld, client: DayEndClient) -> None:
    purchase, _ = client.purchase([RICE], _pin(world))
    assert client.settle(Totals(1, RICE.total_sen))[1].rc == codes.APPROVED
    before = balances(world)
    assert client.void(purchase)[1].rc == codes.ORIGINAL_NOT_FOUND
    assert balances(world) == before


def test_a_void_for_another_amount_is_13(world: HostWorld, client: DayEndClient) -> None:
    purchase, _ = client.purchase([RICE], _pin(world))
    before = balances(world)
    _, answer = client.void(purchase, amount_sen=RICE.total_sen - 100)
    assert answer.rc == codes.INVALID_AMOUNT and answer.signed
    assert balances(world) == before


def test_a_reversal_of_a_void_reinstates_the_debit_once(world: HostWorld,
                                                       client: DayEndClient) -> None:
    purchase, _ = client.purchase([RICE], _pin(world))
    after_purchase = balances(world)
    void, answer = client.void(purchase)
    assert answer.rc == codes.APPROVED
    assert client.reversal(void).rc == codes.APPROVED
    assert client.reversal(void, "0401").rc == codes.APPROVED  # repeated: no money
    assert balances(world) == after_purchase
    assert world.balance_sen(world.card()) == PERIOD_SEN - RICE.total_sen
    # the purchase stands again, un-voided: it can be voided (once) again
    assert client.void(purchase)[1].rc == codes.APPROVED
    assert world.balance_sen(world.card()) == PERIOD_SEN


def test_a_reversal_of_a_void_the_wallet_no_longer_covers_is_00_and_the_void_stands(
        world: HostWorld, client: DayEndClient) -> None:
    pin = _pin(world)
    purchase, _ = client.purchase([RICE], pin)
    void, answer = client.void(purchase)
    assert answer.rc == codes.APPROVED
    # the family spends what the void gave back (and more) before the reversal arrives
    spend = BasketLine("BRS005", 3, PERIOD_SEN // 3)
    assert client.edc.purchase([spend], pin).rc == codes.APPROVED
    before = balances(world)
    reversal = client.reversal(void)
    assert reversal.rc == codes.APPROVED and reversal.signed and reversal.message.has(37)
    assert balances(world) == before  # the void stands
    with world.db.transaction() as session:
        voided = session.scalar(select(RequestRecord.voided_by_record_id).where(
            RequestRecord.kind == "request", RequestRecord.stan == purchase.text(11),
            RequestRecord.tid == purchase.text(41)))
    assert voided is not None


def test_a_reversal_of_a_voided_purchase_pays_nothing_back_twice(
        world: HostWorld, client: DayEndClient) -> None:
    purchase, _ = client.purchase([RICE], _pin(world))
    assert client.void(purchase)[1].rc == codes.APPROVED
    before = balances(world)
    assert client.reversal(purchase).rc == codes.APPROVED
    assert balances(world) == before
    assert world.balance_sen(world.card()) == PERIOD_SEN


# -- batch and settlement ---------------------------------------------------------------

def _day(world: HostWorld, client: DayEndClient) -> Totals:
    """Three purchases: one voided, one reversed; the totals §4 says the switch holds."""
    pin = _pin(world)
    first, _ = client.purchase([RICE], pin)
    second, _ = client.purchase([EGGS], pin)
    third, _ = client.purchase([EGGS, EGGS], pin)
    assert client.void(first)[1].rc == codes.APPROVED
    assert client.reversal(third).rc == codes.APPROVED
    return Totals(2, RICE.total_sen + EGGS.total_sen, 1, RICE.total_sen)


def test_settlement_with_the_switchs_totals_closes_the_batch(world: HostWorld,
                                                            client: DayEndClient) -> None:
    totals = _day(world, client)
    before = balances(world)
    request, answer = client.settle(totals)
    assert answer.rc == codes.APPROVED and answer.signed and answer.message.has(37)
    assert balances(world) == before  # settling moves no money
    with world.db.transaction() as session:
        number = session.scalar(select(TerminalRow.batch_number).where(
            TerminalRow.tid == client.edc.config.tid))
        settled = session.scalars(select(Settlement)).one()
        assert (settled.closed, settled.response_code, settled.batch_number) == (
            True, "00", "000001")
        assert (settled.switch_purchase_count, settled.switch_purchase_sen,
                settled.switch_void_count, settled.switch_void_sen) == totals
    assert number == "000002"
    # the next batch is empty: zero totals settle; a purchase after it is all it holds
    assert client.settle(Totals(), "000002")[1].rc == codes.APPROVED
    client.purchase([EGGS], _pin(world))
    assert client.settle(Totals(1, EGGS.total_sen), "000003")[1].rc == codes.APPROVED
    assert client.send(request).message.fields == answer.message.fields  # a repeat replays


def test_settlement_with_other_totals_is_95_and_the_batch_stays_open(
        world: HostWorld, client: DayEndClient) -> None:
    totals = _day(world, client)
    wrong = totals._replace(purchase_count=totals.purchase_count + 1)
    _, answer = client.settle(wrong)
    assert answer.rc == codes.SETTLEMENT_MISMATCH and answer.signed
    assert answer.message.has(37)
    _, answer = client.settle(totals)
    assert answer.rc == codes.APPROVED


def test_batch_upload_records_moves_nothing_and_960000_closes_with_the_differences(
        world: HostWorld, client: DayEndClient) -> None:
    pin = _pin(world)
    kept, kept_answer = client.purchase([RICE], pin)
    lost, _ = client.purchase([EGGS], pin)  # the terminal lost this one
    wrong, wrong_answer = client.purchase([EGGS], pin)
    before = balances(world)
    # what the terminal holds: kept, wrong (its amount + 1) and one the switch never saw
    terminal = Totals(3, RICE.total_sen + EGGS.total_sen + 1 + RICE.total_sen)
    _, answer = client.settle(terminal._replace(purchase_sen=terminal.purchase_sen + 1))
    assert answer.rc == codes.SETTLEMENT_MISMATCH
    invented = Message("0200", {**kept.fields, 11: "654321", 62: "000777"})
    uploads = [client.upload(kept, kept_answer),
               client.upload(wrong, wrong_answer, amount_sen=EGGS.total_sen + 1),
               client.upload(invented, Message("0210", {37: "999999999999", 38: "999999"}))]
    assert [u.rc for u in uploads] == ["00", "00", "00"]
    assert all(u.signed and u.message.has(37) for u in uploads)
    _, closed = client.settle(terminal, code="960000")
    assert closed.rc == codes.APPROVED and closed.signed
    assert balances(world) == before  # uploads and settlement never move money
    with world.db.transaction() as session:
        differences = {(d.kind, d.rrn) for d in session.scalars(select(SettlementDifference))}
        pending = session.scalars(select(BatchUpload).where(
            BatchUpload.settlement_id.is_(None))).all()
    lost_rrn = [r.text(37) for q, r in client.held if q is lost]
    assert differences == {("switch_only", lost_rrn[0]), ("amount", wrong_answer.text(37)),
                           ("terminal_only", "999999999999")}
    assert pending == []
    assert client.settle(Totals(), "000002")[1].rc == codes.APPROVED  # the batch closed


# -- the classes and the window -----------------------------------------------------------

def test_the_same_key_in_another_class_is_another_request(world: HostWorld,
                                                        client: DayEndClient) -> None:
    """0100/0200, 0320 and 0500 are three classes: one STAN in each is not a 94."""
    purchase, response = client.purchase([RICE], _pin(world))
    stan = purchase.text(11)
    client.stan = int(stan) - 1  # the upload reuses the purchase's DE 11 and DE 13
    upload = client.upload(purchase, response)
    assert upload.rc == codes.APPROVED
    _, settled = client.settle(Totals(1, RICE.total_sen), stan=stan)
    assert settled.rc == codes.APPROVED


def test_a_repeat_within_the_window_replays_and_next_year_the_key_is_new(
        world: HostWorld, client: DayEndClient) -> None:
    chip, _ = client.purchase([RICE], _pin(world))
    purchase = client.swiped(chip)
    first = client.send(purchase)
    assert first.rc == codes.APPROVED
    world.clock.advance(timedelta(days=6))
    before = balances(world)
    assert client.send(purchase).message.fields == first.message.fields  # replayed
    assert balances(world) == before
    world.clock.advance(timedelta(days=365 - 6))
    _used_recently(world)  # in use all year (else dormant, FAILURES F5)
    again = client.send(purchase)  # same TID, DE 13 and DE 11, a year on: a new request
    assert again.rc == codes.APPROVED and again.message.text(37) != first.message.text(37)
    assert sorted(moved(before, balances(world)).values()) == [-RICE.total_sen,
                                                               RICE.total_sen]


def test_the_batch_number_after_999999_is_000001(world: HostWorld,
                                                 client: DayEndClient) -> None:
    client.purchase([RICE], _pin(world))
    assert client.settle(Totals(1, RICE.total_sen), "999999")[1].rc == codes.APPROVED
    with world.db.transaction() as session:
        number = session.scalar(select(TerminalRow.batch_number).where(
            TerminalRow.tid == client.edc.config.tid))
    assert number == "000001"


def _used_recently(world: HostWorld) -> None:
    """Every card was used a moment ago (the dormancy rule leaves it active)."""
    from sqlalchemy import update

    from switch.db.tables import Card

    with world.db.transaction() as session:
        session.execute(update(Card).values(last_used_at=world.clock.now()))
