"""Sans-IO protocol core: bytes <-> typed messages (HOST_SPEC §1-5).

No sockets, no asyncio, no database: every transport, the terminal simulator
and the Locust client share this package.
"""

from switch.protocol.errors import FramingError, InvariantError, ProtocolError
from switch.protocol.framing import MAX_UNIT_BYTES, TcpFramer, frame_tcp
from switch.protocol.message import Message, decode, encode, mask_pan
from switch.protocol.unit import Tpdu, Unit, decode_unit, encode_unit

__all__ = [
    "MAX_UNIT_BYTES",
    "FramingError",
    "InvariantError",
    "Message",
    "ProtocolError",
    "TcpFramer",
    "Tpdu",
    "Unit",
    "decode",
    "decode_unit",
    "encode",
    "encode_unit",
    "frame_tcp",
    "mask_pan",
]
