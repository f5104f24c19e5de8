"""Hostile inputs for the fuzzer (issue 4): mutations of real requests.

Two families.  *Raw* mutations break bytes (bit flips, splices, truncations, hex
nibbles in BCD fields, oversize LLVAR lengths) and mostly die in the codec or at
the MAC.  *Structured* mutations change a decoded message (unknown MTIs, missing
or odd fields, invalid TLV in DE 55, odd baskets) and are then MAC'd again with
the terminal's real TAK, so they reach the authorization code.  *Frame*
mutations lie about the TCP length prefix.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from switch.protocol.errors import ProtocolError
from switch.protocol.message import Message, encode
from switch.protocol.spec import BINARY_FIELDS, DEFINED_FIELDS, MAX_LENGTHS, NUMERIC_FIELDS
from switch.protocol.unit import TPDU_LEN
from switch.security import mac


@dataclass(frozen=True)
class Hostile:
    """One input: the bytes to write on a fresh or reused connection."""

    kind: str
    stream: bytes
    #: Frame-level lies may leave the connection waiting: use a fresh one.
    fresh_connection: bool = False


def frame(unit: bytes) -> bytes:
    return len(unit).to_bytes(2, "big") + unit


class Mutator:
    def __init__(self, seeds: list[Message], tak: bytes, tpdu: bytes, seed: int) -> None:
        self.seeds = seeds
        self.tak = tak
        self.tpdu = tpdu
        self.rng = random.Random(seed)
        self._raw: list[Callable[[bytearray], None]] = [
            self._flip_bits, self._splice, self._truncate, self._hex_nibble, self._big_llvar,
        ]
        self._structured: list[Callable[[Message], Message]] = [
            self._odd_mti, self._drop_field, self._random_field, self._bad_tlv, self._odd_basket,
        ]

    def signed(self, message: Message) -> bytes:
        """Encode with a real MAC (falls back to unsigned when the MTI takes none)."""
        body = encode(message.with_fields(de64=mac.PLACEHOLDER))
        return self.tpdu + (mac.sign(self.tak, body) if mac.requires_mac(message.mti) else body)

    def next(self) -> Hostile:
        roll = self.rng.random()
        seed = self.rng.choice(self.seeds)
        if roll < 0.01:
            return self._lying_length(self.signed(seed))
        if roll < 0.5:
            data = bytearray(self.signed(seed))
            op = self.rng.choice(self._raw)
            op(data)
            return Hostile(f"raw:{op.__name__.strip('_')}", frame(bytes(data) or b"\x60"))
        op2 = self.rng.choice(self._structured)
        try:
            unit = self.signed(op2(seed))
        except ProtocolError:
            unit = self.signed(seed)
        return Hostile(f"struct:{op2.__name__.strip('_')}", frame(unit))

    # -- raw -------------------------------------------------------------------------

    def _flip_bits(self, data: bytearray) -> None:
        for _ in range(self.rng.randint(1, 4)):
            pos = self.rng.randrange(len(data))
            data[pos] ^= 1 << self.rng.randrange(8)

    def _splice(self, data: bytearray) -> None:
        start = self.rng.randrange(len(data))
        end = min(len(data), start + self.rng.randint(0, 16))
        choice = self.rng.random()
        if choice < 0.33:
            del data[start:end]
        elif choice < 0.66:
            data[start:start] = data[start:end] * self.rng.randint(1, 8)
        else:
            data[start:end] = self.rng.randbytes(end - start)

    def _truncate(self, data: bytearray) -> None:
        del data[self.rng.randrange(TPDU_LEN, len(data)):]

    def _hex_nibble(self, data: bytearray) -> None:
        """A nibble A-F somewhere after the bitmap: wrong BCD in an ``n`` field."""
        pos = self.rng.randrange(min(TPDU_LEN + 10, len(data) - 1), len(data))
        nibble = self.rng.randrange(0xA, 0x10)
        data[pos] = (data[pos] & 0xF0) | nibble if self.rng.random() < 0.5 else \
            (nibble << 4) | (data[pos] & 0x0F)

    def _big_llvar(self, data: bytearray) -> None:
        """Overwrite a byte with 0x99 (the largest BCD length): an oversize LLVAR."""
        pos = self.rng.randrange(min(TPDU_LEN + 10, len(data) - 1), len(data))
        data[pos] = 0x99

    # -- structured ----------------------------------------------------------------

    def _odd_mti(self, message: Message) -> Message:
        mti = self.rng.choice(["0000", "0110", "0210", "0300", "0420", "0600", "0820", "9999",
                               f"{self.rng.randrange(10000):04d}"])
        return Message(mti, message.fields)

    def _drop_field(self, message: Message) -> Message:
        if not message.fields:
            return message
        de = self.rng.choice(sorted(message.fields))
        return message.with_fields(**{f"de{de}": None})

    def _random_field(self, message: Message) -> Message:
        de = self.rng.choice(sorted(DEFINED_FIELDS - {64}))
        length = self.rng.randint(1, MAX_LENGTHS[de])
        value: str | bytes
        if de in BINARY_FIELDS:
            value = self.rng.randbytes(min(length, 8) if de in (52, 64) else length)
        elif de in NUMERIC_FIELDS:
            value = "".join(self.rng.choices("0123456789", k=length))
        elif de == 35:
            value = "".join(self.rng.choices("0123456789D", k=length))
        else:
            value = "".join(chr(self.rng.randint(0x20, 0x7E)) for _ in range(length))
        return message.with_fields(**{f"de{de}": value})

    def _bad_tlv(self, message: Message) -> Message:
        tlv = self.rng.choice([
            self.rng.randbytes(self.rng.randint(1, 40)),
            b"\x9f\x26\x08\x01\x02",  # length past the end
            b"\x9f\x26\xff" + bytes(8),  # long-form length that lies
            b"\x9f", b"\xff\xff\xff\xff", b"\x70\x81\x80" + bytes(4),
        ])
        return message.with_fields(de55=tlv[:255])

    def _odd_basket(self, message: Message) -> Message:
        basket = self.rng.choice([
            "", "BRS005", "BRS005001" + "9" * 12, "BRS005999999999999999" * 21,
            "brs005001000000000001", "BRS005-01000000000001", "ROK016001000000300000",
        ])
        if not basket:
            return message.with_fields(de48=None)
        return message.with_fields(de48=basket[:999], de4=f"{self.rng.randrange(10**12):012d}")

    # -- frame -------------------------------------------------------------------------

    def _lying_length(self, unit: bytes) -> Hostile:
        lie = self.rng.choice([0, 1, len(unit) + 5, 2048, 2049, 0xFFFF])
        return Hostile("frame:lying-length", lie.to_bytes(2, "big") + unit,
                       fresh_connection=True)
