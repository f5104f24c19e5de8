"""``bpnt-switch complaint open|assign|move|comment|show|list`` (issue 16,
docs/CONSOLE.md "Complaints").  Changes are audited as ``admin:<actor>`` in the
transaction that makes them; ``--json`` prints the complaint (or the list) as one JSON
document.  A user error prints ``error: ...`` and exits 2 (usage, not found) or 1
(refused)."""

from __future__ import annotations

import argparse
from datetime import datetime

from sqlalchemy import select

from switch.admin.cli_rules import Context, _actor, _leaf
from switch.admin.complaints import SOURCES, STATUSES, ComplaintNotFound, ComplaintView
from switch.cli_output import json_mode, print_json, print_table
from switch.clock import WIB


def _wib(at: datetime) -> str:
    return at.astimezone(WIB).strftime("%Y-%m-%d %H:%M")


def _print_one(args: argparse.Namespace, view: ComplaintView) -> int:
    if json_mode(args):
        print_json(view)
        return 0
    about = [f"card {view.card_masked}" if view.card_masked else "",
             f"KPM {view.kpm_nik_masked}" if view.kpm_nik_masked else "",
             f"RRN {view.rrn}" if view.rrn else "", f"e-warong {view.mid}" if view.mid else ""]
    print(f"complaint {view.id}: {view.status} ({view.source}) {view.subject}")
    print(f"  about: {', '.join(a for a in about if a)}")
    print(f"  opened {_wib(view.opened_at)} WIB by {view.opened_by}; "
          f"assignee {view.assignee or '-'}; next: {', '.join(view.allowed) or '(closed)'}")
    if view.description:
        print(f"  {view.description}")
    print_table(["time_wib", "actor", "step", "from", "to", "note"],
                [[_wib(e.at), e.actor, e.kind, e.from_status, e.to_status, e.note]
                 for e in view.events])
    return 0


def _open(args: argparse.Namespace, ctx: Context) -> int:
    from switch.admin.complaints import open_complaint

    with ctx.transaction() as session:
        view = open_complaint(session, ctx.keys, actor=_actor(args), source=args.source,
                              subject=args.subject, description=args.description,
                              pan=args.pan, nik=args.nik, rrn=args.rrn, mid=args.mid,
                              clock=ctx.clock)
    return _print_one(args, view)


def _assign(args: argparse.Namespace, ctx: Context) -> int:
    from switch.admin.complaints import assign_complaint

    with ctx.transaction() as session:
        view = assign_complaint(session, ctx.keys, args.id, assignee=args.assignee,
                                actor=_actor(args), clock=ctx.clock)
    return _print_one(args, view)


def _move(args: argparse.Namespace, ctx: Context) -> int:
    from switch.admin.complaints import move_complaint

    with ctx.transaction() as session:
        view = move_complaint(session, ctx.keys, args.id, to_status=args.to, note=args.note,
                              actor=_actor(args), clock=ctx.clock)
    return _print_one(args, view)


def _comment(args: argparse.Namespace, ctx: Context) -> int:
    from switch.admin.complaints import comment_complaint

    with ctx.transaction() as session:
        view = comment_complaint(session, ctx.keys, args.id, note=args.note,
                                 actor=_actor(args), clock=ctx.clock)
    return _print_one(args, view)


def _show(args: argparse.Namespace, ctx: Context) -> int:
    from switch.admin.complaints import get_complaint

    with ctx.transaction() as session:
        view = get_complaint(session, args.id)
    return _print_one(args, view)


def _list(args: argparse.Namespace, ctx: Context) -> int:
    from switch.admin.complaints import list_complaints
    from switch.db.tables import Ewarong

    with ctx.transaction() as session:
        ewarong_id = None
        if args.ewarong:
            ewarong_id = session.scalar(select(Ewarong.id).where(Ewarong.mid == args.ewarong))
            if ewarong_id is None:
                raise ComplaintNotFound(f"no e-warong {args.ewarong}")
        views = list_complaints(session, status=args.status, ewarong_id=ewarong_id,
                                limit=args.limit)
    if json_mode(args):
        print_json({"count": len(views), "complaints": views})
        return 0
    print_table(["id", "status", "source", "opened_wib", "mid", "card", "rrn", "assignee",
                 "subject"],
                [[v.id, v.status, v.source, _wib(v.opened_at), v.mid, v.card_masked, v.rrn,
                  v.assignee, v.subject] for v in views], empty="(no complaints)")
    return 0


def add_complaint_commands(sub: argparse._SubParsersAction  # type: ignore[type-arg]
                           ) -> list[argparse.ArgumentParser]:
    """Add ``complaint ...`` to ``sub``; returns the parsers that take ``--db``."""
    leaves: list[argparse.ArgumentParser] = []
    complaint = sub.add_parser("complaint", help="complaints: open, assign, move, comment, "
                               "show, list (docs/CONSOLE.md)")
    steps = complaint.add_subparsers(dest="complaint_action", required=True)
    opened = _leaf(steps, "open", "a new complaint about a card, KPM, transaction or "
                   "e-warong", _open, leaves)
    opened.add_argument("--source", required=True, choices=SOURCES, help="who it is from")
    opened.add_argument("--subject", required=True)
    opened.add_argument("--description", default="")
    opened.add_argument("--pan", help="the card (only its masked PAN is kept)")
    opened.add_argument("--nik", help="the KPM")
    opened.add_argument("--rrn", help="the transaction (DE 37); gives its e-warong")
    opened.add_argument("--mid", help="the e-warong (DE 42)")
    assign = _leaf(steps, "assign", "give a complaint to someone", _assign, leaves)
    assign.add_argument("--assignee", required=True)
    move = _leaf(steps, "move", "the next status: " + "; ".join(
        ("open -> investigating | rejected", "investigating -> resolved | rejected")),
        _move, leaves)
    move.add_argument("--to", required=True, choices=STATUSES, metavar="STATUS")
    move.add_argument("--note", default="", help="why (required to resolve or reject)")
    comment = _leaf(steps, "comment", "a note on a complaint's history", _comment, leaves)
    comment.add_argument("--note", required=True)
    show = _leaf(steps, "show", "a complaint and its history", _show, leaves, actor=False)
    listed = _leaf(steps, "list", "the newest complaints", _list, leaves, actor=False)
    listed.add_argument("--status", choices=STATUSES)
    listed.add_argument("--ewarong", metavar="MID")
    listed.add_argument("--limit", type=int, default=200)
    for parser in (assign, move, comment, show):
        parser.add_argument("id", type=int, metavar="ID")
    return leaves
