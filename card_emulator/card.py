"""The KKS chip card as a pure APDU handler: bytes in, bytes out (HOST_SPEC §7).

Implements the EMV commands an online-only BPNT transaction needs, for the one
application ``A0000006021010`` (EMV 4.3 Book 3 §6.5):

======================  =================  =========================================
command                 header             answer
======================  =================  =========================================
SELECT by name          ``00 A4 04 00``    FCI ``6F`` (Book 1 §11.3.4); else ``6A82``
GET PROCESSING OPTIONS  ``80 A8 00 00``    format 1 ``80`` AIP || AFL (Book 3 §6.5.8)
READ RECORD             ``00 B2 rr sfi``   ``70`` record template (Book 3 §6.5.11)
GET DATA                ``80 CA 9F xx``    ATC ``9F36`` / PIN try counter ``9F17``
GENERATE AC             ``80 AE p1 00``    format 2 ``77`` (Book 3 §6.5.5)
======================  =================  =========================================

State machine (Book 3 §10): power on -> SELECT -> GPO -> READ RECORD* -> GENERATE AC.
A command out of order answers ``6985``.  The ATC and the PIN try counter are
"EEPROM": they survive `KksCard.reset` and power cycles; session state does not.

Not thread-safe: one caller at a time (the reader owns the card).  No I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from pyemv import tlv as _tlv

from card_emulator.apdu import SW, ApduError, Command, Response, parse_command
from card_emulator.profile import CardProfile, expiry_yymmdd
from switch.security.emv import CDOL1_LENGTH, IAD, cdol1_dol, compute_arqc

__all__ = ["ATR", "KksCard"]


def _with_tck(atr_without_tck: bytes) -> bytes:
    """Append TCK, the XOR of T0..last byte (ISO 7816-3 §8.2.5; needed for T=1)."""
    tck = 0
    for byte in atr_without_tck[1:]:
        tck ^= byte
    return atr_without_tck + bytes([tck])


#: TS=3B, T0=8D (TD1, 13 historical bytes), TD1=80 (TD2, T=0), TD2=01 (T=1),
#: historical bytes as on many Indonesian debit chips, then TCK.
ATR: Final[bytes] = _with_tck(bytes.fromhex("3B8D800180318065B08311178383009000"))

_SFI: Final[int] = 1
_PSE_NAMES: Final[frozenset[bytes]] = frozenset({b"1PAY.SYS.DDF01", b"2PAY.SYS.DDF01"})
_APP_LABEL: Final[bytes] = b"KKS BPNT"
#: Cryptogram information data (Book 3 Table 14).
_CID_AAC: Final[bytes] = b"\x00"
_CID_ARQC: Final[bytes] = b"\x80"
#: GENERATE AC P1 (Book 3 Table 12): b8-b7 cryptogram type, b5 CDA request.
_P1_TYPE_MASK: Final[int] = 0xC0
_P1_AAC: Final[int] = 0x00
_P1_TC: Final[int] = 0x40
_P1_ARQC: Final[int] = 0x80

_CLA_ISO: Final[int] = 0x00
_CLA_PROPRIETARY: Final[int] = 0x80
_INS_SELECT: Final[int] = 0xA4
_INS_READ_RECORD: Final[int] = 0xB2
_INS_GPO: Final[int] = 0xA8
_INS_GENERATE_AC: Final[int] = 0xAE
_INS_GET_DATA: Final[int] = 0xCA


def _tlv_bytes(tags: Mapping[str, Any]) -> bytes:
    return bytes(_tlv.encode(tags))


def _cn(digits: str) -> bytes:
    """Compressed numeric, right-padded with F (Book 3 §4.3)."""
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex(digits)


def _build_records(profile: CardProfile) -> dict[int, bytes]:
    """The card's SFI 1 records, each a ``70`` template (Book 3 §5.3, §6.5.11)."""
    track2 = profile.track2
    name = profile.cardholder_name.encode("ascii", "replace")[:26]
    return {
        1: _tlv_bytes({"70": {"57": _cn(track2), "5F20": name}}),
        2: _tlv_bytes(
            {
                "70": {
                    "5A": _cn(profile.pan),
                    "5F24": bytes.fromhex(expiry_yymmdd(profile.expiry_yymm)),
                    "5F25": bytes.fromhex(profile.effective_yymmdd),
                    "5F34": bytes.fromhex(profile.psn),
                    "8C": cdol1_dol(),
                }
            }
        ),
    }


class KksCard:
    """One KKS card: feed it command APDUs, get response APDUs (never an exception)."""

    def __init__(self, profile: CardProfile) -> None:
        self.profile = profile
        self._records = _build_records(profile)
        # Persistent ("EEPROM") counters.
        self._atc = profile.initial_atc
        self._pin_tries_remaining = (
            profile.pin_try_limit if profile.initial_pin_tries is None
            else profile.initial_pin_tries
        )
        # Session state, cleared by reset().
        self._selected = False
        self._gpo_done = False
        self._ac_done = False
        self._handlers: dict[tuple[int, int], Callable[[Command], Response]] = {
            (_CLA_ISO, _INS_SELECT): self._select,
            (_CLA_ISO, _INS_READ_RECORD): self._read_record,
            (_CLA_PROPRIETARY, _INS_GPO): self._get_processing_options,
            (_CLA_PROPRIETARY, _INS_GET_DATA): self._get_data,
            (_CLA_PROPRIETARY, _INS_GENERATE_AC): self._generate_ac,
        }

    def __repr__(self) -> str:
        return f"KksCard({self.profile!r}, atc={self._atc})"

    @property
    def atc(self) -> int:
        """Application transaction counter (tag 9F36) of the last GENERATE AC."""
        return self._atc

    @property
    def pin_tries_remaining(self) -> int:
        """PIN try counter (tag 9F17)."""
        return self._pin_tries_remaining

    def power_on(self) -> bytes:
        """Cold reset: clear the session and answer to reset (ISO 7816-3 §8)."""
        self.reset()
        return ATR

    def reset(self) -> None:
        """Drop session state; keep the ATC and PIN try counter."""
        self._selected = False
        self._gpo_done = False
        self._ac_done = False

    def handle_apdu(self, apdu: bytes) -> bytes:
        """Process one command APDU and return ``data || SW1 SW2``."""
        try:
            response = self._dispatch(parse_command(apdu))
        except ApduError as exc:
            response = Response(sw=exc.sw)
        except Exception:  # a real card answers 6F00 rather than going mute
            response = Response(sw=SW.NO_PRECISE_DIAGNOSIS)
        return response.to_bytes()

    def _dispatch(self, cmd: Command) -> Response:
        if cmd.cla not in (_CLA_ISO, _CLA_PROPRIETARY):
            raise ApduError(SW.CLA_NOT_SUPPORTED)
        if cmd.ins not in {ins for _, ins in self._handlers}:
            raise ApduError(SW.INS_NOT_SUPPORTED)
        handler = self._handlers.get((cmd.cla, cmd.ins))
        if handler is None:
            raise ApduError(SW.CLA_NOT_SUPPORTED, "instruction in the other class")
        return handler(cmd)

    def _select(self, cmd: Command) -> Response:
        """SELECT by DF name, first occurrence (Book 1 §11.3)."""
        if cmd.p1 != 0x04 or cmd.p2 not in (0x00, 0x02):
            raise ApduError(SW.INCORRECT_P1P2)
        if not 5 <= len(cmd.data) <= 16:
            raise ApduError(SW.WRONG_LENGTH)
        # No PSE/PPSE on this card: terminals fall back to the list of AIDs.
        if cmd.data in _PSE_NAMES or cmd.data != self.profile.aid or cmd.p2 == 0x02:
            raise ApduError(SW.FILE_NOT_FOUND)
        self.reset()
        self._selected = True
        fci = {"6F": {"84": self.profile.aid, "A5": {"50": _APP_LABEL, "87": b"\x01"}}}
        return Response(_tlv_bytes(fci))

    def _get_processing_options(self, cmd: Command) -> Response:
        """GPO with the PDOL data template ``83`` (Book 3 §6.5.8); no PDOL, so ``83 00``."""
        if cmd.p1 != 0 or cmd.p2 != 0:
            raise ApduError(SW.INCORRECT_P1P2)
        if not self._selected or self._gpo_done:
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED)
        if len(cmd.data) < 2 or cmd.data[0] != 0x83:
            raise ApduError(SW.WRONG_DATA if cmd.data else SW.WRONG_LENGTH)
        if cmd.data[1] != len(cmd.data) - 2:
            raise ApduError(SW.WRONG_LENGTH)
        self._gpo_done = True
        afl = bytes([_SFI << 3, 1, len(self._records), 0])
        return Response(_tlv_bytes({"80": self.profile.aip + afl}))

    def _read_record(self, cmd: Command) -> Response:
        """READ RECORD, P2 = SFI << 3 | 100b (Book 3 §6.5.11)."""
        if cmd.p2 & 0x07 != 0x04 or cmd.p1 == 0:
            raise ApduError(SW.INCORRECT_P1P2)
        if not self._selected:
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED)
        if cmd.p2 >> 3 != _SFI:
            raise ApduError(SW.FILE_NOT_FOUND)
        record = self._records.get(cmd.p1)
        if record is None:
            raise ApduError(SW.RECORD_NOT_FOUND)
        return Response(record)

    def _get_data(self, cmd: Command) -> Response:
        """GET DATA for ATC 9F36 and PIN try counter 9F17 (Book 3 §6.5.7)."""
        if not self._selected:
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED)
        tag = f"{cmd.p1:02X}{cmd.p2:02X}"
        if tag == "9F36":
            value = self._atc.to_bytes(2, "big")
        elif tag == "9F17":
            value = bytes([self._pin_tries_remaining])
        else:
            raise ApduError(SW.REFERENCED_DATA_NOT_FOUND)
        return Response(_tlv_bytes({tag: value}))

    def _generate_ac(self, cmd: Command) -> Response:
        """First GENERATE AC: the card always goes online (ARQC) unless asked for an AAC.

        Book 3 §6.5.5 and §9.3: a TC request may be answered with an ARQC.
        The ATC is incremented before the cryptogram, so a torn transaction
        still burns its counter value (Book 2 §8.1).  Card risk management: with
        the PIN try limit exceeded the card declines offline with an AAC.
        """
        cryptogram_type = cmd.p1 & _P1_TYPE_MASK
        other_bits = cmd.p1 & ~_P1_TYPE_MASK & 0xFF
        if cmd.p2 != 0 or other_bits or cryptogram_type not in (_P1_AAC, _P1_TC, _P1_ARQC):
            raise ApduError(SW.INCORRECT_P1P2)  # CDA (b5) is not offered: AIP says so
        if not self._gpo_done or self._ac_done:
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED)
        if len(cmd.data) != CDOL1_LENGTH:
            raise ApduError(SW.WRONG_LENGTH)
        if self._atc >= 0xFFFF:
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED, "ATC exhausted")
        self._atc += 1
        self._ac_done = True
        atc = self._atc.to_bytes(2, "big")
        ac = compute_arqc(
            self.profile.icc_mk_ac, cdol1_data=cmd.data, aip=self.profile.aip, atc=atc
        )
        pin_blocked = self._pin_tries_remaining == 0
        cid = _CID_AAC if cryptogram_type == _P1_AAC or pin_blocked else _CID_ARQC
        body = {"9F27": cid, "9F36": atc, "9F26": ac, "9F10": IAD}
        return Response(_tlv_bytes({"77": body}))
