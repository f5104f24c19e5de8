"""The EDC's EMV kernel: read a KKS card and ask it for an ARQC (HOST_SPEC §7).

Flow (EMV 4.3 Book 3 §10): explicit SELECT of AID ``A0000006021010`` (Book 1
§12.3.3, list of AIDs; the card has no PSE), GET PROCESSING OPTIONS with an
empty PDOL, READ RECORD for every record in the AFL, then the first GENERATE AC
asking for an ARQC (the EDC is online-only) with CDOL1 data built from the
card's tag 8C (Book 3 §5.4).

Any status word other than ``9000`` or data that is not the expected BER-TLV
raises `CardUnreadableError`; the reader raises the other `ReaderError` types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Final

from switch.security.emv import IccDataError, build_icc_data, parse_icc_data
from terminal_sim.card_reader import (
    EDC_CHIP_ERROR,
    CardDeclinedError,
    CardReader,
    CardUnreadableError,
)

__all__ = ["AID_KKS", "CardData", "build_dol_data", "generate_arqc", "parse_dol", "read_card"]

AID_KKS: Final[bytes] = bytes.fromhex("A0000006021010")
#: ISO 4217 / ISO 3166 numeric code of Indonesia, n3 in 2 bytes (HOST_SPEC §7).
IDR_CODE: Final[bytes] = bytes.fromhex("0360")
#: Largest n12 amount in sen.
MAX_AMOUNT_SEN: Final[int] = 999_999_999_999
#: Bound on records read: a KKS card has two; a hostile AFL must not loop long.
MAX_RECORDS: Final[int] = 16

_SW_OK: Final[bytes] = b"\x90\x00"
_SW_FILE_NOT_FOUND: Final[bytes] = b"\x6a\x82"
#: Format n data elements: padded/truncated on the left (Book 3 §5.4).
_NUMERIC_TAGS: Final[frozenset[str]] = frozenset({"9F02", "9F03", "9F1A", "5F2A", "9A", "9C"})


@dataclass(frozen=True, slots=True)
class CardData:
    """What the kernel read from the card; ``track2`` is the ``57`` digits, F stripped."""

    aid: bytes
    pan: str
    psn: str
    expiry_yymm: str
    track2: str
    cardholder_name: str
    aip: bytes
    afl: bytes
    cdol1: bytes

    def __repr__(self) -> str:
        masked = self.pan[:6] + "*" * max(len(self.pan) - 10, 0) + self.pan[-4:]
        return f"CardData(pan={masked!r}, psn={self.psn!r}, aid={self.aid.hex()!r})"


def _exchange(reader: CardReader, apdu: bytes, what: str) -> bytes:
    """Transmit, check for ``9000``, return the data field."""
    response = reader.transmit(apdu)
    if len(response) < 2:
        raise CardUnreadableError(f"{what}: response of {len(response)} bytes")
    if response[-2:] != _SW_OK:
        sw = response[-2:].hex().upper()
        # Application not on the card: the cardholder must use another card.
        message = EDC_CHIP_ERROR if response[-2:] == _SW_FILE_NOT_FOUND else None
        raise CardUnreadableError(f"{what}: SW {sw}", edc_message=message)
    return response[:-2]


def _tags(data: bytes, template: int, what: str) -> dict[str, bytes]:
    """Flat tags of a response that must be one ``template`` TLV."""
    if not data or data[0] != template:
        raise CardUnreadableError(f"{what}: expected template {template:02X}")
    try:
        return parse_icc_data(data)
    except IccDataError as exc:
        raise CardUnreadableError(f"{what}: {exc}") from exc


def _digits(value: bytes, what: str) -> str:
    """Compressed numeric (cn) to digits, F padding removed (Book 3 §4.3)."""
    text = value.hex().upper().rstrip("F")
    if not text.isdigit():
        raise CardUnreadableError(f"{what} is not numeric")
    return text


def parse_dol(dol: bytes) -> list[tuple[str, int]]:
    """Split a data object list into (tag, length) pairs (Book 3 §5.4).

    >>> parse_dol(bytes.fromhex("9F0206" "9501" "5F2A02"))
    [('9F02', 6), ('95', 1), ('5F2A', 2)]
    """
    items: list[tuple[str, int]] = []
    pos = 0
    while pos < len(dol):
        end = pos + 1
        if dol[pos] & 0x1F == 0x1F:  # multi-byte tag (Book 3 Annex B1)
            while end < len(dol) and dol[end] & 0x80:
                end += 1
            end += 1
        if end >= len(dol):
            raise ValueError(f"DOL truncated at offset {pos}")
        items.append((dol[pos:end].hex().upper(), dol[end]))
        pos = end + 1
    return items


def build_dol_data(dol: bytes, values: Mapping[str, bytes]) -> bytes:
    """Concatenate the values a DOL asks for (Book 3 §5.4).

    Unknown tags become zeros; numeric values are fitted on the left, others
    on the right.
    """
    out = bytearray()
    for tag, length in parse_dol(dol):
        value = values.get(tag, bytes(length))
        if tag in _NUMERIC_TAGS:
            out += (bytes(length) + value)[-length:] if length else b""
        else:
            out += (value + bytes(length))[:length]
    return bytes(out)


def _select(reader: CardReader) -> bytes:
    apdu = b"\x00\xa4\x04\x00" + bytes([len(AID_KKS)]) + AID_KKS + b"\x00"
    fci = _tags(_exchange(reader, apdu, "SELECT"), 0x6F, "SELECT")
    aid = fci.get("84")
    if aid != AID_KKS:
        raise CardUnreadableError("SELECT: FCI names another application")
    return aid


def _gpo(reader: CardReader) -> tuple[bytes, bytes]:
    """GET PROCESSING OPTIONS; returns (AIP, AFL) from format 1 or 2 (Book 3 §6.5.8.4)."""
    data = _exchange(reader, b"\x80\xa8\x00\x00\x02\x83\x00\x00", "GPO")
    if data[:1] == b"\x80":
        body = _tags(data, 0x80, "GPO")["80"]
        aip, afl = body[:2], body[2:]
    else:
        tags = _tags(data, 0x77, "GPO")
        aip, afl = tags.get("82", b""), tags.get("94", b"")
    if len(aip) != 2 or not afl or len(afl) % 4:
        raise CardUnreadableError("GPO: bad AIP or AFL")
    return aip, afl


def _read_records(reader: CardReader, afl: bytes) -> dict[str, bytes]:
    """READ RECORD for each AFL entry: SFI, first, last, offline-auth count (Book 3 §10.2)."""
    tags: dict[str, bytes] = {}
    count = 0
    for i in range(0, len(afl), 4):
        sfi, first, last = afl[i] >> 3, afl[i + 1], afl[i + 2]
        if not (1 <= sfi <= 30 and 1 <= first <= last):
            raise CardUnreadableError("AFL entry invalid")
        for record in range(first, last + 1):
            count += 1
            if count > MAX_RECORDS:
                raise CardUnreadableError("AFL names too many records")
            apdu = bytes([0x00, 0xB2, record, sfi << 3 | 0x04, 0x00])
            what = f"READ RECORD {sfi}/{record}"
            tags.update(_tags(_exchange(reader, apdu, what), 0x70, what))
    return tags


def read_card(reader: CardReader) -> CardData:
    """SELECT -> GPO -> READ RECORD(s) on a powered card (Book 3 §10.1-10.2)."""
    aid = _select(reader)
    aip, afl = _gpo(reader)
    records = _read_records(reader, afl)
    missing = [tag for tag in ("5A", "5F24", "57", "8C") if tag not in records]
    if missing:
        raise CardUnreadableError(f"mandatory data missing: {', '.join(missing)}")
    pan = _digits(records["5A"], "PAN")
    track2 = records["57"].hex().upper().rstrip("F")
    expiry = _digits(records["5F24"], "expiry")
    if not track2.startswith(pan + "D") or len(expiry) != 6:
        raise CardUnreadableError("track 2 equivalent does not match the PAN")
    return CardData(
        aid=aid,
        pan=pan,
        psn=_digits(records.get("5F34", b"\x00"), "PSN").zfill(2),
        expiry_yymm=expiry[:4],
        track2=track2,
        cardholder_name=records.get("5F20", b"").decode("ascii", "replace").strip(),
        aip=aip,
        afl=afl,
        cdol1=records["8C"],
    )


def _ac_response(data: bytes) -> dict[str, bytes]:
    """GENERATE AC response, format 1 (``80``) or 2 (``77``) (Book 3 §6.5.5.4)."""
    if data[:1] == b"\x80":
        body = _tags(data, 0x80, "GENERATE AC")["80"]
        if len(body) < 11:
            raise CardUnreadableError("GENERATE AC: format 1 too short")
        return {"9F27": body[:1], "9F36": body[1:3], "9F26": body[3:11], "9F10": body[11:]}
    return _tags(data, 0x77, "GENERATE AC")


#: EMV Book 3 Table 14: the cryptogram type in the top two bits of CID (9F27).
CID_TYPE_MASK = 0xC0
CID_ARQC = 0x80


def generate_arqc(
    reader: CardReader,
    card: CardData,
    *,
    amount_sen: int,
    txn_date: date,
    unpredictable_number: bytes,
    tvr: bytes = b"\0" * 5,
    txn_type: int = 0x00,
) -> bytes:
    """First GENERATE AC asking for an ARQC; returns DE 55 with the HOST_SPEC §7 tags.

    Call after `read_card` in the same card session.  ``amount_sen`` goes into
    9F02 as n12 with 2 implied decimals.
    """
    if not 0 <= amount_sen <= MAX_AMOUNT_SEN:
        raise ValueError("amount out of n12 range")
    if len(unpredictable_number) != 4 or len(tvr) != 5 or not 0 <= txn_type <= 0xFF:
        raise ValueError("UN must be 4 bytes, TVR 5 bytes, transaction type 1 byte")
    terminal = {
        "9F02": bytes.fromhex(f"{amount_sen:012d}"),
        "9F03": bytes(6),
        "9F1A": IDR_CODE,
        "95": tvr,
        "5F2A": IDR_CODE,
        "9A": bytes.fromhex(txn_date.strftime("%y%m%d")),
        "9C": bytes([txn_type]),
        "9F37": unpredictable_number,
    }
    try:
        cdol1_data = build_dol_data(card.cdol1, terminal)
    except ValueError as exc:
        raise CardUnreadableError(f"CDOL1: {exc}") from exc
    if not 1 <= len(cdol1_data) <= 255:
        raise CardUnreadableError("CDOL1 data does not fit a short APDU")
    apdu = b"\x80\xae\x80\x00" + bytes([len(cdol1_data)]) + cdol1_data + b"\x00"
    card_tags = _ac_response(_exchange(reader, apdu, "GENERATE AC"))
    for tag, length in (("9F27", 1), ("9F36", 2), ("9F26", 8)):
        if len(card_tags.get(tag, b"")) != length:
            raise CardUnreadableError(f"GENERATE AC: {tag} missing or wrong length")
    if card_tags["9F27"][0] & CID_TYPE_MASK != CID_ARQC:
        raise CardDeclinedError(f"card answered CID {card_tags['9F27'].hex()}, not an ARQC")
    card_tag_names: tuple[str, ...] = ("9F26", "9F27", "9F10", "9F36")
    de55 = {tag: card_tags[tag] for tag in card_tag_names if tag in card_tags}
    de55.update({tag: terminal[tag] for tag in ("9F37", "95", "9A", "9C", "9F02", "5F2A")})
    de55.update({"82": card.aip, "9F1A": IDR_CODE, "84": card.aid})
    return build_icc_data(de55)
