"""Codec and framer properties (issue 2 acceptance: round trip, hostile bytes)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switch.protocol import (
    FramingError,
    Message,
    ProtocolError,
    TcpFramer,
    Tpdu,
    Unit,
    decode,
    decode_unit,
    encode,
    encode_unit,
    frame_tcp,
)
from tests.protocol.strategies import messages


@given(messages())
@settings(max_examples=400)
def test_every_expressible_message_round_trips(message: Message) -> None:
    assert decode(encode(message)) == message


@given(messages(), st.text(alphabet="0123456789", min_size=8, max_size=8))
def test_units_round_trip(message: Message, niis: str) -> None:
    unit = Unit(Tpdu(niis[:4], niis[4:]), message)
    assert decode_unit(encode_unit(unit)) == unit


@given(st.binary(max_size=600))
@settings(max_examples=2000)
def test_arbitrary_bytes_raise_only_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_unit(data)
    with contextlib.suppress(ProtocolError):
        decode(data)


@given(messages(), st.integers(min_value=0, max_value=10_000), st.binary(min_size=1, max_size=4))
@settings(max_examples=1000)
def test_corrupted_messages_raise_only_protocol_error(
    message: Message, where: int, junk: bytes
) -> None:
    raw = bytearray(encode(message))
    pos = where % len(raw)
    raw[pos : pos + len(junk)] = junk
    with contextlib.suppress(ProtocolError):
        decode(bytes(raw))


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=8), st.data())
def test_framer_reassembles_any_slicing(units: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(frame_tcp(u) for u in units)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    framer = TcpFramer()
    out: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        framer.receive_data(stream[start:end])
        while (unit := framer.next_unit()) is not None:
            out.append(unit)
    assert out == units
    assert framer.pending_bytes == 0


@given(st.lists(st.binary(max_size=64), max_size=20))
@settings(max_examples=1000)
def test_framer_on_arbitrary_bytes_raises_only_framing_error(chunks: list[bytes]) -> None:
    framer = TcpFramer()
    try:
        for chunk in chunks:
            framer.receive_data(chunk)
            while framer.next_unit() is not None:
                pass
    except FramingError:
        pass
    # Bounded: never holds more than one maximal frame plus the last read.
    assert framer.pending_bytes <= 2 + 2048 + 64


def test_oversize_frame_is_refused() -> None:
    framer = TcpFramer()
    framer.receive_data((2049).to_bytes(2, "big"))
    with pytest.raises(FramingError):
        framer.next_unit()
    with pytest.raises(FramingError):
        framer.receive_data(b"more")


def test_zero_length_frame_is_refused() -> None:
    framer = TcpFramer()
    framer.receive_data(b"\x00\x00")
    with pytest.raises(FramingError):
        framer.next_unit()


def test_hex_nibble_in_numeric_field_is_a_format_error() -> None:
    raw = bytearray(encode(Message("0200", {4: "000000001000"})))
    raw[-1] = 0x0A  # last BCD byte of DE 4 now holds an A nibble
    with pytest.raises(ProtocolError) as info:
        decode(bytes(raw))
    assert info.value.field == "4"


def test_unit_without_tpdu_is_a_framing_error() -> None:
    with pytest.raises(FramingError):
        decode_unit(b"\x02\x00" + encode(Message("0800", {3: "990000"}))[2:])


def test_redacted_view_masks_card_data() -> None:
    m = Message("0200", {2: "6032981234567890", 35: "6032981234567890D2812", 52: bytes(8)})
    view = m.redacted()
    assert view["2"] == "603298******7890"
    assert "6032981234567890" not in repr(view)
