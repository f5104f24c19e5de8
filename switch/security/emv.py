"""EMV application cryptograms for the KKS card (HOST_SPEC §7).

Shared by the switch (verifies the ARQC, answers with an ARPC) and the card
emulator (computes the ARQC), so both sides use one definition of the
cryptogram input.

Key hierarchy (EMV 4.3 Book 2, Annex A1.3-A1.4):

* issuer master key ``IMK-AC`` (the switch holds it);
* ICC master key ``MK-AC`` = option A derivation from PAN and PAN sequence
  number (Book 2 A1.4.1), written into the card at personalisation;
* session key ``SK-AC`` = common session key derivation (Book 2 A1.3.1) with
  ``R = ATC || 00 00 00 00 00 00``.

ARQC input (Book 2 §8.1.1, the recommended minimum data set of Table 26)::

    CDOL1 data (9F02 9F03 9F1A 95 5F2A 9A 9C 9F37, 29 bytes) || AIP 82 (2) || ATC 9F36 (2)

MAC'd with ISO/IEC 9797-1 algorithm 3 under ``SK-AC``, padding method 2
(as ``pyemv.ac.generate_ac`` with ``PaddingType.EMV``).  The Issuer Application
Data (9F10) is *not* part of the input: it only carries the cryptogram
version, so a card and the switch agree on the input without parsing it.

HOST_SPEC §7 does not carry ``9F03`` (amount, other) in DE 55; BPNT has no
cash-back, so the switch uses six zero bytes when it is absent.

The derivations and MACs give the same bytes as pyemv (``kd.derive_icc_mk_a``,
``kd.derive_common_sk``, ``ac.generate_ac``, ``ac.generate_arpc_1``), with the
block-cipher work done by `switch.security.des` in one call per step.  A request's
session key is derived once (:class:`AcSession`) for both its ARQC check and its ARPC.
DE 55 is read by a short loop when it is what terminals send (primitive tags of one
or two bytes, one-byte lengths) and by pyemv's BER-TLV codec otherwise, so pyemv
decides every unusual or malformed case (a Hypothesis test holds the two equal).
"""

from __future__ import annotations

import binascii
import hmac
from collections.abc import Mapping
from typing import Final

from pyemv import tlv as _tlv

from switch.security import des

__all__ = [
    "CDOL1_TAGS",
    "CDOL1_LENGTH",
    "DE55_TAG_ORDER",
    "IAD",
    "AcSession",
    "IccDataError",
    "arqc_input",
    "build_icc_data",
    "build_tag_91",
    "cdol1_dol",
    "compute_arpc",
    "compute_arqc",
    "derive_icc_mk_ac",
    "derive_session_key_ac",
    "parse_icc_data",
    "verify_arqc",
]

#: CDOL1 of the KKS card: (tag, length) in the order the card concatenates the
#: terminal data (EMV Book 3 §5.4 data object list; Book 2 Table 26 data).
CDOL1_TAGS: Final[tuple[tuple[str, int], ...]] = (
    ("9F02", 6),  # amount, authorised (n12, sen)
    ("9F03", 6),  # amount, other (n12)
    ("9F1A", 2),  # terminal country code (n3, 0360)
    ("95", 5),  # terminal verification results
    ("5F2A", 2),  # transaction currency code (n3, 0360)
    ("9A", 3),  # transaction date YYMMDD
    ("9C", 1),  # transaction type
    ("9F37", 4),  # unpredictable number
)

#: Length of the CDOL1-related data in GENERATE AC (29 bytes).
CDOL1_LENGTH: Final[int] = sum(length for _, length in CDOL1_TAGS)

#: DE 55 tag order of HOST_SPEC §7.
DE55_TAG_ORDER: Final[tuple[str, ...]] = (
    "9F26",
    "9F27",
    "9F10",
    "9F37",
    "9F36",
    "95",
    "9A",
    "9C",
    "9F02",
    "5F2A",
    "82",
    "9F1A",
    "84",
)

#: Issuer Application Data the card returns in tag 9F10: length 06, derivation
#: key index 01, cryptogram version 0A ("BPNT CSK v1": the input above), CVR.
IAD: Final[bytes] = bytes.fromhex("06010A03A00000")

_ZERO_AMOUNT: Final[bytes] = bytes(6)
_ALL_ONES: Final[int] = (1 << 64) - 1


class IccDataError(ValueError):
    """DE 55 is not valid BER-TLV (EMV Book 3 Annex B) or lacks a needed tag."""


def derive_icc_mk_ac(imk_ac: bytes, pan: str, psn: str) -> bytes:
    """ICC master key for AC from the issuer master key, EMV option A (Book 2 A1.4.1).

    >>> derive_icc_mk_ac(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"),
    ...                  "12345678901234567", "01").hex().upper()
    '73AD54688CEF2934B0979857E3C719F1'
    """
    if psn is None:  # as pyemv: the default PSN
        psn = "00"
    if isinstance(psn, bytes):
        psn = psn.decode("ascii")
    if isinstance(pan, bytes):
        pan = pan.decode("ascii")
    data_a = binascii.a2b_hex((pan + psn)[-16:].zfill(16))
    data_b = (int.from_bytes(data_a, "big") ^ _ALL_ONES).to_bytes(8, "big")
    # The IMK is long-lived: its context is cached.
    return des.adjust_parity(des.ecb_encrypt(imk_ac, data_a + data_b, cache=True))


def derive_session_key_ac(icc_mk_ac: bytes, atc: bytes) -> bytes:
    """AC session key, common session key derivation with R = ATC || 00*6 (Book 2 A1.3.1)."""
    if len(atc) != 2:
        raise ValueError("ATC must be 2 bytes")
    if len(icc_mk_ac) != 16:
        raise ValueError("ICC Master Key must be a double length DES key")
    atc = bytes(atc)
    r_a = atc + b"\xf0" + bytes(5)
    r_b = atc + b"\x0f" + bytes(5)
    return des.adjust_parity(des.ecb_encrypt(icc_mk_ac, r_a + r_b))


class AcSession:
    """One transaction's AC session key, derived once from the IMK, PAN, PSN and ATC,
    with its MAC contexts: the ARQC check and the ARPC of one request share it."""

    __slots__ = ("_mac",)

    def __init__(self, imk_ac: bytes, pan: str, psn: str, atc: bytes) -> None:
        self._mac = des.RetailMac(derive_session_key_ac(derive_icc_mk_ac(imk_ac, pan, psn),
                                                        bytes(atc)))

    def arqc(self, *, cdol1_data: bytes, aip: bytes, atc: bytes) -> bytes:
        """:func:`compute_arqc` under this session key."""
        data = arqc_input(cdol1_data=cdol1_data, aip=aip, atc=atc)
        return self._mac.mac(des.pad_method_2(data))

    def encrypt_block(self, block: bytes) -> bytes:
        """3DES-ECB of one block under the session key: a retail MAC of one block is
        exactly that (no chaining step), so the MAC's final context serves."""
        if len(block) != des.BLOCK:
            raise ValueError("one 8-byte block")
        return self._mac.mac(block)


def cdol1_dol() -> bytes:
    """The CDOL1 (tag 8C) value: tags and lengths of `CDOL1_TAGS` (Book 3 §5.4)."""
    return b"".join(bytes.fromhex(tag) + bytes([length]) for tag, length in CDOL1_TAGS)


def arqc_input(*, cdol1_data: bytes, aip: bytes, atc: bytes) -> bytes:
    """The data MAC'd into the cryptogram: CDOL1 data || AIP || ATC (module docstring)."""
    if len(cdol1_data) != CDOL1_LENGTH:
        raise ValueError(f"CDOL1 data must be {CDOL1_LENGTH} bytes, got {len(cdol1_data)}")
    if len(aip) != 2 or len(atc) != 2:
        raise ValueError("AIP and ATC must be 2 bytes each")
    return cdol1_data + aip + atc


def compute_arqc(icc_mk_ac: bytes, *, cdol1_data: bytes, aip: bytes, atc: bytes) -> bytes:
    """The 8-byte application cryptogram (Book 2 §8.1, A1.2; padding method 2)."""
    sk_ac = derive_session_key_ac(icc_mk_ac, atc)
    data = arqc_input(cdol1_data=cdol1_data, aip=aip, atc=atc)
    return des.retail_mac(sk_ac, des.pad_method_2(data))


def _cdol1_from_tags(icc_tags: Mapping[str, bytes]) -> bytes | None:
    """CDOL1 data rebuilt from DE 55 tags; ``None`` if a tag is missing or mis-sized."""
    parts: list[bytes] = []
    for tag, length in CDOL1_TAGS:
        value = icc_tags.get(tag)
        if value is None and tag == "9F03":
            value = _ZERO_AMOUNT
        if value is None or len(value) != length:
            return None
        parts.append(bytes(value))
    return b"".join(parts)


def verify_arqc(imk_ac: bytes, pan: str, psn: str, icc_tags: Mapping[str, bytes],
                session: AcSession | None = None) -> bool:
    """Recompute the ARQC from DE 55 and compare with 9F26 (HOST_SPEC §7).

    Returns ``False``, never raises, when a tag is missing or has the wrong
    length: a malformed request is a failed cryptogram check (RC 63).  ``session``:
    the request's :class:`AcSession` for this PAN, PSN and 9F36, if made already.
    """
    cdol1 = _cdol1_from_tags(icc_tags)
    aip = icc_tags.get("82")
    atc = icc_tags.get("9F36")
    arqc = icc_tags.get("9F26")
    if cdol1 is None or aip is None or atc is None or arqc is None:
        return False
    if len(aip) != 2 or len(atc) != 2 or len(arqc) != 8:
        return False
    try:
        if session is None:
            session = AcSession(imk_ac, pan, psn, bytes(atc))
        expected = session.arqc(cdol1_data=cdol1, aip=bytes(aip), atc=bytes(atc))
    except ValueError:
        return False
    return hmac.compare_digest(expected, bytes(arqc))


def compute_arpc(
    imk_ac: bytes, pan: str, psn: str, icc_tags: Mapping[str, bytes], arc: bytes,
    session: AcSession | None = None,
) -> bytes:
    """ARPC method 1 over the request's ARQC and the 2-byte ARC (Book 2 §8.2.1).

    Raises `IccDataError` when 9F26 or 9F36 is missing or mis-sized.  ``session``:
    the request's :class:`AcSession` (for this PAN, PSN and 9F36), if made already.
    """
    arqc = icc_tags.get("9F26")
    atc = icc_tags.get("9F36")
    if arqc is None or len(arqc) != 8 or atc is None or len(atc) != 2:
        raise IccDataError("9F26 (8 bytes) and 9F36 (2 bytes) are needed for the ARPC")
    if len(arc) != 2:
        raise ValueError("ARC must be 2 bytes")
    if session is None:
        session = AcSession(imk_ac, pan, psn, bytes(atc))
    # 3DES(SK-AC, ARQC XOR (ARC || 00*6)): CBC with a zero IV over one block.
    arqc = bytes(arqc)
    arc = bytes(arc)
    block = bytes((arqc[0] ^ arc[0], arqc[1] ^ arc[1])) + arqc[2:]
    return session.encrypt_block(block)


def build_tag_91(arpc: bytes, arc: bytes) -> bytes:
    """Value of tag 91, issuer authentication data: ARPC (8) || ARC (2) (Book 2 §8.2.1)."""
    if len(arpc) != 8 or len(arc) != 2:
        raise ValueError("ARPC must be 8 bytes and ARC 2 bytes")
    return arpc + arc


def parse_icc_data(de55: bytes) -> dict[str, bytes]:
    """Decode DE 55 BER-TLV (Book 3 Annex B) into a flat ``{"9F26": b"...", ...}``.

    >>> parse_icc_data(bytes.fromhex("9F360200019C0100"))
    {'9F36': b'\\x00\\x01', '9C': b'\\x00'}
    """
    data = bytes(de55)
    simple = _parse_simple_tlv(data)
    if simple is not None:
        return simple
    try:
        decoded = _tlv.decode(data, flatten=True)
    except (ValueError, IndexError, TypeError) as exc:
        raise IccDataError(f"malformed DE 55: {exc}") from exc
    return {str(tag): bytes(value) for tag, value in decoded.items()}


#: Tag bytes -> name for the tags terminals send (the rest are named as they come).
_TAG_NAMES: Final[dict[bytes, str]] = {
    bytes.fromhex(tag): tag for tag in (*DE55_TAG_ORDER, "9F03", "91")}


def _parse_simple_tlv(data: bytes) -> dict[str, bytes] | None:
    """DE 55 as :func:`parse_icc_data` gives it when every tag is primitive, of one or
    two bytes, with a one-byte length (what terminals send); ``None`` for anything
    else, truncation included, which pyemv's codec then reads (or refuses)."""
    out: dict[str, bytes] = {}
    names = _TAG_NAMES
    at, end = 0, len(data)
    while at < end:
        first = data[at]
        if first & 0x20:  # constructed
            return None
        tag_end = at + 1
        if first & 0x1F == 0x1F:  # a second tag byte
            if tag_end >= end or data[tag_end] & 0x80:  # missing, or a third follows
                return None
            tag_end += 1
        if tag_end >= end:
            return None
        length = data[tag_end]
        if length & 0x80:  # a long-form length
            return None
        start = tag_end + 1
        stop = start + length
        if stop > end:
            return None
        raw_tag = data[at:tag_end]
        name = names.get(raw_tag)
        out[name if name is not None else raw_tag.hex().upper()] = data[start:stop]
        at = stop
    return out


def build_icc_data(tags: Mapping[str, bytes]) -> bytes:
    """Encode DE 55: the HOST_SPEC §7 tags in that order, then any others as given.

    >>> build_icc_data({"9C": b"\\x00", "9F36": b"\\x00\\x01"}).hex().upper()
    '9F360200019C0100'
    """
    upper = {tag.upper(): bytes(value) for tag, value in tags.items()}
    ordered = {tag: upper[tag] for tag in DE55_TAG_ORDER if tag in upper}
    ordered.update((tag, value) for tag, value in upper.items() if tag not in ordered)
    try:
        return bytes(_tlv.encode(ordered))
    except ValueError as exc:
        raise IccDataError(f"cannot encode DE 55: {exc}") from exc
