"""``bpnt-switch`` commands of the programme rules (issue 14): stock, delivery
confirmation, dormancy, zones, hours, reference prices.  See docs/RULES.md,
"Commands".

Every change is audited as ``admin:<actor>`` in the transaction that makes it.  A user
error prints ``error: ...`` on stderr and exits 2 (usage, not found) or 1 (refused).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from switch.admin.errors import EXIT_USAGE, AdminError
from switch.cli_output import add_json_flag, emit, json_mode, print_json, print_table, progress
from switch.clock import SystemClock
from switch.db.engine import Database
from switch.security.keyring import Keyring
from switch.settings import Settings, load_settings

Handler = Callable[[argparse.Namespace, "Context"], int]


class Context:
    """What a command needs: settings, keys, the database, the clock."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.keys = Keyring.from_settings(settings)
        self.clock = SystemClock()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.db.transaction() as session:
            yield session


def _settings(args: argparse.Namespace) -> Settings:
    """``switch.cli``'s: ``--db`` over ``BPNT_DATABASE_URL``."""
    return load_settings(**({"database_url": args.db} if getattr(args, "db", None) else {}))


def _actor(args: argparse.Namespace) -> str:
    return f"admin:{args.actor}"


def _run(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from switch.db.schema import open_database

        settings = _settings(args)
        try:
            db = open_database(settings.database_url, create=False)
        except SQLAlchemyError as exc:
            print(f"error: cannot open the database: {str(exc).splitlines()[0]}",
                  file=sys.stderr)
            return EXIT_USAGE
        try:
            return handler(args, Context(settings, db))
        except AdminError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        finally:
            db.dispose()
    return run


# -- stock ------------------------------------------------------------------------------

def _stock_receive(args: argparse.Namespace, ctx: Context) -> int:
    from switch.admin.stock import receive_stock

    with ctx.transaction() as session:
        outcome = receive_stock(session, ctx.keys, mid=args.ewarong, item_code=args.item,
                                quantity=args.units, actor=_actor(args),
                                reference=args.reference, clock=ctx.clock)
    document = {"mid": args.ewarong, "item": args.item, "units": args.units,
                "reference": args.reference, "added": outcome.added,
                "quantity_after": outcome.quantity_after}
    if not outcome.added:
        emit(args, document, f"{args.ewarong} {args.item}: reference {args.reference} "
             f"already received, nothing added; {outcome.quantity_after} units")
    else:
        emit(args, document, f"{args.ewarong} {args.item}: received {args.units}, "
             f"{outcome.quantity_after} units now")
    return 0


def _stock_import(args: argparse.Namespace, ctx: Context) -> int:
    from switch.admin.stock import import_stock, read_stock_file

    with ctx.transaction() as session:
        lines = read_stock_file(session, Path(args.file))
        report = import_stock(session, ctx.keys, lines, actor=_actor(args), clock=ctx.clock)
    emit(args, {"received": [{**asdict(line), "quantity_after": after}
                             for line, after in report.received],
                "skipped": report.skipped, "units_received": report.units_received},
         report.summary())
    return 0


def _stock_adjust(args: argparse.Namespace, ctx: Context) -> int:
    from switch.admin.stock import receive_stock

    with ctx.transaction() as session:
        outcome = receive_stock(session, ctx.keys, mid=args.ewarong, item_code=args.item,
                                quantity=args.units, actor=_actor(args), kind="adjust",
                                reason=args.reason, clock=ctx.clock)
    emit(args, {"mid": args.ewarong, "item": args.item, "units": args.units,
                "quantity_after": outcome.quantity_after},
         f"{args.ewarong} {args.item}: adjusted by {args.units:+d}, "
         f"{outcome.quantity_after} units now")
    return 0


def _stock_threshold(args: argparse.Namespace, ctx: Context) -> int:
    from switch.admin.stock import set_threshold

    units = None if args.default else args.units
    with ctx.transaction() as session:
        set_threshold(session, ctx.keys, mid=args.ewarong, item_code=args.item, units=units,
                      actor=_actor(args), clock=ctx.clock)
    shown = f"the setting's ({ctx.settings.low_stock_units})" if units is None else str(units)
    emit(args, {"mid": args.ewarong, "item": args.item, "threshold": units,
                "effective": ctx.settings.low_stock_units if units is None else units},
         f"{args.ewarong} {args.item}: low-stock threshold {shown} units")
    return 0


def _stock_show(args: argparse.Namespace, ctx: Context) -> int:
    from switch.admin.stock import stock_rows

    with ctx.transaction() as session:
        rows = stock_rows(session, default_threshold=ctx.settings.low_stock_units,
                          mid=args.ewarong)
    if json_mode(args):
        print_json({"rows": [{**asdict(row), "low": row.low} for row in rows]})
        return 0
    print_table(["mid", "item", "units", "threshold", "low"],
                [[row.mid, row.item_code, row.units,
                  f"{row.threshold}{'' if row.own_threshold else ' (def)'}",
                  "LOW" if row.low else ""] for row in rows], empty="(no stock)")
    return 0


# -- delivery ---------------------------------------------------------------------------

def _delivery_confirm(args: argparse.Namespace, ctx: Context) -> int:
    from switch.admin.delivery import confirm_delivery

    with ctx.transaction() as session:
        result = confirm_delivery(session, ctx.keys, args.rrn, _actor(args), ctx.clock)
    emit(args, result, result.summary())
    return 0


# -- dormancy ---------------------------------------------------------------------------

def _dormancy_run(args: argparse.Namespace, ctx: Context) -> int:
    from switch.admin.dormancy import run_dormancy

    days = ctx.settings.dormancy_days if args.days is None else args.days
    if days < 1:
        print(f"error: --days {days}: at least 1", file=sys.stderr)
        return EXIT_USAGE
    with progress("dormancy", enabled=not json_mode(args)) as advance:
        report = run_dormancy(ctx.db, ctx.keys, days=days, actor=_actor(args),
                              clock=ctx.clock, progress=advance)
    emit(args, report, report.summary())
    return 0


def _dormancy_reactivate(args: argparse.Namespace, ctx: Context) -> int:
    from switch.admin.dormancy import reactivate_card

    with ctx.transaction() as session:
        done = reactivate_card(session, ctx.keys, pan=args.pan, reason=args.reason,
                               actor=_actor(args), clock=ctx.clock)
    emit(args, done, f"card {done.pan_masked} is active again (reactivated at "
         f"{done.reactivated_at.isoformat()})")
    return 0


# -- rules ------------------------------------------------------------------------------

def _rules_ewarong(args: argparse.Namespace, ctx: Context) -> int:
    from switch.admin.rules_admin import RulesChange, parse_hours, set_ewarong_rules

    zones: list[str] | None = None
    if args.no_zones:
        zones = []
    elif args.zones is not None:
        zones = [zone.strip() for zone in args.zones.split(",") if zone.strip()]
        if not zones:
            print("error: --zones names no zone (every zone: --no-zones)", file=sys.stderr)
            return EXIT_USAGE
    hours: tuple[str, str] | tuple[()] | None = None
    if args.always_open:
        hours = ()
    elif args.hours is not None:
        hours = parse_hours(args.hours)
    region = "" if args.no_region else args.region
    change = RulesChange(zones=zones, region=region, hours=hours,
                         utc_offset_minutes=args.utc_offset)
    with ctx.transaction() as session:
        before, after = set_ewarong_rules(session, ctx.keys, mid=args.mid, change=change,
                                          actor=_actor(args), clock=ctx.clock)
    emit(args, {"before": before, "after": after, "changed": before != after},
         f"unchanged: {after.line()}" if before == after
         else f"was: {before.line()}\nnow: {after.line()}")
    return 0


def _rules_kpm_zone(args: argparse.Namespace, ctx: Context) -> int:
    from switch.admin.rules_admin import set_kpm_zone

    with ctx.transaction() as session:
        kpm_id, before, after = set_kpm_zone(session, ctx.keys, nik=args.nik, zone=args.zone,
                                             actor=_actor(args), clock=ctx.clock)
    emit(args, {"kpm_id": kpm_id, "before": before, "after": after},
         f"KPM {kpm_id}: zone {before} -> {after}" if before != after
         else f"KPM {kpm_id}: zone {after} (unchanged)")
    return 0


def _rules_price(args: argparse.Namespace, ctx: Context) -> int:
    from switch.admin.rules_admin import set_reference_price

    with ctx.transaction() as session:
        before, after = set_reference_price(session, ctx.keys, item_code=args.item,
                                            region=args.region, unit_price_sen=args.unit_price_sen,
                                            actor=_actor(args), clock=ctx.clock)
    where = args.region or "national"
    was = "new" if before is None else f"was {before}"
    emit(args, {"item": args.item, "region": args.region, "before_sen": before,
                "unit_price_sen": after},
         f"{args.item} {where}: reference {after} sen "
         f"({'unchanged' if before == after else was})")
    return 0


def _rules_prices_import(args: argparse.Namespace, ctx: Context) -> int:
    from switch.admin.rules_admin import import_prices, read_price_file

    with ctx.transaction() as session:
        lines = read_price_file(session, Path(args.file))
        changed, unchanged = import_prices(session, ctx.keys, lines, actor=_actor(args),
                                           clock=ctx.clock)
    emit(args, {"changed": changed, "unchanged": unchanged},
         f"{changed} reference prices set, {unchanged} unchanged")
    return 0


def _rules_show(args: argparse.Namespace, ctx: Context) -> int:
    from switch.admin.rules_admin import ewarong_rules

    with ctx.transaction() as session:
        rules = ewarong_rules(session, args.mid)
    if json_mode(args):
        print_json({"ewarongs": rules})
        return 0
    for rule in rules:
        print(rule.line())
    if not rules:
        print("(no e-warongs)")
    return 0


# -- the parsers ------------------------------------------------------------------------

def _leaf(group: argparse._SubParsersAction, name: str, help_text: str,  # type: ignore[type-arg]
          handler: Handler, leaves: list[argparse.ArgumentParser], *,
          actor: bool = True) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(name, help=help_text)
    if actor:
        parser.add_argument("--actor", required=True, help="who is making the change (audit)")
    parser.set_defaults(func=_run(handler))
    add_json_flag(parser)
    leaves.append(parser)
    return parser


def _item_of(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ewarong", required=True, metavar="MID", help="DE 42")
    parser.add_argument("--item", required=True, metavar="CODE")


def add_rule_commands(sub: argparse._SubParsersAction) -> list[argparse.ArgumentParser]:  # type: ignore[type-arg]
    """Add the commands to ``sub``; returns the parsers that take ``--db``."""
    leaves: list[argparse.ArgumentParser] = []

    stock = sub.add_parser("stock", help="e-warong stock: receive, import, adjust, show")
    stocks = stock.add_subparsers(dest="stock_action", required=True)
    receive = _leaf(stocks, "receive", "a delivery of goods to an e-warong", _stock_receive,
                    leaves)
    _item_of(receive)
    receive.add_argument("--units", required=True, type=int)
    receive.add_argument("--reference", help="the delivery note: received once only")
    imported = _leaf(stocks, "import", "deliveries from a CSV (mid,item,units,reference); "
                     "all or nothing", _stock_import, leaves)
    imported.add_argument("file", metavar="FILE.csv")
    adjust = _leaf(stocks, "adjust", "write units off (or on), never below zero",
                   _stock_adjust, leaves)
    _item_of(adjust)
    adjust.add_argument("--units", required=True, type=int, help="e.g. -3")
    adjust.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    threshold = _leaf(stocks, "threshold", "a stock row's low-stock threshold",
                      _stock_threshold, leaves)
    _item_of(threshold)
    level = threshold.add_mutually_exclusive_group(required=True)
    level.add_argument("--units", type=int)
    level.add_argument("--default", action="store_true",
                       help="back to BPNT_LOW_STOCK_UNITS")
    show = _leaf(stocks, "show", "units and thresholds of each e-warong and item",
                 _stock_show, leaves, actor=False)
    show.add_argument("--ewarong", metavar="MID")

    delivery = sub.add_parser("delivery", help="goods handed over for a purchase (F10)")
    deliveries = delivery.add_subparsers(dest="delivery_action", required=True)
    confirm = _leaf(deliveries, "confirm", "the goods of an approved purchase were handed "
                    "over", _delivery_confirm, leaves)
    confirm.add_argument("rrn", metavar="RRN", help="DE 37 of the purchase's answer")

    dormancy = sub.add_parser("dormancy", help="dormant cards (F5)")
    dormancies = dormancy.add_subparsers(dest="dormancy_action", required=True)
    run = _leaf(dormancies, "run", "mark the cards unused N days dormant", _dormancy_run,
                leaves)
    run.add_argument("--days", type=int, help="default BPNT_DORMANCY_DAYS")
    reactivate = _leaf(dormancies, "reactivate", "a dormant card back to active",
                       _dormancy_reactivate, leaves)
    reactivate.add_argument("--pan", required=True)
    reactivate.add_argument("--reason", required=True, help="why (kept in the audit trail)")

    rules = sub.add_parser("rules", help="zones, hours, regions and reference prices")
    ruleset = rules.add_subparsers(dest="rules_action", required=True)
    ewarong = _leaf(ruleset, "ewarong", "an e-warong's zones, region, hours, UTC offset",
                    _rules_ewarong, leaves)
    ewarong.add_argument("--mid", required=True)
    zones = ewarong.add_mutually_exclusive_group()
    zones.add_argument("--zones", metavar="Z,Z", help="zone prefixes served (replace the set)")
    zones.add_argument("--no-zones", action="store_true", help="serve every zone")
    region = ewarong.add_mutually_exclusive_group()
    region.add_argument("--region", metavar="R", help="2, 4 or 6 digits (reference prices)")
    region.add_argument("--no-region", action="store_true", help="national prices")
    hours = ewarong.add_mutually_exclusive_group()
    hours.add_argument("--hours", metavar="HHMM-HHMM", help="local opening hours")
    hours.add_argument("--always-open", action="store_true")
    ewarong.add_argument("--utc-offset", type=int, metavar="MINUTES",
                         help="420 (WIB), 480 (WITA) or 540 (WIT)")
    kpm_zone = _leaf(ruleset, "kpm-zone", "the zone a KPM lives in", _rules_kpm_zone, leaves)
    kpm_zone.add_argument("--nik", required=True)
    kpm_zone.add_argument("--zone", required=True, help="2, 4 or 6 digits")
    price = _leaf(ruleset, "price", "a reference unit price", _rules_price, leaves)
    price.add_argument("--item", required=True, metavar="CODE")
    price.add_argument("--region", default="", help="2, 4 or 6 digits (default: national)")
    price.add_argument("--unit-price-sen", required=True, type=int)
    prices = _leaf(ruleset, "prices-import", "reference prices from a CSV "
                   "(item,region,unit_price_sen); all or nothing", _rules_prices_import, leaves)
    prices.add_argument("file", metavar="FILE.csv")
    shown = _leaf(ruleset, "show", "each e-warong's zones, region, hours and offset",
                  _rules_show, leaves, actor=False)
    shown.add_argument("--mid")
    return leaves
