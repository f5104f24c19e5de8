"""A terminal's open batch as the switch keeps it (HOST_SPEC §4, "Batch and settlement"),
settlement totals (DE 63) and the differences a batch upload shows.  Pure.

The open batch holds every approved purchase and void of the terminal since its last
accepted settlement, each marked reversed or not; settlement totals count those not
reversed (voided purchases included: the void is counted on its own line).

>>> t = Totals.parse("002000000015000001000000005000")
>>> t
Totals(purchase_count=2, purchase_sen=15000, void_count=1, void_sen=5000)
>>> t.encode()
'002000000015000001000000005000'
>>> next_batch_number("999999"), next_batch_number("000041")
('000001', '000042')
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

from switch.core.request import RequestKey, rrn_for
from switch.protocol.errors import ProtocolError

PURCHASE_CODE = "000000"
VOID_CODE = "020000"
#: HOST_SPEC §4: a batch upload's DE 3 is the original's with the last digit 1.
UPLOAD_CODES = {"000001": PURCHASE_CODE, "020001": VOID_CODE}
_COUNT_DIGITS, _AMOUNT_DIGITS = 3, 12
MAX_COUNT = 10**_COUNT_DIGITS - 1
MAX_AMOUNT_SEN = 10**_AMOUNT_DIGITS - 1


class Totals(NamedTuple):
    """DE 63 (HOST_SPEC §3): purchase count n3 + amount n12 + void count n3 + amount n12."""

    purchase_count: int = 0
    purchase_sen: int = 0
    void_count: int = 0
    void_sen: int = 0

    @classmethod
    def parse(cls, de63: str) -> Totals:
        widths = (_COUNT_DIGITS, _AMOUNT_DIGITS, _COUNT_DIGITS, _AMOUNT_DIGITS)
        if len(de63) != sum(widths) or not de63.isdigit():
            raise ProtocolError(f"DE 63 must be {sum(widths)} digits, not {de63!r}")
        values, at = [], 0
        for width in widths:
            values.append(int(de63[at:at + width]))
            at += width
        return cls(*values)

    def encode(self) -> str:
        """DE 63 text; counts and amounts beyond the field's digits are capped (a batch
        that large is refused upstream, never silently cut)."""
        return (f"{min(self.purchase_count, MAX_COUNT):03d}"
                f"{min(self.purchase_sen, MAX_AMOUNT_SEN):012d}"
                f"{min(self.void_count, MAX_COUNT):03d}{min(self.void_sen, MAX_AMOUNT_SEN):012d}")


def next_batch_number(batch_number: str) -> str:
    """HOST_SPEC §4: batch number + 1, wrapping 999999 → 000001."""
    number = int(batch_number)
    return f"{1 if number >= 999_999 else number + 1:06d}"


def parse_n6(text: str, de: int) -> str:
    if len(text) != 6 or not text.isdigit():
        raise ProtocolError(f"DE {de} must be n6, not {text!r}")
    return text


@dataclass(frozen=True)
class BatchEntry:
    """An approved purchase or void in the open batch."""

    record_id: int
    key: RequestKey
    processing_code: str
    amount_sen: int
    invoice: str | None
    transfer_id: int | None
    #: The transfer's accounts: a purchase debits the wallet and credits the payable.
    debit_account_id: int | None
    credit_account_id: int | None
    reversed: bool = False
    #: A purchase: the void that stands against it.
    voided_by_record_id: int | None = None
    #: A void: the purchase it cancels.
    original_record_id: int | None = None
    #: DE 48 of the purchase and the e-warong whose stock it took (docs/RULES.md).
    basket: str | None = None
    stock_ewarong_id: int | None = None

    @property
    def rrn(self) -> str:
        return rrn_for(self.record_id)

    @property
    def is_purchase(self) -> bool:
        return self.processing_code == PURCHASE_CODE


@dataclass(frozen=True)
class Upload:
    """A 0320 the terminal sent for its batch (HOST_SPEC §4)."""

    record_id: int
    tid: str
    batch_number: str
    processing_code: str
    amount_sen: int
    rrn: str
    approval_code: str
    invoice: str

    @property
    def original_code(self) -> str:
        return UPLOAD_CODES.get(self.processing_code, self.processing_code)


@dataclass(frozen=True)
class Difference:
    """What a batch upload showed against the switch's batch."""

    kind: str  # "switch_only" | "terminal_only" | "amount"
    processing_code: str
    rrn: str | None
    invoice: str | None
    switch_amount_sen: int | None
    terminal_amount_sen: int | None


@dataclass
class OpenBatch:
    """A terminal's open batch and the uploads it has sent for it."""

    tid: str
    batch_number: str
    entries: dict[int, BatchEntry] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)

    def standing(self) -> list[BatchEntry]:
        return [entry for entry in self.entries.values() if not entry.reversed]

    def totals(self) -> Totals:
        """HOST_SPEC §4: approved purchases not reversed (voided ones included), approved
        voids not reversed."""
        purchases = [e.amount_sen for e in self.standing() if e.is_purchase]
        voids = [e.amount_sen for e in self.standing() if not e.is_purchase]
        return Totals(len(purchases), sum(purchases), len(voids), sum(voids))

    def purchase_by_invoice(self, invoice: str) -> BatchEntry | None:
        """The approved purchase of the batch with DE 62 ``invoice`` (the last, should a
        terminal have reused one)."""
        found = None
        for entry in self.entries.values():
            if entry.is_purchase and entry.invoice == invoice:
                found = entry
        return found

    def differences(self) -> list[Difference]:
        """Each standing entry matched with an upload by RRN (DE 37): on the switch only,
        on the terminal only, or a different amount or kind."""
        uploads = {upload.rrn: upload for upload in self.uploads}
        out: list[Difference] = []
        for entry in self.standing():
            upload = uploads.pop(entry.rrn, None)
            if upload is None:
                out.append(Difference("switch_only", entry.processing_code, entry.rrn,
                                      entry.invoice, entry.amount_sen, None))
            elif (upload.amount_sen, upload.original_code) != (entry.amount_sen,
                                                                entry.processing_code):
                out.append(Difference("amount", entry.processing_code, entry.rrn,
                                      entry.invoice, entry.amount_sen, upload.amount_sen))
        out += [Difference("terminal_only", upload.original_code, upload.rrn, upload.invoice,
                           None, upload.amount_sen) for upload in uploads.values()]
        return out

    def mark(self, record_id: int, **changes: object) -> None:
        if record_id in self.entries:
            self.entries[record_id] = replace(self.entries[record_id], **changes)  # type: ignore[arg-type]

    def reverse_transfer(self, transfer_id: int) -> None:
        """The entry whose transfer ``transfer_id`` was reversed is reversed."""
        for entry in self.entries.values():
            if entry.transfer_id == transfer_id:
                self.mark(entry.record_id, reversed=True)
