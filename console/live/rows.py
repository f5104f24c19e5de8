"""What the poller reads of one answered request (``request_records`` joined to its
terminal, e-warong and card's KPM), and where it belongs.

**Region** of a record: its e-warong's ``region`` when that has at least a province
(2 digits); otherwise the KPM's NIK (a reversal: its original's card), whose first 2
digits are the province and first 4 the regency (Dukcapil codes); otherwise unknown.
Only those 4 digits of the NIK leave the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

PURCHASE_CODE = "000000"
APPROVED = "00"
#: The reversal classes: what the reversed request had been answered, as the
#: switch's records show it.
NO_ORIGINAL = "no_original"


@dataclass(frozen=True)
class RecordRow:
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
