"""``edc-sim``: the e-warong EDC simulator."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

#: The database ``make serve`` seeds and serves (Makefile SERVE_DB).
SERVE_DB = "sqlite:///var/serve.db"

if TYPE_CHECKING:
    from switch.admin.demo import DemoTerminal
    from terminal_sim.rule_scenarios import RuleScenarios
    from terminal_sim.world import SimWorld


def _cmd_demo(args: argparse.Namespace) -> int:
    from terminal_sim.demo import run_demo

    return run_demo(transactions=args.transactions, kpm=args.kpm, workdir=Path(args.workdir))


def _sim(args: argparse.Namespace) -> SimWorld:
    from switch.admin.demo import build_world
    from switch.security.keyring import Keyring
    from switch.settings import load_settings
    from terminal_sim.world import SimWorld

    keys = Keyring.from_settings(load_settings())
    return SimWorld(build_world(kpm_count=args.kpm), keys.imk_ac, args.host, args.port,
                    timeout_s=args.timeout_s, on_screen=print, state_path=Path(args.state),
                    link_url=args.link, reader=args.reader)


def _terminal(sim: SimWorld, tid: str | None) -> DemoTerminal | None:
    """The terminal ``--tid`` names, or the one the named scenarios use."""
    if tid is None:
        return next(t for t in sim.world.terminals if t.label == "ok")
    return next((t for t in sim.world.terminals if t.tid == tid), None)


def _cmd_scenario(args: argparse.Namespace) -> int:
    from terminal_sim.rule_scenarios import RULE_SCENARIOS, scenario_names
    from terminal_sim.scenarios import SCENARIOS, Scenarios, Step

    if args.name not in SCENARIOS and args.name not in RULE_SCENARIOS:
        print(f"unknown scenario {args.name}; known: {', '.join(scenario_names())}",
              file=sys.stderr)
        return 2
    sim = _sim(args)
    try:
        steps: list[Step]
        if args.name in RULE_SCENARIOS:
            steps = RULE_SCENARIOS[args.name](_rule_runner(args, sim))
        else:
            steps = SCENARIOS[args.name](Scenarios(sim))
    finally:
        sim.close()
    for step in steps:
        print(f"[{'ok ' if step.ok else 'FAIL'}] {step.what}: expected {step.expected}, "
              f"got {step.got} | {step.display}")
    return 0 if all(s.ok for s in steps) else 1


def _rule_runner(args: argparse.Namespace, sim: SimWorld) -> RuleScenarios:
    """The rule scenarios set their scene on the switch's database (``--db``) and
    expect what the rule modes of this command's ``BPNT_*`` settings decide, which must
    be the switch's (``make serve`` passes its environment on)."""
    from switch.db.schema import open_database
    from switch.security.keyring import Keyring
    from switch.settings import load_settings
    from terminal_sim.rule_scenarios import RuleModes, RuleScenarios

    settings = load_settings()
    modes = RuleModes.of(settings)
    print(f"rule scenario {args.name} on {args.db}, expecting a switch with "
          f"{modes.describe()}")
    db = open_database(args.db, create=False)
    return RuleScenarios(sim, db, Keyring.from_settings(settings), modes)


def _cmd_void(args: argparse.Namespace) -> int:
    """Void a purchase of the terminal's batch; the original's card is inserted again."""
    sim = _sim(args)
    try:
        terminal = _terminal(sim, args.tid)
        if terminal is None:
            print(f"no terminal {args.tid} in the demo world", file=sys.stderr)
            return 2
        edc = sim.edc(terminal)
        invoice = args.invoice.zfill(6) if args.invoice.isdigit() else args.invoice
        original = edc.batch.find_purchase(invoice)
        pin = args.pin or ""
        if original is not None:
            card = sim.demo_card(original.card)
            if card is not None:
                sim.insert(edc, card)
                pin = pin or card.pin
        result = edc.void(invoice, pin)
    finally:
        sim.close()
    print(f"VOID INV {result.invoice}: {result.display}"
          + (f" (RC {result.rc})" if result.rc else ""))
    return 0 if result.approved else 1


def _cmd_settle(args: argparse.Namespace) -> int:
    """Settle the terminal's batch (the slip is printed as the EDC shows it)."""
    sim = _sim(args)
    try:
        terminal = _terminal(sim, args.tid)
        if terminal is None:
            print(f"no terminal {args.tid} in the demo world", file=sys.stderr)
            return 2
        result = sim.edc(terminal).settle()
    finally:
        sim.close()
    print(f"SETTLEMENT BATCH {result.batch_number}: {result.display}"
          + (f" (RC {result.rc})" if result.rc else "")
          + (", via batch upload" if result.uploaded else ""))
    return 0 if result.approved else 1


def _connection(parser: argparse.ArgumentParser) -> None:
    """The options every command that talks to a running switch takes."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8583)
    parser.add_argument("--link", metavar="URL",
                        help="tcp://HOST:PORT | mqtt://HOST:PORT | "
                             "serial:PORT[?baud=9600&noise=0.01] (default: tcp to --host/--port)")
    parser.add_argument("--reader", default="emulated", metavar="emulated|pcsc[:NAME]",
                        help="card reader: in-process (default) or PC/SC via pyscard, e.g. "
                             "pcsc:'Virtual PCD 00 00' (docs/PCSC.md)")
    parser.add_argument("--kpm", type=int, default=200, help="size of the seeded demo world")
    parser.add_argument("--timeout-s", type=float, default=30.0)
    parser.add_argument("--state", default="var/edc-state.json",
                        help="file keeping each terminal's STAN, batch and pending reversal")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edc-sim", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="switch + fleet + scenarios + invariant (make run)")
    demo.add_argument("--transactions", type=int, default=400)
    demo.add_argument("--kpm", type=int, default=200)
    demo.add_argument("--workdir", default="var")
    demo.set_defaults(func=_cmd_demo)
    scen = sub.add_parser("scenario", help="run one named scenario against a running switch")
    scen.add_argument("name")
    scen.add_argument("--db", default=os.environ.get("BPNT_DATABASE_URL", SERVE_DB),
                      help="the switch's database, where the rule scenarios (dormant-card, "
                           "velocity, off-hours, zoning, over-price, out-of-stock) set their "
                           f"scene (default: BPNT_DATABASE_URL, else {SERVE_DB}, make serve's)")
    _connection(scen)
    scen.set_defaults(func=_cmd_scenario)
    void = sub.add_parser("void", help="void a purchase of the terminal's batch by invoice")
    void.add_argument("invoice", help="DE 62 of the purchase, e.g. 000003")
    void.add_argument("--pin", help="the cardholder's PIN (default: the demo card's)")
    void.add_argument("--tid", help="terminal (default: the one the scenarios use)")
    _connection(void)
    void.set_defaults(func=_cmd_void)
    settle = sub.add_parser("settle", help="settle the terminal's batch (end of day)")
    settle.add_argument("--tid", help="terminal (default: the one the scenarios use)")
    _connection(settle)
    settle.set_defaults(func=_cmd_settle)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
