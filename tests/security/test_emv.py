"""ARQC / ARPC / DE 55 helpers (switch/security/emv.py, HOST_SPEC §7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyemv import ac as pyemv_ac

from card_emulator.card import KksCard
from card_emulator.profile import AID_KKS, profile_for
from switch.security import emv

IMK_AC = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PAN = "6013010012345678"
PSN = "01"
UN = bytes.fromhex("DEADBEEF")

TERMINAL = {
    "9F02": bytes.fromhex("000000150000"),
    "9F03": bytes(6),
    "9F1A": bytes.fromhex("0360"),
    "95": bytes(5),
    "5F2A": bytes.fromhex("0360"),
    "9A": bytes.fromhex("261123"),
    "9C": b"\x00",
    "9F37": UN,
}


def card_de55_tags(atc: int = 0) -> dict[str, bytes]:
    """Run a card through SELECT/GPO/GENERATE AC and assemble DE 55 tags like an EDC."""
    card = KksCard(profile_for(PAN, PSN, "2912", IMK_AC, initial_atc=atc))
    card.power_on()
    assert card.handle_apdu(bytes.fromhex("00A4040007") + AID_KKS + b"\x00")[-2:] == b"\x90\x00"
    assert card.handle_apdu(bytes.fromhex("80A8000002830000"))[-2:] == b"\x90\x00"
    cdol1 = b"".join(TERMINAL[tag] for tag, _ in emv.CDOL1_TAGS)
    response = card.handle_apdu(bytes.fromhex("80AE8000") + bytes([len(cdol1)]) + cdol1 + b"\0")
    assert response[-2:] == b"\x90\x00"
    tags = emv.parse_icc_data(response[:-2])
    tags.update({k: v for k, v in TERMINAL.items() if k != "9F03"})
    tags.update({"82": b"\x18\x00", "84": AID_KKS})
    return tags


def test_known_answer_icc_master_key() -> None:
    # pyemv.kd.derive_icc_mk_a docstring example (EMV Book 2 A1.4.1).
    iss_mk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    mk = emv.derive_icc_mk_ac(iss_mk, "12345678901234567", "01")
    assert mk.hex().upper() == "73AD54688CEF2934B0979857E3C719F1"
    mk = emv.derive_icc_mk_ac(iss_mk, "99012345678901234", "45")
    assert mk.hex().upper() == "67F8292358083E5EA7AB7FDA58D53B6B"


def test_known_answer_session_key_and_ac() -> None:
    # pyemv.kd.derive_common_sk docstring example: R = 001C || 00*6.
    sk = emv.derive_session_key_ac(IMK_AC, bytes.fromhex("001C"))
    assert sk.hex().upper() == "E9FB384AF807B940FEDCEA613461B0C4"
    # pyemv.ac.generate_ac docstring example (Book 2 Table 26 data set).
    data = bytes.fromhex("000000002000000000000000012400000080000124110309003804823E58000001")
    sk_ac = bytes.fromhex("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
    assert pyemv_ac.generate_ac(sk_ac, data).hex().upper() == "3B76CF10FECD8789"
    assert emv.arqc_input(cdol1_data=data[:29], aip=data[29:31], atc=data[31:]) == data


def test_cdol1_is_29_bytes_in_book2_order() -> None:
    assert emv.CDOL1_LENGTH == 29
    assert emv.cdol1_dol().hex().upper() == "9F02069F03069F1A0295055F2A029A039C019F3704"


def test_card_arqc_verifies_with_issuer_key_only() -> None:
    tags = card_de55_tags()
    assert emv.verify_arqc(IMK_AC, PAN, PSN, tags)
    # 9F03 present and zero verifies the same.
    assert emv.verify_arqc(IMK_AC, PAN, PSN, {**tags, "9F03": bytes(6)})


def test_verifies_through_de55_round_trip() -> None:
    de55 = emv.build_icc_data(card_de55_tags())
    assert de55.startswith(bytes.fromhex("9F2608"))
    assert emv.verify_arqc(IMK_AC, PAN, PSN, emv.parse_icc_data(de55))


@pytest.mark.parametrize(
    ("tag", "value"),
    [
        ("9F02", bytes.fromhex("000000150001")),  # amount tampered
        ("9F36", b"\x00\x02"),  # different ATC
        ("9F37", bytes.fromhex("DEADBEEE")),
        ("9A", bytes.fromhex("261124")),
        ("82", b"\x38\x00"),
        ("9F03", bytes.fromhex("000000000100")),
    ],
)
def test_tampered_data_fails(tag: str, value: bytes) -> None:
    assert not emv.verify_arqc(IMK_AC, PAN, PSN, {**card_de55_tags(), tag: value})


@given(bit=st.integers(min_value=0, max_value=63))
def test_any_flipped_arqc_bit_fails(bit: int) -> None:
    tags = card_de55_tags()
    arqc = int.from_bytes(tags["9F26"], "big") ^ (1 << bit)
    assert not emv.verify_arqc(IMK_AC, PAN, PSN, {**tags, "9F26": arqc.to_bytes(8, "big")})


def test_wrong_card_identity_fails() -> None:
    tags = card_de55_tags()
    assert not emv.verify_arqc(IMK_AC, "6013010012345679", PSN, tags)
    assert not emv.verify_arqc(IMK_AC, PAN, "02", tags)
    assert not emv.verify_arqc(bytes(16), PAN, PSN, tags)


@pytest.mark.parametrize("tag", ["9F26", "9F36", "82", "9F02", "9F37", "95", "9A", "9C"])
def test_missing_or_short_tag_is_false_not_an_exception(tag: str) -> None:
    tags = card_de55_tags()
    assert not emv.verify_arqc(IMK_AC, PAN, PSN, {k: v for k, v in tags.items() if k != tag})
    assert not emv.verify_arqc(IMK_AC, PAN, PSN, {**tags, tag: tags[tag][:-1]})


def test_bad_pan_is_false_not_an_exception() -> None:
    assert not emv.verify_arqc(IMK_AC, "", PSN, card_de55_tags())


@pytest.mark.parametrize("hex_de55", ["9F", "9F26", "9F2608AABB", "9F2681", "77059F360200", "5F"])
def test_malformed_de55_raises_icc_data_error(hex_de55: str) -> None:
    with pytest.raises(emv.IccDataError):
        emv.parse_icc_data(bytes.fromhex(hex_de55))
    assert issubclass(emv.IccDataError, ValueError)


@given(st.binary(max_size=64))
def test_parse_icc_data_only_raises_icc_data_error(data: bytes) -> None:
    try:
        tags = emv.parse_icc_data(data)
    except emv.IccDataError:
        return
    assert all(isinstance(v, bytes) for v in tags.values())


def test_build_icc_data_host_spec_order() -> None:
    tags = card_de55_tags()
    shuffled = dict(reversed(list(tags.items())))
    decoded = emv.parse_icc_data(emv.build_icc_data(shuffled))
    assert list(decoded) == list(emv.DE55_TAG_ORDER)
    extra = emv.parse_icc_data(emv.build_icc_data({"9f03": bytes(6), "9F26": bytes(8)}))
    assert list(extra) == ["9F26", "9F03"]


def test_arpc_method_1() -> None:
    tags = card_de55_tags(atc=0x1B)
    arc = b"00"
    arpc = emv.compute_arpc(IMK_AC, PAN, PSN, tags, arc)
    sk = emv.derive_session_key_ac(emv.derive_icc_mk_ac(IMK_AC, PAN, PSN), b"\x00\x1c")
    assert arpc == pyemv_ac.generate_arpc_1(sk, tags["9F26"], arc)
    assert len(arpc) == 8
    assert emv.build_tag_91(arpc, arc) == arpc + arc
    # A different response code gives a different ARPC.
    assert emv.compute_arpc(IMK_AC, PAN, PSN, tags, b"51") != arpc


def test_arpc_needs_arqc_and_atc() -> None:
    with pytest.raises(emv.IccDataError):
        emv.compute_arpc(IMK_AC, PAN, PSN, {"9F36": b"\x00\x01"}, b"00")
    with pytest.raises(ValueError):
        emv.build_tag_91(bytes(7), b"00")
