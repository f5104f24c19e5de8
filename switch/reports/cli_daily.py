"""``bpnt-switch report daily --date D --out DIR [--mid M]`` (docs/CONSOLE.md "Daily
reports"): a cron job's command.  Writes every daily report into DIR and prints the
paths (``--json``: one document with the paths and each table's row count); a bad
date or an unknown MID exits 2 with ``error: ...`` and writes nothing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from switch.cli_output import add_json_flag, json_mode, print_json, progress
from switch.reports.cli_rules import _day, _instant, _settings

__all__ = ["add_daily_report"]


def _cmd_daily(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from switch.db.schema import open_database
    from switch.reports.daily import DAILY_REPORTS, write_daily
    from switch.reports.recon_model import UnknownEwarong

    settings = _settings(args)
    db = open_database(settings.database_url, create=False)
    try:
        with progress(f"daily reports {args.date.isoformat()}",
                      enabled=not json_mode(args)) as advance:
            paths = write_daily(db, args.date, settings, Path(args.out), mid=args.mid,
                                as_of=args.as_of, progress=advance)
    except UnknownEwarong as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (SQLAlchemyError, OSError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    if json_mode(args):
        print_json({"date": args.date, "mid": args.mid, "reports": list(DAILY_REPORTS),
                    "written": paths})
    else:
        for path in paths:
            print(f"wrote {path}")
    return 0


def add_daily_report(reports: argparse._SubParsersAction  # type: ignore[type-arg]
                     ) -> argparse.ArgumentParser:
    """Add ``report daily`` to ``reports``; returns its parser (it takes ``--db``)."""
    daily: argparse.ArgumentParser = reports.add_parser(
        "daily", help="every daily report (per e-warong, per region, reconciliation, "
        "duplicates, prices, undelivered, not shopped) as CSV, Markdown and HTML files")
    daily.add_argument("--date", required=True, type=_day, metavar="YYYY-MM-DD",
                       help="the day in WIB (Asia/Jakarta, UTC+7)")
    daily.add_argument("--out", required=True, metavar="DIR", help="written into (created)")
    daily.add_argument("--mid", metavar="MID", help="one e-warong only (DE 42)")
    daily.add_argument("--as-of", type=_instant, metavar="ISO-DATETIME",
                       help="undelivered goods are aged at this instant (default now)")
    add_json_flag(daily)
    daily.set_defaults(func=_cmd_daily)
    return daily
