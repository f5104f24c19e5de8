"""The transport unit: TPDU (5 bytes) + ISO 8583 message (HOST_SPEC §1).

>>> from switch.protocol.message import Message
>>> u = Unit(Tpdu("0001", "0002"), Message("0800", {3: "990000", 11: "000001"}))
>>> decode_unit(encode_unit(u)) == u
True
>>> u.tpdu.reply().destination
'0002'
"""

from __future__ import annotations

from dataclasses import dataclass

from switch.protocol.errors import FramingError, ProtocolError
from switch.protocol.message import Message, decode, encode

TPDU_ID = 0x60
TPDU_LEN = 5


@dataclass(frozen=True)
class Tpdu:
    """TPDU ``60`` + destination NII + source NII, each 4 BCD digits."""

    destination: str = "0001"
    source: str = "0000"

    def reply(self) -> Tpdu:
        """The response swaps destination and source (HOST_SPEC §1)."""
        return Tpdu(self.source, self.destination)

    def to_bytes(self) -> bytes:
        for nii in (self.destination, self.source):
            if len(nii) != 4 or not nii.isdigit():
                raise ProtocolError("TPDU NII must be 4 digits", field="tpdu")
        return bytes([TPDU_ID]) + bytes.fromhex(self.destination + self.source)

    @classmethod
    def from_bytes(cls, data: bytes) -> Tpdu:
        if len(data) < TPDU_LEN or data[0] != TPDU_ID:
            raise FramingError("unit does not start with a TPDU 0x60", field="tpdu", pos=0)
        digits = data[1:TPDU_LEN].hex()
        if not digits.isdigit():
            raise FramingError("TPDU NII is not BCD", field="tpdu", pos=1)
        return cls(digits[:4], digits[4:])


@dataclass(frozen=True)
class Unit:
    tpdu: Tpdu
    message: Message


def encode_unit(unit: Unit) -> bytes:
    return unit.tpdu.to_bytes() + encode(unit.message)


def decode_unit(data: bytes) -> Unit:
    tpdu = Tpdu.from_bytes(data)
    return Unit(tpdu, decode(data[TPDU_LEN:]))
