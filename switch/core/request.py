"""A request as the decision core takes it, and its HOST_SPEC §4 idempotency key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property, lru_cache

from switch.protocol.bpnt import BasketLine, card_data, decode_basket
from switch.protocol.errors import ProtocolError
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
    #: Required DEs it lacks (HOST_SPEC §4): answered 30, signed when the terminal can
    #: be told apart (:func:`switch.core.decide.decide_invalid`).
    missing: tuple[int, ...] = ()

    @cached_property
    def pan(self) -> str:
        """The card's PAN (:func:`pan_of`), parsed once for the store's reads, the
        precheck and the decision; ProtocolError if the card data is unusable."""
        return pan_of(self.message)

    @cached_property
    def basket(self) -> list[BasketLine]:
        """DE 48's lines (:func:`~switch.protocol.bpnt.decode_basket`), decoded once;
        not to be changed.  ProtocolError if DE 48 is absent or malformed."""
        return decode_basket(self.message.text(48))


@dataclass(frozen=True)
class RequestKey:
    """HOST_SPEC §4: the idempotency key (TID, DE 13, DE 11).

    >>> RequestKey("EDC00001", "1201", "000042").transfer_key("pur", datetime(2026, 12, 2))
    'pur:EDC00001:20261201:000042'
    """

    tid: str
    local_date: str
    stan: str

    @classmethod
    def of(cls, request: Message) -> RequestKey:
        """The key of ``request``; a settlement need not carry DE 13 (HOST_SPEC §4 lists
        none for 0500): its key then has an empty date."""
        local_date = request.opt_text(13) or ""
        if local_date and not _is_mmdd(local_date):
            raise ProtocolError(f"DE 13 {local_date!r} is no date")
        return cls(request.text(41), local_date, request.text(11))

    def transfer_key(self, prefix: str, now: datetime) -> str:
        """The ledger's idempotency key of the transfer this request posts: with DE 13
        as a full date (:func:`key_date`), so next year's same key posts anew."""
        return f"{prefix}:{self.tid}:{key_date(self.local_date, now)}:{self.stan}"


def pan_of(message: Message) -> str:
    """The PAN of a card request (HOST_SPEC §3: DE 35, or DE 2 + 14); ProtocolError if
    the card data is unusable."""
    return card_data(message.opt_text(2), message.opt_text(14), message.opt_text(35)).pan


def _is_mmdd(text: str) -> bool:
    if len(text) != 4 or not text.isdigit():
        return False
    month, day = int(text[:2]), int(text[2:])
    return 1 <= month <= 12 and 1 <= day <= (29 if month == 2 else 30 if month in (4, 6, 9, 11)
                                             else 31)


def key_date(mmdd: str, now: datetime) -> str:
    """DE 13 (MMDD) as a full date (YYYYMMDD): the year that puts it nearest ``now``, so
    a request and its repeat minutes later agree across New Year, and a key that comes
    round next year is another key (HOST_SPEC §4, the window).

    >>> key_date("1231", datetime(2027, 1, 1, 0, 5)), key_date("0101", datetime(2026, 12, 31))
    ('20261231', '20270101')
    >>> key_date("0229", datetime(2027, 3, 1))
    '20280229'
    """
    return _key_date(mmdd, now.date())


@lru_cache(maxsize=4096)
def _key_date(mmdd: str, today: date) -> str:
    """:func:`key_date` by calendar day (cached: three requests a purchase ask it)."""
    if not mmdd or not _is_mmdd(mmdd):
        return ""  # no key to match (the decision answers a bad DE 13 with 30)
    month, day = int(mmdd[:2]), int(mmdd[2:])
    best: date | None = None
    for year in (today.year - 1, today.year, today.year + 1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if best is None or abs((candidate - today).days) < abs((best - today).days):
            best = candidate
    assert best is not None, "a valid MMDD falls in one of three years"
    return best.strftime("%Y%m%d")


def rrn_for(record_id: int) -> str:
    """RRN (DE 37, an12): a reserved id of the request records, unique across the host
    (a refusal's answer takes one too, and it is never handed out again)."""
    return f"{record_id:012d}"


#: How many RRNs :func:`unrecorded_rrn` can give: 900000000000-999999999999, above
#: every record id (9 x 10^11 records: centuries at thousands a second).
UNRECORDED_RRNS = 10**11
_UNRECORDED_RRN_BASE = 900_000_000_000


def unrecorded_rrn(draw: int) -> str:
    """DE 37 of an answer no record id could be reserved for (a 91: the database cannot
    be reached, HOST_SPEC §3, §5): ``draw`` (random, below :data:`UNRECORDED_RRNS`) drawn
    by the caller.  Never a record's RRN (:func:`rrn_for` stays below this range), so it
    names nothing the switch holds; two 91s may, rarely, share one.

    >>> unrecorded_rrn(42)
    '900000000042'
    """
    assert 0 <= draw < UNRECORDED_RRNS, f"draw {draw} out of range"
    return f"{_UNRECORDED_RRN_BASE + draw:012d}"


def approval_code_for(record_id: int) -> str:
    return f"{record_id % 1_000_000:06d}"
