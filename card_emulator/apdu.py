"""Command and response APDUs (ISO/IEC 7816-4 §5.1; EMV Book 1 §9, Book 3 §6.3).

Only short APDUs: the KKS card never needs more than 255 bytes of data, and an
extended-length command is answered with ``6700`` like any other bad length.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

__all__ = ["ApduError", "Command", "Response", "SW", "parse_command"]

#: Largest short-APDU data field (Lc) and expected length (Le = 00 means 256).
MAX_SHORT_LC: Final[int] = 255


class SW(IntEnum):
    """Status words the card answers with (EMV Book 3 §6.3.5, ISO 7816-4 §5.1.3)."""

    OK = 0x9000
    WRONG_LENGTH = 0x6700
    CONDITIONS_NOT_SATISFIED = 0x6985
    WRONG_DATA = 0x6A80
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    INCORRECT_P1P2 = 0x6A86
    REFERENCED_DATA_NOT_FOUND = 0x6A88
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_PRECISE_DIAGNOSIS = 0x6F00


class ApduError(Exception):
    """A command the card rejects; ``sw`` is the status word to answer with."""

    def __init__(self, sw: SW, reason: str = "") -> None:
        super().__init__(f"{sw.value:04X} {reason}".strip())
        self.sw = sw


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed command APDU; ``le`` is ``None`` when absent (cases 1 and 3)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """A response APDU: data field then SW1 SW2."""

    data: bytes = b""
    sw: int = SW.OK

    def to_bytes(self) -> bytes:
        """``data || SW1 || SW2``."""
        return self.data + self.sw.to_bytes(2, "big")


def parse_command(apdu: bytes) -> Command:
    """Split a short command APDU into its fields (ISO 7816-4 §5.1, cases 1-4).

    >>> parse_command(bytes.fromhex("00A404000700112233445566" "00"))
    Command(cla=0, ins=164, p1=4, p2=0, data=b'\\x00\\x11"3DUf', le=256)

    Raises `ApduError` with ``6700`` on any length that fits no case.
    """
    n = len(apdu)
    if n < 4:
        raise ApduError(SW.WRONG_LENGTH, "shorter than a header")
    cla, ins, p1, p2 = apdu[0], apdu[1], apdu[2], apdu[3]
    if n == 4:  # case 1
        return Command(cla, ins, p1, p2)
    if n == 5:  # case 2
        return Command(cla, ins, p1, p2, le=apdu[4] or 256)
    lc = apdu[4]
    if lc == 0:
        raise ApduError(SW.WRONG_LENGTH, "extended length not supported")
    if n == 5 + lc:  # case 3
        return Command(cla, ins, p1, p2, data=bytes(apdu[5:]))
    if n == 6 + lc:  # case 4
        return Command(cla, ins, p1, p2, data=bytes(apdu[5:-1]), le=apdu[-1] or 256)
    raise ApduError(SW.WRONG_LENGTH, f"Lc {lc} does not match {n} bytes")
