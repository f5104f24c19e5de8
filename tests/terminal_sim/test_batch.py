"""The EDC's batch alone (terminal_sim/batch.py): invoices, totals, wrap, persistence."""

from __future__ import annotations

import json

import pytest

from switch.protocol.message import Message
from terminal_sim.batch import (
    MAX_BATCH_NUMBER,
    MAX_COUNT,
    Batch,
    BatchEntry,
    Kind,
    Status,
    Totals,
    card_ref,
)

RICE = "BRS005001000006500000"
EGGS = "TLR010001000002800000"
PAN = "6013010012345678"


def _send(batch: Batch, kind: Kind, *, invoice: str | None = None, stan: int = 1,
          amount_sen: int = 6_500_000, basket: str = RICE) -> BatchEntry:
    return batch.record(BatchEntry(kind, invoice or batch.next_invoice(), f"{stan:06d}",
                                   "101500", "1123", amount_sen, basket, card_ref(PAN)))


def _approve(batch: Batch, entry: BatchEntry) -> BatchEntry:
    batch.approve(entry, rrn=f"{int(entry.stan):012d}", approval_code=f"A{entry.stan[-5:]}")
    return entry


def test_invoices_count_up_from_000001_and_are_consumed_by_declines_and_timeouts() -> None:
    batch = Batch()
    approved = _approve(batch, _send(batch, Kind.PURCHASE, stan=1))
    declined = _send(batch, Kind.PURCHASE, stan=2)
    batch.discard(declined)  # declined: gone from the batch, its invoice used up
    timed_out = _send(batch, Kind.PURCHASE, stan=3)
    assert [approved.invoice, declined.invoice, timed_out.invoice] == \
        ["000001", "000002", "000003"]
    assert batch.next_invoice() == "000004"
    assert [e.invoice for e in batch.entries] == ["000001", "000003"]


def test_totals_count_voided_purchases_and_voids_but_nothing_reversed() -> None:
    batch = Batch()
    rice = _approve(batch, _send(batch, Kind.PURCHASE, stan=1))
    eggs = _approve(batch, _send(batch, Kind.PURCHASE, stan=2, amount_sen=2_800_000,
                                 basket=EGGS))
    void = _approve(batch, _send(batch, Kind.VOID, invoice=eggs.invoice, stan=3,
                                 amount_sen=2_800_000, basket=EGGS))
    lost = _send(batch, Kind.PURCHASE, stan=4)  # timed out ...
    assert batch.reversed("000004", "1123") is lost  # ... and its reversal answered
    lost_void = _send(batch, Kind.VOID, invoice=rice.invoice, stan=5)
    batch.reversed("000005", "1123")
    assert eggs.voided and not rice.voided, "a reversed void voids nothing"
    assert void.invoice == eggs.invoice, "a void carries its original's invoice"
    assert lost.status is Status.REVERSED and lost_void.status is Status.REVERSED
    assert batch.totals() == Totals(2, 9_300_000, 1, 2_800_000)
    assert batch.totals().de63() == "002000009300000001000002800000"
    assert len(batch.totals().de63()) == 30
    assert batch.totals().net_sen == 6_500_000
    assert [e.stan for e in batch.approved()] == ["000001", "000002", "000003"]


def test_an_entry_still_in_flight_is_not_counted_and_not_voidable() -> None:
    batch = Batch()
    entry = _send(batch, Kind.PURCHASE)
    assert batch.totals() == Totals()
    assert batch.find_purchase(entry.invoice) is None
    _approve(batch, entry)
    assert batch.find_purchase(entry.invoice) is entry


def test_find_purchase_ignores_voids_and_reversed_purchases() -> None:
    batch = Batch()
    purchase = _approve(batch, _send(batch, Kind.PURCHASE, stan=1))
    _approve(batch, _send(batch, Kind.VOID, invoice=purchase.invoice, stan=2))
    assert batch.find_purchase(purchase.invoice) is purchase, "voided is still held"
    reversed_one = _send(batch, Kind.PURCHASE, stan=3)
    batch.reversed("000003", "1123")
    assert batch.find_purchase(reversed_one.invoice) is None
    assert batch.find_purchase("000999") is None


def test_upload_processing_code_is_the_original_with_last_digit_1() -> None:
    batch = Batch()
    assert _send(batch, Kind.PURCHASE).upload_processing_code == "000001"
    assert _send(batch, Kind.VOID, invoice="000001").upload_processing_code == "020001"


def test_close_starts_the_next_number_with_an_empty_batch_and_invoice_000001() -> None:
    batch = Batch(number=41)
    _approve(batch, _send(batch, Kind.PURCHASE))
    assert batch.close() == "000041"
    assert (batch.number_text, batch.entries, batch.totals()) == ("000042", [], Totals())
    assert batch.next_invoice() == "000001"


def test_batch_number_wraps_999999_to_000001() -> None:
    batch = Batch(number=MAX_BATCH_NUMBER)
    assert batch.close() == "999999"
    assert batch.number_text == "000001"


def test_invoice_wraps_999999_to_000001_skipping_invoices_still_held() -> None:
    batch = Batch(last_invoice=999_998)
    assert batch.next_invoice() == "999999"
    assert batch.next_invoice() == "000001"
    batch = Batch(last_invoice=999_999)
    _send(batch, Kind.PURCHASE, invoice="000001")
    _send(batch, Kind.PURCHASE, invoice="000002")
    assert batch.next_invoice() == "000003", "never reused within a batch"


def test_forget_drops_one_record() -> None:
    batch = Batch()
    kept = _approve(batch, _send(batch, Kind.PURCHASE, stan=1))
    lost = _approve(batch, _send(batch, Kind.PURCHASE, stan=2))
    assert batch.forget(lost.invoice) is lost
    assert batch.approved() == [kept]
    assert batch.forget("000777") is None


def test_persistence_round_trip_through_json() -> None:
    batch = Batch(number=7)
    rice = _approve(batch, _send(batch, Kind.PURCHASE, stan=1))
    _approve(batch, _send(batch, Kind.VOID, invoice=rice.invoice, stan=2))
    _send(batch, Kind.PURCHASE, stan=3)  # in flight: its reversal is still to come
    restored = Batch.from_json(json.loads(json.dumps(batch.to_json())))
    assert restored == batch
    assert restored.next_invoice() == batch.next_invoice() == "000003"
    assert restored.entries[0].voided and restored.entries[2].status is Status.SENT
    assert restored.entries[0].lines()[0].item_code == "BRS005"
    assert PAN not in json.dumps(batch.to_json()), "no clear PAN in the state file"


def test_an_old_state_file_without_a_batch_starts_batch_000001() -> None:
    assert Batch.from_json({}) == Batch()


def test_entry_from_request_takes_what_was_sent() -> None:
    request = Message("0200", {3: "000000", 4: "000006500000", 11: "000012", 12: "101500",
                               13: "1123", 48: RICE, 62: "000005"})
    entry = BatchEntry.from_request(Kind.PURCHASE, request, pan=PAN, masked_pan="601301******5678")
    assert (entry.invoice, entry.stan, entry.local_time, entry.local_date, entry.amount_sen,
            entry.basket, entry.card) == ("000005", "000012", "101500", "1123", 6_500_000, RICE,
                                          card_ref(PAN))


def test_de63_parse_and_limits() -> None:
    assert Totals.parse(Totals(1, 2, 3, 4).de63()) == Totals(1, 2, 3, 4)
    assert Totals().de63() == "0" * 30
    with pytest.raises(ValueError):
        Totals(MAX_COUNT + 1, 0, 0, 0).de63()
    with pytest.raises(ValueError):
        Totals.parse("12")
