"""What the poller reads of answered requests (``request_records`` joined to their
terminal, e-warong and card's KPM), and where they belong: one record
(:class:`RecordRow`) or a group of like records (:class:`RecordGroup`: same minute,
e-warong, kind, codes and region inputs, and how many), both classified the same way
(:class:`Classified`).

**Region** of a record: its e-warong's ``region`` when that has at least a province
(2 digits); otherwise the KPM's NIK (a reversal: its original's card), whose first 2
digits are the province and first 4 the regency (Dukcapil codes); otherwise unknown.
Only those 4 digits of the NIK leave the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

PURCHASE_CODE = "000000"
APPROVED = "00"
#: The reversal classes: what the reversed request had been answered, as the
#: switch's records show it.
NO_ORIGINAL = "no_original"


def minute_of(at: datetime) -> datetime:
    """The UTC minute of ``at`` (a record's ``created_at``)."""
    return at.astimezone(UTC).replace(second=0, microsecond=0)


class Classified:
    """What a record, or a group of like records, counts as (the rules of the module
    docstring and :mod:`console.live.window`)."""

    kind: str
    processing_code: str
    response_code: str
    ewarong_id: int | None
    ewarong_region: str | None
    nik_prefix: str | None
    original_rc: str | None

    if TYPE_CHECKING:  # a property of a record, a field of a group (no class attribute:
        # a dataclass would take it for a default)
        @property
        def minute(self) -> datetime:
            """The UTC minute it counts in."""

        @property
        def count(self) -> int:
            """How many records it stands for."""

    @property
    def region(self) -> str | None:
        """The province or regency code this record counts under (module docstring)."""
        if self.ewarong_region and len(self.ewarong_region) >= 2:
            return self.ewarong_region[:4]
        if self.nik_prefix and len(self.nik_prefix) >= 2 and self.nik_prefix.isdigit():
            return self.nik_prefix[:4]
        return None

    @property
    def province(self) -> str | None:
        region = self.region
        return region[:2] if region else None

    @property
    def regency(self) -> str | None:
        region = self.region
        return region if region and len(region) == 4 else None

    @property
    def is_request(self) -> bool:
        return self.kind == "request"

    @property
    def is_purchase(self) -> bool:
        return self.is_request and self.processing_code == PURCHASE_CODE

    @property
    def approved(self) -> bool:
        return self.response_code == APPROVED

    @property
    def reversal_class(self) -> str:
        """A reversal's class: ``no_original`` (the request never reached the
        records: it was answered 91, or not at all, or lost on the way in) or
        ``original_<RC>`` (the switch answered it, the answer never got back)."""
        return NO_ORIGINAL if self.original_rc is None else f"original_{self.original_rc}"


@dataclass(frozen=True)
class RecordRow(Classified):
    """One record."""

    id: int
    tid: str
    #: request, reversal, upload, settlement (``request_records.kind``)
    kind: str
    processing_code: str
    response_code: str
    created_at: datetime
    ewarong_id: int | None
    #: the e-warong's ``region`` (2, 4 or 6 digits) or ``None``
    ewarong_region: str | None
    #: the first 4 digits of the card's KPM's NIK, or ``None`` (no card known)
    nik_prefix: str | None
    #: a reversal: its original's RC (``None``: the original never reached the records)
    original_rc: str | None

    @property
    def minute(self) -> datetime:
        return minute_of(self.created_at)

    @property
    def count(self) -> int:
        return 1


@dataclass(frozen=True)
class RecordGroup(Classified):
    """``count`` records of one UTC minute that count alike (the grouped read): the
    same e-warong, kind, processing and response code, region inputs and original RC.

    ``ewarong_region`` is at most the region's first 4 digits (all the rule uses) and
    ``nik_prefix`` is read only when the e-warong's region is not usable (``None``
    otherwise, where the rule does not look at it)."""

    minute: datetime
    kind: str
    processing_code: str
    response_code: str
    ewarong_id: int | None
    ewarong_region: str | None
    nik_prefix: str | None
    original_rc: str | None
    count: int


@dataclass(frozen=True)
class TerminalSeen:
    """A TID's newest record among those read: when it was written."""

    tid: str
    at: datetime
    ewarong_id: int | None


@dataclass
class RecordBatch:
    """The records of one id range ``after_id < id <= up_to_id``, grouped (the
    grouped read): ``groups`` to fold, and each TID's newest record."""

    after_id: int
    up_to_id: int
    groups: list[RecordGroup] = field(default_factory=list)
    seen: dict[str, TerminalSeen] = field(default_factory=dict)

    @property
    def records(self) -> int:
        """How many records the range held."""
        return sum(g.count for g in self.groups)

    def extend(self, other: RecordBatch) -> None:
        """Take in the next id range's batch (``other.after_id == self.up_to_id``)."""
        self.groups += other.groups
        for tid, seen in other.seen.items():
            mine = self.seen.get(tid)
            if mine is None or seen.at >= mine.at:
                self.seen[tid] = seen
        self.up_to_id = max(self.up_to_id, other.up_to_id)


@dataclass(frozen=True)
class AlertRow:
    id: int
    created_at: datetime
    rule: str
    action: str
    tid: str | None
    ewarong_id: int | None
    #: the rule's figures (``alerts.detail``, a JSON object of counts and prices)
    detail: str


@dataclass(frozen=True)
class PresenceRow:
    tid: str
    status: str
    last_seen_at: datetime
    source: str
    ewarong_id: int | None


@dataclass(frozen=True)
class EwarongRow:
    id: int
    mid: str
    name: str
    region: str | None
