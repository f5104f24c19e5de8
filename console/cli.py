"""``bpnt-switch console ...``: serve the console, manage its users and API tokens.

Only argparse here at import time: ``bpnt-switch`` builds its parser on every start.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_console_commands(sub: Any) -> None:
    """Add ``console`` (and its subcommands) to ``bpnt-switch``'s subparsers."""
    console = sub.add_parser("console", help="the operations console (web, 127.0.0.1:8080; "
                             "docs/CONSOLE.md)")
    console.add_argument("--host", dest="console_host", help="listen address (127.0.0.1)")
    console.add_argument("--port", dest="console_port", type=int, help="listen port (8080)")
    console.add_argument("--db", help="database URL (default BPNT_DATABASE_URL)")
    console.set_defaults(func=_cmd_serve)
    actions = console.add_subparsers(dest="console_command")

    user = actions.add_parser("user", help="console users")
    user_actions = user.add_subparsers(dest="user_command", required=True)
    add = user_actions.add_parser("add", help="a new user (prints a generated password)")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=["admin", "operator", "auditor",
                                                       "ewarong"])
    add.add_argument("--mid", help="the e-warong of an ewarong user (DE 42)")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input instead")
    add.set_defaults(func=_cmd_user_add)
    listing = user_actions.add_parser("list", help="the users and their roles")
    listing.set_defaults(func=_cmd_user_list)

    token = actions.add_parser("token", help="JSON API tokens")
    token_actions = token.add_subparsers(dest="token_command", required=True)
    token_add = token_actions.add_parser("add", help="a new token for USERNAME (printed once)")
    token_add.add_argument("username")
    token_add.add_argument("--label", required=True)
    token_add.set_defaults(func=_cmd_token_add)

    seed = actions.add_parser("seed-demo-users", help="one user per role (demo), printing "
                              "their logins")
    seed.set_defaults(func=_cmd_seed_users)
    for parser in (add, listing, token_add, seed):
        parser.add_argument("--db", help="database URL (default BPNT_DATABASE_URL)")


def _switch_settings(args: argparse.Namespace) -> Any:
    from switch.settings import load_settings

    return load_settings(**({"database_url": args.db} if getattr(args, "db", None) else {}))


def _db(args: argparse.Namespace) -> tuple[Any, Any]:
    from switch.db.schema import open_database
    from switch.security.keyring import Keyring

    settings = _switch_settings(args)
    return open_database(settings.database_url, create=False), Keyring.from_settings(settings)


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from console.app import create_app
    from console.settings import ConsoleSettings

    overrides: dict[str, Any] = {}
    if args.console_host:
        overrides["host"] = args.console_host
    if args.console_port is not None:
        overrides["port"] = args.console_port
    settings = ConsoleSettings(**overrides)
    switch_settings = _switch_settings(args)
    app = create_app(settings, switch_settings)
    loop = "uvloop" if switch_settings.event_loop == "uvloop" and _has_uvloop() else "asyncio"
    print(f"console on http://{settings.host}:{settings.port}/ over "
          f"{_safe_url(switch_settings.database_url)}", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, workers=1, loop=loop,
                log_level="info", proxy_headers=False, server_header=False,
                # open dashboards (server-sent events) never hold a shutdown longer
                timeout_graceful_shutdown=5)
    return 0


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _cmd_user_add(args: argparse.Namespace) -> int:
    from console.auth import create_user, generate_password
    from switch.admin.errors import AdminError
    from switch.clock import SystemClock
    from switch.db import audit as chain

    db, keys = _db(args)
    generated = not args.password_stdin
    password = generate_password() if generated else sys.stdin.readline().rstrip("\n")
    try:
        with db.transaction() as session:
            user = create_user(session, username=args.username, role=args.role,
                               password=password, mid=args.mid)
            chain.append(session, keys.audit_key, at=SystemClock().now(), actor="cli:console",
                         action="console.user_add", subject=user.username,
                         detail={"role": user.role, "ewarong_id": user.ewarong_id})
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"user {args.username} ({args.role}) created"
          + (f"; password: {password}" if generated else ""))
    return 0


def _cmd_user_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from switch.db.tables import ConsoleUser, Ewarong

    db, _ = _db(args)
    with db.transaction(exclusive=False) as session:
        mids = dict(session.execute(select(Ewarong.id, Ewarong.mid)).all())
        for user in session.scalars(select(ConsoleUser).order_by(ConsoleUser.username)):
            mid = mids.get(user.ewarong_id, "") if user.ewarong_id else ""
            print(f"{user.username:<20} {user.role:<9} {mid:<15} "
                  f"{'active' if user.active else 'inactive'}")
    return 0


def _cmd_token_add(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from console.tokens import create_token
    from switch.admin.errors import AdminError
    from switch.clock import SystemClock
    from switch.db import audit as chain
    from switch.db.tables import ConsoleUser

    db, keys = _db(args)
    try:
        with db.transaction() as session:
            user_id = session.scalar(select(ConsoleUser.id).where(
                ConsoleUser.username == args.username))
            if user_id is None:
                print(f"error: no user {args.username}", file=sys.stderr)
                return 2
            row, clear = create_token(session, user_id=user_id, label=args.label)
            chain.append(session, keys.audit_key, at=SystemClock().now(), actor="cli:console",
                         action="console.token_add", subject=row.label,
                         detail={"token_id": row.id, "user_id": user_id})
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"token for {args.username} ({args.label}), shown once: {clear}")
    return 0


def _cmd_seed_users(args: argparse.Namespace) -> int:
    from console.seed import seed_demo_users
    from switch.clock import SystemClock

    db, keys = _db(args)
    print("console logins (demo; passwords are new each time):")
    for username, role, password in seed_demo_users(db, keys, SystemClock()):
        print(f"  {role:<9} {username:<10} {password}")
    return 0
