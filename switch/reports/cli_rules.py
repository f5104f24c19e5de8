"""``bpnt-switch report prices|alerts|undelivered|stock`` (issue 14, docs/RULES.md).

Each takes ``--date YYYY-MM-DD`` (the WIB day), ``--format md|csv`` and ``--ewarong
MID``; reads one snapshot and never writes.  Exit codes: 0, or 1 when ``stock`` finds
a shelf that breaks conservation; 2 for an unknown MID or an unreadable database."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from switch.clock import WIB, SystemClock
from switch.settings import Settings, load_settings


def _day(text: str) -> Any:
    from switch.reports.recon_model import parse_day

    try:
        return parse_day(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _instant(text: str) -> datetime:
    """An ISO 8601 datetime; without an offset it is WIB."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO datetime: {text!r}") from None
    return (at.replace(tzinfo=WIB) if at.tzinfo is None else at).astimezone(UTC)


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"a share in (0, 1]: {text!r}")
    return value


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(**({"database_url": args.db} if getattr(args, "db", None) else {}))


def run_report(args: argparse.Namespace, build: Callable[[Any, Settings], Any],
               md: Callable[[Any], str], csv: Callable[[Any], str], *,
               json_extra: Callable[[Any], dict[str, Any]] | None = None) -> int:
    """Build a report on one read-only snapshot and print it (``--format``, or
    ``--json``: the report's fields under ``data``, with ``json_extra``'s keys); the
    report's exit code, or 2 for an unknown MID or an unreadable database.  Shared
    by every ``bpnt-switch report``."""
    from sqlalchemy.exc import SQLAlchemyError

    from switch.db.schema import open_database
    from switch.reports.recon_model import UnknownEwarong

    settings = _settings(args)
    db = open_database(settings.database_url, create=False)
    try:
        report = build(db, settings)
    except UnknownEwarong as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(f"error: cannot read the database: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    code: int = report.exit_code
    if getattr(args, "json", False):
        from switch.cli_output import print_json

        print_json({"report": args.report, "date": args.date, "mid": args.ewarong,
                    "exit_code": code, **(json_extra(report) if json_extra else {}),
                    "data": report})
        return code
    sys.stdout.write(csv(report) if args.format == "csv" else md(report))
    return code


def _cmd_alerts(args: argparse.Namespace) -> int:
    from switch.reports import rules, rules_render

    return run_report(args, lambda db, _s: rules.alerts(db, args.date, args.ewarong),
                rules_render.alerts_md, rules_render.alerts_csv)


def _cmd_prices(args: argparse.Namespace) -> int:
    from switch.reports import rules, rules_render

    return run_report(args, lambda db, s: rules.prices(
        db, args.date, args.ewarong, bundle_share=args.bundle_share,
        bundle_min_kpm=args.bundle_min_kpm, cap_percent=s.price_cap_percent),
        rules_render.prices_md, rules_render.prices_csv)


def _cmd_undelivered(args: argparse.Namespace) -> int:
    from switch.reports import rules, rules_render

    return run_report(args, lambda db, s: rules.undelivered(
        db, args.date, args.ewarong, as_of=args.as_of or SystemClock().now().astimezone(UTC),
        hours=args.hours if args.hours is not None else s.delivery_hours),
        rules_render.undelivered_md, rules_render.undelivered_csv)


def _cmd_stock(args: argparse.Namespace) -> int:
    from switch.reports import rules, rules_render

    return run_report(args, lambda db, s: rules.stock(
        db, args.date, args.ewarong, low_stock_units=s.low_stock_units),
        rules_render.stock_md, rules_render.stock_csv)


def add_rule_reports(reports: argparse._SubParsersAction) -> list[argparse.ArgumentParser]:  # type: ignore[type-arg]
    """Add the reports to ``reports``; returns the parsers that take ``--db``."""
    def common(name: str, help_text: str, func: Callable[[argparse.Namespace], int]
               ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = reports.add_parser(name, help=help_text)
        p.add_argument("--date", required=True, type=_day, metavar="YYYY-MM-DD",
                       help="the day in WIB (Asia/Jakarta, UTC+7)")
        p.add_argument("--ewarong", metavar="MID", help="one e-warong only (DE 42)")
        p.add_argument("--format", choices=["md", "csv"], default="md",
                       help="Markdown tables (default) or one flat CSV table")
        p.add_argument("--json", action="store_true",
                       help="one JSON document (the report's fields, money in sen)")
        p.set_defaults(func=func)
        return p

    alerts = common("alerts", "the day's programme-rule alerts (velocity, off hours, "
                    "zoning, over price, low stock) and their counts", _cmd_alerts)
    prices = common("prices", "prices against the reference prices, and suspected forced "
                    "bundles (FAILURES F11)", _cmd_prices)
    prices.add_argument("--bundle-share", type=_share, default=0.5, metavar="SHARE",
                        help="the share of an e-warong's KPM one basket composition must "
                             "cover to be a suspected bundle (default 0.5)")
    prices.add_argument("--bundle-min-kpm", type=int, default=5, metavar="N",
                        help="... and at least this many KPM (default 5)")
    undelivered = common("undelivered", "approved purchases with no goods hand-over "
                         "confirmation (FAILURES F10)", _cmd_undelivered)
    undelivered.add_argument("--hours", type=int, metavar="H",
                             help="this old or more (default BPNT_DELIVERY_HOURS)")
    undelivered.add_argument("--as-of", type=_instant, metavar="ISO-DATETIME",
                             help="the age is taken at this instant (default now; without "
                                  "an offset: WIB)")
    stock = common("stock", "e-warong stock, the day's movements and the conservation "
                   "check (FAILURES F15); exit 1 on a shelf that breaks it", _cmd_stock)
    return [alerts, prices, undelivered, stock]
