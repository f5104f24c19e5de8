"""KksCard: every command's happy path and status words (card_emulator/card.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyemv import tlv

from card_emulator.apdu import SW, ApduError, Response, parse_command
from card_emulator.card import ATR, KksCard
from card_emulator.profile import AID_KKS, CardProfile, expiry_yymmdd, mask_pan, profile_for
from switch.security.emv import CDOL1_LENGTH, cdol1_dol, compute_arqc, derive_icc_mk_ac

IMK_AC = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PAN = "6013010012345678"

SELECT = bytes.fromhex("00A4040007") + AID_KKS + b"\x00"
GPO = bytes.fromhex("80A8000002830000")
# 9F02 Rp 150.000,00 | 9F03 | 9F1A | 95 | 5F2A | 9A | 9C | 9F37
CDOL1_DATA = bytes.fromhex(
    "".join(
        ["000015000000", "000000000000", "0360", "0000000000", "0360", "261123", "00", "DEADBEEF"]
    )
)
GEN_AC = bytes.fromhex("80AE8000") + bytes([CDOL1_LENGTH]) + CDOL1_DATA + b"\x00"


def read_record(record: int, sfi: int = 1) -> bytes:
    return bytes([0x00, 0xB2, record, sfi << 3 | 4, 0x00])


def sw(response: bytes) -> int:
    return int.from_bytes(response[-2:], "big")


def ok(response: bytes) -> dict[str, bytes]:
    assert sw(response) == SW.OK, response.hex()
    return tlv.decode(response[:-2], flatten=True)


@pytest.fixture
def card() -> KksCard:
    c = KksCard(profile_for(PAN, "01", "2912", IMK_AC, cardholder_name="SITI AMINAH"))
    assert c.power_on() == ATR
    return c


def transact(card: KksCard) -> dict[str, bytes]:
    ok(card.handle_apdu(SELECT))
    ok(card.handle_apdu(GPO))
    return ok(card.handle_apdu(GEN_AC))


# --- APDU parsing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_apdu", "data", "le"),
    [
        ("00A40400", b"", None),
        ("00A4040000", b"", 256),
        ("00A4040002AABB", b"\xaa\xbb", None),
        ("00A4040002AABB10", b"\xaa\xbb", 16),
    ],
)
def test_parse_command_cases(hex_apdu: str, data: bytes, le: int | None) -> None:
    cmd = parse_command(bytes.fromhex(hex_apdu))
    assert (cmd.cla, cmd.ins, cmd.p1, cmd.p2, cmd.data, cmd.le) == (0, 0xA4, 4, 0, data, le)


@pytest.mark.parametrize(
    "hex_apdu", ["", "00A404", "00A4040003AABB", "00A4040001AABBCC", "00A4040000AA"]
)
def test_parse_command_bad_length(hex_apdu: str) -> None:
    with pytest.raises(ApduError) as info:
        parse_command(bytes.fromhex(hex_apdu))
    assert info.value.sw == SW.WRONG_LENGTH


def test_response_to_bytes() -> None:
    assert Response(b"\x01", SW.RECORD_NOT_FOUND).to_bytes() == b"\x01\x6a\x83"


# --- profile ------------------------------------------------------------------


def test_profile_derives_icc_master_key_and_hides_pan() -> None:
    profile = profile_for(PAN, "01", "2912", IMK_AC)
    assert profile.icc_mk_ac == derive_icc_mk_ac(IMK_AC, PAN, "01")
    assert PAN not in repr(profile) and profile.icc_mk_ac.hex() not in repr(profile).lower()
    assert mask_pan(PAN) == "601301******5678"
    assert expiry_yymmdd("2802") == "280229"


@pytest.mark.parametrize(
    "kwargs", [{"pan": "12AB"}, {"psn": "1"}, {"expiry_yymm": "2913"}, {"icc_mk_ac": b"\0"}]
)
def test_profile_rejects_bad_fields(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {
        "pan": PAN,
        "psn": "01",
        "expiry_yymm": "2912",
        "effective_yymmdd": "240101",
        "cardholder_name": "X",
        "icc_mk_ac": bytes(16),
    }
    with pytest.raises(ValueError):
        CardProfile(**{**base, **kwargs})  # type: ignore[arg-type]


# --- happy paths -------------------------------------------------------------


def test_atr_has_valid_tck() -> None:
    check = 0
    for byte in ATR[1:]:
        check ^= byte
    assert ATR[0] == 0x3B and check == 0


def test_select_returns_fci(card: KksCard) -> None:
    response = card.handle_apdu(SELECT)
    assert response[0] == 0x6F
    fci = ok(response)
    assert fci["84"] == AID_KKS
    assert fci["50"] == b"KKS BPNT"
    assert fci["87"] == b"\x01"


def test_gpo_returns_format_1_aip_and_afl(card: KksCard) -> None:
    ok(card.handle_apdu(SELECT))
    response = card.handle_apdu(GPO)
    assert response[0] == 0x80
    assert ok(response)["80"] == b"\x18\x00" + bytes.fromhex("08010200")


def test_read_records(card: KksCard) -> None:
    ok(card.handle_apdu(SELECT))
    ok(card.handle_apdu(GPO))
    rec1 = card.handle_apdu(read_record(1))
    rec2 = card.handle_apdu(read_record(2))
    assert rec1[0] == 0x70 and rec2[0] == 0x70
    tags = {**ok(rec1), **ok(rec2)}
    assert tags["5A"].hex() == PAN
    assert tags["5F24"].hex() == "291231"
    assert tags["5F34"] == b"\x01"
    assert tags["5F20"] == b"SITI AMINAH"
    assert tags["8C"] == cdol1_dol()
    track2 = tags["57"].hex().upper()
    assert track2.startswith(f"{PAN}D2912221") and track2.endswith("F")


def test_get_data(card: KksCard) -> None:
    ok(card.handle_apdu(SELECT))
    assert ok(card.handle_apdu(bytes.fromhex("80CA9F3600")))["9F36"] == b"\x00\x00"
    assert ok(card.handle_apdu(bytes.fromhex("80CA9F1700")))["9F17"] == b"\x03"


def test_generate_ac_returns_arqc_over_incremented_atc(card: KksCard) -> None:
    ok(card.handle_apdu(SELECT))
    ok(card.handle_apdu(GPO))
    response = card.handle_apdu(GEN_AC)
    assert response[0] == 0x77
    tags = ok(response)
    assert tags["9F27"] == b"\x80"
    assert tags["9F36"] == b"\x00\x01"
    assert len(tags["9F10"]) == 7
    expected = compute_arqc(
        card.profile.icc_mk_ac, cdol1_data=CDOL1_DATA, aip=b"\x18\x00", atc=b"\x00\x01"
    )
    assert tags["9F26"] == expected
    assert card.atc == 1


def test_generate_ac_aac_request_gets_aac(card: KksCard) -> None:
    ok(card.handle_apdu(SELECT))
    ok(card.handle_apdu(GPO))
    aac_request = bytes.fromhex("80AE0000") + GEN_AC[4:]
    assert ok(card.handle_apdu(aac_request))["9F27"] == b"\x00"


def test_atc_persists_across_reset_and_power_cycle(card: KksCard) -> None:
    assert transact(card)["9F36"] == b"\x00\x01"
    card.reset()
    assert transact(card)["9F36"] == b"\x00\x02"
    card.power_on()
    tags = transact(card)
    assert tags["9F36"] == b"\x00\x03"
    assert card.pin_tries_remaining == 3


def test_each_transaction_gets_a_different_arqc(card: KksCard) -> None:
    first = transact(card)["9F26"]
    card.reset()
    assert transact(card)["9F26"] != first


# --- status words ------------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_apdu", "expected"),
    [
        ("00A4040007A0000006021099", SW.FILE_NOT_FOUND),  # unknown AID
        ("00A404000E" + b"1PAY.SYS.DDF01".hex(), SW.FILE_NOT_FOUND),  # PSE
        ("00A404000E" + b"2PAY.SYS.DDF01".hex(), SW.FILE_NOT_FOUND),  # PPSE
        ("00A4010007A0000006021010", SW.INCORRECT_P1P2),
        ("00A40400", SW.WRONG_LENGTH),
        ("80A8000002830000", SW.CONDITIONS_NOT_SATISFIED),  # GPO before SELECT
        ("00B2010C00", SW.CONDITIONS_NOT_SATISFIED),  # READ RECORD before SELECT
        ("80CA9F3600", SW.CONDITIONS_NOT_SATISFIED),  # GET DATA before SELECT
        ("0084000008", SW.INS_NOT_SUPPORTED),  # GET CHALLENGE
        ("00FF000000", SW.INS_NOT_SUPPORTED),
        ("A0A4040007A0000006021010", SW.CLA_NOT_SUPPORTED),
        ("FFCA9F3600", SW.CLA_NOT_SUPPORTED),
        ("80A4040007A0000006021010", SW.CLA_NOT_SUPPORTED),  # SELECT in class 80
        ("00A80000028300", SW.CLA_NOT_SUPPORTED),  # GPO in class 00
        ("00A4", SW.WRONG_LENGTH),
        ("00A4040005AABB", SW.WRONG_LENGTH),
    ],
)
def test_status_words_on_fresh_card(card: KksCard, hex_apdu: str, expected: SW) -> None:
    assert sw(card.handle_apdu(bytes.fromhex(hex_apdu))) == expected


@pytest.mark.parametrize(
    ("hex_apdu", "expected"),
    [
        ("80A8000002830000", SW.CONDITIONS_NOT_SATISFIED),  # second GPO
        ("00B2030C00", SW.RECORD_NOT_FOUND),
        ("00B2000C00", SW.INCORRECT_P1P2),
        ("00B2010800", SW.INCORRECT_P1P2),  # P2 not SFI<<3|4
        ("00B2011400", SW.FILE_NOT_FOUND),  # SFI 2
        ("80CA9F1300", SW.REFERENCED_DATA_NOT_FOUND),
        ("80AE800004DEADBEEF00", SW.WRONG_LENGTH),
        ("80AE9000" + GEN_AC[4:].hex(), SW.INCORRECT_P1P2),  # CDA not offered
        ("80AEC000" + GEN_AC[4:].hex(), SW.INCORRECT_P1P2),  # RFU type
        ("80AE8001" + GEN_AC[4:].hex(), SW.INCORRECT_P1P2),
    ],
)
def test_status_words_after_gpo(card: KksCard, hex_apdu: str, expected: SW) -> None:
    ok(card.handle_apdu(SELECT))
    ok(card.handle_apdu(GPO))
    assert sw(card.handle_apdu(bytes.fromhex(hex_apdu))) == expected


@pytest.mark.parametrize("gpo_data", ["0100", "8301", "830100FF"])
def test_gpo_bad_data(card: KksCard, gpo_data: str) -> None:
    ok(card.handle_apdu(SELECT))
    apdu = bytes.fromhex("80A80000") + bytes([len(gpo_data) // 2]) + bytes.fromhex(gpo_data)
    assert sw(card.handle_apdu(apdu)) in (SW.WRONG_DATA, SW.WRONG_LENGTH)


def test_generate_ac_before_gpo(card: KksCard) -> None:
    ok(card.handle_apdu(SELECT))
    assert sw(card.handle_apdu(GEN_AC)) == SW.CONDITIONS_NOT_SATISFIED
    assert card.atc == 0


def test_second_generate_ac_refused(card: KksCard) -> None:
    transact(card)
    assert sw(card.handle_apdu(GEN_AC)) == SW.CONDITIONS_NOT_SATISFIED
    assert card.atc == 1


def test_reset_clears_session(card: KksCard) -> None:
    ok(card.handle_apdu(SELECT))
    card.reset()
    assert sw(card.handle_apdu(GPO)) == SW.CONDITIONS_NOT_SATISFIED


def test_failed_select_keeps_current_application(card: KksCard) -> None:
    ok(card.handle_apdu(SELECT))
    assert sw(card.handle_apdu(bytes.fromhex("00A4040007A0000006021099"))) == SW.FILE_NOT_FOUND
    ok(card.handle_apdu(GPO))


def test_atc_exhausted() -> None:
    card = KksCard(profile_for(PAN, "01", "2912", IMK_AC, initial_atc=0xFFFF))
    card.power_on()
    ok(card.handle_apdu(SELECT))
    ok(card.handle_apdu(GPO))
    assert sw(card.handle_apdu(GEN_AC)) == SW.CONDITIONS_NOT_SATISFIED
    assert card.atc == 0xFFFF


# --- hostile bytes -----------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(
    prefix=st.lists(st.sampled_from([SELECT, GPO, read_record(1)]), max_size=3),
    apdu=st.binary(max_size=300)
    | st.builds(
        lambda cla, ins, rest: bytes([cla, ins]) + rest,
        st.sampled_from([0x00, 0x80, 0x84, 0xFF]),
        st.sampled_from([0xA4, 0xA8, 0xB2, 0xCA, 0xAE, 0x20]),
        st.binary(max_size=40),
    ),
)
def test_arbitrary_bytes_always_get_a_status_word(prefix: list[bytes], apdu: bytes) -> None:
    card = KksCard(profile_for(PAN, "01", "2912", IMK_AC))
    card.power_on()
    for command in prefix:
        card.handle_apdu(command)
    response = card.handle_apdu(apdu)
    assert len(response) >= 2
    assert response[-2] in (0x90, 0x67, 0x69, 0x6A, 0x6D, 0x6E)
    # 6F00 is the safety net for bugs: fuzzing must never reach it.
    assert sw(response) != SW.NO_PRECISE_DIAGNOSIS
