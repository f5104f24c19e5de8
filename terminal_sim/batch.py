"""The EDC's batch, as a real EDC keeps it between settlements (HOST_SPEC §3-4).

- the **invoice** counter (DE 62 n6): every purchase takes the next one, counting up
  from 000001 within the batch and never reused in it, consumed even when the
  purchase is declined or times out; a void carries the invoice of its original;
- the **batch number** (DE 60): 000001 at first, + 1 on each accepted settlement,
  wrapping 999999 → 000001;
- per transaction what the EDC saw: purchases and voids with their invoice, STAN,
  DE 12/13, amount, basket, RRN (DE 37), approval code (DE 38), and whether the
  purchase was voided or the request reversed.

An entry is recorded when its request is sent (``SENT``).  An approval makes it
``APPROVED``; a decline, or a request that certainly never left, removes it; a time-out
leaves it ``SENT`` with a pending reversal, and once that reversal is answered it is
``REVERSED`` (never approved).  :meth:`Batch.totals` are DE 63's: approved purchases
(voided ones included) and approved voids, none reversed.

>>> batch = Batch()
>>> entry = batch.record(BatchEntry(Kind.PURCHASE, batch.next_invoice(), "000007", "101500",
...                                 "1123", 6_500_000, "BRS005001000006500000"))
>>> batch.approve(entry, rrn="000000000042", approval_code="A00001")
>>> batch.totals().de63()
'001000006500000000000000000000'
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from switch.protocol.bpnt import BasketLine, decode_basket
from switch.protocol.message import Message

MAX_BATCH_NUMBER = 999_999
MAX_INVOICE = 999_999
#: DE 63 counts are n3: a batch cannot report more than this many of a kind.
MAX_COUNT = 999
MAX_AMOUNT_SEN = 10**12 - 1
DE63_LEN = 30


class Kind(enum.Enum):
    PURCHASE = "purchase"
    VOID = "void"

    @property
    def processing_code(self) -> str:
        """DE 3 of the request (HOST_SPEC §4)."""
        return "000000" if self is Kind.PURCHASE else "020000"


class Status(enum.Enum):
    #: Sent; no answer yet (or none came, and its reversal is pending).
    SENT = "sent"
    APPROVED = "approved"
    #: Its reversal was answered: as if never approved.
    REVERSED = "reversed"


def card_ref(pan: str) -> str:
    """A fingerprint of the PAN, so a void can check the card is the original's without
    the batch (and the state file) holding the clear PAN."""
    return hashlib.sha256(pan.encode("ascii")).hexdigest()[:20]


@dataclass
class BatchEntry:
    kind: Kind
    invoice: str
    stan: str
    #: DE 12 hhmmss and DE 13 MMDD of the request, as sent.
    local_time: str
    local_date: str
    amount_sen: int
    #: DE 48 exactly as sent (a void resends it byte for byte).
    basket: str
    card: str = ""
    masked_pan: str = ""
    status: Status = Status.SENT
    rrn: str = ""
    approval_code: str = ""
    #: A purchase whose void was approved.
    voided: bool = False

    @property
    def processing_code(self) -> str:
        return self.kind.processing_code

    @property
    def upload_processing_code(self) -> str:
        """HOST_SPEC §4 batch upload: the original's DE 3 with the last digit 1."""
        return self.processing_code[:5] + "1"

    @property
    def approved(self) -> bool:
        return self.status is Status.APPROVED

    def lines(self) -> list[BasketLine]:
        return decode_basket(self.basket)

    @classmethod
    def from_request(cls, kind: Kind, request: Message, *, pan: str = "",
                     masked_pan: str = "") -> BatchEntry:
        """The entry of a 0200 about to be sent (DE 4, 11, 12, 13, 48, 62 as in it)."""
        return cls(kind, request.text(62), request.text(11), request.text(12),
                   request.text(13), int(request.text(4)), request.text(48),
                   card_ref(pan) if pan else "", masked_pan)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind.value
        data["status"] = self.status.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BatchEntry:
        values = dict(data)
        values["kind"] = Kind(values["kind"])
        values["status"] = Status(values["status"])
        return cls(**values)


@dataclass(frozen=True)
class Totals:
    """DE 63: purchase count n3 + amount n12 + void count n3 + amount n12 (HOST_SPEC §3)."""

    purchase_count: int = 0
    purchase_sen: int = 0
    void_count: int = 0
    void_sen: int = 0

    @property
    def net_sen(self) -> int:
        """What the e-warong is owed for the batch: purchases less voids."""
        return self.purchase_sen - self.void_sen

    @property
    def fits(self) -> bool:
        """Whether DE 63 can carry these totals (counts n3, amounts n12)."""
        return (self.purchase_count <= MAX_COUNT and self.void_count <= MAX_COUNT
                and self.purchase_sen <= MAX_AMOUNT_SEN and self.void_sen <= MAX_AMOUNT_SEN)

    def de63(self) -> str:
        """
        >>> Totals(3, 19_500_000, 1, 6_500_000).de63()
        '003000019500000001000006500000'
        """
        if not self.fits:
            raise ValueError(f"totals do not fit DE 63: {self}")
        return (f"{self.purchase_count:03d}{self.purchase_sen:012d}"
                f"{self.void_count:03d}{self.void_sen:012d}")

    @classmethod
    def parse(cls, text: str) -> Totals:
        """
        >>> Totals.parse("003000019500000001000006500000")
        Totals(purchase_count=3, purchase_sen=19500000, void_count=1, void_sen=6500000)
        """
        if len(text) != DE63_LEN or not text.isdigit():
            raise ValueError(f"DE 63 needs {DE63_LEN} digits, got {text!r}")
        return cls(int(text[:3]), int(text[3:15]), int(text[15:18]), int(text[18:]))


@dataclass
class Batch:
    """One terminal's open batch, its number and invoice counter."""

    number: int = 1
    #: The last invoice given out in this batch (0: none yet).
    last_invoice: int = 0
    entries: list[BatchEntry] = field(default_factory=list)

    @property
    def number_text(self) -> str:
        """DE 60: the batch number, n6 as text."""
        return f"{self.number:06d}"

    # -- invoices -------------------------------------------------------------------------

    def next_invoice(self) -> str:
        """The next invoice of the batch; wraps 999999 → 000001, skipping any the
        batch still holds (an invoice is never reused within a batch)."""
        held = {entry.invoice for entry in self.entries}
        for _ in range(MAX_INVOICE):
            self.last_invoice = self.last_invoice % MAX_INVOICE + 1
            invoice = f"{self.last_invoice:06d}"
            if invoice not in held:
                return invoice
        raise RuntimeError("every invoice of the batch is in use: settle first")

    # -- what happened to a request --------------------------------------------------------

    def record(self, entry: BatchEntry) -> BatchEntry:
        """A purchase or void about to be sent."""
        self.entries.append(entry)
        return entry

    def approve(self, entry: BatchEntry, *, rrn: str, approval_code: str) -> None:
        entry.status = Status.APPROVED
        entry.rrn = rrn
        entry.approval_code = approval_code
        if entry.kind is Kind.VOID:
            original = self.find_purchase(entry.invoice)
            if original is not None:
                original.voided = True

    def discard(self, entry: BatchEntry) -> None:
        """Declined, or certainly never sent: not part of the batch."""
        self.entries = [e for e in self.entries if e is not entry]

    def reversed(self, stan: str, local_date: str) -> BatchEntry | None:
        """The reversal of the request with this DE 11 and DE 13 was answered."""
        for entry in self.entries:
            if (entry.stan, entry.local_date) == (stan, local_date) and \
                    entry.status is not Status.REVERSED:
                entry.status = Status.REVERSED
                return entry
        return None

    def forget(self, invoice: str, kind: Kind = Kind.PURCHASE) -> BatchEntry | None:
        """Lose the record of one transaction (a terminal whose memory failed: the
        settlement then differs and goes through batch upload)."""
        for entry in self.entries:
            if entry.invoice == invoice and entry.kind is kind:
                self.discard(entry)
                return entry
        return None

    # -- what the batch holds ---------------------------------------------------------------

    def find_purchase(self, invoice: str) -> BatchEntry | None:
        """The approved, unreversed purchase with this invoice (voided or not)."""
        return next((e for e in self.entries if e.invoice == invoice
                     and e.kind is Kind.PURCHASE and e.approved), None)

    def approved(self) -> list[BatchEntry]:
        """Approved, unreversed purchases and voids in the order sent: what settlement
        counts and batch upload sends."""
        return [e for e in self.entries if e.approved]

    def totals(self) -> Totals:
        purchases = [e for e in self.approved() if e.kind is Kind.PURCHASE]
        voids = [e for e in self.approved() if e.kind is Kind.VOID]
        return Totals(len(purchases), sum(e.amount_sen for e in purchases),
                      len(voids), sum(e.amount_sen for e in voids))

    def close(self) -> str:
        """The host accepted the settlement: empty the batch, start the next number
        (999999 → 000001) and invoices from 000001.  Returns the number closed."""
        closed = self.number_text
        self.number = self.number % MAX_BATCH_NUMBER + 1
        self.last_invoice = 0
        self.entries = []
        return closed

    # -- persistence -----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "last_invoice": self.last_invoice,
                "entries": [entry.to_json() for entry in self.entries]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Batch:
        return cls(int(data.get("number", 1)), int(data.get("last_invoice", 0)),
                   [BatchEntry.from_json(e) for e in data.get("entries", [])])
