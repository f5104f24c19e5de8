"""Read a unit's MTI and a response's DE 39 without decoding the message (for metrics).

The switch counts every request by its MTI and its answer's response code
(:mod:`switch.metrics`); a full decode of each answer would cost more than the rest
of the counting together.  :func:`response_code` walks the bitmap to DE 39 instead:
the fields before it in a BPNT response are fixed-length except DE 2 and DE 35
(LLVAR), and the place of DE 39 for a bitmap without those is remembered.

>>> from switch.protocol.message import Message, encode
>>> from switch.protocol.unit import Tpdu, Unit, encode_unit
>>> unit = encode_unit(Unit(Tpdu(), Message("0210", {3: "000000", 11: "000007",
...                                                   37: "000000000001", 39: "51"})))
>>> response_code(unit), unit_mti(unit)
(b'51', b'\\x02\\x10')
>>> response_code(encode_unit(Unit(Tpdu(), Message("0810", {3: "990000"})))) is None
True
"""

from __future__ import annotations

from switch.protocol.spec import SPEC
from switch.protocol.unit import TPDU_LEN

MTI_LEN = 2
BITMAP_LEN = 8
RC_DE = 39
RC_LEN = 2
#: The bitmap bytes that hold DE 1-40.
_PREFIX_LEN = 5
#: Bitmap prefixes remembered (a bound: the switch's responses use a handful).
MAX_PLANS = 256


def _sizes() -> tuple[dict[int, int], frozenset[int]]:
    """Byte sizes of the fixed fields before DE 39, and its LLVAR fields (length in a
    1-byte BCD prefix, counted in nibbles)."""
    fixed: dict[int, int] = {}
    llvar: set[int] = set()
    for de in range(2, RC_DE):
        spec = SPEC.get(str(de))
        if spec is None:
            continue
        nibbles = spec.get("len_count") == "nibbles"
        if spec["len_type"] == 0:
            fixed[de] = (spec["max_len"] + 1) // 2 if nibbles else spec["max_len"]
        else:
            assert spec["len_type"] == 1 and nibbles, de  # DE 2, DE 35
            llvar.add(de)
    return fixed, frozenset(llvar)


_FIXED, _LLVAR = _sizes()
#: Bitmap prefix (DE 1-40) -> DE 39's offset in the message, for responses with no
#: LLVAR field before it; ``-1``: walk the fields (an LLVAR field, or no DE 39).
_PLANS: dict[bytes, int] = {}


def unit_mti(unit: bytes) -> bytes:
    """The MTI's two BCD bytes (``b"\\x02\\x00"`` for 0200); short units give fewer."""
    return unit[TPDU_LEN:TPDU_LEN + MTI_LEN]


def response_code(unit: bytes) -> bytes | None:
    """DE 39 of a response unit (TPDU + message), e.g. ``b"00"``; ``None`` when it has
    none or cannot be read."""
    start = TPDU_LEN + MTI_LEN
    prefix = unit[start:start + _PREFIX_LEN]
    offset = _PLANS.get(prefix)
    if offset is None:
        offset = _plan(prefix)
        if len(_PLANS) < MAX_PLANS and len(prefix) == _PREFIX_LEN:
            _PLANS[prefix] = offset
    if offset < 0:
        offset = _walk(unit, prefix)
        if offset < 0:
            return None
    at = TPDU_LEN + offset
    code = unit[at:at + RC_LEN]
    return code if len(code) == RC_LEN else None


def _present(prefix: bytes, de: int) -> bool:
    return bool(prefix[(de - 1) // 8] & (0x80 >> ((de - 1) % 8)))


def _plan(prefix: bytes) -> int:
    """DE 39's offset from the bitmap alone, or -1 (see :data:`_PLANS`)."""
    if len(prefix) < _PREFIX_LEN or not _present(prefix, RC_DE) or _present(prefix, 1):
        return -1
    offset = MTI_LEN + BITMAP_LEN
    for de in range(2, RC_DE):
        if not _present(prefix, de):
            continue
        if de not in _FIXED:
            return -1
        offset += _FIXED[de]
    return offset


def _walk(unit: bytes, prefix: bytes) -> int:
    """DE 39's offset reading the LLVAR lengths, or -1."""
    if len(prefix) < _PREFIX_LEN or not _present(prefix, RC_DE) or _present(prefix, 1):
        return -1
    offset = MTI_LEN + BITMAP_LEN
    for de in range(2, RC_DE):
        if not _present(prefix, de):
            continue
        if de in _FIXED:
            offset += _FIXED[de]
        elif de in _LLVAR and TPDU_LEN + offset < len(unit):
            digits = unit[TPDU_LEN + offset:TPDU_LEN + offset + 1].hex()
            if not digits.isdigit():
                return -1
            offset += 1 + (int(digits) + 1) // 2
        else:
            return -1
    return offset
