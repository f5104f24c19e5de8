"""The day's reports the console shows and exports: :func:`switch.reports.daily.daily_reports`
(each a ``ReportTable``: name, title, columns, rows, notes, ``to_csv()``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from switch.db.engine import Database
from switch.reports.daily import DAILY_REPORTS, ReportTable, daily_reports
from switch.settings import Settings

Table = ReportTable


def report_names() -> tuple[str, ...]:
    return DAILY_REPORTS


def day_tables(db: Database, day: date, settings: Settings, *, mid: str | None,
               names: Sequence[str] | None = None) -> list[ReportTable]:
    """The reports ``names`` (default all) of the WIB day ``day`` (one e-warong's if
    ``mid``); ValueError for a name that is no report."""
    return daily_reports(db, day, settings, mid=mid, names=names)
