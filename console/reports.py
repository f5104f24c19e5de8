"""The day's reports the console shows and exports: :func:`switch.reports.daily.daily_reports`
(each a ``ReportTable``: name, title, columns, rows, notes, ``to_csv()``).

Until that module is in this tree, the one report it can build is the reconciliation
report's flat CSV table (:func:`switch.reports.reconciliation.csv_rows`), in the same
shape.
"""

from __future__ import annotations

import csv
import importlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from switch.db.engine import Database
from switch.reports.reconciliation import CSV_COLUMNS, csv_rows, reconciliation
from switch.settings import Settings


class Table(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def columns(self) -> tuple[str, ...]: ...
    @property
    def rows(self) -> tuple[tuple[str | int, ...], ...]: ...
    @property
    def notes(self) -> tuple[str, ...]: ...

    def to_csv(self) -> str: ...


@dataclass(frozen=True)
class FlatTable:
    name: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str | int, ...], ...]
    notes: tuple[str, ...] = ()

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.rows)
        return out.getvalue()


def _daily_module() -> Any | None:
    try:
        return importlib.import_module("switch.reports.daily")
    except ModuleNotFoundError:
        return None


def report_names() -> tuple[str, ...]:
    daily = _daily_module()
    if daily is None:
        return ("reconciliation",)
    names: tuple[str, ...] = tuple(daily.DAILY_REPORTS)
    return names


def _cell(value: object) -> str | int:
    return value if type(value) is int else ("" if value is None else str(value))


def day_tables(db: Database, day: date, settings: Settings, *, mid: str | None,
               names: Sequence[str] | None = None) -> list[Table]:
    """The reports ``names`` (default all) of the WIB day ``day`` (one e-warong's if
    ``mid``); ValueError for a name that is no report."""
    daily = _daily_module()
    if daily is not None:
        tables: list[Table] = daily.daily_reports(db, day, settings, mid=mid, names=names)
        return tables
    if names is not None and set(names) - {"reconciliation"}:
        raise ValueError(f"no report {', '.join(names)}")
    rows = tuple(tuple(_cell(row.get(column)) for column in CSV_COLUMNS)
                 for row in csv_rows(reconciliation(db, day, mid)))
    return [FlatTable("reconciliation", f"Reconciliation {day.isoformat()}",
                      tuple(CSV_COLUMNS), rows)]
