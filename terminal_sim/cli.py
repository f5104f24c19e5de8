"""``edc-sim``: the e-warong EDC simulator."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path


def _cmd_demo(args: argparse.Namespace) -> int:
    from terminal_sim.demo import run_demo

    return run_demo(transactions=args.transactions, kpm=args.kpm, workdir=Path(args.workdir))


def _cmd_scenario(args: argparse.Namespace) -> int:
    from switch.admin.demo import build_world
    from switch.security.keyring import Keyring
    from switch.settings import load_settings
    from terminal_sim.scenarios import SCENARIOS, Scenarios
    from terminal_sim.world import SimWorld

    if args.name not in SCENARIOS:
        print(f"unknown scenario {args.name}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    keys = Keyring.from_settings(load_settings())
    sim = SimWorld(build_world(kpm_count=args.kpm), keys.imk_ac, args.host, args.port,
                   timeout_s=args.timeout_s, on_screen=print, state_path=Path(args.state),
                   link_url=args.link, reader=args.reader)
    try:
        steps = SCENARIOS[args.name](Scenarios(sim))
    finally:
        sim.close()
    for step in steps:
        print(f"[{'ok ' if step.ok else 'FAIL'}] {step.what}: expected {step.expected}, "
              f"got {step.got} | {step.display}")
    return 0 if all(s.ok for s in steps) else 1


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
    scen.add_argument("--host", default="127.0.0.1")
    scen.add_argument("--port", type=int, default=8583)
    scen.add_argument("--link", metavar="URL",
                      help="tcp://HOST:PORT | mqtt://HOST:PORT | serial:PORT[?baud=9600&noise=0.01]"
                           " (default: tcp to --host/--port)")
    scen.add_argument("--reader", default="emulated", metavar="emulated|pcsc[:NAME]",
                      help="card reader: in-process (default) or PC/SC via pyscard, e.g. "
                           "pcsc:'Virtual PCD 00 00' (docs/PCSC.md)")
    scen.add_argument("--kpm", type=int, default=200, help="size of the seeded demo world")
    scen.add_argument("--timeout-s", type=float, default=30.0)
    scen.add_argument("--state", default="var/edc-state.json",
                      help="file keeping each terminal's STAN and invoice counters")
    scen.set_defaults(func=_cmd_scenario)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
