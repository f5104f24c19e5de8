"""``switch.protocol.peek``: DE 39 read from a unit's bytes is the decoded DE 39, for every
message the dialect can express (the metrics count by it without decoding)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from switch.protocol.message import Message, decode
from switch.protocol.peek import response_code, unit_mti
from switch.protocol.unit import TPDU_LEN, Tpdu, Unit, encode_unit
from tests.protocol.strategies import messages


@given(messages())
def test_the_peeked_rc_is_the_decoded_one(message: Message) -> None:
    unit = encode_unit(Unit(Tpdu(), message))
    rc = decode(unit[TPDU_LEN:]).opt_text(39)
    assert response_code(unit) == (rc.encode("ascii") if rc is not None else None)
    assert response_code(unit) == response_code(unit)  # the remembered plan agrees
    assert unit_mti(unit).hex() == message.mti


@given(st.binary(max_size=40))
def test_any_bytes_give_an_rc_or_none_never_an_error(data: bytes) -> None:
    code = response_code(data)
    assert code is None or len(code) == 2


def test_an_llvar_pan_before_de39_is_skipped() -> None:
    unit = encode_unit(Unit(Tpdu(), Message("0210", {2: "6032981234567", 3: "000000",
                                                      35: "6032981234567D2812", 39: "14"})))
    assert response_code(unit) == b"14"
