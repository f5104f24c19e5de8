"""A request as the decision core takes it, and its HOST_SPEC §4 idempotency key."""

from __future__ import annotations

from dataclasses import dataclass

from switch.protocol.bpnt import card_data
from switch.protocol.message import Message
from switch.protocol.routing import TxnType


@dataclass(frozen=True)
class Request:
    """A decoded request that needs the batch's facts.

    ``raw`` is the message as received (for the MAC), ``digest`` its HOST_SPEC §4
    content hash, ``new_keys`` the fresh TPK and TAK a logon hands out (drawn from
    the OS before deciding, so the decision itself draws nothing).
    """

    message: Message
    raw: bytes
    txn: TxnType
    digest: str = ""
    new_keys: tuple[bytes, bytes] | None = None


@dataclass(frozen=True)
class RequestKey:
    """HOST_SPEC §4: the idempotency key (TID, DE 13, DE 11).

    >>> RequestKey("EDC00001", "1201", "000042").transfer_key("pur")
    'pur:EDC00001:1201:000042'
    """

    tid: str
    local_date: str
    stan: str

    @classmethod
    def of(cls, request: Message) -> RequestKey:
        return cls(request.text(41), request.text(13), request.text(11))

    def transfer_key(self, prefix: str) -> str:
        return f"{prefix}:{self.tid}:{self.local_date}:{self.stan}"


def pan_of(message: Message) -> str:
    """The PAN of a card request (HOST_SPEC §3: DE 35, or DE 2 + 14); ProtocolError if
    the card data is unusable."""
    return card_data(message.opt_text(2), message.opt_text(14), message.opt_text(35)).pan
