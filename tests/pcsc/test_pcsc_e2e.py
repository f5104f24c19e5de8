"""EDC → pyscard → pcscd → vpcd → vicc bridge → KksCard, then the real host and ledger.

Issue 5 acceptance: an approval with an ARQC read over PC/SC; every chip fault and
PC/SC error shows its EDC message and moves no money; a card swap between two
transactions; two readers serving two terminals at once; the fallback to the stripe.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from card_emulator.faults import ChipFault, FaultPlan
from switch.admin.demo import PRICES_SEN
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.security import emv as sec
from terminal_sim.card_reader import (
    EDC_CARD_REMOVED,
    EDC_CARD_UNREADABLE,
    EDC_CHIP_ERROR,
    EDC_INSERT_CARD,
    EDC_READER_ERROR,
)
from terminal_sim.edc import TxnResult
from terminal_sim.fallback import (
    ENTRY_FALLBACK,
    ENTRY_STRIPE,
    StripeReader,
    purchase_with_fallback,
)
from terminal_sim.pcsc_reader import PcscReader, pyscard_available
from terminal_sim.world import ALLOWED_ITEMS
from tests.pcsc.conftest import APDU_TIMEOUT_S, Slot, pcsc_edc, require
from tests.world import HostWorld

pytestmark = pytest.mark.pcsc

RICE = ALLOWED_ITEMS[0]
BASKET = [BasketLine(RICE, 2, PRICES_SEN[RICE])]
AMOUNT_SEN = 2 * PRICES_SEN[RICE]


def buy(world: HostWorld, reader: PcscReader, label: str = "ok", index: int = 0,
        terminal_index: int = 0) -> TxnResult:
    edc = pcsc_edc(world, reader, world.terminal("ok", terminal_index))
    return edc.purchase(BASKET, world.card(label, index).pin)


def test_purchase_approved_with_arqc_read_over_pcsc(world: HostWorld, slots: list[Slot]) -> None:
    slot = slots[0]
    demo = world.card()
    card = slot.card(demo)
    slot.insert(card)
    before = world.balance_sen(demo)
    edc = pcsc_edc(world, slot.reader())
    result = edc.purchase(BASKET, demo.pin)
    assert result.approved, result
    assert result.receipt and result.balance_sen == before - AMOUNT_SEN
    assert world.balance_sen(demo) == before - AMOUNT_SEN
    assert edc.last_request is not None
    tags = sec.parse_icc_data(edc.last_request.binary(55))
    assert tags["9F27"] == b"\x80" and tags["9F36"] == card.atc.to_bytes(2, "big") == b"\0\1"
    assert sec.verify_arqc(world.keys.imk_ac, demo.pan, demo.psn, tags)
    assert slot.bridge.messages > 5  # the APDUs really went through vpcd


FAULTS = [
    # fault, delay_s, what the EDC shows
    (ChipFault.MUTE, 0.3, EDC_CARD_UNREADABLE),  # vpcd gives up: empty answer, card still in
    (ChipFault.MUTE, 30.0, EDC_CARD_UNREADABLE),  # the EDC's own APDU time-out
    (ChipFault.SW_6F00, 0.0, EDC_CARD_UNREADABLE),
    (ChipFault.SLOW, 2 * APDU_TIMEOUT_S, EDC_CARD_UNREADABLE),
    (ChipFault.PULL_ON_GENERATE_AC, 0.0, EDC_CARD_REMOVED),
    (ChipFault.WRONG_ATR, 0.0, EDC_CARD_UNREADABLE),
    (ChipFault.GARBAGE_TLV, 0.0, EDC_CARD_UNREADABLE),
]


@pytest.mark.parametrize(("fault", "delay_s", "shown"), FAULTS,
                         ids=[f"{f.value}-{d}s" for f, d, _ in FAULTS])
def test_chip_fault_shows_message_and_moves_no_money(
    world: HostWorld, slots: list[Slot], fault: ChipFault, delay_s: float, shown: str
) -> None:
    slot = slots[0]
    demo = world.card()
    before = world.balance_sen(demo)
    slot.bridge.set_fault(FaultPlan(fault, delay_s=delay_s))  # before: pcscd reads the ATR once
    slot.insert(slot.card(demo))
    edc = pcsc_edc(world, slot.reader())
    started = time.monotonic()
    result = edc.purchase(BASKET, demo.pin)
    elapsed_s = time.monotonic() - started
    assert (result.rc, result.display) == (None, shown)
    assert edc.last_request is None and edc.pending_reversal is None  # nothing was sent
    assert world.balance_sen(demo) == before
    assert elapsed_s < 5.0  # never a hung terminal
    slot.bridge.set_fault(FaultPlan())
    if fault is ChipFault.PULL_ON_GENERATE_AC:
        assert slot.bridge.card is None and not slot.reader().card_present()
    slot.insert(slot.card(demo))  # the same card, healthy again, is approved
    assert edc.purchase(BASKET, demo.pin).approved
    assert world.balance_sen(demo) == before - AMOUNT_SEN


def test_slow_card_within_the_time_out_is_approved(world: HostWorld, slots: list[Slot]) -> None:
    slot = slots[0]
    demo = world.card()
    slot.insert(slot.card(demo))
    slot.bridge.set_fault(FaultPlan(ChipFault.SLOW, delay_s=0.05))
    started = time.monotonic()
    result = buy(world, slot.reader())
    assert result.approved and time.monotonic() - started >= 6 * 0.05  # 6 APDUs, each late


def test_no_card_in_the_slot(world: HostWorld, slots: list[Slot]) -> None:
    demo = world.card()
    before = world.balance_sen(demo)
    result = buy(world, slots[0].reader())
    assert (result.rc, result.display) == (None, EDC_INSERT_CARD)
    assert world.balance_sen(demo) == before


def test_card_removed_between_read_and_cryptogram(world: HostWorld, slots: list[Slot]) -> None:
    slot = slots[0]
    demo = world.card()
    slot.insert(slot.card(demo))
    before = world.balance_sen(demo)
    reader = slot.reader()
    sent: list[bytes] = []
    transmit = reader.transmit

    def pull_before_generate_ac(apdu: bytes) -> bytes:
        if apdu[1] == 0xAE:
            slot.bridge.remove()
            reader.wait_for_removal(5.0)
        sent.append(apdu)
        return transmit(apdu)

    reader.transmit = pull_before_generate_ac  # type: ignore[method-assign]
    result = pcsc_edc(world, reader).purchase(BASKET, demo.pin)
    assert (result.rc, result.display) == (None, EDC_CARD_REMOVED)
    assert world.balance_sen(demo) == before


def test_reader_gone(world: HostWorld, slots: list[Slot]) -> None:
    result = buy(world, PcscReader("Virtual PCD 00 07"))
    assert (result.rc, result.display) == (None, EDC_READER_ERROR)


def test_pcscd_down_shows_reader_error() -> None:
    """pcscd not running: pyscard cannot establish a context (EstablishContextException
    in its high-level API, SCARD_E_NO_SERVICE in scard); the EDC shows CARD READER ERROR.
    A separate process, pointed at a socket where no pcscd listens."""
    require(pyscard_available(), "pyscard is not installed (pip install .[pcsc])")
    code = (
        "from terminal_sim.pcsc_reader import PcscReader, error_from_exception\n"
        "from terminal_sim.card_reader import ReaderError\n"
        "r = PcscReader('Virtual PCD 00 00')\n"
        "try:\n    r.power_on()\nexcept ReaderError as e:\n    print('A', e.edc_message)\n"
        "try:\n    r.card_present()\nexcept ReaderError as e:\n    print('B', e.edc_message)\n"
        "from smartcard.System import readers\n"
        "try:\n    readers()\nexcept Exception as e:\n"
        "    print('C', type(e).__name__, error_from_exception(e, 'list').edc_message)\n"
    )
    env = {**os.environ, "PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=30, check=True).stdout.splitlines()
    assert out == [f"A {EDC_READER_ERROR}", f"B {EDC_READER_ERROR}",
                   f"C EstablishContextException {EDC_READER_ERROR}"]


def test_swap_cards_between_two_transactions(world: HostWorld, slots: list[Slot]) -> None:
    slot = slots[0]
    first, second = world.card("ok", 0), world.card("ok", 1)
    before = (world.balance_sen(first), world.balance_sen(second))
    edc = pcsc_edc(world, slot.reader())
    slot.insert(slot.card(first))
    one = edc.purchase(BASKET, first.pin)
    slot.empty()
    slot.insert(slot.card(second))
    two = edc.purchase(BASKET, second.pin)
    assert one.approved and two.approved
    assert (world.balance_sen(first), world.balance_sen(second)) == (
        before[0] - AMOUNT_SEN, before[1] - AMOUNT_SEN)
    assert first.pan[-4:] in "\n".join(one.receipt) and second.pan[-4:] in "\n".join(two.receipt)


def test_two_readers_serve_two_terminals_at_once(world: HostWorld, slots: list[Slot]) -> None:
    cards = [world.card("ok", 2), world.card("ok", 3)]
    before = [world.balance_sen(c) for c in cards]
    for slot, demo in zip(slots, cards, strict=True):
        slot.insert(slot.card(demo))
        slot.bridge.set_fault(FaultPlan(ChipFault.SLOW, delay_s=0.05))  # overlap the reads
    results: list[TxnResult | None] = [None, None]
    barrier = threading.Barrier(2, timeout=10)

    def run(i: int) -> None:
        edc = pcsc_edc(world, slots[i].reader(), world.terminal("ok", i))
        edc.ensure_logged_on()
        barrier.wait()
        results[i] = edc.purchase(BASKET, cards[i].pin)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r is not None and r.approved for r in results), results
    assert [world.balance_sen(c) for c in cards] == [b - AMOUNT_SEN for b in before]


# --- card profiles ---------------------------------------------------------------------


def test_expired_card_declined_54(world: HostWorld, slots: list[Slot]) -> None:
    slot = slots[0]
    demo = world.card("expired")
    slot.insert(slot.card(demo, "expired"))
    result = pcsc_edc(world, slot.reader()).purchase(BASKET, demo.pin)
    assert (result.rc, result.display) == (codes.EXPIRED_CARD, codes.display_for("54"))


def test_unknown_aid_card_shows_chip_error(world: HostWorld, slots: list[Slot]) -> None:
    slot = slots[0]
    demo = world.card()
    before = world.balance_sen(demo)
    slot.insert(slot.card(demo, "unknown-aid"))
    edc = pcsc_edc(world, slot.reader())
    result = edc.purchase(BASKET, demo.pin)
    assert (result.rc, result.display) == (None, EDC_CHIP_ERROR)
    assert edc.last_request is None and world.balance_sen(demo) == before


def test_pin_blocked_card_declines_offline(world: HostWorld, slots: list[Slot]) -> None:
    slot = slots[0]
    demo = world.card()
    before = world.balance_sen(demo)
    slot.insert(slot.card(demo, "pin-blocked"))
    edc = pcsc_edc(world, slot.reader())
    result = edc.purchase(BASKET, demo.pin)
    assert (result.rc, result.display) == (None, "DITOLAK OLEH KARTU")
    assert edc.last_request is None  # declined by the card: nothing went online
    assert world.balance_sen(demo) == before


# --- fallback to the stripe -------------------------------------------------------------


def test_chip_fault_falls_back_to_stripe_801(world: HostWorld, slots: list[Slot]) -> None:
    slot = slots[0]
    demo = world.card()
    card = slot.card(demo)
    slot.insert(card)
    slot.bridge.set_fault(FaultPlan(ChipFault.SW_6F00))
    before = world.balance_sen(demo)
    stripe = StripeReader()
    stripe.load(card.profile.track2)
    edc = pcsc_edc(world, slot.reader())
    result = purchase_with_fallback(edc, stripe, BASKET, demo.pin)
    assert result.approved, result
    assert edc.last_request is not None
    assert edc.last_request.text(22) == ENTRY_FALLBACK and not edc.last_request.has(55)
    assert world.balance_sen(demo) == before - AMOUNT_SEN


def test_magstripe_only_card_is_swiped_021(world: HostWorld, slots: list[Slot]) -> None:
    slot = slots[0]
    demo = world.card()
    card = slot.card(demo, "magstripe")
    slot.bridge.swap(card)  # no chip: the reader sees an empty slot
    reader = slot.reader()
    assert not reader.card_present()
    stripe = StripeReader()
    stripe.load(card.profile.track2)
    before = world.balance_sen(demo)
    edc = pcsc_edc(world, reader)
    result = purchase_with_fallback(edc, stripe, BASKET, demo.pin)
    assert result.approved, result
    assert edc.last_request is not None and edc.last_request.text(22) == ENTRY_STRIPE
    assert world.balance_sen(demo) == before - AMOUNT_SEN
