"""Typed ISO 8583 messages and their codec (HOST_SPEC §2-3).

A :class:`Message` is an MTI plus data elements: ``str`` for ``n``/``z``/``an``/
``ans`` fields and ``bytes`` for ``b`` fields (52, 55, 64).  :func:`encode` and
:func:`decode` are pure and raise only :class:`ProtocolError`.

They run the codec that :mod:`switch.protocol.fast_codec` compiles from the spec
data at import (issue 17).  :func:`encode_reference` and :func:`decode_reference` are
the generic path it replaced, pyiso8583 with :data:`~switch.protocol.spec.SPEC` plus
the dialect's value checks: the oracle the fast codec is tested against
(``tests/protocol/test_fast_codec.py``), not used by the switch.

>>> m = Message("0800", {3: "990000", 11: "000001", 24: "001", 41: "EDC00001"})
>>> decode(encode(m)) == m
True
>>> encode(m) == encode_reference(m) and decode(encode(m)) == decode_reference(encode(m))
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import iso8583

from switch.protocol.errors import ProtocolError
from switch.protocol.fast_codec import Buffer, FieldValue, decode_fields, encode_fields
from switch.protocol.spec import (
    BINARY_FIELDS,
    DEFINED_FIELDS,
    FIXED_LENGTHS,
    MAX_LENGTHS,
    NUMERIC_FIELDS,
    SPEC,
)

_HEX_TRACK2 = frozenset("0123456789D")
_MASKED_FIELDS = {2: "pan", 35: "track2", 52: "pin block", 55: "icc", 64: "mac"}


@dataclass(frozen=True)
class Message:
    """One ISO 8583 message: MTI (4 digits) and data elements by number."""

    mti: str
    fields: Mapping[int, FieldValue] = field(default_factory=dict)

    def has(self, de: int) -> bool:
        return de in self.fields

    def text(self, de: int) -> str:
        """A text/numeric DE; :class:`ProtocolError` if absent or binary."""
        value = self.fields.get(de)
        if not isinstance(value, str):
            raise ProtocolError("missing or binary data element", field=str(de))
        return value

    def binary(self, de: int) -> bytes:
        value = self.fields.get(de)
        if not isinstance(value, bytes):
            raise ProtocolError("missing or non-binary data element", field=str(de))
        return value

    def opt_text(self, de: int) -> str | None:
        value = self.fields.get(de)
        return value if isinstance(value, str) else None

    def with_fields(self, mti: str | None = None, **updates: FieldValue | None) -> Message:
        """A copy with ``de<N>=value`` set (or removed when ``None``)."""
        new = dict(self.fields)
        for key, value in updates.items():
            de = int(key.removeprefix("de"))
            if value is None:
                new.pop(de, None)
            else:
                new[de] = value
        return Message(mti or self.mti, new)

    def redacted(self) -> dict[str, str]:
        """A log-safe view: PAN masked, no track 2, PIN block, ICC data or MAC."""
        out: dict[str, str] = {"mti": self.mti}
        for de in sorted(self.fields):
            value = self.fields[de]
            if de == 2 and isinstance(value, str):
                out["2"] = mask_pan(value)
            elif de in _MASKED_FIELDS:
                out[str(de)] = f"<{_MASKED_FIELDS[de]}>"
            else:
                out[str(de)] = value if isinstance(value, str) else value.hex()
        return out


def mask_pan(pan: str) -> str:
    """First 6 and last 4 digits, the rest as ``*`` (PCI DSS display rule).

    >>> mask_pan("6032981234567890")
    '603298******7890'
    """
    if len(pan) < 11:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


def _check_value(de: object, value: object) -> None:
    """Any key and value a caller put in a message: a refusal, never a ``TypeError`` (the
    compiled build checks declared types, switch/native.py)."""
    if de not in DEFINED_FIELDS:
        raise ProtocolError("data element not in the BPNT dialect", field=str(de))
    if de in BINARY_FIELDS:
        if not isinstance(value, bytes):
            raise ProtocolError("binary field needs bytes", field=str(de))
        length = len(value)
    else:
        if not isinstance(value, str):
            raise ProtocolError("text field needs str", field=str(de))
        if de in NUMERIC_FIELDS and not value.isdigit():
            raise ProtocolError("numeric field holds a non-digit", field=str(de))
        if de == 35 and not (value and set(value) <= _HEX_TRACK2):
            raise ProtocolError("track 2 holds a character other than 0-9 and D", field="35")
        if de not in NUMERIC_FIELDS and de != 35 and not (value.isascii() and value.isprintable()):
            raise ProtocolError("text field holds a non-printable character", field=str(de))
        length = len(value)
    fixed = FIXED_LENGTHS.get(de)
    if fixed is not None and length != fixed:
        raise ProtocolError(f"fixed field needs length {fixed}, got {length}", field=str(de))
    if length > MAX_LENGTHS[de] or (fixed is None and length == 0):
        raise ProtocolError(f"variable field length {length} out of range", field=str(de))


def _check_mti(mti: str) -> None:
    if len(mti) != 4 or not mti.isdigit():
        raise ProtocolError("MTI must be 4 digits", field="t")


def encode(message: Message) -> bytes:
    """Message → ISO 8583 bytes (MTI, binary bitmap, data elements)."""
    return encode_fields(message.mti, message.fields)


def decode(data: Buffer) -> Message:
    """ISO 8583 bytes → Message; every defect is a :class:`ProtocolError`."""
    mti, fields = decode_fields(data)
    return Message(mti, fields)


def encode_reference(message: Message) -> bytes:
    """:func:`encode` the generic way, through pyiso8583 (the test oracle)."""
    _check_mti(message.mti)
    doc: dict[str, Any] = {"t": message.mti}
    items: Iterable[tuple[object, object]] = message.fields.items()  # whatever it holds
    for de, value in items:
        _check_value(de, value)
        doc[str(de)] = value.hex().upper() if isinstance(value, bytes) else value
    try:
        raw, _ = iso8583.encode(doc, SPEC)
    except iso8583.EncodeError as exc:
        raise ProtocolError(f"cannot encode: {exc.args[0]}", field=exc.field) from None
    return bytes(raw)


def decode_reference(data: Buffer) -> Message:
    """:func:`decode` the generic way, through pyiso8583 (the test oracle)."""
    try:
        doc, _ = iso8583.decode(bytes(data), SPEC)
    except iso8583.DecodeError as exc:
        raise ProtocolError(f"cannot decode: {exc.args[0]}", field=exc.field, pos=exc.pos) from None
    except KeyError as exc:
        # pyiso8583 raises KeyError for a bitmap bit that the spec does not define.
        field = str(exc.args[0])
        raise ProtocolError("data element not in the BPNT dialect", field=field) from None
    except (ValueError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"cannot decode: {type(exc).__name__}") from None
    mti = str(doc.get("t", ""))
    _check_mti(mti)
    if "1" in doc:
        raise ProtocolError("secondary bitmap is not used in this dialect", field="1")
    fields: dict[int, FieldValue] = {}
    for key, value in doc.items():
        if not key.isdigit():
            continue
        de = int(key)
        fields[de] = bytes.fromhex(value) if de in BINARY_FIELDS else str(value)
        _check_value(de, fields[de])
    return Message(mti, fields)
