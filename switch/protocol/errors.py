"""Error types of the protocol core (DESIGN.md: typed errors).

A :class:`ProtocolError` means the bytes from outside were bad: the switch answers
RC 30 or closes the connection.  It is never our bug; our bugs are
:class:`InvariantError` and crash loudly.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Bad bytes from the remote side, with the field and byte position when known.

    >>> str(ProtocolError("not BCD", field="4", pos=12))
    'not BCD (field 4, pos 12)'
    """

    def __init__(self, message: str, *, field: str | None = None, pos: int | None = None):
        self.message = message
        self.field = field
        self.pos = pos
        where = []
        if field is not None:
            where.append(f"field {field}")
        if pos is not None:
            where.append(f"pos {pos}")
        suffix = f" ({', '.join(where)})" if where else ""
        super().__init__(f"{message}{suffix}")


class FramingError(ProtocolError):
    """The length prefix or TPDU is unusable: the connection must be closed."""


class InvariantError(AssertionError):
    """Our own bug: a state that must never happen.  Never answered with RC 00."""
