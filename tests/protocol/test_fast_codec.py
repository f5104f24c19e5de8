"""The compiled codec against the pyiso8583 oracle (issue 17).

:func:`encode`/:func:`decode` (switch.protocol.fast_codec) must give what
:func:`encode_reference`/:func:`decode_reference` (pyiso8583 and the dialect's checks)
give: the same bytes, the same message, or a :class:`ProtocolError` in the same
cases.  Any other exception from either side fails the test.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from switch.protocol import fast_codec
from switch.protocol.errors import ProtocolError
from switch.protocol.message import (
    FieldValue,
    Message,
    decode,
    decode_reference,
    encode,
    encode_reference,
)
from switch.protocol.spec import (
    BINARY_FIELDS,
    DEFINED_FIELDS,
    FIXED_LENGTHS,
    MAX_LENGTHS,
    NUMERIC_FIELDS,
    SPEC,
)
from tests.protocol.strategies import field_value, messages

MTI_AND_BITMAP = 10
#: A purchase as an EDC sends it (terminal_sim: chip read, PIN, basket, MAC).
PURCHASE = Message(
    "0200",
    {
        2: "6032981234567890", 3: "000000", 4: "000000500000", 11: "000042",
        12: "101530", 13: "1203", 14: "2812", 22: "051", 23: "001", 24: "001", 25: "00",
        35: "6032981234567890D28121010000000000", 41: "EDC00001", 42: "EWARONG00000001",
        48: "TMP001001000000500000", 52: bytes(range(8)),
        55: bytes.fromhex("9f2608" + "11" * 8 + "9f270180" + "9f1012" + "0110a0" + "00" * 15),
        62: "000042", 64: bytes(8),
    },
)

# --- outcomes ------------------------------------------------------------------------

Outcome = tuple[str, object]


def encoded(encoder: object, message: Message) -> Outcome:
    assert callable(encoder)
    try:
        return ("bytes", encoder(message))
    except ProtocolError as exc:
        return ("error", exc.field)


def decoded(decoder: object, data: bytes) -> Outcome:
    assert callable(decoder)
    try:
        message = decoder(data)
    except ProtocolError:
        return ("error", None)
    assert isinstance(message, Message)
    # The fields' order and their types (str or bytes) count too.
    return ("message", (message.mti, [(de, type(v), v) for de, v in message.fields.items()]))


def assert_same_encoding(message: Message, *, same_field: bool = False) -> Outcome:
    fast, reference = encoded(encode, message), encoded(encode_reference, message)
    assert fast[0] == reference[0], (message, fast, reference)
    if fast[0] == "bytes" or same_field:
        assert fast == reference, (message, fast, reference)
    return fast


def assert_same_decoding(data: bytes) -> Outcome:
    fast, reference = decoded(decode, data), decoded(decode_reference, data)
    assert fast == reference, (data.hex(), fast, reference)
    return fast


# --- (a) every valid message: the same bytes -----------------------------------------


@given(messages())
@settings(max_examples=400)
@example(PURCHASE)
def test_valid_messages_encode_to_the_same_bytes(message: Message) -> None:
    outcome = assert_same_encoding(message)
    assert outcome[0] == "bytes"
    raw = outcome[1]
    assert isinstance(raw, bytes)
    assert assert_same_decoding(raw)[0] == "message"
    assert decode(raw) == message


@given(messages(), st.data())
@settings(max_examples=100)
def test_field_order_in_the_mapping_does_not_matter(message: Message, data: st.DataObject) -> None:
    items = data.draw(st.permutations(list(message.fields.items())))
    shuffled = Message(message.mti, dict(items))
    assert encode(shuffled) == encode_reference(shuffled) == encode(message)


# --- (b) invalid values: both refuse -------------------------------------------------

_BAD_DIGITS = ["A", "a", "D", "F", " ", "-", "+", "\u0663", "\u00b2", "\uff11", "\x00"]
_BAD_TRACK2 = ["F", "d", "=", "A", " ", "\u0663", "\uff11", "\x00"]
_BAD_TEXT = ["\x00", "\x1f", "\x7f", "\n", "\u00e9", "\u20ac", "\u0663", "\ud800"]


@st.composite
def invalid_value(draw: st.DrawFn, de: int) -> object:
    """A value the dialect refuses for ``de``: wrong length, alphabet or type."""
    fixed = FIXED_LENGTHS.get(de)
    valid = draw(field_value(de))
    choices = ["type", "long"] + (["short"] if fixed is not None else ["empty"])
    if de not in BINARY_FIELDS:
        choices.append("character")
    how = draw(st.sampled_from(choices))
    if how == "type":
        if de in BINARY_FIELDS:
            return draw(st.sampled_from([valid.hex(), bytearray(valid), memoryview(valid)]))
        assert isinstance(valid, str)
        return draw(st.sampled_from([valid.encode("latin-1", "replace"), None, 7]))
    if how == "long":
        extra = draw(st.integers(1, 3))
        limit = fixed if fixed is not None else MAX_LENGTHS[de]
        return (valid * (limit // max(len(valid), 1) + 2))[: limit + extra]
    if how == "short":
        return valid[: draw(st.integers(0, len(valid) - 1))]
    if how == "empty":
        return valid[:0]
    assert isinstance(valid, str)
    pool = _BAD_DIGITS if de in NUMERIC_FIELDS else _BAD_TRACK2 if de == 35 else _BAD_TEXT
    at = draw(st.integers(0, len(valid) - 1))
    return valid[:at] + draw(st.sampled_from(pool)) + valid[at + 1 :]


@st.composite
def messages_with_one_invalid_value(draw: st.DrawFn) -> Message:
    message = draw(messages())
    de = draw(st.sampled_from(sorted(DEFINED_FIELDS)))
    fields: dict[int, object] = dict(message.fields)
    fields[de] = draw(invalid_value(de))
    return Message(message.mti, fields)  # type: ignore[arg-type]


@given(
    messages(),
    st.sampled_from(sorted(DEFINED_FIELDS - BINARY_FIELDS)),
    st.integers(min_value=0),
    st.data(),
)
@settings(max_examples=300)
def test_one_character_outside_the_alphabet_is_refused_by_both(
    message: Message, de: int, where: int, data: st.DataObject
) -> None:
    valid = data.draw(field_value(de))
    assert isinstance(valid, str)
    pool = _BAD_DIGITS if de in NUMERIC_FIELDS else _BAD_TRACK2 if de == 35 else _BAD_TEXT
    at = where % len(valid)
    bad = valid[:at] + data.draw(st.sampled_from(pool)) + valid[at + 1 :]
    fields = {**message.fields, de: bad}
    assert assert_same_encoding(Message(message.mti, fields), same_field=True) == ("error", str(de))


_UNDEFINED_DES = st.one_of(
    st.sampled_from([0, 1, 5, 26, 36, 53, 65, 128, 129, 192, 193, -1]),
    st.integers(-300, 300).filter(lambda de: de not in DEFINED_FIELDS),
    st.sampled_from(["2", "p", "t", None, True]),
)


@given(messages_with_one_invalid_value())
@settings(max_examples=500)
@example(Message("0200", {4: "\u0661" * 12}))
@example(Message("0200", {22: "05\u00b2"}))
@example(Message("0200", {35: "6032D28121F"}))
@example(Message("0200", {48: "x" * 1000}))
@example(Message("0200", {55: b"\x01" * 256}))
@example(Message("0200", {2: "1" * 20}))
def test_one_invalid_value_is_refused_by_both(message: Message) -> None:
    assert assert_same_encoding(message, same_field=True)[0] == "error"


@given(messages(), _UNDEFINED_DES, st.one_of(st.text(max_size=4), st.binary(max_size=4)))
@settings(max_examples=200)
def test_undefined_data_element_is_refused_by_both(
    message: Message, de: object, value: FieldValue
) -> None:
    fields: dict[object, FieldValue] = {**message.fields, de: value}
    bad = Message(message.mti, fields)  # type: ignore[arg-type]
    # The only wrong DE: both name it.
    assert assert_same_encoding(bad, same_field=True) == ("error", str(de))


@given(
    st.one_of(
        st.text(max_size=6),
        st.text(alphabet="0123456789", min_size=0, max_size=6).filter(lambda s: len(s) != 4),
        st.sampled_from(["02a0", "0x20", " 200", "020 ", "\u0660\u0662\u0660\u0660", "02\u00b20"]),
    ),
    messages(),
)
@settings(max_examples=200)
def test_bad_mti_is_refused_by_both(mti: str, message: Message) -> None:
    if len(mti) == 4 and mti.isascii() and mti.isdigit():
        mti = mti[:3]
    bad = Message(mti, message.fields)
    assert assert_same_encoding(bad, same_field=True) == ("error", "t")


@given(
    st.text(alphabet="0123456789", min_size=4, max_size=4),
    st.dictionaries(
        st.sampled_from(sorted(DEFINED_FIELDS)),
        st.one_of(
            st.text(max_size=40),
            st.text(alphabet="0123456789DdFf =", max_size=40),
            st.binary(max_size=40),
        ),
        max_size=6,
    ),
)
@settings(max_examples=400)
def test_any_values_give_the_same_outcome(mti: str, fields: dict[int, FieldValue]) -> None:
    assert_same_encoding(Message(mti, fields))


# --- (c) decoding: the same message, or both refuse ----------------------------------


@given(st.binary(max_size=400))
@settings(max_examples=500)
@example(b"")
@example(b"\x02\x00")
@example(b"\x02\x00" + bytes(8))
@example(b"\x02\x00" + b"\x80" + bytes(15))
@example(b"\x02\x00\xc0" + bytes(15))
def test_arbitrary_bytes_decode_the_same(data: bytes) -> None:
    assert_same_decoding(data)


@st.composite
def header_and_junk(draw: st.DrawFn) -> bytes:
    """A valid MTI and a bitmap of defined DEs (sometimes one more bit), then any bytes:
    reaches the field decoders, which arbitrary bytes seldom do."""
    mti = draw(st.text(alphabet="0123456789", min_size=4, max_size=4))
    des = draw(st.sets(st.sampled_from(sorted(DEFINED_FIELDS)), max_size=8))
    if draw(st.booleans()):
        des.add(draw(st.integers(1, 64)))
    bits = sum(1 << (64 - de) for de in des)
    return bytes.fromhex(mti) + bits.to_bytes(8, "big") + draw(st.binary(max_size=120))


@given(header_and_junk())
@settings(max_examples=500)
def test_valid_header_and_any_fields_decode_the_same(data: bytes) -> None:
    assert_same_decoding(data)


def field_places(message: Message) -> dict[int, tuple[int, int, int]]:
    """Each DE of ``encode(message)``: (where it starts, its prefix width, where it ends)."""
    places, at = {}, MTI_AND_BITMAP
    for de in sorted(message.fields):
        alone = encode_reference(Message(message.mti, {de: message.fields[de]}))
        size = len(alone) - MTI_AND_BITMAP
        places[de] = (at, int(SPEC[str(de)]["len_type"]), at + size)
        at += size
    return places


_NOT_TEXT_BYTES = [*range(0x20), 0x7F, 0x80, 0xA0, 0xC3, 0xFF]


def _same_value_not_bcd(byte: int) -> int | None:
    """A byte a decoder that skips the BCD check reads as the same number
    (``0x21`` -> ``0x1B``: 1*10+11 = 21), or ``None``."""
    high, low = byte >> 4, byte & 0xF
    return (high - 1) << 4 | (low + 10) if high >= 1 and low <= 5 else None


@st.composite
def mutated_encodings(draw: st.DrawFn) -> bytes:
    """A valid encoding with one defect (or, by chance, none)."""
    message = draw(messages())
    raw = bytearray(encode_reference(message))
    places = field_places(message)
    how = draw(
        st.sampled_from(
            ["truncate", "extend", "flip", "bitmap bit", "secondary", "bad nibble", "length",
             "length not BCD", "text byte", "nibble field", "splice", "mti not BCD"]
        )
    )
    if how == "truncate":
        return bytes(raw[: draw(st.integers(0, len(raw) - 1))])
    if how == "extend":
        return bytes(raw) + draw(st.binary(min_size=1, max_size=8))
    if how == "flip":
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(raw) - 1))
            raw[at] ^= draw(st.integers(1, 255))
        return bytes(raw)
    if how == "bitmap bit":
        bit = draw(st.integers(2, 64))
        raw[2 + (bit - 1) // 8] |= 0x80 >> ((bit - 1) % 8)
        return bytes(raw)
    if how == "secondary":
        raw[2] |= 0x80
        return bytes(raw[:10]) + draw(st.binary(min_size=0, max_size=16)) + bytes(raw[10:])
    if how == "bad nibble":
        return bytes(_set_nibble(draw, raw, draw(st.integers(0, len(raw) - 1))))
    if how == "mti not BCD":
        at = draw(st.integers(0, 1))
        alias = _same_value_not_bcd(raw[at])
        return bytes(_set_nibble(draw, raw, at) if alias is None else _replace(raw, at, alias))
    variable = [de for de, (_, width, _) in places.items() if width]
    if how in ("length", "length not BCD") and variable:
        de = draw(st.sampled_from(variable))
        at, width, _ = places[de]
        if how == "length":
            raw[at : at + width] = draw(st.binary(min_size=width, max_size=width))
            return bytes(raw)
        which = at + draw(st.integers(0, width - 1))
        alias = _same_value_not_bcd(raw[which])
        if alias is None:
            return bytes(_set_nibble(draw, raw, which))
        return bytes(_replace(raw, which, alias))
    if how in ("text byte", "nibble field"):
        kinds = (
            (fast_codec.Kind.TEXT,)
            if how == "text byte"
            else (fast_codec.Kind.DIGITS, fast_codec.Kind.TRACK2)
        )
        chosen = [de for de in places if fast_codec.layout_of(de).kind in kinds]
        if chosen:
            de = draw(st.sampled_from(chosen))
            at, width, end = places[de]
            which = draw(st.integers(at + width, end - 1))
            if how == "text byte":
                raw[which] = draw(st.sampled_from(_NOT_TEXT_BYTES))
                return bytes(raw)
            return bytes(_set_nibble(draw, raw, which))
    # splice: a field's bytes replaced by junk of another length
    if not places:
        return bytes(raw)
    de = draw(st.sampled_from(sorted(places)))
    at = places[de][0]
    cut = draw(st.integers(0, 6))
    return bytes(raw[:at]) + draw(st.binary(max_size=6)) + bytes(raw[at + cut :])


def _set_nibble(draw: st.DrawFn, raw: bytearray, at: int) -> bytearray:
    """One nibble of ``raw[at]`` set to A-F (not BCD)."""
    nibble = draw(st.integers(0xA, 0xF))
    if draw(st.booleans()):
        raw[at] = (raw[at] & 0x0F) | (nibble << 4)
    else:
        raw[at] = (raw[at] & 0xF0) | nibble
    return raw


def _replace(raw: bytearray, at: int, byte: int) -> bytearray:
    raw[at] = byte
    return raw


@given(mutated_encodings())
@settings(max_examples=1000)
@example(bytes.fromhex("0200" "0000040000000000" "1051"))  # DE 22's pad nibble not 0
@example(bytes.fromhex("0200" "0000000020000000" "03" "12d4"))  # DE 35 odd, last not F
@example(bytes.fromhex("0200" "0000000020000000" "04" "12df"))  # DE 35 even, ends F
@example(bytes.fromhex("0200" "4000000000000000" "00"))  # DE 2 of length 0
@example(bytes.fromhex("0200" "4000000000000000" "20" + "11" * 10))  # DE 2 of 20 digits
@example(bytes.fromhex("0200" "0000000000000200" "0256" + "00" * 256))  # DE 55 of 256
@example(bytes.fromhex("0200" "0000000000000200" "0a01" + "00"))  # DE 55, length not BCD
@example(bytes.fromhex("0200" "0000000000000200" "000b" + "00" * 11))  # 0x0b read as 11
@example(bytes.fromhex("0200" "0000000000800000" "4544430030303031"))  # DE 41 holds NUL
@example(bytes.fromhex("0200" "0000000000800000" "4544433030303031"))  # DE 41 fine
@example(bytes.fromhex("0b00" "0000000000000000"))  # MTI 0B00 (0x0b read as 11)
@example(bytes.fromhex("0200" "8000000000000000"))  # DE 1 set, no secondary bitmap
@example(bytes.fromhex("0200" "8000000000000000" "0000000000000000"))  # secondary, empty
def test_mutated_encodings_decode_the_same(data: bytes) -> None:
    assert_same_decoding(data)


def test_purchase_and_its_answer_round_trip_like_the_reference() -> None:
    answer = PURCHASE.with_fields(
        "0210", de2=None, de14=None, de22=None, de23=None, de25=None, de35=None, de48=None,
        de52=None, de62=None, de37="000000000001", de38="123456", de39="00",
        de54="0002360C000000500000",
    )
    for message in (PURCHASE, answer):
        raw = encode(message)
        assert raw == encode_reference(message)
        assert decode(raw) == decode_reference(raw) == message


def test_decode_accepts_bytearray_and_memoryview_like_the_reference() -> None:
    raw = encode(PURCHASE)
    for data in (bytearray(raw), memoryview(raw)):
        assert decode(data) == decode_reference(data) == PURCHASE


def test_plans_stay_bounded_under_many_bitmaps() -> None:
    fast_codec._PLANS.clear()
    layouts = fast_codec.LAYOUTS
    for n in range(fast_codec.MAX_PLANS + 50):
        bits = sum(layout.bit for i, layout in enumerate(layouts) if n >> i & 1)
        assert_same_decoding(b"\x02\x00" + bits.to_bytes(8, "big") + b"\x00" * (n % 7))
    assert len(fast_codec._PLANS) <= fast_codec.MAX_PLANS
    assert decode(encode(PURCHASE)) == PURCHASE
