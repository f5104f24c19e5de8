"""What the programme-rule reports hold (docs/RULES.md, "Reports"): the alerts of a
day, the prices paid against the reference prices (and suspected forced bundles), the
approved purchases whose goods nobody confirmed handed over, and each e-warong's stock
with its conservation check.  Plain data: nothing here reads or formats."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from switch.reports.recon_model import Window

__all__ = [
    "AlertCount", "AlertLine", "AlertsReport", "BundleLine", "ItemPriceLine",
    "OverPriceLine", "PricesReport", "StockLine", "StockReport", "UndeliveredLine",
    "UndeliveredReport", "UndeliveredTotals",
]


# -- alerts ------------------------------------------------------------------------------

@dataclass(frozen=True)
class AlertLine:
    """One alert: a programme rule's hit (``alerts`` row)."""

    at: datetime
    rule: str
    action: str
    tid: str | None
    mid: str | None
    rrn: str | None
    #: The cards involved, masked (``cards.pan_masked``).
    cards: tuple[str, ...]
    #: The rule's figures in words (the raw JSON is :attr:`detail_json`).
    detail: str
    detail_json: str


@dataclass(frozen=True)
class AlertCount:
    mid: str | None
    rule: str
    action: str
    count: int


@dataclass
class AlertsReport:
    window: Window
    mid: str | None
    alerts: list[AlertLine] = field(default_factory=list)
    counts: list[AlertCount] = field(default_factory=list)
    exit_code: int = 0


# -- prices ------------------------------------------------------------------------------

@dataclass(frozen=True)
class OverPriceLine:
    """A basket line of a purchase request priced above its reference price."""

    mid: str
    tid: str
    rrn: str
    at: datetime
    response_code: str
    item: str
    quantity: int
    unit_price_sen: int
    reference_sen: int
    #: The region of the reference row that applied ('' national).
    reference_region: str
    #: (unit − reference) × 100 / reference, rounded to 2 decimals.
    percent_over: float
    #: Above the cap too (``unit × 100 > reference × (100 + BPNT_PRICE_CAP_PERCENT)``).
    over_cap: bool


@dataclass(frozen=True)
class ItemPriceLine:
    """An item's sales at an e-warong on the day (standing approved purchases)."""

    mid: str
    item: str
    lines: int
    units: int
    min_sen: int
    #: Σ line totals / Σ units, rounded to the sen (0 when no unit was sold).
    avg_sen: int
    max_sen: int
    reference_sen: int | None


@dataclass(frozen=True)
class BundleLine:
    """An e-warong's most common basket composition among the day's KPM."""

    mid: str
    #: ``ITEM×QTY + ...``, sorted by item code; prices ignored.
    composition: str
    kpm: int
    total_kpm: int
    share: float
    suspected: bool


@dataclass
class PricesReport:
    window: Window
    mid: str | None
    bundle_share: float
    bundle_min_kpm: int
    cap_percent: int
    over: list[OverPriceLine] = field(default_factory=list)
    items: list[ItemPriceLine] = field(default_factory=list)
    bundles: list[BundleLine] = field(default_factory=list)
    #: Purchase requests whose DE 48 could not be decoded (not checked).
    unreadable_baskets: int = 0
    #: Standing purchases with no card recorded (left out of the bundle check).
    without_card: int = 0

    @property
    def exit_code(self) -> int:
        """Always 0: a suspected bundle is marked, not an error of the switch."""
        return 0


# -- undelivered -------------------------------------------------------------------------

@dataclass(frozen=True)
class UndeliveredLine:
    rrn: str
    at: datetime
    tid: str
    mid: str
    amount_sen: int
    age_hours: float
    pan_masked: str


@dataclass
class UndeliveredTotals:
    """An e-warong's standing approved purchases of the day, by hand-over state."""

    mid: str
    purchases: int = 0
    confirmed: int = 0
    #: Not confirmed, but younger than ``--hours`` at ``--as-of``.
    not_yet_due: int = 0
    undelivered: int = 0
    undelivered_sen: int = 0


@dataclass
class UndeliveredReport:
    window: Window
    mid: str | None
    as_of: datetime
    hours: int
    lines: list[UndeliveredLine] = field(default_factory=list)
    totals: list[UndeliveredTotals] = field(default_factory=list)
    exit_code: int = 0


# -- stock -------------------------------------------------------------------------------

@dataclass(frozen=True)
class StockLine:
    """An item at an e-warong: the shelf now, the day's movements and conservation."""

    mid: str
    item: str
    units_now: int
    threshold: int
    received_day: int
    adjusted_day: int
    #: Units of the standing purchases of the day that took this e-warong's stock.
    sold_day: int
    #: All time: Σ receipts (receive + adjust) and Σ units of standing purchases.
    receipts_total: int
    sold_total: int

    @property
    def low(self) -> bool:
        return self.units_now < self.threshold

    @property
    def expected(self) -> int:
        return self.receipts_total - self.sold_total

    @property
    def conserved(self) -> bool:
        return self.units_now == self.expected


@dataclass
class StockReport:
    window: Window
    mid: str | None
    lines: list[StockLine] = field(default_factory=list)
    #: The day's ``low_stock`` alerts per MID.
    low_alerts: dict[str, int] = field(default_factory=dict)
    unreadable_baskets: int = 0

    @property
    def red_lines(self) -> list[StockLine]:
        return [line for line in self.lines if not line.conserved]

    @property
    def exit_code(self) -> int:
        """1 when a row breaks conservation, else 0."""
        return 1 if self.red_lines else 0
