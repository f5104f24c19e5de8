"""What the daily reports hold (:mod:`switch.reports.daily`): one :class:`ReportTable`
per report, plain cells (text or integer: money in integer sen, in columns named
``*_sen``; rates as text percentages, never floats), and the per-group totals the
e-warong and region tables share."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from switch.money import rupiah

__all__ = ["DAILY_REPORTS", "DayTotals", "ReportTable", "heading", "percent", "shown"]

#: The daily reports, in order (issue 16): per e-warong and per region,
#: reconciliation, duplicates and 94s, prices against reference, undelivered goods,
#: KPM who have not shopped this period.
DAILY_REPORTS: tuple[str, ...] = ("ewarong", "region", "reconciliation", "duplicates",
                                  "prices", "undelivered", "not-shopped")

Cell = str | int


def shown(column: str, value: Cell) -> str:
    """A cell for people: ``*_sen`` columns in rupiah, the rest as they are."""
    if column.endswith("_sen") and type(value) is int:
        return rupiah(value)
    return str(value)


def heading(column: str) -> str:
    """A column's heading for people (``amount_sen`` → ``amount Rp``)."""
    return column.removesuffix("_sen").replace("_", " ") + (" Rp" if column.endswith("_sen")
                                                            else "")


@dataclass(frozen=True)
class ReportTable:
    """One daily report: ``rows`` under ``columns``; ``notes`` say what the rows do not
    (totals, what was left out, red lines)."""

    name: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str | int, ...], ...]
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for row in self.rows:
            assert len(row) == len(self.columns), (self.name, row)
            assert all(type(cell) in (str, int) for cell in row), (self.name, row)

    def to_csv(self) -> str:
        """The rows as CSV (a header of :attr:`columns`; money in integer sen)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.rows)
        return out.getvalue()

    def to_markdown(self, *, limit: int | None = None) -> str:
        """A ``##`` section: the title, the notes as a list, the table (money in
        rupiah); only the first ``limit`` rows, if given, and a line saying so."""
        def cell(text: str) -> str:
            return text.replace("|", "\\|").replace("\n", " ")

        lines = [f"## {self.title}", ""]
        if self.notes:
            lines += [f"- {note}" for note in self.notes] + [""]
        if not self.rows:
            return "\n".join([*lines, "None.", ""])
        lines.append("| " + " | ".join(heading(c) for c in self.columns) + " |")
        lines.append("|" + "---|" * len(self.columns))
        rows = self.rows if limit is None else self.rows[:limit]
        lines += ["| " + " | ".join(cell(shown(c, v)) for c, v in zip(self.columns, row,
                                                                      strict=True)) + " |"
                  for row in rows]
        if len(rows) < len(self.rows):
            lines += ["", f"... and {len(self.rows) - len(rows)} more rows: every row is in "
                      f"{self.name}.csv."]
        return "\n".join(lines) + "\n"

    def as_dicts(self) -> list[dict[str, str | int]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def percent(part: int, whole: int) -> str:
    """``part / whole`` as a percentage with 2 decimals, integer arithmetic (half up).

    >>> percent(1, 3), percent(0, 0), percent(2, 2)
    ('33.33%', '', '100.00%')
    """
    if whole <= 0:
        return ""
    hundredths = (part * 10_000 * 2 + whole) // (2 * whole)
    return f"{hundredths // 100}.{hundredths % 100:02d}%"


@dataclass
class DayTotals:
    """A group's (an e-warong's, a region's) card traffic of the day, in sen."""

    #: Purchase requests answered (any RC).
    requests: int = 0
    purchases: int = 0
    purchases_sen: int = 0
    #: RC → count of the declined purchase requests.
    declines: dict[str, int] = field(default_factory=dict)
    voids: int = 0
    voids_sen: int = 0
    purchase_reversals: int = 0
    purchase_reversals_sen: int = 0
    void_reversals: int = 0
    void_reversals_sen: int = 0

    @property
    def declined(self) -> int:
        return sum(self.declines.values())

    @property
    def switch_failures(self) -> int:
        """RC 91 (issuer or switch inoperative) and 96 (system malfunction)."""
        return self.declines.get("91", 0) + self.declines.get("96", 0)

    @property
    def net_sen(self) -> int:
        """Purchases − voids − purchase reversals + void reversals (as the
        reconciliation report's net debits)."""
        return (self.purchases_sen - self.voids_sen - self.purchase_reversals_sen
                + self.void_reversals_sen)

    def declines_text(self) -> str:
        """``51:2 55:1``: the declines by RC, in RC order."""
        return " ".join(f"{rc}:{n}" for rc, n in sorted(self.declines.items()))
