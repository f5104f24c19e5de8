"""``bpnt-switch``: serve, set up and inspect the switch."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import date

from switch.cli_output import add_json_flag, emit, json_mode, print_json, print_table, progress
from switch.settings import Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "db", None):
        overrides["database_url"] = args.db
    if getattr(args, "port", None) is not None:
        overrides["port"] = args.port
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "mqtt", None):
        overrides["mqtt_url"] = args.mqtt
    if getattr(args, "serial", None):
        overrides["serial_port"] = args.serial
    if getattr(args, "serial_baud", None) is not None:
        overrides["serial_baud"] = args.serial_baud
    if getattr(args, "no_tcp", False):
        overrides["tcp_enabled"] = False
    return load_settings(**overrides)


def _cmd_serve(args: argparse.Namespace) -> int:
    from switch.server import serve

    settings = _settings(args)
    with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
        runner.run(serve(settings))
    return 0


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """``settings.event_loop``: uvloop's loop, or ``None`` (the standard one)."""
    if name != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        logging.getLogger("bpnt.server").warning(
            "event_loop=uvloop but uvloop is not installed: using asyncio's loop")
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _cmd_seed_demo(args: argparse.Namespace) -> int:
    from sqlalchemy import func, select

    from switch.admin.demo import build_world, seed_database
    from switch.db.schema import open_database
    from switch.db.tables import Terminal
    from switch.security.keyring import Keyring

    settings = _settings(args)
    db = open_database(settings.database_url)
    with db.transaction() as session:
        if session.scalar(select(func.count()).select_from(Terminal)):
            emit(args, {"seeded": False},
                 "database already holds terminals: demo world not seeded again")
            return 0
    world = build_world(kpm_count=args.kpm)
    seed_database(db, Keyring.from_settings(settings), world)
    emit(args, {"seeded": True, "cards": len(world.cards), "terminals": len(world.terminals)},
         f"seeded {len(world.cards)} cards and {len(world.terminals)} terminals")
    return 0


def _cmd_allocate(args: argparse.Namespace) -> int:
    from switch.db.schema import open_database
    from switch.ledger.postings import allocate_period

    settings = _settings(args)
    amount_sen = args.amount_sen or settings.period_amount_sen
    with progress(f"allocate {args.period}", enabled=not json_mode(args)) as advance:
        result = allocate_period(open_database(settings.database_url), args.period,
                                 amount_sen, progress=advance)
    emit(args, {**vars_of(result), "amount_sen": amount_sen},
         f"period {args.period}: credited {result.credited_count} KPM, "
         f"{result.already_count} already credited, total {result.total_credited_sen} sen")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from switch.db.schema import open_database
    from switch.ledger.invariants import check_invariants

    report = check_invariants(open_database(_settings(args).database_url, create=False))
    emit(args, {**vars_of(report), "ok": report.ok}, report.summary())
    return 0 if report.ok else 1


def _cmd_audit(args: argparse.Namespace) -> int:
    from switch.db.audit import verify
    from switch.db.schema import open_database

    settings = _settings(args)
    db = open_database(settings.database_url, create=False)
    with db.transaction() as session:
        if args.action == "verify":
            report = verify(session, bytes.fromhex(settings.audit_key_hex))
            emit(args, {**vars_of(report), "ok": report.ok}, report.summary())
            return 0 if report.ok else 1
        from sqlalchemy import select

        from switch.db.tables import AuditRecord

        rows = session.scalars(
            select(AuditRecord).order_by(AuditRecord.at.desc(), AuditRecord.chain.desc(),
                                         AuditRecord.seq.desc()).limit(args.last)
        ).all()
        # a record is named by its chain and its place in it (16 chains on PostgreSQL)
        shown = [{"chain": rec.chain, "seq": rec.seq, "at": rec.at, "actor": rec.actor,
                  "action": rec.action, "subject": rec.subject, "detail": rec.detail}
                 for rec in reversed(rows)]
        if json_mode(args):
            import json

            print_json({"records": [{**r, "detail": json.loads(str(r["detail"]))}
                                    for r in shown]})
        else:
            print_table(["chain", "seq", "at", "actor", "action", "subject", "detail"],
                        [[rec.chain, rec.seq, rec.at, rec.actor, rec.action, rec.subject,
                          rec.detail] for rec in reversed(rows)], empty="(no audit records)")
    return 0


def _cmd_records(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from switch.admin.records import prune_records
    from switch.clock import SystemClock
    from switch.db.schema import open_database

    settings = _settings(args)
    days = args.days if args.days is not None else settings.idempotency_window_days
    if days < settings.idempotency_window_days:
        print(f"refused: HOST_SPEC §4 keeps records {settings.idempotency_window_days} days "
              f"(BPNT_IDEMPOTENCY_WINDOW_DAYS); --days {days} is shorter", file=sys.stderr)
        return 2
    db = open_database(settings.database_url, create=False)
    report = prune_records(db, window=timedelta(days=days), now=SystemClock().now(),
                           audit_key=bytes.fromhex(settings.audit_key_hex),
                           dry_run=args.dry_run)
    emit(args, report, report.summary())
    return 0


def _cmd_terminals(args: argparse.Namespace) -> int:
    from switch.db.schema import open_database
    from switch.transports.presence import list_presence

    rows = list_presence(open_database(_settings(args).database_url))
    if json_mode(args):
        print_json({"terminals": rows})
        return 0
    print_table(["tid", "status", "last_seen", "via"],
                [[row.tid, row.status, f"{row.last_seen_at:%Y-%m-%d %H:%M:%S}", row.source]
                 for row in rows],
                empty="no terminal presence recorded yet (presence comes from MQTT status "
                      "topics)")
    return 0


def _cmd_db(args: argparse.Namespace) -> int:
    from switch.db.engine import create_db_engine
    from switch.db.schema import current_revision, upgrade

    engine = create_db_engine(_settings(args).database_url)
    try:
        if args.action == "upgrade":
            upgrade(engine)
        revision = current_revision(engine)
        emit(args, {"revision": revision},
             f"schema revision: {revision or 'none (empty database)'}")
    finally:
        engine.dispose()
    return 0


def _cmd_import_kpm(args: argparse.Namespace) -> int:
    from pathlib import Path

    from switch.admin.importer import ImportFormatError, import_kpm
    from switch.db.schema import open_database
    from switch.security.keyring import Keyring

    settings = _settings(args)
    try:
        with progress(f"import {Path(args.file).name}",
                      enabled=not json_mode(args)) as advance:
            report = import_kpm(open_database(settings.database_url),
                                Keyring.from_settings(settings), Path(args.file),
                                actor=f"admin:{args.actor}", skip_invalid=args.skip_invalid,
                                progress=advance)
    except (ImportFormatError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    emit(args, {**vars_of(report), "ok": report.ok}, report.summary())
    return 0 if report.ok else 1


def _cmd_status(args: argparse.Namespace) -> int:
    from switch.admin.registry import RegistrationError, Registry
    from switch.db.schema import open_database
    from switch.security.keyring import Keyring

    settings = _settings(args)
    db = open_database(settings.database_url, create=False)
    try:
        with db.transaction() as session:
            reg = Registry(session, Keyring.from_settings(settings), actor=f"admin:{args.actor}")
            if args.command == "card-status":
                card = reg.set_card_status(args.pan, args.status, reason=args.reason)
                emit(args, {"card": card.pan_masked, "status": card.status},
                     f"card {card.pan_masked} is now {card.status}")
            else:
                kpm = reg.set_kpm_status(args.nik, args.status, reason=args.reason)
                emit(args, {"kpm_id": kpm.id, "status": kpm.status},
                     f"KPM {kpm.id} is now {kpm.status}")
    except RegistrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def vars_of(value: object) -> dict[str, object]:
    """A dataclass's fields as a dict (for ``--json``)."""
    from dataclasses import fields

    return {f.name: getattr(value, f.name) for f in fields(value)}  # type: ignore[arg-type]


def _day(text: str) -> date:
    from switch.reports.reconciliation import parse_day

    try:
        return parse_day(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_report_reconciliation(args: argparse.Namespace) -> int:
    from switch.reports.cli_rules import run_report
    from switch.reports.reconciliation import csv_rows, reconciliation, render_csv, render_md

    return run_report(args, lambda db, _settings: reconciliation(db, args.date, args.ewarong),
                      render_md, render_csv, json_extra=lambda report: {
                          "ok": report.ok, "rows": csv_rows(report)})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bpnt-switch", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the switch (TCP, MQTT, serial: HOST_SPEC §1)")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 8583)")
    serve.add_argument("--mqtt", metavar="URL",
                       help="also serve MQTT: mqtt://HOST:PORT of the broker (BPNT_MQTT_URL)")
    serve.add_argument("--serial", metavar="PORT",
                       help="also serve a serial line: /dev/ttyUSB0, a pty, or loop://")
    serve.add_argument("--serial-baud", type=int, help="serial speed (default 9600)")
    serve.add_argument("--no-tcp", action="store_true", help="do not listen on TCP")
    serve.set_defaults(func=_cmd_serve)

    seed = sub.add_parser("seed-demo", help="register the demo KPM, cards and terminals")
    seed.add_argument("--kpm", type=int, default=200)
    seed.set_defaults(func=_cmd_seed_demo)

    alloc = sub.add_parser("allocate", help="credit every active KPM for a period (once)")
    alloc.add_argument("--period", required=True, help="e.g. 2026-11")
    alloc.add_argument("--amount-sen", type=int, help="default: BPNT_PERIOD_AMOUNT_SEN")
    alloc.set_defaults(func=_cmd_allocate)

    check = sub.add_parser("check", help="verify the money invariant; exit 1 if broken")
    check.set_defaults(func=_cmd_check)

    audit = sub.add_parser("audit", help="the tamper-evident audit trail")
    audit.add_argument("action", choices=["verify", "show"])
    audit.add_argument("--last", type=int, default=20, help="records to show")
    audit.set_defaults(func=_cmd_audit)

    card = sub.add_parser("card-status", help="block / report lost or stolen / reactivate")
    card.add_argument("--pan", required=True)
    card.add_argument("--status", required=True,
                      choices=["active", "blocked", "lost", "stolen", "dormant"])
    kpm = sub.add_parser("kpm-status", help="activate or deactivate a KPM")
    kpm.add_argument("--nik", required=True)
    kpm.add_argument("--status", required=True, choices=["active", "inactive"])
    for p in (card, kpm):
        p.add_argument("--reason", required=True, help="why (kept in the audit trail)")
        p.add_argument("--actor", required=True, help="who is making the change")
        p.set_defaults(func=_cmd_status)

    records = sub.add_parser("records", help="idempotency records: prune those past the "
                             "retention window (HOST_SPEC §4)")
    records.add_argument("action", choices=["prune"])
    records.add_argument("--days", type=int, default=None,
                         help="keep this many days (default and minimum: the window setting)")
    records.add_argument("--dry-run", action="store_true", help="count, remove nothing")
    records.set_defaults(func=_cmd_records)

    terminals = sub.add_parser("terminals", help="MQTT terminals online/offline, last seen")
    terminals.set_defaults(func=_cmd_terminals)

    db = sub.add_parser("db", help="schema migrations (Alembic, shipped in the package)")
    db.add_argument("action", choices=["upgrade", "current"])
    db.set_defaults(func=_cmd_db)

    imp = sub.add_parser("import-kpm", help="bulk-register KPM and cards from a CSV "
                                            "(docs/DATABASE.md); all or nothing")
    imp.add_argument("file", help="CSV: nik,name,pan,pin_offset,expiry_yymm[,psn]")
    imp.add_argument("--actor", required=True, help="who is importing (audit trail)")
    imp.add_argument("--skip-invalid", action="store_true",
                     help="import the valid rows and report the rest (default: nothing)")
    imp.set_defaults(func=_cmd_import_kpm)

    report = sub.add_parser("report", help="read-only reports on the database")
    reports = report.add_subparsers(dest="report", required=True)
    recon = reports.add_parser(
        "reconciliation", help="the day's reconciliation per e-warong and terminal (HOST_SPEC "
        "§4, FAILURES F2); exit 1 on a red line (double posting, payable mismatch)")
    recon.add_argument("--date", required=True, type=_day, metavar="YYYY-MM-DD",
                       help="the day in WIB (Asia/Jakarta, UTC+7)")
    recon.add_argument("--ewarong", metavar="MID", help="one e-warong only (DE 42)")
    recon.add_argument("--format", choices=["md", "csv"], default="md",
                       help="Markdown tables (default) or one flat CSV table")
    recon.set_defaults(func=_cmd_report_reconciliation)

    from switch.admin.cli_complaints import add_complaint_commands
    from switch.admin.cli_rules import add_rule_commands
    from switch.reports.cli_daily import add_daily_report
    from switch.reports.cli_rules import add_rule_reports

    rules = (add_rule_commands(sub) + add_rule_reports(reports)
             + add_complaint_commands(sub) + [add_daily_report(reports)])
    from console.cli import add_console_commands  # the web console (issue 16), lazily

    add_console_commands(sub)
    for p in (serve, seed, alloc, check, audit, card, kpm, records, terminals, db, imp, recon,
              *rules):
        p.add_argument("--db", help="database URL (default BPNT_DATABASE_URL)")
    for p in (seed, alloc, check, audit, card, kpm, records, terminals, db, imp, recon):
        add_json_flag(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
