"""Hypothesis strategies for every message the BPNT dialect can express."""

from __future__ import annotations

from hypothesis import strategies as st

from switch.protocol.message import Message
from switch.protocol.spec import (
    BINARY_FIELDS,
    DEFINED_FIELDS,
    FIXED_LENGTHS,
    MAX_LENGTHS,
    NUMERIC_FIELDS,
)

_PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


def field_value(de: int) -> st.SearchStrategy[str | bytes]:
    fixed = FIXED_LENGTHS.get(de)
    lo, hi = (fixed, fixed) if fixed is not None else (1, MAX_LENGTHS[de])
    if de in BINARY_FIELDS:
        return st.binary(min_size=lo, max_size=hi)
    if de in NUMERIC_FIELDS:
        return st.text(alphabet="0123456789", min_size=lo, max_size=hi)
    if de == 35:
        return st.text(alphabet="0123456789D", min_size=lo, max_size=hi)
    return st.text(alphabet=_PRINTABLE, min_size=lo, max_size=hi)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    mti = draw(st.text(alphabet="0123456789", min_size=4, max_size=4))
    des = draw(st.sets(st.sampled_from(sorted(DEFINED_FIELDS))))
    return Message(mti, {de: draw(field_value(de)) for de in sorted(des)})
