"""Every decline of issue 2, through the real EDC, card emulator and host."""

from __future__ import annotations

import pytest

from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from tests.world import PERIOD_SEN, HostWorld

RICE = BasketLine("BRS005", 1, 6_500_000)
EGGS = BasketLine("TLR010", 2, 2_800_000)


def test_approved_purchase_debits_exactly_the_basket(world: HostWorld) -> None:
    edc, card = world.edc_with_card()
    result = edc.purchase([RICE, EGGS], card.pin)
    assert result.rc == codes.APPROVED
    assert result.display == "TRANSAKSI BERHASIL"
    spent = RICE.total_sen + EGGS.total_sen
    assert result.balance_sen == PERIOD_SEN - spent
    assert world.balance_sen(card) == PERIOD_SEN - spent
    assert any("SISA SALDO" in line for line in result.receipt)


def test_balance_inquiry_reports_the_wallet(world: HostWorld) -> None:
    edc, card = world.edc_with_card()
    result = edc.balance_inquiry(card.pin)
    assert (result.rc, result.balance_sen) == (codes.APPROVED, PERIOD_SEN)


@pytest.mark.parametrize(
    ("label", "rc", "display"),
    [
        ("unknown", "14", "KARTU TIDAK TERDAFTAR"),
        ("expired", "54", "KARTU KADALUARSA"),
        ("blocked", "62", "KARTU DIBLOKIR"),
        ("lost", "62", "KARTU DIBLOKIR"),
        ("stolen", "62", "KARTU DIBLOKIR"),
        ("dormant", "62", "KARTU DIBLOKIR"),
        ("kpm_inactive", "57", "TRANSAKSI TIDAK DIIZINKAN"),
    ],
)
def test_card_and_kpm_declines(world: HostWorld, label: str, rc: str, display: str) -> None:
    edc = world.edc()
    card = world.card(label)
    world.insert(edc, card)
    result = edc.purchase([RICE], card.pin)
    assert (result.rc, result.display) == (rc, display)
    if label != "unknown":
        assert world.balance_sen(card) == (0 if label == "kpm_inactive" else PERIOD_SEN)


def test_item_outside_food_categories_is_57(world: HostWorld) -> None:
    edc, card = world.edc_with_card()
    result = edc.purchase([RICE, BasketLine("ROK016", 1, 3_000_000)], card.pin)
    assert result.rc == codes.NOT_PERMITTED_KPM
    assert world.balance_sen(card) == PERIOD_SEN


def test_unknown_item_is_57(world: HostWorld) -> None:
    edc, card = world.edc_with_card()
    assert edc.purchase([BasketLine("XXX999", 1, 100)], card.pin).rc == codes.NOT_PERMITTED_KPM


def test_cash_out_processing_code_is_57(world: HostWorld) -> None:
    edc, card = world.edc_with_card()
    result = edc.purchase([RICE], card.pin, processing_code="011000")
    assert result.rc == codes.NOT_PERMITTED_KPM
    assert world.balance_sen(card) == PERIOD_SEN


def test_basket_sum_not_amount_is_13(world: HostWorld) -> None:
    edc, card = world.edc_with_card()
    result = edc.purchase([RICE], card.pin, amount_override_sen=RICE.total_sen - 1)
    assert (result.rc, result.display) == (codes.INVALID_AMOUNT, "NOMINAL TIDAK SESUAI")
    assert world.balance_sen(card) == PERIOD_SEN


def test_zero_amount_is_13(world: HostWorld) -> None:
    edc, card = world.edc_with_card()
    assert edc.purchase([BasketLine("BRS005", 1, 0)], card.pin).rc == codes.INVALID_AMOUNT


@pytest.mark.parametrize("label", ["unknown", "inactive", "ewarong_inactive"])
def test_terminal_declines_are_58(world: HostWorld, label: str) -> None:
    edc = world.edc(world.terminal(label))
    card = world.card()
    world.insert(edc, card)
    result = edc.purchase([RICE], card.pin)
    assert (result.rc, result.display) == (codes.NOT_PERMITTED_TERMINAL, "TERMINAL TIDAK TERDAFTAR")
    assert world.balance_sen(card) == PERIOD_SEN


def test_mid_that_does_not_own_the_terminal_is_58(world: HostWorld) -> None:
    edc, card = world.edc_with_card()
    assert edc.purchase([RICE], card.pin).rc == codes.APPROVED
    assert edc.last_request is not None
    stolen = edc.last_request.with_fields(de11="777777", de42="EWARONG00000999")
    assert edc.resend(stolen).opt_text(39) == codes.NOT_PERMITTED_TERMINAL


def test_insufficient_balance_is_51_with_balance(world: HostWorld) -> None:
    edc, card = world.edc_with_card()
    result = edc.purchase([BasketLine("BRS010", 15, 14_000_000)], card.pin)
    assert (result.rc, result.display) == (codes.INSUFFICIENT_BALANCE, "SALDO TIDAK CUKUP")
    assert result.balance_sen == PERIOD_SEN
    assert world.balance_sen(card) == PERIOD_SEN


def test_third_wrong_pin_is_75_and_blocks_the_card(world: HostWorld) -> None:
    edc, card = world.edc_with_card()
    wrong = f"{(int(card.pin) + 1) % 10**6:06d}"
    rcs = [edc.purchase([RICE], wrong).rc for _ in range(3)]
    assert rcs == [codes.WRONG_PIN, codes.WRONG_PIN, codes.PIN_TRIES_EXCEEDED]
    assert edc.purchase([RICE], card.pin).rc == codes.RESTRICTED_CARD
    assert world.balance_sen(card) == PERIOD_SEN


def test_right_pin_resets_the_wrong_pin_count(world: HostWorld) -> None:
    edc, card = world.edc_with_card()
    wrong = f"{(int(card.pin) + 1) % 10**6:06d}"
    assert edc.purchase([RICE], wrong).rc == codes.WRONG_PIN
    assert edc.purchase([RICE], wrong).rc == codes.WRONG_PIN
    assert edc.balance_inquiry(card.pin).rc == codes.APPROVED
    assert edc.purchase([RICE], wrong).rc == codes.WRONG_PIN  # count restarted


def test_request_before_logon_is_63(world: HostWorld) -> None:
    first, second = world.edc(world.terminal(index=0)), world.edc(world.terminal(index=1))
    card = world.card()
    world.insert(first, card)
    assert first.purchase([RICE], card.pin).rc == codes.APPROVED
    assert first.last_request is not None
    # The same request as if it came from the second terminal, which never logged on.
    t2 = world.terminal(index=1)
    foreign = first.last_request.with_fields(de41=t2.tid, de42=t2.mid)
    assert second.resend(foreign).opt_text(39) == codes.SECURITY_VIOLATION


def test_tampered_arqc_is_63(world: HostWorld) -> None:
    edc, card = world.edc_with_card()
    assert edc.balance_inquiry(card.pin).rc == codes.APPROVED
    assert edc.last_request is not None
    de55 = bytearray(edc.last_request.binary(55))
    de55[3] ^= 0x01  # inside 9F26, the ARQC
    tampered = edc.last_request.with_fields(de11="654321", de55=bytes(de55))
    assert edc.resend(tampered).opt_text(39) == codes.SECURITY_VIOLATION


def test_unsupported_processing_code_is_12(world: HostWorld) -> None:
    edc, card = world.edc_with_card()
    assert edc.purchase([RICE], card.pin, processing_code="380000").rc == "12"


def test_missing_required_de_is_30(world: HostWorld) -> None:
    edc, card = world.edc_with_card()
    edc.purchase([RICE], card.pin)
    assert edc.last_request is not None
    assert edc.resend(edc.last_request.with_fields(de11="111111", de48=None)).opt_text(39) == "30"


def test_echo_and_logon(world: HostWorld) -> None:
    edc = world.edc()
    assert edc.echo().rc == codes.APPROVED
    assert edc.logon().rc == codes.APPROVED


def test_chip_purchase_without_its_cryptogram_is_30(world: HostWorld) -> None:
    edc, card = world.edc_with_card()
    edc.purchase([RICE], card.pin)
    assert edc.last_request is not None
    stripped = edc.last_request.with_fields(de11="222222", de55=None)
    assert edc.resend(stripped).opt_text(39) == codes.FORMAT_ERROR
    assert world.balance_sen(card) == PERIOD_SEN - RICE.total_sen
