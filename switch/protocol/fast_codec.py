"""The HOST_SPEC codec, compiled once at import from the spec data (issue 17).

:mod:`switch.protocol.spec` describes the dialect as pyiso8583 wants it.  This module
reads the same data (``SPEC``, ``FIXED_LENGTHS``, ``MAX_LENGTHS``, ``NUMERIC_FIELDS``,
``BINARY_FIELDS``) once and builds, for every data element, one small encoder and one
small decoder closure with its constants bound: its bitmap bit, its length-prefix
bytes for every legal length, its byte size, its pad nibble and its alphabet.  Per
message there is then no spec lookup, no string field key and no intermediate
document: :func:`encode_fields` checks and encodes each value and ORs its bit into
the bitmap; :func:`decode_fields` reads the MTI through a BCD table and runs the
decoders that the bitmap selects (the selection is remembered per bitmap, at most
:data:`MAX_PLANS` of them).

It gives what :func:`switch.protocol.message.encode_reference` and
:func:`~switch.protocol.message.decode_reference` (pyiso8583 plus the dialect's value
checks) give, bit for bit: the same bytes, the same fields, and a
:class:`ProtocolError` in the same cases (its text may differ).
``tests/protocol/test_fast_codec.py`` keeps pyiso8583 as the oracle.

Only the shapes the dialect uses are compiled: BCD lengths of one or two bytes;
``n`` and ``z`` fields as BCD nibbles; ASCII text; raw binary.  A spec entry of any
other shape stops the import with :class:`NotImplementedError` rather than being
encoded in some other way than pyiso8583 would.

>>> raw = encode_fields("0800", {3: "990000", 11: "000001", 24: "001"})
>>> raw.hex()
'080020200100000000009900000000010001'
>>> decode_fields(raw)
('0800', {3: '990000', 11: '000001', 24: '001'})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from switch.protocol.errors import ProtocolError
from switch.protocol.spec import (
    BINARY_FIELDS,
    DEFINED_FIELDS,
    FIXED_LENGTHS,
    MAX_LENGTHS,
    NUMERIC_FIELDS,
    SPEC,
)

FieldValue = str | bytes
#: What the decoders take: bytes, or any buffer (the serial line reads into a bytearray).
Buffer = bytes | bytearray | memoryview
#: Checks one value and gives its wire bytes (length prefix included).
FieldEncoder = Callable[[FieldValue], bytes]
#: Reads one field at ``pos`` of the message into the fields dict; gives the next pos.
FieldDecoder = Callable[[bytes, int, dict[int, FieldValue]], int]

MTI_DIGITS = 4
MTI_LEN = 2
BITMAP_LEN = 8
BITMAP_BITS = 8 * BITMAP_LEN
#: Bitmap plans remembered (a bound against hostile bitmaps; the switch sees a handful).
MAX_PLANS = 1024

DIGITS = "0123456789"
#: HOST_SPEC §2 ``z``: BCD digits with ``D`` as separator (the reference's
#: ``_check_value`` allows these and nothing else in track 2).
TRACK2_CHARACTERS = "0123456789D"
_PRINTABLE_ASCII = "".join(chr(c) for c in range(0x20, 0x7F))
#: A BCD byte's value, or this for a byte with a nibble above 9 (more than any length).
_NOT_BCD = 1 << 30


class Kind(Enum):
    """What a DE's value may hold and how it travels."""

    DIGITS = "n: decimal digits as BCD nibbles"
    TRACK2 = "z: digits and D as BCD nibbles"
    TEXT = "an/ans: printable ASCII as text bytes"
    BINARY = "b: raw bytes"


@dataclass(frozen=True)
class FieldLayout:
    """One data element as the spec data describes it, in the codec's terms."""

    de: int
    kind: Kind
    #: Bytes of the BCD length prefix: 0 for a fixed field, 1 LLVAR, 2 LLLVAR.
    prefix_len: int
    #: The fixed length, or ``None`` for a variable field (digits for nibble fields).
    fixed_length: int | None
    #: The largest length an encoder accepts and a decoder reads.
    max_length: int
    #: For ``n``/``z``: the pad nibble before (left) or after (right) an odd count.
    left_pad: str
    right_pad: str
    #: For text: the codec name pyiso8583 uses (``data_enc``).
    text_encoding: str

    @property
    def name(self) -> str:
        return str(self.de)

    @property
    def bit(self) -> int:
        """The DE's bit in the primary bitmap read as a big-endian 64-bit integer."""
        return 1 << (BITMAP_BITS - self.de)

    @property
    def alphabet(self) -> str:
        return TRACK2_CHARACTERS if self.kind is Kind.TRACK2 else DIGITS

    @property
    def min_length(self) -> int:
        return self.fixed_length if self.fixed_length is not None else 1


def layout_of(de: int) -> FieldLayout:
    """Read one DE's entry of :data:`~switch.protocol.spec.SPEC` (and the derived tables)."""
    entry = SPEC[str(de)]
    prefix_len = int(entry["len_type"])
    if prefix_len and entry["len_enc"] != "bcd":
        raise NotImplementedError(f"DE {de}: only BCD length prefixes are compiled")
    if prefix_len > 2:
        raise NotImplementedError(f"DE {de}: only LLVAR and LLLVAR prefixes are compiled")
    nibbles = entry.get("len_count", "bytes") == "nibbles"
    data_enc = str(entry["data_enc"])
    if de in BINARY_FIELDS:
        kind = Kind.BINARY
        if data_enc != "b" or nibbles:
            raise NotImplementedError(f"DE {de}: a b field must be raw bytes counted in bytes")
    elif data_enc == "b":
        if not nibbles:
            raise NotImplementedError(f"DE {de}: hex text in bytes is not compiled")
        # The reference gives every non-numeric nibble field (DE 35 only) the z alphabet.
        kind = Kind.DIGITS if de in NUMERIC_FIELDS else Kind.TRACK2
    else:
        if de in NUMERIC_FIELDS:
            raise NotImplementedError(f"DE {de}: an n field as text is not compiled")
        sample = _PRINTABLE_ASCII.encode(data_enc)
        if len(sample) != len(_PRINTABLE_ASCII) or sample.decode(data_enc) != _PRINTABLE_ASCII:
            raise NotImplementedError(f"DE {de}: {data_enc} is not one byte per ASCII character")
        kind = Kind.TEXT
    fixed = FIXED_LENGTHS.get(de)
    # A length that does not fit its BCD prefix cannot be sent (pyiso8583 refuses it).
    max_length = MAX_LENGTHS[de] if prefix_len == 0 else min(MAX_LENGTHS[de], 100**prefix_len - 1)
    return FieldLayout(
        de=de,
        kind=kind,
        prefix_len=prefix_len,
        fixed_length=fixed,
        max_length=max_length,
        left_pad=str(entry.get("left_pad", ""))[:1],
        right_pad=str(entry.get("right_pad", ""))[:1],
        text_encoding=data_enc,
    )


# --- tables -------------------------------------------------------------------------

#: Byte -> its two BCD digits as text ("00"-"99"), or ``None`` (a nibble above 9).
_BCD_DIGIT_PAIRS: tuple[str | None, ...] = tuple(
    f"{b:02x}" if (b >> 4) <= 9 and (b & 0xF) <= 9 else None for b in range(256)
)
#: Byte -> its BCD value (0-99), or :data:`_NOT_BCD`.
_BCD_VALUES: tuple[int, ...] = tuple(
    (b >> 4) * 10 + (b & 0xF) if (b >> 4) <= 9 and (b & 0xF) <= 9 else _NOT_BCD
    for b in range(256)
)


def _length_prefixes(layout: FieldLayout) -> tuple[bytes, ...]:
    """The BCD length prefix of every length 0..max (empty for a fixed field)."""
    if layout.prefix_len == 0:
        return ()
    digits = 2 * layout.prefix_len
    return tuple(bytes.fromhex(f"{n:0{digits}d}") for n in range(layout.max_length + 1))


def _odd_pads(layout: FieldLayout) -> tuple[str, str] | None:
    """What goes before and after an odd count of nibbles (pyiso8583: left pad first);
    ``None`` when the spec gives no pad, so an odd count cannot be encoded."""
    if layout.left_pad:
        return layout.left_pad, ""
    if layout.right_pad:
        return "", layout.right_pad
    return None


# --- errors (only on the error path, so they may take their time) ------------------


def _value_problem(layout: FieldLayout, value: object) -> str:
    if layout.kind is Kind.BINARY and not isinstance(value, bytes):
        return "binary field needs bytes"
    if layout.kind is not Kind.BINARY and not isinstance(value, str):
        return "text field needs str"
    if isinstance(value, str):
        if layout.kind is Kind.TEXT and not (value.isascii() and value.isprintable()):
            return "text field holds a non-printable character"
        if layout.kind is not Kind.TEXT and value.strip(layout.alphabet):
            return f"field holds a character other than {layout.alphabet}"
    assert isinstance(value, str | bytes)
    if layout.fixed_length is not None:
        if len(value) != layout.fixed_length:
            return f"fixed field needs length {layout.fixed_length}, got {len(value)}"
    elif not 0 < len(value) <= layout.max_length:
        return f"variable field length {len(value)} out of range"
    if layout.kind in (Kind.DIGITS, Kind.TRACK2) and len(value) % 2 and _odd_pads(layout) is None:
        return "odd count of nibbles and no pad in the spec"
    return "value cannot be encoded"


def _bad_value(layout: FieldLayout, value: object) -> ProtocolError:
    return ProtocolError(_value_problem(layout, value), field=layout.name)


def _runs_past_end(layout: FieldLayout, pos: int) -> ProtocolError:
    return ProtocolError("field runs past the end of the message", field=layout.name, pos=pos)


def _bad_length(layout: FieldLayout, pos: int) -> ProtocolError:
    return ProtocolError(
        f"length prefix is not BCD 1-{layout.max_length}", field=layout.name, pos=pos
    )


def _bad_content(layout: FieldLayout, pos: int) -> ProtocolError:
    return ProtocolError(f"not a valid {layout.kind.value} value", field=layout.name, pos=pos)


# --- encoders -----------------------------------------------------------------------


def compile_encoder(layout: FieldLayout) -> FieldEncoder:
    """The checking encoder of one DE: the reference's ``_check_value`` and
    pyiso8583's ``_encode_field`` in one step."""
    if layout.kind is Kind.BINARY:
        return _binary_encoder(layout)
    if layout.kind is Kind.TEXT:
        return _text_encoder(layout)
    return _nibble_encoder(layout)


def _binary_encoder(layout: FieldLayout) -> FieldEncoder:
    prefixes = _length_prefixes(layout)
    lo, hi = layout.min_length, layout.max_length

    def encode_binary(value: FieldValue) -> bytes:
        if not isinstance(value, bytes) or not lo <= len(value) <= hi:
            raise _bad_value(layout, value)
        return prefixes[len(value)] + value

    fixed = layout.fixed_length

    def encode_fixed_binary(value: FieldValue) -> bytes:
        if not isinstance(value, bytes) or len(value) != fixed:
            raise _bad_value(layout, value)
        return value

    return encode_binary if prefixes else encode_fixed_binary


def _text_encoder(layout: FieldLayout) -> FieldEncoder:
    prefixes = _length_prefixes(layout)
    lo, hi = layout.min_length, layout.max_length
    encoding = layout.text_encoding

    def encode_text(value: FieldValue) -> bytes:
        if (
            not isinstance(value, str)
            or not lo <= len(value) <= hi
            or not (value.isascii() and value.isprintable())
        ):
            raise _bad_value(layout, value)
        return prefixes[len(value)] + value.encode(encoding)

    fixed = layout.fixed_length

    def encode_fixed_text(value: FieldValue) -> bytes:
        if (
            not isinstance(value, str)
            or len(value) != fixed
            or not (value.isascii() and value.isprintable())
        ):
            raise _bad_value(layout, value)
        return value.encode(encoding)

    return encode_text if prefixes else encode_fixed_text


def _nibble_encoder(layout: FieldLayout) -> FieldEncoder:
    """``n`` and ``z``: the characters are the nibbles (``D`` is a hex digit), so a
    checked value is its own hex text; an odd count gets the spec's pad nibble."""
    prefixes = _length_prefixes(layout)
    lo, hi = layout.min_length, layout.max_length
    alphabet = layout.alphabet
    pads = _odd_pads(layout)
    before, after = pads if pads is not None else ("", "")
    odd_ok = pads is not None
    fromhex = bytes.fromhex

    def encode_nibbles(value: FieldValue) -> bytes:
        if not isinstance(value, str) or not lo <= (n := len(value)) <= hi or value.strip(alphabet):
            raise _bad_value(layout, value)
        if n & 1:
            if not odd_ok:
                raise _bad_value(layout, value)
            return prefixes[n] + fromhex(before + value + after)
        return prefixes[n] + fromhex(value)

    fixed = layout.fixed_length

    def encode_fixed_even(value: FieldValue) -> bytes:
        if not isinstance(value, str) or len(value) != fixed or value.strip(alphabet):
            raise _bad_value(layout, value)
        return fromhex(value)

    def encode_fixed_odd(value: FieldValue) -> bytes:
        if not odd_ok or not isinstance(value, str) or len(value) != fixed or value.strip(alphabet):
            raise _bad_value(layout, value)
        return fromhex(before + value + after)

    if fixed is None:
        return encode_nibbles
    return encode_fixed_odd if fixed & 1 else encode_fixed_even


# --- decoders -----------------------------------------------------------------------


def compile_decoder(layout: FieldLayout) -> FieldDecoder:
    """The checking decoder of one DE: pyiso8583's ``_decode_field`` and the
    reference's checks of the decoded value in one step."""
    if layout.kind is Kind.BINARY:
        return _binary_decoder(layout)
    if layout.kind is Kind.TEXT:
        return _text_decoder(layout)
    return _nibble_decoder(layout)


def _binary_decoder(layout: FieldLayout) -> FieldDecoder:
    de, width, hi = layout.de, layout.prefix_len, layout.max_length
    values = _BCD_VALUES

    def decode_binary(data: bytes, pos: int, out: dict[int, FieldValue]) -> int:
        start = pos + width
        if start > len(data):
            raise _runs_past_end(layout, pos)
        n = values[data[pos]] if width == 1 else values[data[pos]] * 100 + values[data[pos + 1]]
        if not 0 < n <= hi:
            raise _bad_length(layout, pos)
        end = start + n
        if end > len(data):
            raise _runs_past_end(layout, pos)
        out[de] = data[start:end]
        return end

    size = layout.fixed_length or 0

    def decode_fixed_binary(data: bytes, pos: int, out: dict[int, FieldValue]) -> int:
        end = pos + size
        if end > len(data):
            raise _runs_past_end(layout, pos)
        out[de] = data[pos:end]
        return end

    return decode_binary if width else decode_fixed_binary


def _text_decoder(layout: FieldLayout) -> FieldDecoder:
    de, width, hi = layout.de, layout.prefix_len, layout.max_length
    values = _BCD_VALUES
    encoding = layout.text_encoding

    def decode_text(data: bytes, pos: int, out: dict[int, FieldValue]) -> int:
        start = pos + width
        if start > len(data):
            raise _runs_past_end(layout, pos)
        n = values[data[pos]] if width == 1 else values[data[pos]] * 100 + values[data[pos + 1]]
        if not 0 < n <= hi:
            raise _bad_length(layout, pos)
        end = start + n
        if end > len(data):
            raise _runs_past_end(layout, pos)
        try:
            value = data[start:end].decode(encoding)
        except UnicodeDecodeError:
            raise _bad_content(layout, pos) from None
        if not (value.isascii() and value.isprintable()):
            raise _bad_content(layout, pos)
        out[de] = value
        return end

    size = layout.fixed_length or 0

    def decode_fixed_text(data: bytes, pos: int, out: dict[int, FieldValue]) -> int:
        end = pos + size
        if end > len(data):
            raise _runs_past_end(layout, pos)
        try:
            value = data[pos:end].decode(encoding)
        except UnicodeDecodeError:
            raise _bad_content(layout, pos) from None
        if not (value.isascii() and value.isprintable()):
            raise _bad_content(layout, pos)
        out[de] = value
        return end

    return decode_text if width else decode_fixed_text


def _nibble_decoder(layout: FieldLayout) -> FieldDecoder:
    """``n`` and ``z``: hex text of the bytes, an odd count's pad nibble checked and
    dropped as pyiso8583 does (left pad first, then right), then the alphabet."""
    de, width, hi = layout.de, layout.prefix_len, layout.max_length
    values = _BCD_VALUES
    alphabet = layout.alphabet
    left, right = layout.left_pad, layout.right_pad
    # pyiso8583 compares pads with upper-case hex; digits need no case change.
    upper = any(c.isalpha() for c in alphabet + left + right)

    def unpad(hex_text: str, pos: int) -> str:
        if left and hex_text[0] == left:
            return hex_text[1:]
        if right and hex_text[-1] == right:
            return hex_text[:-1]
        raise _bad_content(layout, pos)

    def decode_nibbles(data: bytes, pos: int, out: dict[int, FieldValue]) -> int:
        start = pos + width
        if start > len(data):
            raise _runs_past_end(layout, pos)
        n = values[data[pos]] if width == 1 else values[data[pos]] * 100 + values[data[pos + 1]]
        if not 0 < n <= hi:
            raise _bad_length(layout, pos)
        end = start + ((n + 1) >> 1)
        if end > len(data):
            raise _runs_past_end(layout, pos)
        hex_text = data[start:end].hex()
        if upper:
            hex_text = hex_text.upper()
        if n & 1:
            hex_text = unpad(hex_text, pos)
        if hex_text.strip(alphabet):
            raise _bad_content(layout, pos)
        out[de] = hex_text
        return end

    fixed = layout.fixed_length or 0
    size = (fixed + 1) >> 1

    def decode_fixed_even(data: bytes, pos: int, out: dict[int, FieldValue]) -> int:
        end = pos + size
        if end > len(data):
            raise _runs_past_end(layout, pos)
        hex_text = data[pos:end].hex()
        if upper:
            hex_text = hex_text.upper()
        if hex_text.strip(alphabet):
            raise _bad_content(layout, pos)
        out[de] = hex_text
        return end

    def decode_fixed_odd(data: bytes, pos: int, out: dict[int, FieldValue]) -> int:
        end = pos + size
        if end > len(data):
            raise _runs_past_end(layout, pos)
        hex_text = data[pos:end].hex()
        if upper:
            hex_text = hex_text.upper()
        hex_text = unpad(hex_text, pos)
        if hex_text.strip(alphabet):
            raise _bad_content(layout, pos)
        out[de] = hex_text
        return end

    if width:
        return decode_nibbles
    return decode_fixed_odd if fixed & 1 else decode_fixed_even


# --- the compiled dialect -----------------------------------------------------------

LAYOUTS: tuple[FieldLayout, ...] = tuple(layout_of(de) for de in sorted(DEFINED_FIELDS))
if any(not 2 <= layout.de <= BITMAP_BITS for layout in LAYOUTS):
    raise NotImplementedError("only DE 2-64 (a primary bitmap) are compiled")
#: DE -> (its bitmap bit, its encoder).
_ENCODERS: dict[int, tuple[int, FieldEncoder]] = {
    layout.de: (layout.bit, compile_encoder(layout)) for layout in LAYOUTS
}
#: (bit, decoder) in DE order: the order of the fields on the wire.
_DECODERS: tuple[tuple[int, FieldDecoder], ...] = tuple(
    (layout.bit, compile_decoder(layout)) for layout in LAYOUTS
)
#: Bit 1 announces a secondary bitmap, which the dialect does not use (HOST_SPEC §2).
_SECONDARY_BITMAP_BIT = 1 << (BITMAP_BITS - 1)
_DEFINED_BITS = sum(layout.bit for layout in LAYOUTS)
#: Bitmap bytes -> the decoders of the fields it announces, in wire order.
_PLANS: dict[bytes, tuple[FieldDecoder, ...]] = {}


def _plan(bitmap: bytes) -> tuple[FieldDecoder, ...]:
    bits = int.from_bytes(bitmap, "big")
    if bits & _SECONDARY_BITMAP_BIT:
        raise ProtocolError("secondary bitmap is not used in this dialect", field="1")
    undefined = bits & ~_DEFINED_BITS
    if undefined:
        de = BITMAP_BITS - undefined.bit_length() + 1
        raise ProtocolError("data element not in the BPNT dialect", field=str(de))
    return tuple(decoder for bit, decoder in _DECODERS if bits & bit)


def encode_fields(mti: str, fields: Mapping[int, FieldValue]) -> bytes:
    """MTI and data elements → the message's bytes (MTI, binary bitmap, fields)."""
    if not isinstance(mti, str) or len(mti) != MTI_DIGITS or not (mti.isascii() and mti.isdigit()):
        raise ProtocolError("MTI must be 4 digits", field="t")
    parts = [bytes.fromhex(mti), b""]
    bits = 0
    previous_de = 0
    in_order = True
    encoders = _ENCODERS
    # Checked in the mapping's order, as the reference checks them.
    for de, value in fields.items():
        compiled = encoders.get(de)
        if compiled is None:
            raise ProtocolError("data element not in the BPNT dialect", field=str(de))
        bit, encode_field = compiled
        parts.append(encode_field(value))
        bits |= bit
        if de < previous_de:
            in_order = False
        previous_de = de
    if not in_order:
        parts[2:] = [encoders[de][1](fields[de]) for de in sorted(fields)]
    parts[1] = bits.to_bytes(BITMAP_LEN, "big")
    return b"".join(parts)


def decode_fields(given: Buffer) -> tuple[str, dict[int, FieldValue]]:
    """A message's bytes → its MTI and data elements (in DE order); every defect is a
    :class:`ProtocolError`."""
    if type(given) is bytes:
        data = given
    else:
        try:
            data = bytes(given)
        except (TypeError, ValueError):
            raise ProtocolError("cannot decode: not bytes") from None
    if len(data) < MTI_LEN + BITMAP_LEN:
        field = "t" if len(data) < MTI_LEN else "p"
        raise ProtocolError("shorter than an MTI and a bitmap", field=field, pos=0)
    high, low = _BCD_DIGIT_PAIRS[data[0]], _BCD_DIGIT_PAIRS[data[1]]
    if high is None or low is None:
        raise ProtocolError("MTI must be 4 digits", field="t", pos=0)
    bitmap = data[MTI_LEN : MTI_LEN + BITMAP_LEN]
    plan = _PLANS.get(bitmap)
    if plan is None:
        plan = _plan(bitmap)
        if len(_PLANS) < MAX_PLANS:
            _PLANS[bitmap] = plan
    fields: dict[int, FieldValue] = {}
    pos = MTI_LEN + BITMAP_LEN
    for decode_field in plan:
        pos = decode_field(data, pos, fields)
    if pos != len(data):
        raise ProtocolError("extra data after the last field", pos=pos)
    return high + low, fields
