"""Which received unit answers which request (HOST_SPEC §3-4).

MQTT redeliveries and serial retransmissions can leave a second copy of an earlier
response on the line; a link must not hand it to the next exchange.  A response
answers a request when its MTI is the request's response MTI and it echoes DE 11 and DE 41.
"""

from __future__ import annotations

from switch.protocol.errors import ProtocolError
from switch.protocol.routing import response_mti
from switch.protocol.unit import decode_unit


def answers(request_unit: bytes, response_unit: bytes) -> bool:
    try:
        request = decode_unit(request_unit).message
        response = decode_unit(response_unit).message
    except ProtocolError:
        return True  # unreadable: the EDC itself rejects it (and reverses)
    if response.mti != response_mti(request.mti):
        return False
    return all(response.opt_text(de) in (None, request.opt_text(de)) for de in (11, 41))
