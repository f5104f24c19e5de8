"""The day end against the real switch over TCP, MQTT and serial (HOST_SPEC §4): void,
reversal of a void, settlement, batch upload.  Each test checks the response codes and
the money, by balance inquiry on the EDC and in the ledger, before and after; the
``world`` fixture checks the money invariant after every test."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from switch.admin.demo import DemoCard
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from terminal_sim import cli
from terminal_sim.batch import BatchEntry, Status, Totals
from terminal_sim.edc import Edc
from terminal_sim.link import Faults
from tests.transports.conftest import LINK_KINDS, Broker, Linked, linked_edc, serving
from tests.world import PERIOD_SEN, HostWorld

RICE = BasketLine("BRS005", 1, 6_500_000)
EGGS = BasketLine("TLR010", 1, 2_800_000)
UNSETTLED_INVOICE = "000500"


@dataclass
class Counter:
    """One EDC on a real transport to the switch, one card in it."""

    world: HostWorld
    edc: Edc
    card: DemoCard
    faults: Faults
    new_edc: Callable[..., Edc]

    @property
    def pin(self) -> str:
        return self.card.pin

    def balance(self) -> int:
        """Balance by inquiry (the EDC's view), checked against the ledger."""
        inquiry = self.edc.balance_inquiry(self.pin)
        assert inquiry.rc == codes.APPROVED, inquiry
        assert inquiry.balance_sen == self.world.balance_sen(self.card)
        return inquiry.balance_sen


@pytest.fixture(params=LINK_KINDS)
def counter(request: pytest.FixtureRequest, world: HostWorld,
            tmp_path: Path) -> Iterator[Counter]:
    broker = Broker(tmp_path) if request.param == "mqtt" else None
    if broker is not None:
        broker.start()
    try:
        with serving(world, request.param, tmp_path,
                     broker.url if broker else None) as linked:
            yield _counter(world, linked)
    finally:
        if broker is not None:
            broker.stop()


def _counter(world: HostWorld, linked: Linked) -> Counter:
    new_edc = linked_edc(linked)
    faults = Faults()
    edc = new_edc(faults=faults)
    card = world.card()
    world.insert(edc, card)
    return Counter(world, edc, card, faults, new_edc)


def _settle_ok(counter: Counter, *, uploaded: bool = False) -> Totals:
    number = counter.edc.batch.number_text
    result = counter.edc.settle()
    assert (result.rc, result.uploaded) == (codes.APPROVED, uploaded), result
    assert result.batch_number == number
    assert counter.edc.batch.number_text == f"{int(number) + 1:06d}"
    assert counter.edc.batch.entries == []
    return result.totals


def test_void_returns_the_amount_exactly_once(counter: Counter) -> None:
    before = counter.balance()
    assert before == PERIOD_SEN
    bought = counter.edc.purchase([RICE, EGGS], counter.pin)
    assert bought.rc == codes.APPROVED
    amount = RICE.total_sen + EGGS.total_sen
    assert counter.balance() == before - amount
    voided = counter.edc.void(bought.invoice, counter.pin)
    assert (voided.rc, voided.display) == (codes.APPROVED, "TRANSAKSI BERHASIL")
    assert voided.balance_sen == before
    assert counter.balance() == before
    again = counter.edc.void(bought.invoice, counter.pin)
    assert (again.rc, again.display) == (codes.INVALID_TRANSACTION, "TRANSAKSI TIDAK VALID")
    assert counter.balance() == before
    unknown = counter.edc.void(UNSETTLED_INVOICE, counter.pin, force=True, basket=[RICE])
    assert (unknown.rc, unknown.display) == ("25", "DATA TRANSAKSI TIDAK DITEMUKAN")
    assert counter.balance() == before


def test_void_of_another_terminals_purchase_is_25(counter: Counter) -> None:
    bought = counter.edc.purchase([RICE], counter.pin)
    assert bought.rc == codes.APPROVED
    other = counter.new_edc(counter.world.terminal(index=1))
    counter.world.insert(other, counter.card)
    answer = other.void(bought.invoice, counter.pin, force=True, basket=[RICE])
    assert answer.rc == "25"
    assert counter.balance() == PERIOD_SEN - RICE.total_sen
    assert counter.edc.void(bought.invoice, counter.pin).rc == codes.APPROVED
    assert counter.balance() == PERIOD_SEN


def test_void_of_a_reversed_purchase_is_25(counter: Counter) -> None:
    assert counter.balance() == PERIOD_SEN  # also logs on, so the fault hits the purchase
    counter.faults.drop_responses = 1
    lost = counter.edc.purchase([RICE], counter.pin)
    assert lost.timed_out and counter.edc.pending_reversal is not None
    assert counter.balance() == PERIOD_SEN  # the inquiry sent the reversal first
    assert counter.edc.batch.entries[0].status is Status.REVERSED
    refused = counter.edc.void(lost.invoice, counter.pin)
    assert (refused.rc, refused.display) == (None, "DATA TRANSAKSI TIDAK DITEMUKAN")
    forced = counter.edc.void(lost.invoice, counter.pin, force=True, basket=[RICE])
    assert forced.rc == "25"
    assert counter.balance() == PERIOD_SEN
    assert _settle_ok(counter) == Totals()


def test_a_reversed_void_reinstates_the_debit(counter: Counter) -> None:
    bought = counter.edc.purchase([RICE], counter.pin)
    assert bought.rc == codes.APPROVED
    counter.faults.drop_responses = 1
    lost = counter.edc.void(bought.invoice, counter.pin)
    assert lost.timed_out
    reversal = counter.edc.pending_reversal
    assert reversal is not None and reversal.text(3) == "020000"
    assert counter.world.balance_sen(counter.card) == PERIOD_SEN, "the switch voided it"
    assert counter.balance() == PERIOD_SEN - RICE.total_sen  # reversal sent first
    assert counter.edc.pending_reversal is None
    assert _settle_ok(counter) == Totals(1, RICE.total_sen, 0, 0)
    assert counter.balance() == PERIOD_SEN - RICE.total_sen


def test_settlement_closes_the_batch_and_moves_no_money(counter: Counter) -> None:
    results = [counter.edc.purchase(basket, counter.pin)
               for basket in ([RICE], [EGGS], [RICE, EGGS])]
    assert [r.rc for r in results] == [codes.APPROVED] * 3
    assert counter.edc.void(results[1].invoice, counter.pin).rc == codes.APPROVED
    before = counter.balance()
    assert before == PERIOD_SEN - 2 * RICE.total_sen - EGGS.total_sen
    totals = _settle_ok(counter)
    assert totals == Totals(3, 2 * (RICE.total_sen + EGGS.total_sen), 1, EGGS.total_sen)
    assert counter.balance() == before
    empty = counter.edc.settle()
    assert (empty.rc, empty.totals, empty.uploaded) == (codes.APPROVED, Totals(), False)
    assert empty.totals.de63() == "0" * 30
    assert "SETTLEMENT BERHASIL" in "\n".join(empty.slip)
    settled = counter.edc.void(results[0].invoice, counter.pin, force=True, basket=[RICE])
    assert settled.rc == "25", "a settled purchase cannot be voided"
    assert counter.balance() == before


def test_pending_reversal_is_sent_before_settlement(counter: Counter) -> None:
    assert counter.edc.purchase([EGGS], counter.pin).rc == codes.APPROVED
    counter.faults.drop_responses = 1
    assert counter.edc.purchase([RICE], counter.pin).timed_out
    assert _settle_ok(counter) == Totals(1, EGGS.total_sen, 0, 0)
    assert counter.edc.pending_reversal is None
    assert counter.balance() == PERIOD_SEN - EGGS.total_sen


def test_a_lost_record_goes_through_batch_upload(counter: Counter) -> None:
    rice = counter.edc.purchase([RICE], counter.pin)
    eggs = counter.edc.purchase([EGGS], counter.pin)
    assert counter.edc.void(rice.invoice, counter.pin).rc == codes.APPROVED
    counter.edc.batch.forget(eggs.invoice)
    before = counter.balance()
    result = counter.edc.settle()
    assert (result.rc, result.uploaded, result.upload_count) == (codes.APPROVED, True, 2)
    assert result.totals == Totals(1, RICE.total_sen, 1, RICE.total_sen)
    assert any("BATCH UPLOAD" in line and "YA" in line for line in result.slip)
    assert counter.edc.batch.number_text == "000002" and counter.edc.batch.entries == []
    assert counter.balance() == before, "a batch upload never moves money"
    # The switch closed its batch too: the next (empty) one agrees at once.
    assert _settle_ok(counter) == Totals()


def test_a_record_the_switch_lacks_is_uploaded_and_moves_no_money(counter: Counter) -> None:
    bought = counter.edc.purchase([RICE], counter.pin)
    assert bought.rc == codes.APPROVED
    real = counter.edc.batch.approved()[0]
    phantom = BatchEntry(real.kind, "000900", "000900", real.local_time, real.local_date,
                         EGGS.total_sen, "TLR010001000002800000", real.card,
                         status=Status.APPROVED, rrn="999999999999", approval_code="999999")
    counter.edc.batch.record(phantom)
    before = counter.balance()
    result = counter.edc.settle()
    assert (result.rc, result.uploaded, result.upload_count) == (codes.APPROVED, True, 2)
    assert counter.balance() == before
    assert _settle_ok(counter) == Totals()


def test_edc_sim_void_and_settle_keep_the_batch_between_runs(
    world: HostWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """``edc-sim scenario``, ``void`` and ``settle`` are separate runs; the batch lives in
    the state file between them (the demo world of ``--kpm 12`` is the test world's)."""
    state = tmp_path / "edc-state.json"
    spare = list(reversed(world.demo.cards_labelled("ok")))[0]
    with serving(world, "tcp", tmp_path) as linked:
        args = ["--link", linked.url, "--kpm", "12", "--state", str(state), "--timeout-s", "10"]
        assert cli.main(["scenario", "approved-purchase", *args]) == 0
        spent = PERIOD_SEN - world.balance_sen(spare)
        assert spent > 0
        assert cli.main(["void", "1", *args]) == 0
        assert world.balance_sen(spare) == PERIOD_SEN
        assert cli.main(["void", "000001", *args]) == 1  # already voided: 12
        assert cli.main(["void", "000077", *args]) == 1  # not in the batch: refused
        assert cli.main(["settle", *args]) == 0
        assert cli.main(["settle", *args]) == 0
    out = capsys.readouterr().out
    assert "VOID INV 000001: TRANSAKSI BERHASIL (RC 00)" in out
    assert "VOID INV 000001: TRANSAKSI TIDAK VALID (RC 12)" in out
    assert "VOID INV 000077: DATA TRANSAKSI TIDAK DITEMUKAN" in out
    assert "SETTLEMENT BATCH 000001: TRANSAKSI BERHASIL (RC 00)" in out
    assert "SETTLEMENT BATCH 000002: TRANSAKSI BERHASIL (RC 00)" in out
    assert [line.strip() for line in out.splitlines()].count("SETTLEMENT BERHASIL") == 2
    saved = json.loads(state.read_text())[world.terminal().tid]
    assert saved["batch"] == {"number": 3, "last_invoice": 0, "entries": []}
    assert world.balance_sen(spare) == PERIOD_SEN


def test_void_with_another_kpms_card(counter: Counter) -> None:
    bought = counter.edc.purchase([RICE], counter.pin)
    assert bought.rc == codes.APPROVED
    stranger = counter.world.card(index=1)
    counter.world.insert(counter.edc, stranger)
    refused = counter.edc.void(bought.invoice, stranger.pin)
    assert (refused.rc, refused.display) == (None, "KARTU TIDAK SESUAI")
    forced = counter.edc.void(bought.invoice, stranger.pin, force=True)
    assert forced.rc == "25", "another KPM's purchase"
    assert counter.world.balance_sen(stranger) == PERIOD_SEN
    counter.world.insert(counter.edc, counter.card)
    assert counter.balance() == PERIOD_SEN - RICE.total_sen
    assert _settle_ok(counter) == Totals(1, RICE.total_sen, 0, 0)
