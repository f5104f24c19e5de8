"""The pyiso8583 specification of the BPNT host dialect (HOST_SPEC §2-3).

Plain data, as pyiso8583 wants it.  ``n`` fields are BCD counted in digits and
left-padded with a zero nibble; ``z`` (track 2) is BCD with ``D`` as separator,
right-padded with ``F``; ``an``/``ans`` are ASCII; ``b`` fields are raw bytes.
The TPDU is handled by :mod:`switch.protocol.unit`, so the spec has no header.
"""

from __future__ import annotations

from typing import Any

FieldSpec = dict[str, Any]


def _numeric(max_digits: int, desc: str, *, var: bool = False) -> FieldSpec:
    """HOST_SPEC §2: BCD, right-justified, zero-nibble left pad; LLVAR counts digits."""
    return {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": 1 if var else 0,
        "max_len": max_digits,
        "len_count": "nibbles",
        "left_pad": "0",
        "desc": desc,
    }


def _text(max_len: int, desc: str, *, len_type: int = 0) -> FieldSpec:
    """``an``/``ans``: ASCII; LLLVAR lengths are 2 bytes BCD (HOST_SPEC §2)."""
    return {
        "data_enc": "ascii",
        "len_enc": "bcd",
        "len_type": len_type,
        "max_len": max_len,
        "desc": desc,
    }


def _binary(max_len: int, desc: str, *, len_type: int = 0) -> FieldSpec:
    return {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": len_type,
        "max_len": max_len,
        "desc": desc,
    }


LLVAR = 1
LLLVAR = 2

#: The BPNT host dialect: ISO 8583:1987, binary bitmap, BCD numerics.
SPEC: dict[str, FieldSpec] = {
    "h": {"data_enc": "b", "len_enc": "bcd", "len_type": 0, "max_len": 0, "desc": "None"},
    "t": {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": 0,
        "max_len": 4,
        "len_count": "nibbles",
        "desc": "Message Type Identifier",
    },
    "p": _binary(8, "Bitmap, Primary"),
    "1": _binary(8, "Bitmap, Secondary (unused, HOST_SPEC §2)"),
    "2": _numeric(19, "Primary Account Number (PAN)", var=True),
    "3": _numeric(6, "Processing Code"),
    "4": _numeric(12, "Amount, Transaction"),
    "11": _numeric(6, "System Trace Audit Number"),
    "12": _numeric(6, "Time, Local Transaction"),
    "13": _numeric(4, "Date, Local Transaction"),
    "14": _numeric(4, "Date, Expiration"),
    "22": _numeric(3, "POS Entry Mode"),
    "23": _numeric(3, "Card Sequence Number"),
    "24": _numeric(3, "Network International Identifier"),
    "25": _numeric(2, "POS Condition Code"),
    "35": {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": LLVAR,
        "max_len": 37,
        "len_count": "nibbles",
        "right_pad": "F",
        "desc": "Track 2 Data",
    },
    "37": _text(12, "Retrieval Reference Number"),
    "38": _text(6, "Authorization ID Response"),
    "39": _text(2, "Response Code"),
    "41": _text(8, "Card Acceptor Terminal ID"),
    "42": _text(15, "Card Acceptor ID Code"),
    "48": _text(999, "BPNT Basket", len_type=LLLVAR),
    "52": _binary(8, "PIN Data"),
    "54": _text(120, "Additional Amounts", len_type=LLLVAR),
    "55": _binary(255, "ICC Data", len_type=LLLVAR),
    "60": _text(6, "Batch Number", len_type=LLLVAR),
    "62": _text(999, "Invoice Number / Key Data", len_type=LLLVAR),
    "63": _text(999, "Settlement Totals", len_type=LLLVAR),
    "64": _binary(8, "Message Authentication Code"),
}

#: Data elements the dialect defines (HOST_SPEC §3); anything else is RC 30.
DEFINED_FIELDS: frozenset[int] = frozenset(int(k) for k in SPEC if k.isdigit() and k != "1")
#: ``n`` fields: must hold decimal digits only (a hex nibble is a format error).
NUMERIC_FIELDS: frozenset[int] = frozenset({2, 3, 4, 11, 12, 13, 14, 22, 23, 24, 25})
#: ``b`` fields: carried as :class:`bytes` in a :class:`~switch.protocol.message.Message`.
BINARY_FIELDS: frozenset[int] = frozenset({52, 55, 64})
#: Fixed lengths of fixed fields, in digits for ``n`` and bytes otherwise.
FIXED_LENGTHS: dict[int, int] = {
    int(k): int(v["max_len"])
    for k, v in SPEC.items()
    if k.isdigit() and k != "1" and v["len_type"] == 0
}
MAX_LENGTHS: dict[int, int] = {
    int(k): int(v["max_len"]) for k, v in SPEC.items() if k.isdigit() and k != "1"
}
