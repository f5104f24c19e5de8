"""TCP framing: 2-byte big-endian length + unit (HOST_SPEC §1).  Sans-IO.

Feed bytes as they arrive, in any slicing; take whole units out.

>>> f = TcpFramer()
>>> f.receive_data(b"\\x00\\x03ab")
>>> f.next_unit() is None
True
>>> f.receive_data(b"c\\x00\\x01z")
>>> f.next_unit(), f.next_unit(), f.next_unit()
(b'abc', b'z', None)
>>> frame_tcp(b"abc")
b'\\x00\\x03abc'
"""

from __future__ import annotations

from switch.protocol.errors import FramingError

#: HOST_SPEC §1: units longer than 2,048 bytes are a protocol error.
MAX_UNIT_BYTES = 2048
LENGTH_PREFIX_BYTES = 2


def frame_tcp(unit: bytes, *, max_unit_bytes: int = MAX_UNIT_BYTES) -> bytes:
    if not 0 < len(unit) <= max_unit_bytes:
        raise FramingError(f"unit of {len(unit)} bytes cannot be framed")
    return len(unit).to_bytes(LENGTH_PREFIX_BYTES, "big") + unit


class TcpFramer:
    """Incremental deframer; its buffer never holds more than one frame plus a read."""

    def __init__(self, *, max_unit_bytes: int = MAX_UNIT_BYTES) -> None:
        self._buffer = bytearray()
        self._max_unit_bytes = max_unit_bytes
        self._broken = False

    def receive_data(self, data: bytes) -> None:
        if self._broken:
            raise FramingError("framer already failed; close the connection")
        self._buffer += data

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete frame (a partial-frame timer runs while > 0)."""
        return len(self._buffer)

    def next_unit(self) -> bytes | None:
        """The next whole unit, or ``None`` if more data is needed."""
        if len(self._buffer) < LENGTH_PREFIX_BYTES:
            return None
        length = int.from_bytes(self._buffer[:LENGTH_PREFIX_BYTES], "big")
        if length == 0 or length > self._max_unit_bytes:
            self._broken = True
            raise FramingError(f"frame length {length} outside 1..{self._max_unit_bytes}", pos=0)
        end = LENGTH_PREFIX_BYTES + length
        if len(self._buffer) < end:
            return None
        unit = bytes(self._buffer[LENGTH_PREFIX_BYTES:end])
        del self._buffer[:end]
        return unit
