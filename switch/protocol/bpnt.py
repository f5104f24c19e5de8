"""BPNT private fields: the basket (DE 48) and balances (DE 54), HOST_SPEC §3."""

from __future__ import annotations

from dataclasses import dataclass

from switch.protocol.errors import ProtocolError

BASKET_RECORD_LEN = 21
MAX_BASKET_RECORDS = 20
BALANCE_RECORD_LEN = 20


@dataclass(frozen=True)
class BasketLine:
    item_code: str
    quantity: int
    unit_price_sen: int

    @property
    def total_sen(self) -> int:
        return self.quantity * self.unit_price_sen


def encode_basket(lines: list[BasketLine]) -> str:
    """DE 48: records of item an6 + quantity n3 + unit price n12.

    >>> encode_basket([BasketLine("BRS005", 2, 6_500_000)])
    'BRS005002000006500000'
    """
    if not 0 < len(lines) <= MAX_BASKET_RECORDS:
        raise ProtocolError(f"basket needs 1..{MAX_BASKET_RECORDS} records", field="48")
    out = []
    for line in lines:
        if len(line.item_code) != 6 or not 0 <= line.quantity <= 999:
            raise ProtocolError("basket line out of range", field="48")
        if not 0 <= line.unit_price_sen < 10**12:
            raise ProtocolError("basket unit price out of range", field="48")
        out.append(f"{line.item_code}{line.quantity:03d}{line.unit_price_sen:012d}")
    return "".join(out)


def decode_basket(text: str) -> list[BasketLine]:
    """Parse DE 48; a malformed basket is a :class:`ProtocolError` (RC 30)."""
    if not text or len(text) % BASKET_RECORD_LEN:
        raise ProtocolError("basket length is not a multiple of 21", field="48")
    count = len(text) // BASKET_RECORD_LEN
    if count > MAX_BASKET_RECORDS:
        raise ProtocolError(f"basket has {count} records, max {MAX_BASKET_RECORDS}", field="48")
    lines = []
    for i in range(count):
        rec = text[i * BASKET_RECORD_LEN : (i + 1) * BASKET_RECORD_LEN]
        code, qty, price = rec[:6], rec[6:9], rec[9:]
        if not (code.isascii() and code.isalnum() and qty.isdigit() and price.isdigit()):
            raise ProtocolError("malformed basket record", field="48", pos=i * BASKET_RECORD_LEN)
        lines.append(BasketLine(code.upper(), int(qty), int(price)))
    return lines


def encode_balance(available_sen: int) -> str:
    """DE 54: account 00, amount type 02 (available), 360, sign, n12.

    >>> encode_balance(20_000_000)
    '0002360C000020000000'
    """
    sign = "C" if available_sen >= 0 else "D"
    return f"0002360{sign}{abs(available_sen):012d}"


def decode_balance(text: str) -> int:
    """The available balance in sen from DE 54."""
    for i in range(0, len(text) - BALANCE_RECORD_LEN + 1, BALANCE_RECORD_LEN):
        rec = text[i : i + BALANCE_RECORD_LEN]
        if rec[2:4] == "02" and rec[7] in "CD" and rec[8:].isdigit():
            amount = int(rec[8:])
            return amount if rec[7] == "C" else -amount
    raise ProtocolError("no available-balance record", field="54")


@dataclass(frozen=True)
class CardData:
    """Card identity carried by a request: from track 2 (DE 35) or DE 2 + DE 14."""

    pan: str
    expiry_yymm: str


def card_data(fields_pan: str | None, fields_expiry: str | None, track2: str | None) -> CardData:
    """HOST_SPEC §3-4: DE 35 wins when present; its PAN ends at the ``D`` separator.

    >>> card_data(None, None, "6032981234567890D28122210000")
    CardData(pan='6032981234567890', expiry_yymm='2812')
    """
    if track2:
        pan, sep, rest = track2.upper().partition("D")
        if not sep or len(rest) < 4 or not pan.isdigit() or not 12 <= len(pan) <= 19:
            raise ProtocolError("track 2 has no PAN, separator and expiry", field="35")
        return CardData(pan, rest[:4])
    if fields_pan and fields_expiry:
        return CardData(fields_pan, fields_expiry)
    raise ProtocolError("no card data (DE 35, or DE 2 and DE 14)", field="35")
