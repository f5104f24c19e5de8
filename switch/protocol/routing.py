"""MTI / processing-code routing and required data elements (HOST_SPEC §4)."""

from __future__ import annotations

import enum

from switch.protocol.message import Message


class TxnType(enum.Enum):
    LOGON = "logon"
    ECHO = "echo"
    BALANCE = "balance"
    PURCHASE = "purchase"
    VOID = "void"
    REVERSAL = "reversal"
    BATCH_UPLOAD = "batch_upload"
    SETTLEMENT = "settlement"
    CASH_OUT = "cash_out"  # DE 3 01xxxx: declined 57, BPNT is for food only
    UNSUPPORTED = "unsupported"  # any other MTI / code: declined 12


_CARD_DES = frozenset({3, 11, 12, 13, 22, 24, 25, 41, 42, 52})
#: HOST_SPEC §4 required request DEs (35 or 2+14 checked apart; 64 arrives with MAC).
REQUIRED_DES: dict[TxnType, frozenset[int]] = {
    TxnType.LOGON: frozenset({3, 11, 24, 41, 42}),
    TxnType.ECHO: frozenset({3, 11, 24, 41}),
    TxnType.BALANCE: _CARD_DES,
    TxnType.PURCHASE: _CARD_DES | {4, 48, 62},
    TxnType.VOID: _CARD_DES | {4, 48, 62},  # "as purchase" (HOST_SPEC §4)
    TxnType.REVERSAL: frozenset({3, 4, 11, 12, 13, 41, 42}),
    TxnType.BATCH_UPLOAD: frozenset({3, 4, 11, 12, 13, 37, 38, 41, 42, 60, 62}),
    TxnType.SETTLEMENT: frozenset({3, 11, 24, 41, 42, 60, 63}),
    TxnType.CASH_OUT: frozenset({3, 11, 13, 41, 42}),
    TxnType.UNSUPPORTED: frozenset(),
}
#: POS entry mode for chip + PIN (HOST_SPEC §3, DE 22).
CHIP_ENTRY = "051"
CARD_TXNS = frozenset({TxnType.BALANCE, TxnType.PURCHASE, TxnType.VOID})


def classify(message: Message) -> TxnType:
    """Which transaction a request is, from MTI and DE 3.

    >>> classify(Message("0200", {3: "000000"}))
    <TxnType.PURCHASE: 'purchase'>
    >>> classify(Message("0200", {3: "011000"}))
    <TxnType.CASH_OUT: 'cash_out'>
    >>> classify(Message("0200", {3: "380000"}))
    <TxnType.UNSUPPORTED: 'unsupported'>
    """
    pcode = message.opt_text(3) or ""
    mti = message.mti
    if mti == "0800":
        return {"920000": TxnType.LOGON, "990000": TxnType.ECHO}.get(pcode, TxnType.UNSUPPORTED)
    if mti in ("0100", "0200") and pcode.startswith("01"):
        return TxnType.CASH_OUT
    if mti == "0100" and pcode == "310000":
        return TxnType.BALANCE
    if mti == "0200":
        return {"000000": TxnType.PURCHASE, "020000": TxnType.VOID}.get(
            pcode, TxnType.UNSUPPORTED
        )
    if mti in ("0400", "0401"):
        return TxnType.REVERSAL
    if mti == "0320":
        return TxnType.BATCH_UPLOAD
    if mti == "0500" and pcode in ("920000", "960000"):
        return TxnType.SETTLEMENT
    return TxnType.UNSUPPORTED


def missing_des(message: Message, txn: TxnType) -> list[int]:
    """Required DEs that are absent; card transactions need DE 35 or DE 2 + 14."""
    missing = sorted(de for de in REQUIRED_DES[txn] if not message.has(de))
    if txn in CARD_TXNS and not (message.has(35) or (message.has(2) and message.has(14))):
        missing.append(35)
    if txn is TxnType.PURCHASE and message.opt_text(22) == CHIP_ENTRY:
        # HOST_SPEC §4: "chip adds 23, 55": no chip purchase without its cryptogram.
        missing += [de for de in (23, 55) if not message.has(de)]
    return missing


def response_mti(request_mti: str) -> str:
    """Request MTI + 10 (HOST_SPEC §3); ``0401`` is answered ``0410``.

    >>> response_mti("0200"), response_mti("0401")
    ('0210', '0410')
    """
    if len(request_mti) != 4 or not request_mti.isdigit() or request_mti[2] == "9":
        return "0810"  # no response class exists; only ever used to echo a format error
    return f"{request_mti[:2]}{int(request_mti[2]) + 1}0"
