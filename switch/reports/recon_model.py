"""What the reconciliation report holds (:mod:`switch.reports.reconciliation` says what
each number means): the WIB day, the switch's totals, a line for each settlement,
batch upload difference, void, reversal and duplicate of the day, the anomalies, and
the report per terminal and per e-warong.  Plain data: nothing here reads or formats."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import astuple, dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from switch.clock import WIB
from switch.core.batch import VOID_CODE, Totals

__all__ = [
    "Anomaly", "DifferenceLine", "DuplicateLine", "EwarongReport", "Report", "ReversalLine",
    "SettlementLine", "SwitchTotals", "TerminalReport", "UnknownEwarong", "VoidLine",
    "Window", "day_window", "parse_day",
]


class UnknownEwarong(ValueError):
    """``--ewarong MID`` names no registered e-warong."""


# -- the day ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    """A day in WIB as a half-open UTC interval ``[start, end)``."""

    day: date
    start: datetime
    end: datetime

    def __contains__(self, at: datetime) -> bool:
        return self.start <= at < self.end

    def describe(self) -> str:
        def utc(at: datetime) -> str:
            return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return (f"{self.day.isoformat()} in WIB (UTC+7): from {self.day.isoformat()} "
                f"00:00:00 WIB inclusive to {(self.day + timedelta(days=1)).isoformat()} "
                f"00:00:00 WIB exclusive = [{utc(self.start)}, {utc(self.end)}), "
                "by created_at (stored UTC)")


def day_window(day: date) -> Window:
    """The WIB calendar day ``day`` as UTC instants.

    >>> w = day_window(date(2026, 11, 23))
    >>> w.start.isoformat(), w.end.isoformat()
    ('2026-11-22T17:00:00+00:00', '2026-11-23T17:00:00+00:00')
    >>> datetime(2026, 11, 23, 0, 0, tzinfo=WIB) in w, datetime(2026, 11, 24, tzinfo=WIB) in w
    (True, False)
    """
    start = datetime.combine(day, time(0), WIB).astimezone(UTC)
    return Window(day, start, start + timedelta(days=1))


def parse_day(text: str) -> date:
    """``YYYY-MM-DD`` strictly (ValueError otherwise).

    >>> parse_day("2026-11-23")
    datetime.date(2026, 11, 23)
    """
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ValueError(f"not a YYYY-MM-DD date: {text!r}")
    return date.fromisoformat(text)


# -- the lines --------------------------------------------------------------------------

@dataclass
class SwitchTotals:
    """The switch's money events of a terminal (or an e-warong) on the day, in sen."""

    purchase_count: int = 0
    purchase_sen: int = 0
    void_count: int = 0
    void_sen: int = 0
    #: Reversals that paid a purchase's debit back to the wallet.
    purchase_reversal_count: int = 0
    purchase_reversal_sen: int = 0
    #: Reversals of voids that reinstated the purchase's debit.
    void_reversal_count: int = 0
    void_reversal_sen: int = 0
    #: Reversals answered 00 that moved no money (listed in the report).
    idle_reversal_count: int = 0

    @property
    def net_sen(self) -> int:
        """What the e-warong is owed for these events."""
        return (self.purchase_sen - self.void_sen - self.purchase_reversal_sen
                + self.void_reversal_sen)

    def __add__(self, other: SwitchTotals) -> SwitchTotals:
        return SwitchTotals(*(a + b for a, b in zip(astuple(self), astuple(other),
                                                     strict=True)))

    @classmethod
    def of(cls, parts: Iterable[SwitchTotals]) -> SwitchTotals:
        """The sum of ``parts`` (zero for none).

        >>> SwitchTotals.of([SwitchTotals(1, 100), SwitchTotals(2, 50, 1, 20)]).net_sen
        130
        """
        return sum(parts, cls())


@dataclass(frozen=True)
class SettlementLine:
    """A settlement (0500) of the day: the terminal's DE 63 against the switch's batch."""

    rrn: str
    tid: str
    batch_number: str
    processing_code: str
    response_code: str
    closed: bool
    terminal: Totals
    switch: Totals
    uploads: int
    differences: int
    at: datetime

    @property
    def agree(self) -> bool:
        return self.terminal == self.switch


@dataclass(frozen=True)
class DifferenceLine:
    """A difference a batch upload showed (``settlement_differences``)."""

    settlement_rrn: str
    tid: str
    batch_number: str
    kind: str
    processing_code: str
    rrn: str | None
    invoice: str | None
    switch_amount_sen: int | None
    terminal_amount_sen: int | None


@dataclass(frozen=True)
class VoidLine:
    """An approved void of the day and what became of it."""

    rrn: str
    tid: str
    stan: str
    invoice: str | None
    amount_sen: int
    purchase_rrn: str | None
    state: str
    at: datetime


@dataclass(frozen=True)
class ReversalLine:
    """A reversal (0400/0401) of a purchase or a void answered on the day."""

    rrn: str
    tid: str
    stan: str
    processing_code: str
    restored_sen: int
    original_rrn: str | None
    state: str
    at: datetime
    moved_money: bool

    @property
    def of_void(self) -> bool:
        return self.processing_code == VOID_CODE

    @property
    def void_stands(self) -> bool:
        """A void's reversal answered 00 that could not reinstate the purchase."""
        return self.of_void and not self.moved_money and self.state.startswith("void stands")


@dataclass(frozen=True)
class DuplicateLine:
    """A message sent again under a key the switch had answered (HOST_SPEC §4: TID,
    DE 13, STAN), as the audit trail has it: ``refused`` False, a replay (same content:
    the stored answer again, under ``original_rrn``); True, a refusal 94 (different
    content, answered under its own ``rrn``)."""

    at: datetime
    tid: str
    stan: str
    #: DE 13 of the duplicate ("" for a settlement without one).
    local_date: str
    #: What was sent again: request (balance, purchase, void), reversal, upload,
    #: settlement.
    message_class: str
    refused: bool
    original_rrn: str
    original_rc: str
    rrn: str | None = None

    @property
    def kind(self) -> str:
        return "refusal_94" if self.refused else "replay"


@dataclass(frozen=True)
class Anomaly:
    """Something that does not add up; ``red``: a red line (exit 1)."""

    kind: str
    red: bool
    detail: str
    mid: str | None = None
    tid: str | None = None
    rrn: str | None = None
    amount_sen: int | None = None


# -- the report --------------------------------------------------------------------------

@dataclass
class TerminalReport:
    tid: str
    mid: str
    totals: SwitchTotals = field(default_factory=SwitchTotals)
    settlements: list[SettlementLine] = field(default_factory=list)
    #: Duplicates of the day (:class:`DuplicateLine`): replays and refusals 94.
    replays: int = 0
    refusals: int = 0


@dataclass
class EwarongReport:
    mid: str
    name: str
    payable_account_id: int
    terminals: list[TerminalReport] = field(default_factory=list)
    #: The payable account's net movement on the day (sum of its journal entries).
    payable_movement_sen: int = 0
    #: ... per transfer kind (purchase, void, reversal).
    payable_by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def totals(self) -> SwitchTotals:
        return SwitchTotals.of(t.totals for t in self.terminals)

    @property
    def payable_agrees(self) -> bool:
        return self.payable_movement_sen == self.totals.net_sen

    @property
    def replays(self) -> int:
        return sum(t.replays for t in self.terminals)

    @property
    def refusals(self) -> int:
        return sum(t.refusals for t in self.terminals)


@dataclass
class Report:
    window: Window
    #: The ``--ewarong`` filter (``None``: every e-warong).
    mid: str | None
    ewarongs: list[EwarongReport] = field(default_factory=list)
    settlements: list[SettlementLine] = field(default_factory=list)
    differences: list[DifferenceLine] = field(default_factory=list)
    voids: list[VoidLine] = field(default_factory=list)
    reversals: list[ReversalLine] = field(default_factory=list)
    #: Replays and refusals 94 in the order they were answered (those of a TID that is
    #: no registered terminal too, when every e-warong is asked for).
    duplicates: list[DuplicateLine] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)

    @property
    def red_lines(self) -> list[Anomaly]:
        return [a for a in self.anomalies if a.red]

    @property
    def ok(self) -> bool:
        return not self.red_lines

    @property
    def exit_code(self) -> int:
        """The command's: 0 no red line, 1 any."""
        return 0 if self.ok else 1

    @property
    def double_postings(self) -> list[Anomaly]:
        return [a for a in self.anomalies if a.kind == "double_posting"]

    @property
    def void_stands(self) -> list[ReversalLine]:
        return [r for r in self.reversals if r.void_stands]

    @property
    def replays(self) -> list[DuplicateLine]:
        return [d for d in self.duplicates if not d.refused]

    @property
    def refusals(self) -> list[DuplicateLine]:
        return [d for d in self.duplicates if d.refused]

    @property
    def totals(self) -> SwitchTotals:
        return SwitchTotals.of(e.totals for e in self.ewarongs)

    def terminal(self, tid: str) -> TerminalReport:
        for ewarong in self.ewarongs:
            for terminal in ewarong.terminals:
                if terminal.tid == tid:
                    return terminal
        raise KeyError(tid)

    def ewarong(self, mid: str) -> EwarongReport:
        for ewarong in self.ewarongs:
            if ewarong.mid == mid:
                return ewarong
        raise KeyError(mid)
