"""Terminal EMV kernel against the emulated card (terminal_sim/emv.py, card_reader.py)."""

from __future__ import annotations

from datetime import date

import pytest

from card_emulator.card import ATR, KksCard
from card_emulator.profile import profile_for
from switch.security import emv as sec
from terminal_sim.card_reader import (
    EDC_CARD_REMOVED,
    EDC_CHIP_ERROR,
    EDC_INSERT_CARD,
    CardReader,
    CardRemovedError,
    CardUnreadableError,
    EmulatedReader,
    NoCardError,
    ReaderError,
)
from terminal_sim.emv import CardData, build_dol_data, generate_arqc, parse_dol, read_card

IMK_AC = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PAN = "6013010012345678"
UN = bytes.fromhex("01020304")


def make_card(pan: str = PAN) -> KksCard:
    return KksCard(profile_for(pan, "01", "2912", IMK_AC, cardholder_name="SITI AMINAH"))


@pytest.fixture
def reader() -> EmulatedReader:
    r = EmulatedReader(make_card())
    assert r.power_on() == ATR
    return r


def arqc(reader: CardReader, card: CardData, amount_sen: int = 15_000_000) -> bytes:
    return generate_arqc(
        reader, card, amount_sen=amount_sen, txn_date=date(2026, 11, 23), unpredictable_number=UN
    )


def test_emulated_reader_satisfies_protocol() -> None:
    r: CardReader = EmulatedReader()
    assert not r.card_present()


def test_read_card(reader: EmulatedReader) -> None:
    card = read_card(reader)
    assert card.pan == PAN
    assert card.psn == "01"
    assert card.expiry_yymm == "2912"
    assert card.track2.startswith(f"{PAN}D2912221") and not card.track2.endswith("F")
    assert card.cardholder_name == "SITI AMINAH"
    assert card.aip == b"\x18\x00"
    assert card.afl == bytes.fromhex("08010200")
    assert card.cdol1 == sec.cdol1_dol()
    assert PAN not in repr(card)


def test_generate_arqc_end_to_end_verifies_at_switch(reader: EmulatedReader) -> None:
    card = read_card(reader)
    de55 = arqc(reader, card)
    tags = sec.parse_icc_data(de55)
    assert list(tags) == list(sec.DE55_TAG_ORDER)
    assert tags["9F02"] == bytes.fromhex("000015000000")  # Rp 150.000,00 in sen
    assert tags["5F2A"] == tags["9F1A"] == bytes.fromhex("0360")
    assert tags["9A"] == bytes.fromhex("261123")
    assert tags["9F37"] == UN
    assert tags["84"] == bytes.fromhex("A0000006021010")
    assert tags["9F27"] == b"\x80" and tags["9F36"] == b"\x00\x01"
    assert sec.verify_arqc(IMK_AC, card.pan, card.psn, tags)
    tampered = {**tags, "9F02": bytes.fromhex("000015000001")}
    assert not sec.verify_arqc(IMK_AC, card.pan, card.psn, tampered)


def test_next_transaction_after_power_cycle_uses_next_atc(reader: EmulatedReader) -> None:
    arqc(reader, read_card(reader))
    reader.power_off()
    reader.power_on()
    card = read_card(reader)
    tags = sec.parse_icc_data(arqc(reader, card))
    assert tags["9F36"] == b"\x00\x02"
    assert sec.verify_arqc(IMK_AC, card.pan, card.psn, tags)


def test_removed_card_raises_card_removed(reader: EmulatedReader) -> None:
    card = read_card(reader)
    removed = reader.remove()
    assert removed is not None and not reader.card_present()
    with pytest.raises(CardRemovedError) as info:
        arqc(reader, card)
    assert info.value.edc_message == EDC_CARD_REMOVED
    assert isinstance(info.value, ReaderError)


def test_power_on_without_card_raises_no_card() -> None:
    with pytest.raises(NoCardError) as info:
        EmulatedReader().power_on()
    assert info.value.edc_message == EDC_INSERT_CARD


def test_swapped_card_needs_power_on(reader: EmulatedReader) -> None:
    old = reader.swap(make_card("6013010099999999"))
    assert old is not None
    with pytest.raises(CardUnreadableError):
        read_card(reader)
    reader.power_on()
    assert read_card(reader).pan == "6013010099999999"


def test_generate_arqc_without_read_card_is_unreadable(reader: EmulatedReader) -> None:
    card = read_card(reader)
    reader.power_on()  # session lost: GENERATE AC before GPO -> 6985
    with pytest.raises(CardUnreadableError, match="6985"):
        arqc(reader, card)


class FakeCardReader:
    """A reader whose card answers from a script (for malformed-card cases)."""

    def __init__(self, answers: dict[bytes, bytes]) -> None:
        self.answers = answers

    def card_present(self) -> bool:
        return True

    def power_on(self) -> bytes:
        return ATR

    def transmit(self, apdu: bytes) -> bytes:
        return self.answers.get(apdu[:2], b"\x6d\x00")

    def power_off(self) -> None:
        pass


SELECT_OK = bytes.fromhex("6F0B8407A0000006021010A5009000")


@pytest.mark.parametrize(
    ("answers", "match"),
    [
        ({}, "SELECT: SW 6D00"),
        ({b"\x00\xa4": b"\x90"}, "response of 1 bytes"),
        ({b"\x00\xa4": bytes.fromhex("6F058407A00000")[:-1] + b"\x90\x00"}, "SELECT"),
        ({b"\x00\xa4": bytes.fromhex("6F098407A0000006021099A5009000")}, "another"),
        ({b"\x00\xa4": SELECT_OK, b"\x80\xa8": bytes.fromhex("800318000800009000")}, "AFL"),
        ({b"\x00\xa4": SELECT_OK, b"\x80\xa8": bytes.fromhex("70035001009000")}, "GPO"),
        (
            {
                b"\x00\xa4": SELECT_OK,
                b"\x80\xa8": bytes.fromhex("80061800080101009000"),
                b"\x00\xb2": bytes.fromhex("70035001419000"),
            },
            "mandatory data missing",
        ),
    ],
)
def test_malformed_card_answers_raise_unreadable(answers: dict[bytes, bytes], match: str) -> None:
    with pytest.raises(CardUnreadableError, match=match):
        read_card(FakeCardReader(answers))


def test_unknown_aid_shows_chip_error() -> None:
    with pytest.raises(CardUnreadableError) as info:
        read_card(FakeCardReader({b"\x00\xa4": b"\x6a\x82"}))
    assert info.value.edc_message == EDC_CHIP_ERROR
    assert "6A82" in str(info.value)


def test_generate_arqc_format_1_response(reader: EmulatedReader) -> None:
    card = read_card(reader)
    body = b"\x80" + b"\x00\x07" + bytes(range(8)) + bytes.fromhex("06010A03A00000")
    fake = FakeCardReader({b"\x80\xae": b"\x80" + bytes([len(body)]) + body + b"\x90\x00"})
    tags = sec.parse_icc_data(arqc(fake, card))
    assert tags["9F26"] == bytes(range(8)) and tags["9F36"] == b"\x00\x07"


def test_generate_arqc_rejects_bad_inputs(reader: EmulatedReader) -> None:
    card = read_card(reader)
    with pytest.raises(ValueError):
        arqc(reader, card, amount_sen=-1)
    with pytest.raises(ValueError):
        arqc(reader, card, amount_sen=10**12)
    with pytest.raises(ValueError):
        generate_arqc(
            reader, card, amount_sen=1, txn_date=date(2026, 1, 1), unpredictable_number=b"\0"
        )


def test_dol_helpers() -> None:
    dol = bytes.fromhex("9F02069F030350019F7F02")
    assert parse_dol(dol) == [("9F02", 6), ("9F03", 3), ("50", 1), ("9F7F", 2)]
    data = build_dol_data(
        dol, {"9F02": b"\x01\x23", "9F03": bytes.fromhex("00000000000199"), "50": b"AB"}
    )
    assert data == bytes.fromhex("000000000123000199410000")
    with pytest.raises(ValueError):
        parse_dol(bytes.fromhex("9F02"))
