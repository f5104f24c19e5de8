"""Bad bytes get a clean answer (RC 30) or a closed connection, never an exception."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switch.protocol.message import Message, decode, encode
from switch.protocol.unit import Tpdu, Unit, decode_unit, encode_unit
from tests.protocol.strategies import messages
from tests.world import HostWorld


@given(data=st.binary(max_size=400))
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture],
          deadline=None)
def test_arbitrary_units_never_raise(world: HostWorld, data: bytes) -> None:
    response = world.host.process_unit(b"\x60\x00\x01\x00\x00" + data)
    if response is not None:
        decode_unit(response)  # whatever the host says is itself well-formed


@given(message=messages())
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture],
          deadline=None)
def test_arbitrary_well_formed_messages_never_raise(world: HostWorld, message: Message) -> None:
    response = world.host.process_unit(encode_unit(Unit(Tpdu(), message)))
    assert response is not None
    answer = decode_unit(response).message
    assert answer.text(39) != "00" or message.mti == "0800" or message.mti.startswith("04")


def test_undecodable_body_with_readable_mti_is_answered_30(world: HostWorld) -> None:
    raw = bytearray(encode(decode(encode(_echo()))))
    raw[-1] = 0xAA  # DE 41 was ASCII; now a non-printable byte
    response = world.host.process_unit(Tpdu().to_bytes() + bytes(raw))
    assert response is not None
    answer = decode_unit(response).message
    assert (answer.mti, answer.text(39)) == ("0810", "30")


def test_unit_without_tpdu_closes(world: HostWorld) -> None:
    assert world.host.process_unit(b"\x02\x00\x00") is None


def _echo() -> Message:
    return Message("0800", {3: "990000", 11: "000001", 24: "001", 41: "EDC00001"})
