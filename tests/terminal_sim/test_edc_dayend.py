"""The EDC's void, settlement and batch upload against a host written from HOST_SPEC §4
(tests/terminal_sim/spec_host.py): the bytes the EDC sends, the money, the batch.  The
same flows against the real switch are in test_dayend_e2e.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from card_emulator.card import KksCard
from card_emulator.profile import profile_for
from switch.admin.demo import build_world
from switch.clock import FixedClock
from switch.protocol.bpnt import BasketLine
from switch.protocol.message import Message
from terminal_sim.batch import Status, Totals
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import (
    VOID_NOT_FOUND_DISPLAY,
    WRONG_CARD_DISPLAY,
    Edc,
    EdcConfig,
    State,
)
from terminal_sim.link import DirectLink, Faults, FaultyLink
from terminal_sim.world import SimWorld
from tests.terminal_sim.spec_host import START_SEN, SpecHost

IMK_AC = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
RICE = BasketLine("BRS005", 1, 6_500_000)
EGGS = BasketLine("TLR010", 1, 2_800_000)


@dataclass
class Bench:
    edc: Edc
    host: SpecHost
    faults: Faults
    pan: str
    pin: str
    other_card: KksCard

    def sent(self, mti: str, pcode: str | None = None) -> list[Message]:
        return [m for m in self.host.requests
                if m.mti == mti and (pcode is None or m.opt_text(3) == pcode)]

    def balance(self) -> int:
        return self.host.wallet(self.pan)


@pytest.fixture
def bench() -> Iterator[Bench]:
    demo = build_world(kpm_count=3, terminal_count=1)
    terminal, card, other = demo.terminals[0], demo.cards[0], demo.cards[1]
    host = SpecHost(terminal.tmk)
    faults = Faults()
    screen: list[str] = []
    edc = Edc(EdcConfig(terminal.tid, terminal.mid, terminal.tmk),
              FaultyLink(DirectLink(host.process_unit), faults),
              EmulatedReader(KksCard(profile_for(card.pan, card.psn, card.expiry_yymm, IMK_AC))),
              clock=FixedClock(), on_screen=screen.append)
    other_card = KksCard(profile_for(other.pan, other.psn, other.expiry_yymm, IMK_AC))
    yield Bench(edc, host, faults, card.pan, card.pin, other_card)
    assert edc.state is State.IDLE


def test_purchase_carries_the_next_invoice_and_is_kept_in_the_batch(bench: Bench) -> None:
    first = bench.edc.purchase([RICE], bench.pin)
    second = bench.edc.purchase([EGGS], bench.pin)
    assert (first.invoice, second.invoice) == ("000001", "000002")
    assert [m.text(62) for m in bench.sent("0200")] == ["000001", "000002"]
    entry = bench.edc.batch.find_purchase("000001")
    assert entry is not None
    response_rrn = next(line.split()[1] for line in first.receipt if line.startswith("RRN"))
    assert (entry.rrn, entry.amount_sen, entry.stan) == (response_rrn, RICE.total_sen,
                                                          first.stan)
    assert any("INV 000001" in line for line in first.receipt)


def test_void_sends_the_originals_amount_basket_and_invoice(bench: Bench) -> None:
    bought = bench.edc.purchase([RICE, EGGS], bench.pin)
    voided = bench.edc.void(bought.invoice, bench.pin)
    assert voided.approved and voided.kind == "void"
    purchase, void = bench.sent("0200")
    assert void.text(3) == "020000"
    assert {de: void.fields[de] for de in (4, 48, 62)} == \
        {de: purchase.fields[de] for de in (4, 48, 62)}
    assert void.has(52) and void.has(35) and void.has(55), "card and PIN again"
    assert void.text(11) != purchase.text(11)
    assert bench.balance() == START_SEN
    entry = bench.edc.batch.find_purchase(bought.invoice)
    assert entry is not None and entry.voided
    assert bench.edc.batch.totals() == Totals(1, bought.amount_sen, 1, bought.amount_sen)
    assert bench.edc.batch.next_invoice() == "000002", "a void takes no invoice of its own"


def test_void_again_is_sent_and_the_host_answers_12(bench: Bench) -> None:
    bought = bench.edc.purchase([RICE], bench.pin)
    bench.edc.void(bought.invoice, bench.pin)
    again = bench.edc.void(bought.invoice, bench.pin)
    assert again.rc == "12"
    assert bench.edc.batch.totals().void_count == 1


def test_void_of_an_invoice_not_in_the_batch_is_refused_locally(bench: Bench) -> None:
    sent_before = len(bench.host.requests)
    result = bench.edc.void("000042", bench.pin)
    assert (result.rc, result.display) == (None, VOID_NOT_FOUND_DISPLAY)
    assert len(bench.host.requests) == sent_before, "nothing sent"


def test_forced_void_of_an_unknown_invoice_goes_to_the_host(bench: Bench) -> None:
    result = bench.edc.void("000042", bench.pin, force=True, basket=[RICE])
    assert result.rc == "25"
    void = bench.sent("0200", "020000")[0]
    assert (void.text(62), void.text(4)) == ("000042", f"{RICE.total_sen:012d}")
    assert bench.edc.batch.entries == []


def test_void_with_another_card_is_refused_locally(bench: Bench) -> None:
    bought = bench.edc.purchase([RICE], bench.pin)
    reader = bench.edc.reader
    assert isinstance(reader, EmulatedReader)
    reader.swap(bench.other_card)
    result = bench.edc.void(bought.invoice, bench.pin)
    assert (result.rc, result.display) == (None, WRONG_CARD_DISPLAY)
    assert bench.sent("0200", "020000") == []


def test_timed_out_void_leaves_a_020000_reversal_sent_before_settlement(bench: Bench) -> None:
    bought = bench.edc.purchase([RICE], bench.pin)
    bench.faults.drop_responses = 1
    lost = bench.edc.void(bought.invoice, bench.pin)
    assert lost.timed_out
    reversal = bench.edc.pending_reversal
    assert reversal is not None and reversal.text(3) == "020000" and not reversal.has(52)
    assert bench.balance() == START_SEN, "the host applied the void"
    result = bench.edc.settle()
    assert [m.mti for m in bench.host.requests[-2:]] == ["0400", "0500"]
    assert bench.balance() == START_SEN - RICE.total_sen, "reversal reinstated the debit"
    assert result.approved and not result.uploaded
    assert result.totals == Totals(1, RICE.total_sen, 0, 0)


def test_timed_out_purchase_is_reversed_and_not_counted(bench: Bench) -> None:
    bench.edc.ensure_logged_on()
    bench.faults.drop_responses = 1
    lost = bench.edc.purchase([RICE], bench.pin)
    assert lost.timed_out and lost.invoice == "000001"
    assert bench.edc.batch.entries[0].status is Status.SENT
    assert bench.edc.void(lost.invoice, bench.pin).display == VOID_NOT_FOUND_DISPLAY
    result = bench.edc.settle()
    assert result.approved and result.totals == Totals()
    assert bench.balance() == START_SEN


def test_settle_sends_de60_de63_and_closes_the_batch(bench: Bench) -> None:
    bench.edc.purchase([RICE], bench.pin)
    eggs = bench.edc.purchase([EGGS], bench.pin)
    bench.edc.void(eggs.invoice, bench.pin)
    result = bench.edc.settle()
    settlement = bench.sent("0500")[-1]
    assert (settlement.text(3), settlement.text(60)) == ("920000", "000001")
    assert settlement.text(63) == "002000009300000001000002800000"
    assert settlement.has(64)
    assert result.approved and result.batch_number == "000001" and not result.uploaded
    assert (bench.edc.batch.number_text, bench.edc.batch.entries) == ("000002", [])
    assert "SETTLEMENT BERHASIL" in "\n".join(result.slip)
    assert bench.edc.purchase([RICE], bench.pin).invoice == "000001", "invoices restart"
    assert bench.host.closed_batches == ["000001"]


def test_totals_mismatch_uploads_every_approved_transaction_then_960000(bench: Bench) -> None:
    rice = bench.edc.purchase([RICE], bench.pin)
    eggs = bench.edc.purchase([EGGS], bench.pin)
    void = bench.edc.void(rice.invoice, bench.pin)
    lost = bench.edc.purchase([RICE, EGGS], bench.pin)
    bench.edc.batch.forget(lost.invoice)
    before = bench.balance()
    result = bench.edc.settle()
    assert result.approved and result.uploaded and result.upload_count == 3
    assert result.mismatch
    originals = {(m.text(3), m.text(62)): m for m in bench.sent("0200")}
    uploads = bench.host.uploads
    assert [(m.text(3), m.text(62)) for m in uploads] == \
        [("000001", rice.invoice), ("000001", eggs.invoice), ("020001", void.invoice)]
    for upload in uploads:
        original = originals[(upload.text(3)[:5] + "0", upload.text(62))]
        assert upload.text(11) not in {m.text(11) for m in bench.sent("0200")}, "new STAN"
        for de in (4, 12, 13):
            assert upload.text(de) == original.text(de)
        assert upload.text(60) == "000001" and upload.has(64)
        assert upload.has(37) and upload.has(38)
    assert [m.text(3) for m in bench.sent("0500")] == ["920000", "960000"]
    assert bench.sent("0500")[1].text(63) == bench.sent("0500")[0].text(63)
    assert bench.balance() == before, "upload moves no money"
    assert bench.edc.batch.number_text == "000002"
    assert any("BATCH UPLOAD" in line and "YA" in line for line in result.slip)


def test_settlement_refused_keeps_the_batch_open(bench: Bench) -> None:
    bench.edc.purchase([RICE], bench.pin)
    bench.host.force_rc["0500"] = "96"
    result = bench.edc.settle()
    assert result.rc == "96" and not result.approved
    assert bench.edc.batch.number_text == "000001" and len(bench.edc.batch.approved()) == 1
    assert "SETTLEMENT GAGAL" in "\n".join(result.slip)
    assert bench.edc.settle().approved


def test_settlement_timeout_keeps_the_batch_open_without_a_reversal(bench: Bench) -> None:
    bench.edc.purchase([RICE], bench.pin)
    bench.faults.drop_responses = 1
    result = bench.edc.settle()
    assert result.timed_out and result.rc is None
    assert bench.edc.pending_reversal is None, "a settlement is never reversed"
    assert bench.edc.batch.number_text == "000001"


def test_upload_refused_keeps_the_batch_open(bench: Bench) -> None:
    bench.edc.purchase([RICE], bench.pin)
    bench.edc.batch.forget("000001")
    bench.edc.purchase([EGGS], bench.pin)
    bench.host.force_rc["0320"] = "30"
    result = bench.edc.settle()
    assert (result.rc, result.uploaded, result.upload_count) == ("30", False, 0)
    assert result.mismatch
    assert [m.text(3) for m in bench.sent("0500")] == ["920000"], "no 960000"
    assert bench.edc.batch.number_text == "000001"


def test_a_response_with_a_bad_mac_is_no_answer(bench: Bench) -> None:
    bench.edc.purchase([RICE], bench.pin)
    host_unit = bench.host.process_unit

    def tampered(unit: bytes) -> bytes:
        reply = host_unit(unit)
        return reply[:-1] + bytes([reply[-1] ^ 1]) if unit[5:7] == b"\x05\x00" else reply

    bench.edc.link = DirectLink(tampered)
    result = bench.edc.settle()
    assert result.timed_out and not result.approved
    assert bench.edc.batch.number_text == "000001", "a 0510 whose MAC fails closes nothing"


def test_state_survives_a_power_cycle(bench: Bench) -> None:
    bench.edc.purchase([RICE], bench.pin)
    bench.faults.drop_responses = 1
    bench.edc.purchase([EGGS], bench.pin)
    saved = bench.edc.saved_state()
    twin = Edc(bench.edc.config, bench.edc.link, bench.edc.reader, clock=bench.edc.clock)
    twin.restore_state(saved)
    assert twin.saved_state() == saved
    assert twin.batch == bench.edc.batch and twin.stan == bench.edc.stan
    assert twin.pending_reversal == bench.edc.pending_reversal
    result = twin.settle()  # logs on, sends the pending reversal, settles
    assert result.approved and result.totals == Totals(1, RICE.total_sen, 0, 0)
    assert bench.balance() == START_SEN - RICE.total_sen


def test_the_slip_is_an_end_of_day_report(bench: Bench) -> None:
    bench.edc.purchase([RICE], bench.pin)
    eggs = bench.edc.purchase([EGGS], bench.pin)
    bench.edc.void(eggs.invoice, bench.pin)
    slip = "\n".join(bench.edc.settle().slip)
    config = bench.edc.config
    for expected in (config.merchant_name, config.mid, f"TID {config.tid}", "BATCH 000001",
                     "23/11/26", "10:00:00", "SETTLEMENT", "Rp 93.000", "-Rp 28.000",
                     "Rp 65.000", "SETTLEMENT BERHASIL", "TIDAK"):
        assert expected in slip, expected
    assert all(len(line) <= 32 for line in slip.splitlines())


def test_simworld_keeps_the_batch_in_its_state_file(bench: Bench, tmp_path: Path) -> None:
    bench.edc.purchase([RICE], bench.pin)
    bench.faults.drop_responses = 1
    bench.edc.purchase([EGGS], bench.pin)
    demo = build_world(kpm_count=3, terminal_count=1)
    state = tmp_path / "edc-state.json"
    state.write_text(json.dumps({demo.terminals[0].tid: {"stan": 41, "invoice": 9}}))
    old = SimWorld(demo, IMK_AC, "127.0.0.1", 9, state_path=state)
    assert old.edc(demo.terminals[0]).batch.next_invoice() == "000010", "older state file"
    old.close()
    first = SimWorld(demo, IMK_AC, "127.0.0.1", 9, state_path=state)
    first.edc(demo.terminals[0]).restore_state(bench.edc.saved_state())
    first.close()
    again = SimWorld(demo, IMK_AC, "127.0.0.1", 9, state_path=state).edc(demo.terminals[0])
    assert again.batch == bench.edc.batch
    assert again.pending_reversal == bench.edc.pending_reversal
    assert again.stan == bench.edc.stan
